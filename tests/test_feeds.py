from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
import structlog

from pipeline.errors import ConfigError, FeedError
from pipeline.ingest.feeds import (
    MAX_LINK_CHARS,
    SCHEMA_PATH,
    enabled_feeds,
    html_to_text,
    load_feeds,
    parse_feed,
    read_feed,
)
from pipeline.records import FeedConfig
from pipeline.settings import PROJECT_ROOT

SEEDS = PROJECT_ROOT / "seeds" / "feeds.yaml"
FEED = FeedConfig(id="akhbar", url="https://news.example/rss/main.xml", outlet="أخبار المثال")
FETCHED = datetime(2030, 1, 1, tzinfo=UTC)

TITLE = "الحكومة تعلن خطة جديدة لدعم الاقتصاد الوطني"
LEAD = "أعلنت الحكومة اليوم عن حزمة إجراءات لدعم الشركات الصغيرة"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_feeds(path)
    return str(caught.value)


# --- the feed list ------------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def test_seed_list_loads_with_varied_outlets() -> None:
    feeds = load_feeds(SEEDS)
    assert len(feeds) >= 18
    assert len({feed.id for feed in feeds}) == len(feeds)
    assert len({feed.outlet for feed in feeds}) >= 10
    assert all(feed.url.startswith(("http://", "https://")) for feed in feeds)
    assert all(feed.language == "ar" for feed in feeds)
    assert all(feed.line > 0 for feed in feeds)
    text = SEEDS.read_text(encoding="utf-8").splitlines()
    assert all(text[feed.line - 1].strip() == f"- id: {feed.id}" for feed in feeds)


def test_defaults_and_disabled_feeds(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n"
        "  - id: one\n    url: https://a.example/rss\n    outlet: A\n"
        "  - id: two\n    url: https://b.example/rss\n    outlet: B\n    enabled: false\n"
        "    language: en\n    poll_minutes: 30\n",
    )
    feeds = load_feeds(path)
    assert feeds == [
        FeedConfig(id="one", url="https://a.example/rss", outlet="A", language="ar", line=2),
        FeedConfig(
            id="two", url="https://b.example/rss", outlet="B", language="en", enabled=False,
            poll_minutes=30, line=5,
        ),
    ]  # fmt: skip
    assert [feed.id for feed in enabled_feeds(feeds)] == ["one"]


def test_wrong_url_scheme_names_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n"
        "  - id: good\n    url: https://a.example/rss\n    outlet: A\n"
        "  - id: bad\n    url: ftp://x\n    outlet: B\n",
    )
    message = config_error(path)
    assert f"{path}:6: feeds[1].url: 'ftp://x' does not match '^https?://'" in message


def test_missing_outlet_names_the_feed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n"
        "  - id: good\n    url: https://a.example/rss\n    outlet: A\n"
        "  - id: nameless\n    url: https://b.example/rss\n",
    )
    assert f"{path}:5: feeds[1]: 'outlet' is a required property" in config_error(path)


def test_unknown_key_points_at_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n  - id: a1\n    url: https://a.example/rss\n    outlet: A\n    colour: red\n",
    )
    assert f"{path}:5: feeds[0].colour: unknown field" in config_error(path)


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n"
        "  - id: same\n    url: https://a.example/rss\n    outlet: A\n"
        "  - id: same\n    url: https://b.example/rss\n    outlet: B\n",
    )
    message = config_error(path)
    assert f"{path}:5: feeds[1].id: duplicate id 'same'" in message
    assert "line 2" in message


def test_same_feed_twice_under_two_ids_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n"
        "  - id: one\n    url: https://a.example/rss?utm_source=x\n    outlet: A\n"
        "  - id: two\n    url: https://A.EXAMPLE:443/rss#latest\n    outlet: B\n",
    )
    assert f"{path}:6: feeds[1].url: the same feed as 'one' at line 3" in config_error(path)


def test_every_error_is_listed_one_per_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n"
        "  - id: Bad Id\n    url: https://a.example/rss\n    outlet: A\n"
        "  - id: ok\n    url: https://b.example/rss\n    outlet: B\n    poll_minutes: 2\n",
    )
    lines = config_error(path).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:2: feeds[0].id: ")
    assert lines[1].startswith(f"{path}:8: feeds[1].poll_minutes: 2 is less than the minimum of 5")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n  - id: a1\n    url: https://a.example/rss\n   outlet: A\n",
    )
    message = config_error(path)
    assert message.startswith(f"{path}:4: not valid YAML")


def test_repeated_key_in_one_feed_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n  - id: a1\n    url: https://a.example/rss\n    url: https://b.example/rss\n    outlet: A\n",
    )
    assert f"{path}:4: key 'url' repeated (first at line 3)" in config_error(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- id: a1\n  url: https://a.example/rss\n  outlet: A\n")
    assert config_error(path) == (f"{path}:1: the feed list must be a mapping with a 'feeds' list, not a list")


def test_unquoted_no_gets_a_hint(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n  - id: a1\n    url: https://a.example/rss\n    outlet: A\n    country: NO\n",
    )
    message = config_error(path)
    assert f"{path}:5: feeds[0].country: False is not of type 'string'" in message
    assert "quote" in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    assert "no such feed list" in config_error(tmp_path / "absent.yaml")


# --- feed documents -----------------------------------------------------------------------------


def rss(items: str, *, encoding: str = "utf-8", title: str = "أخبار المثال") -> str:
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:content="http://purl.org/rss/1.0/modules/content/">\n'
        f"<channel><title>{title}</title><link>https://news.example/</link>\n"
        f"{items}</channel></rss>\n"
    )


def item(link: str, title: str = TITLE, extra: str = "") -> str:
    return f"<item><title>{title}</title><link>{link}</link>{extra}</item>\n"


def parse(content: bytes, content_type: str = "application/rss+xml; charset=utf-8") -> Any:
    return parse_feed(content, {"Content-Type": content_type}, feed=FEED, fetched_at=FETCHED)


def test_rss_utf8_with_full_content_and_creator() -> None:
    body = (
        f"<description>&lt;p&gt;{LEAD}&lt;/p&gt;</description>"
        "<content:encoded><![CDATA[<p>الفقرة الأولى من <b>الخبر</b>.</p><script>x()</script>"
        "<p>الفقرة الثانية<br/>وسطر ثالث</p>]]></content:encoded>"
        "<dc:creator>سارة أحمد</dc:creator>"
        "<pubDate>Tue, 02 Jan 2024 10:00:00 +0300</pubDate>"
    )
    [found] = parse(rss(item("https://news.example/a/1?utm_source=rss", extra=body)).encode())
    assert found.feed_id == "akhbar" and found.outlet == "أخبار المثال"
    assert found.url == "https://news.example/a/1?utm_source=rss"
    assert found.canonical_url == "https://news.example/a/1"
    assert found.title == TITLE
    assert found.summary == LEAD
    assert found.content == "الفقرة الأولى من الخبر.\n\nالفقرة الثانية\nوسطر ثالث"
    assert found.author == "سارة أحمد"
    assert found.published_at == datetime(2024, 1, 2, 7, 0, tzinfo=UTC)
    assert found.updated_at is None  # not feedparser's stand-in copy of the published time
    assert found.language is None  # the feed's language, and FEED declares none


def test_rss_in_windows_1256_decodes_exactly() -> None:
    content = rss(item("https://news.example/a/1", extra=f"<description>{LEAD}</description>"),
                  encoding="windows-1256").encode("cp1256")  # fmt: skip
    [found] = parse(content, "application/rss+xml; charset=windows-1256")
    assert (found.title, found.summary) == (TITLE, LEAD)


@pytest.mark.parametrize(
    "content_type",
    ["application/rss+xml; charset=ISO-8859-1", "text/xml; charset=windows-1252",
     "text/html; charset=iso-8859-1", "text/xml; charset=us-ascii"],
)  # fmt: skip
def test_mislabelled_cp1256_feed_decodes_exactly(content_type: str) -> None:
    content = rss(item("https://news.example/a/1", extra=f"<description>{LEAD}</description>"),
                  encoding="windows-1256").encode("cp1256")  # fmt: skip
    [found] = parse(content, content_type)
    assert (found.title, found.summary) == (TITLE, LEAD)


def test_utf8_feed_served_as_latin1_html_decodes_exactly() -> None:
    # The "Ø§Ù„" case: UTF-8 bytes that feedparser, obeying the header, reads as Windows-1252.
    [found] = parse(rss(item("https://news.example/a/1")).encode(), "text/html; charset=windows-1252")
    assert found.title == TITLE


def test_genuine_latin1_feed_is_left_alone() -> None:
    title = "Le président annonce un plan économique"
    content = rss(item("https://news.example/fr/1", title=title), encoding="iso-8859-1", title="Actualités")
    [found] = parse(content.encode("latin-1"), "application/rss+xml; charset=ISO-8859-1")
    assert found.title == title


def test_atom_offsets_become_utc() -> None:
    atom = f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>أخبار</title><id>urn:x</id>
<updated>2024-03-05T12:30:00+03:00</updated>
<entry><title>{TITLE}</title><link rel="alternate" href="https://news.example/atom/1"/>
<id>urn:1</id><published>2024-03-05T12:30:00+03:00</published>
<updated>2024-03-05T13:00:00+03:00</updated>
<author><name>مراسل المثال</name></author>
<summary type="html">&lt;p&gt;{LEAD}&lt;/p&gt;</summary>
<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>فقرة</p><p>أخرى</p></div></content>
</entry>
<entry><title>بلا تاريخ منشور</title><link href="https://news.example/atom/2"/><id>urn:2</id>
<updated>2024-03-05T08:00:00Z</updated></entry>
</feed>"""
    first, second = parse(atom.encode(), "application/atom+xml")
    assert first.published_at == datetime(2024, 3, 5, 9, 30, tzinfo=UTC)
    assert first.updated_at == datetime(2024, 3, 5, 10, 0, tzinfo=UTC)
    assert first.author == "مراسل المثال"
    assert (first.summary, first.content) == (LEAD, "فقرة\n\nأخرى")
    assert second.published_at == datetime(2024, 3, 5, 8, 0, tzinfo=UTC)  # falls back to updated


def test_missing_dates_stay_none_and_future_dates_are_clamped() -> None:
    content = rss(
        item("https://news.example/a/1")
        + item("https://news.example/a/2", extra="<pubDate>Sat, 01 Jan 2039 00:00:00 GMT</pubDate>")
    )
    first, second = parse(content.encode())
    assert first.published_at is None
    assert second.published_at == FETCHED


def test_relative_links_resolve_against_the_feed_url() -> None:
    content = rss(item("/news/2024/1") + item("story?id=2") + item("//cdn.example/x"))
    found = parse(content.encode())
    assert [entry.url for entry in found] == [
        "https://news.example/news/2024/1",
        "https://news.example/rss/story?id=2",
        "https://cdn.example/x",
    ]


def test_items_without_usable_link_are_skipped() -> None:
    content = rss(
        "<item><title>بلا رابط</title></item>\n"
        + item("mailto:desk@news.example")
        + item("javascript:alert(1)")
        + item("https://news.example/ok")
    )
    assert [entry.url for entry in parse(content.encode())] == ["https://news.example/ok"]


def test_repeated_links_share_one_canonical_url() -> None:
    content = rss(
        item("https://news.example/a/1", title="الأول")
        + item("https://news.example/a/1", title="مكرر")
        + item("https://NEWS.example/a/1?utm_source=tw#top", title="مكرر بتتبع")
    )
    found = parse(content.encode())
    assert [entry.title for entry in found] == ["الأول", "مكرر", "مكرر بتتبع"]
    assert {entry.canonical_url for entry in found} == {"https://news.example/a/1"}


def test_item_count_is_capped() -> None:
    content = rss("".join(item(f"https://news.example/a/{n}") for n in range(30)))
    found = parse_feed(content.encode(), {}, feed=FEED, fetched_at=FETCHED, max_items=10)
    assert [entry.url for entry in found] == [f"https://news.example/a/{n}" for n in range(10)]


def test_html_page_is_refused() -> None:
    page = "<!DOCTYPE html><html><head><title>الرئيسية</title></head><body><p>مرحبا</p></body></html>"
    with pytest.raises(FeedError, match="returned an HTML page, not a feed") as caught:
        parse(page.encode(), "text/html; charset=utf-8")
    assert (caught.value.url, caught.value.feed_id) == (FEED.url, FEED.id)


def test_html_page_with_a_feed_content_type_is_still_refused() -> None:
    with pytest.raises(FeedError, match="HTML page"):
        parse(b"<html><body><p>Access denied</p></body></html>", "application/rss+xml")


@pytest.mark.parametrize("content", [b"", b"  \r\n\t "])
def test_empty_response_is_refused(content: bytes) -> None:
    with pytest.raises(FeedError, match="empty"):
        parse(content)


def test_unrecoverable_garbage_reports_the_parser_error() -> None:
    with pytest.raises(FeedError, match="malformed feed, no entries recoverable: .*"):
        parse(b'<?xml version="1.0"?>\n<rss version="2.0"><channel><title>x</ti')


def test_truncated_feed_keeps_its_complete_items() -> None:
    whole = rss(item("https://news.example/a/1") + item("https://news.example/a/2"))
    truncated = whole.replace("</channel></rss>\n", "<item><title>نصف خبر</title><li")
    with structlog.testing.capture_logs() as logs:
        found = parse(truncated.encode())
    assert [entry.url for entry in found] == ["https://news.example/a/1", "https://news.example/a/2"]
    [warning] = [entry for entry in logs if entry["event"] == "feed.malformed"]
    assert warning["log_level"] == "warning"
    assert warning["feed"] == FEED.id and warning["reason"]


def test_wellformed_feed_with_no_items_is_empty_not_an_error() -> None:
    assert parse(rss("").encode()) == []


def test_xml_that_is_not_a_feed_is_refused() -> None:
    with pytest.raises(FeedError, match="not an RSS, Atom or RDF feed"):
        parse(b'<?xml version="1.0"?><sitemap><loc>https://news.example/</loc></sitemap>')


def test_body_naming_a_local_file_is_not_read_from_disk(tmp_path: Path) -> None:
    # feedparser.parse(bytes) tries open(bytes) first: a server could make us parse a local file.
    local = tmp_path / "local.xml"
    local.write_text(rss(item("https://local.example/secret")), encoding="utf-8")
    with pytest.raises(FeedError):
        parse(str(local).encode())


def test_naive_fetch_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_feed(rss("").encode(), {}, feed=FEED, fetched_at=datetime(2030, 1, 1))


def test_html_to_text_keeps_paragraphs_and_drops_markup() -> None:
    markup = (
        "<div><h2>عنوان</h2><p>سطر  أول\n مكسور</p><!-- تعليق --><ul><li>بند</li><li>آخر</li></ul>"
        "<style>p{}</style>نص&nbsp;حر &amp; رمز</div>"
    )
    assert html_to_text(markup) == "عنوان\n\nسطر أول مكسور\n\nبند\n\nآخر\n\nنص حر & رمز"
    assert html_to_text("غير مغلق <b>بخط") == "غير مغلق بخط"
    assert html_to_text("   ") == ""


# --- hostile feed documents ---------------------------------------------------------------------


def test_entities_declared_by_the_feed_are_never_expanded() -> None:
    # A quadratic blow-up: feedparser's fallback parser expanded this to 5 MB of title.
    doctype = '<!DOCTYPE rss [\n<!ENTITY big "' + "ب" * 5_000 + '">\n<!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>\n'
    content = rss(item("https://news.example/a/1", title="&big;" * 1_000 + "&xxe;"))
    content = content.replace("?>\n", "?>\n" + doctype, 1)
    [found] = parse(content.encode())
    assert found.title == "&big;" * 1_000 + "&xxe;"  # left as the text it is


def test_character_references_to_no_character_do_not_fail_the_feed() -> None:
    content = rss(item("https://news.example/a/1", title="قبل &#x110000; &#55296; &#0; &#99999999999; بعد"))
    [found] = parse(content.encode())
    assert found.title.startswith("قبل") and found.title.endswith("بعد")


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [("application/rss+xml; charset=undefined", "utf-8"), ("application/rss+xml; charset=base64", "utf-8"),
     ("application/rss+xml; charset=utf-7", "utf-8"), ("application/rss+xml", "undefined"),
     ("application/rss+xml; charset=utf-16", "utf-8"), ("text/xml; charset=rot13", "windows-1256")],
)  # fmt: skip
def test_charset_labels_naming_no_usable_encoding_are_ignored(content_type: str, encoding: str) -> None:
    body = rss(item("https://news.example/a/1"), encoding=encoding)
    [found] = parse(body.encode("cp1256" if encoding == "windows-1256" else "utf-8"), content_type)
    assert found.title == TITLE


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_wide_feed_without_bom_is_read_whatever_it_is_labelled(codec: str) -> None:
    content = rss(item("https://news.example/a/1", extra=f"<description>{LEAD}</description>")).encode(codec)
    [found] = parse(content, "application/rss+xml; charset=utf-8")
    assert (found.title, found.summary) == (TITLE, LEAD)


def test_iso_8859_6_feed_labelled_latin1_decodes_exactly() -> None:
    content = rss(item("https://news.example/a/1", extra=f"<description>{LEAD}</description>"), encoding="")
    [found] = parse(content.encode("iso-8859-6"), "text/xml; charset=ISO-8859-1")
    assert (found.title, found.summary) == (TITLE, LEAD)


def test_dates_before_1995_are_unknown_and_later_ones_kept() -> None:
    content = rss(
        item("https://news.example/a/1", extra="<pubDate>Mon, 01 Jan 0001 00:00:00 GMT</pubDate>")
        + item("https://news.example/a/2", extra="<pubDate>Thu, 01 Jan 1970 00:00:00 GMT</pubDate>")
        + item("https://news.example/a/3", extra="<pubDate>Sun, 01 Jan 1995 00:00:00 GMT</pubDate>")
    )
    first, second, third = parse(content.encode())
    assert (first.published_at, second.published_at) == (None, None)
    assert third.published_at == datetime(1995, 1, 1, tzinfo=UTC)


def test_skipped_entries_are_reported_with_their_reason() -> None:
    content = rss(
        item("javascript:alert(1)") + item("ftp://news.example/a") + "<item><title>بلا رابط</title></item>\n"
        + item("https://news.example/" + "x" * 5_000) + item("https://news.example/ok")
    )  # fmt: skip
    parsed = read_feed(content.encode(), {}, feed=FEED, fetched_at=FETCHED)
    assert [entry.url for entry in parsed.items] == ["https://news.example/ok"]
    assert [(s.link[:30], s.reason) for s in parsed.skipped] == [
        ("javascript:alert(1)", "not an http(s) link (javascript scheme)"),
        ("ftp://news.example/a", "not an http(s) link (ftp scheme)"),
        ("", "no link"),
        ("https://news.example/xxxxxxxxx", f"link longer than {MAX_LINK_CHARS} characters"),
    ]


def test_a_malformed_content_location_is_ignored() -> None:
    content = rss(item("/a/1"))
    [found] = parse_feed(content.encode(), {"Content-Location": "http://[::1"}, feed=FEED, fetched_at=FETCHED)
    assert found.url == "https://news.example/a/1"
