"""The digest email on its own: Arabic wording, escaping of feed text, headers and parts, and how the
HTML renders in a real browser (headless Chromium)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from browser import chrome, screenshot

from pipeline.alerts.digest import (
    Copy,
    Digest,
    Story,
    build_message,
    more_count,
    render_html,
    render_text,
    safe_href,
    story_count,
    subject,
)
from pipeline.settings import Settings
from pipeline.topics.profiles import load_profiles, match_profile

STORIES = Path(__file__).parent / "fixtures" / "alerts" / "stories.yaml"
NOW = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


class Markup(HTMLParser):
    """Tags, attributes and text of an HTML document, as a browser's parser sees them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._href: str | None = None
        self._link_text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._link_text).strip()))
            self._href = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._href is not None:
            self._link_text.append(data)


def sample_digest(more: int = 0) -> Digest:
    """The two stories of the fixture that the seed profile alerts, as the alert run builds them."""
    data = yaml.safe_load(STORIES.read_text(encoding="utf-8"))
    outlets = {key: value["name"] for key, value in data["outlets"].items()}
    [profile] = load_profiles(Settings().profiles_dir)

    def url(key: str) -> str:
        return f"https://{data['stories'][key]['outlet']}.example/news/{key}"

    def published(key: str) -> datetime:
        return datetime.fromisoformat(data["stories"][key]["published"])

    stories = []
    for key in ("hmeimim-strikes", "soleimani-moscow"):
        story = data["stories"][key]
        match = match_profile(profile, title=story["title"], body="\n\n".join(story["paragraphs"]))
        copies = [k for k, s in data["stories"].items() if s.get("copy_of") == key]
        stories.append(
            Story(
                cluster_id=key,
                article_id=key,
                title=story["title"],
                outlet=outlets[story["outlet"]],
                url=url(key),
                published_at=published(key),
                terms=match.terms[:6],
                score=match.score,
                others=tuple(Copy(outlets[data["stories"][k]["outlet"]], url(k), published(k)) for k in copies),
            )
        )
    return Digest(profile_id=profile.id, profile_title=profile.title, stories=tuple(stories), more=more)


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1, "خبر واحد جديد"),
        (2, "خبران جديدان"),
        (3, "3 أخبار جديدة"),
        (10, "10 أخبار جديدة"),
        (11, "11 خبرًا جديدًا"),
        (25, "25 خبرًا جديدًا"),
        (99, "99 خبرًا جديدًا"),
        (100, "100 خبر جديد"),
        (102, "102 خبر جديد"),
        (103, "103 أخبار جديدة"),
        (111, "111 خبرًا جديدًا"),
        (1000, "1000 خبر جديد"),
    ],
)
def test_story_counts_agree_with_the_number(n: int, words: str) -> None:
    assert story_count(n) == words


def test_the_rest_over_the_cap_is_counted_in_arabic() -> None:
    assert more_count(1) == "وخبر آخر يصل في الرسالة التالية"
    assert more_count(2) == "وخبران آخران يصلان في الرسالة التالية"
    assert more_count(7) == "و 7 أخبار أخرى تصل في الرسالة التالية"
    assert more_count(40) == "و 40 خبرًا آخر تصل في الرسالة التالية"


def test_subject_names_the_count_and_the_profile() -> None:
    digest = sample_digest()
    assert subject(digest) == "تنبيه إخباري: خبران جديدان — إيران وروسيا تدعمان الأسد في سوريا"


def hostile_digest() -> Digest:
    return Digest(
        profile_id="p",
        profile_title="ملف <تجربة>",
        stories=(
            Story(
                cluster_id="c1",
                article_id="a1",
                title='<script>alert("x")</script> عاجل: <b>غارات</b> & "قصف" \u202eمعكوس',
                outlet='<i>أخبار</i> "الشرق" & الغرب',
                url='https://example.org/a?q="><img/src=x/onerror=alert(1)>',
                published_at=datetime(2026, 11, 24, 7, 10, tzinfo=UTC),
                terms=("<img src=x onerror=alert(2)>", "روسيا"),
                score=9.5,
                others=(
                    Copy("<svg onload=alert(3)>", "javascript:alert(4)"),
                    Copy("وكالة", "http://example.net/b"),
                ),
            ),
        ),
    )


def test_feed_text_is_escaped_and_only_http_links_are_links() -> None:
    page = render_html(hostile_digest(), generated_at=NOW)
    markup = Markup(page)
    tags = {tag for tag, _ in markup.tags}
    assert not tags & {"script", "img", "svg", "i", "b"}
    assert all(not any(name.startswith("on") for name in attrs) for _, attrs in markup.tags)
    text = "".join(markup.text)
    assert '<script>alert("x")</script> عاجل: <b>غارات</b> & "قصف" معكوس' in text  # shown literally
    assert '<i>أخبار</i> "الشرق" & الغرب' in text and "<img src=x onerror=alert(2)>" in text
    assert "\u202e" not in page  # a right-to-left override could disguise a link's text
    hrefs = [href for href, _ in markup.links]
    assert hrefs == ['https://example.org/a?q="><img/src=x/onerror=alert(1)>', "http://example.net/b"]
    assert "javascript:" not in hrefs[0] and "&quot;&gt;&lt;img/src" in page
    assert "<svg onload=alert(3)>" in text  # the outlet whose link was refused is still named, as text
    plain = render_text(hostile_digest(), generated_at=NOW)
    assert '<script>alert("x")</script>' in plain and "javascript:alert(4)" in plain and "\u202e" not in plain


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.org/a", True),
        ("http://example.org/a?b=1#c", True),
        ("HTTPS://EXAMPLE.ORG/", True),
        ("javascript:alert(1)", False),
        ("data:text/html,<script>", False),
        ("//example.org/a", False),
        ("https:///nohost", False),
        ("https://exa mple.org/", False),
        ("", False),
    ],
)
def test_only_web_links_are_kept(url: str, ok: bool) -> None:
    assert (safe_href(url) is not None) == ok


def test_the_message_has_both_parts_and_encoded_headers() -> None:
    digest = sample_digest(more=3)
    message = build_message(
        digest,
        sender="تنبيهات الأخبار <alerts@example.org>",
        recipients=("a@example.org", "b@example.org"),
        message_id="<x.1@example.org>",
        date=NOW,
    )
    raw = message.as_bytes()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998  # RFC 5322 line limit
    raw.decode("ascii")  # every header and part is encoded: the message is plain ASCII on the wire
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "تنبيه إخباري: خبران جديدان — إيران وروسيا تدعمان الأسد في سوريا"
    assert parsed["From"].addresses[0].display_name == "تنبيهات الأخبار"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["a@example.org", "b@example.org"]
    assert parsed["Message-ID"] == "<x.1@example.org>" and parsed["Date"].datetime == NOW
    assert parsed["Auto-Submitted"] == "auto-generated"
    text = parsed.get_body(("plain",))
    page = parsed.get_body(("html",))
    assert text is not None and page is not None
    assert text.get_content_charset() == "utf-8" and page.get_content_charset() == "utf-8"
    plain = text.get_content()
    assert "1. الطائرات الروسية تقلع من قاعدة حميميم لقصف ريف إدلب" in plain
    assert "2. قاسم سليماني في موسكو لتنسيق التدخل الروسي في سوريا" in plain
    assert "نشرته أيضًا: صحيفة الضفتين (https://dafta.example/news/soleimani-moscow-dafta)" in plain
    assert "و 3 أخبار أخرى تصل في الرسالة التالية." in plain
    html_text = page.get_content()
    assert '<html dir="rtl" lang="ar">' in html_text and "<style" not in html_text


def _layout(driver: Any) -> dict[str, Any]:
    script = """
    const body = document.body;
    const box = document.querySelector('table[width="640"]').getBoundingClientRect();
    const links = [...document.querySelectorAll('a')].slice(0, 2).map(a => {
        const r = a.getBoundingClientRect(); return {left: r.left, right: r.right, text: a.textContent}; });
    return {direction: getComputedStyle(body).direction,
            cells: [...document.querySelectorAll('td')].map(td => getComputedStyle(td).direction),
            box: {left: box.left, right: box.right}, links: links};
    """
    result: dict[str, Any] = driver.execute_script(script)
    return result


def test_the_digest_renders_right_to_left_in_a_browser(tmp_path: Path) -> None:
    page = tmp_path / "digest.html"
    page.write_text(render_html(sample_digest(more=3), generated_at=NOW), encoding="utf-8")
    with chrome(width=760, height=900) as driver:
        driver.get(page.as_uri())  # type: ignore[attr-defined]
        layout = _layout(driver)
        shot = screenshot(driver, "digest.png")
    assert layout["direction"] == "rtl" and set(layout["cells"]) == {"rtl"}
    box = layout["box"]
    first, second = layout["links"]
    assert first["text"] == "الطائرات الروسية تقلع من قاعدة حميميم لقصف ريف إدلب"
    # Headlines hug the right edge of the card (24 px padding plus the entry number), not the left.
    for link in (first, second):
        assert box["right"] - link["right"] < 60 < link["left"] - box["left"], (link, box)
    assert shot.stat().st_size > 10_000
