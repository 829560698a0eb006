"""Decoding and extraction of pages, and the fallback to the feed's own text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trafilatura.core as trafilatura_core
from lxml import etree

from pipeline.errors import ExtractError, LanguageRejected
from pipeline.ingest.extract import build_article, confident, decode_html, extract_body, process_page
from pipeline.records import FeedItem

PARAS = [
    "أعلنت وزارة الخارجية في دمشق أن وفداً رسمياً سيتوجه إلى موسكو الأسبوع المقبل لبحث ملفات التعاون العسكري.",
    "وقال المتحدث باسم الوزارة إن المحادثات ستتناول تنسيق العمليات الجوية وتبادل المعلومات بين البلدين.",
    "ويأتي ذلك بعد أيام من تصريحات لمسؤولين روس أكدوا فيها استمرار الدعم للحكومة السورية في المرحلة المقبلة.",
]
BOILER = "جميع الحقوق محفوظة لموقع المثال الإخباري"


def page(paras: list[str], *, charset: str = "utf-8", comments: str = "") -> str:
    body = "".join(f"<p>{p}</p>" for p in paras)
    return (
        f'<html lang="ar" dir="rtl"><head><meta charset="{charset}"><title>خبر</title>'
        '<meta property="article:published_time" content="2025-10-02T07:30:00+03:00"></head><body>'
        '<nav><a href="/">الرئيسية</a> <a href="/syria">سوريا</a> <a href="/world">العالم</a></nav>'
        f"<article><h1>وفد سوري إلى موسكو</h1>{body}</article>{comments}"
        f"<footer><p>{BOILER}</p></footer></body></html>"
    )


def item(**kw: object) -> FeedItem:
    base: dict[str, object] = dict(
        feed_id="f",
        outlet="المثال",
        url="https://example.org/a/1",
        canonical_url="https://example.org/a/1",
        title="وفد سوري إلى موسكو",
    )
    base.update(kw)
    return FeedItem(**base)  # type: ignore[arg-type]


NOW = datetime(2025, 10, 2, 12, 0, tzinfo=UTC)


def test_mislabelled_cp1256_page_decodes_exactly() -> None:
    raw = page(PARAS, charset="windows-1256").encode("cp1256")
    assert PARAS[0] in decode_html(raw, "text/html; charset=ISO-8859-1")
    assert PARAS[0] in decode_html(raw, "text/html")  # no header: the meta charset decides
    assert PARAS[0] in decode_html(raw, "")


def test_utf8_with_bom_and_undeclared_utf8() -> None:
    raw = page(PARAS).encode("utf-8")
    assert decode_html(b"\xef\xbb\xbf" + raw, "text/html; charset=windows-1256").startswith("<html")
    assert PARAS[1] in decode_html(raw.replace(b'<meta charset="utf-8">', b""), "text/html")


def test_body_is_extracted_without_chrome_or_comments() -> None:
    comments = '<section id="comments"><div class="comment"><p>تعليق قارئ: هذا كلام غير دقيق أبداً</p></div></section>'
    article = build_article(
        item(),
        html=page(PARAS, comments=comments),
        final_url="https://example.org/a/1",
        fetched_at=NOW,
        languages=("ar",),
        min_chars=100,
    )
    assert all(p in article.body for p in PARAS)
    assert BOILER not in article.body and "تعليق قارئ" not in article.body
    assert article.body_source == "page" and article.language == "ar"
    # No date in the feed: the page's article:published_time, in UTC.
    assert article.published_at == datetime(2025, 10, 2, 4, 30, tzinfo=UTC)


def test_feed_date_wins_and_fetch_time_is_last_resort() -> None:
    feed_time = datetime(2025, 10, 1, 20, 0, tzinfo=UTC)
    a = build_article(
        item(published_at=feed_time), html=page(PARAS), final_url="u", fetched_at=NOW, languages=("ar",), min_chars=100
    )
    assert a.published_at == feed_time
    bare = page(PARAS).replace('<meta property="article:published_time" content="2025-10-02T07:30:00+03:00">', "")
    b = build_article(item(), html=bare, final_url="u", fetched_at=NOW, languages=("ar",), min_chars=100)
    assert b.published_at == NOW


def test_empty_page_falls_back_to_the_feed_content() -> None:
    shell = '<html><body><div id="root"></div><script>render()</script></body></html>'
    full = "\n\n".join(PARAS)  # parse_feed hands over the entry's text as plain paragraphs
    a = build_article(item(content=full), html=shell, final_url="u", fetched_at=NOW, languages=("ar",), min_chars=100)
    assert a.body_source == "feed" and a.body == full


def test_no_body_anywhere_is_an_extract_error() -> None:
    with pytest.raises(ExtractError, match="feed entry holds"):
        build_article(item(summary="سطر واحد"), html=None, final_url="u", fetched_at=NOW, languages=("ar",))


def test_english_page_is_rejected_with_its_language() -> None:
    english = [
        "Officials in Damascus said a delegation will travel to Moscow next week for talks on military "
        "cooperation, according to a statement released on Thursday by the foreign ministry."
    ] * 3
    with pytest.raises(LanguageRejected) as info:
        build_article(
            item(title="Delegation to Moscow"),
            html=page(english),
            final_url="u",
            fetched_at=NOW,
            languages=("ar",),
            min_chars=100,
        )
    assert info.value.language == "en"


def test_worker_returns_errors_instead_of_raising() -> None:
    result = process_page(item(), b"\x00\x01garbage", "text/html", "u", NOW, ("ar",), 200, 2000)
    assert isinstance(result, ExtractError)


def test_author_and_title_come_from_the_page_when_the_feed_lacks_them() -> None:
    html = page(PARAS).replace(
        "<title>خبر</title>",
        '<title>خبر</title><meta name="author" content="ليلى الحسن">'
        '<meta property="og:title" content="وفد سوري رفيع إلى موسكو">',
    )
    a = build_article(item(title=""), html=html, final_url="u", fetched_at=NOW, languages=("ar",), min_chars=100)
    assert a.author == "ليلى الحسن" and a.title == "وفد سوري رفيع إلى موسكو"
    b = build_article(
        item(author="مراسل الموقع"), html=html, final_url="u", fetched_at=NOW, languages=("ar",), min_chars=100
    )
    assert b.author == "مراسل الموقع" and b.title == "وفد سوري إلى موسكو"  # the feed's own values win


def test_a_pdf_behind_an_article_link_is_no_page() -> None:
    result = process_page(item(), b"%PDF-1.7\n\x00\x01binary", "application/pdf", "u", NOW, ("ar",), 200, 2000)
    assert isinstance(result, ExtractError) and "application/pdf" in str(result)
    full = "\n\n".join(PARAS) * 2
    fallback = process_page(item(content=full), b"%PDF", "application/pdf", "u", NOW, ("ar",), 200, 2000)
    assert not isinstance(fallback, Exception) and fallback.body_source == "feed"


def test_extraction_that_runs_too_long_is_stopped() -> None:
    # A long page takes far longer than a millisecond to extract: the worker gives up on it and goes on.
    long_page = "".join(f"<div><p>{p} {n}</p></div>" for n, p in enumerate(PARAS * 1000))
    html = f"<html><body><article>{long_page}</article></body></html>".encode()
    result = process_page(item(), html, "text/html; charset=utf-8", "u", NOW, ("ar",), 200, 2000, 0.001)
    assert isinstance(result, ExtractError) and "longer than" in str(result)


# --- the fast path: trafilatura's main pass alone where it is confident ------------------------------

LONG = PARAS + [
    "وأضاف المتحدث أن الوفد سيضم خبراء في الطاقة والنقل إلى جانب الدبلوماسيين، وأن جدول الأعمال لم يكتمل بعد.",
    "ولم تعلق موسكو رسمياً على الزيارة حتى الآن، فيما قالت مصادر دبلوماسية إن التحضيرات بدأت منذ أسابيع.",
]


def test_a_long_article_in_paragraphs_keeps_the_main_pass_alone() -> None:
    meta = extract_body(page(LONG), url="https://example.org/a/1")
    assert meta["path"] == "fast"
    assert all(p in meta["text"] for p in LONG) and BOILER not in meta["text"]


def test_a_short_brief_goes_through_the_full_path() -> None:
    meta = extract_body(page(PARAS[:1]), url="https://example.org/a/1")
    assert meta["path"] == "full"
    assert PARAS[0] in meta["text"]


def test_a_body_without_paragraphs_goes_through_the_full_path() -> None:
    html = page([]).replace("</h1>", "</h1><div>" + "<br>".join(LONG) + "</div>")
    meta = extract_body(html, url="https://example.org/a/1")
    assert meta["path"] == "full"
    assert LONG[0] in meta["text"]


def test_a_table_dominated_body_goes_through_the_full_path() -> None:
    def table(k: int) -> str:  # three different tables (trafilatura drops a repeated one)
        return (
            "<table>" + "".join(f"<tr><td>{p}</td><td>{n + k}</td></tr>" for n, p in enumerate(LONG[k:])) + "</table>"
        )

    tables = "".join(table(k) for k in range(3))
    html = page(LONG[:2]).replace("</h1>", "</h1>" + tables)
    assert extract_body(html, url="https://example.org/a/1")["path"] == "full"


def test_page_furniture_left_in_the_extracted_body_is_not_confident() -> None:
    # What makes trafilatura's own comparison try jusText on the main pass's result.
    paragraphs = "".join(f"<p>{p}</p>" for p in LONG)
    text = "\n".join(LONG)
    assert confident(etree.fromstring(f"<body>{paragraphs}</body>"), text)
    assert not confident(etree.fromstring(f"<body>{paragraphs}<aside><p>{BOILER}</p></aside></body>"), text)


def test_fallback_always_sends_every_page_through_the_full_path() -> None:
    fast = extract_body(page(LONG), url="https://example.org/a/1")
    full = extract_body(page(LONG), url="https://example.org/a/1", fallback="always")
    assert full["path"] == "full" and full["text"] == fast["text"]


@pytest.mark.parametrize("text", ["", "قصير"])
def test_nothing_or_little_is_not_confident(text: str) -> None:
    assert not confident(None, text)


def test_the_fast_pass_turns_trafilaturas_recall_escalation_off_only_while_it_runs() -> None:
    # The switch is trafilatura's module constant (pinned version): if an upgrade drops it, the fast
    # pass would escalate again and cost twice as much; this says so.
    before = trafilatura_core.ESCALATION_MAX_LENGTH
    assert before > 0
    seen: list[int] = []
    original = trafilatura_core.trafilatura_sequence

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(trafilatura_core.ESCALATION_MAX_LENGTH)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    trafilatura_core.trafilatura_sequence = spy  # type: ignore[assignment]
    try:
        assert extract_body(page(PARAS[:1]), url="https://example.org/a/1")["path"] == "full"
    finally:
        trafilatura_core.trafilatura_sequence = original
    assert seen == [0, before]  # the fast pass without it, then the full path with it
    assert before == trafilatura_core.ESCALATION_MAX_LENGTH  # restored
