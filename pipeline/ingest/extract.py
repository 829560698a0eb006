"""Article bodies out of downloaded pages, with trafilatura, then the language gate.

``process_page`` is what the extraction workers run: decode → extract (the feed's own text as fallback)
→ language check → hashes. It takes and returns picklable records, so it runs in a process pool.

Extraction is trafilatura's main pass first, without its fallback extractors (readability, jusText)
and without its recall escalation, which together cost four times as much as the main pass on a news
page and are there for the pages the main pass handles badly. Where the main pass's result shows one
of the signs that make trafilatura's own comparison prefer a fallback (``confident``: too short, no
paragraphs, tables over paragraphs, page furniture inside the body), the page goes through
trafilatura's full default path, fallbacks and escalation included. ``EXTRACT_FALLBACK=always`` sends
every page through the full path.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import trafilatura
import trafilatura.core as trafilatura_core
from htmldate import find_date
from lxml.html import HtmlElement
from trafilatura.external import SANITIZED_XPATH
from trafilatura.settings import use_config
from trafilatura.utils import load_html

from pipeline.arabic.normalize import content_hash, word_count
from pipeline.errors import ExtractError, PipelineError
from pipeline.ingest.charsets import LATIN_CODECS, WIDE_CODECS, bom_codec, is_utf8, legacy_arabic, sniff_wide, web_codec
from pipeline.ingest.language import check_language
from pipeline.records import Article, FeedItem
from pipeline.stories.fingerprint import fingerprint
from pipeline.topics.profiles import Profile, tag_article

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.IGNORECASE)

_CONFIG = use_config()
# No per-document time limit from signals (it does not work in worker threads) and no minimum sizes
# that would drop short wire briefs: we apply our own minimum below.
_CONFIG.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")
_CONFIG.set("DEFAULT", "MIN_OUTPUT_SIZE", "1")
_CONFIG.set("DEFAULT", "MIN_EXTRACTED_SIZE", "1")


def _charset_from_header(content_type: str) -> str | None:
    match = re.search(r"charset\s*=\s*[\"']?([^;\"'\s]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else None


def decode_html(content: bytes, content_type: str = "") -> str:
    """Decode a page: what the bytes themselves say first (a BOM; the NULs of UTF-16/32), then the HTTP
    charset, then the page's meta charset, then UTF-8, then Windows-1256 or ISO-8859-6 (the legacy
    Arabic encodings). Labels naming no usable encoding are ignored; a Latin or legacy label on bytes
    that are valid UTF-8 or plainly Arabic gives way to what they are.
    """
    bom = bom_codec(content)
    wide = sniff_wide(content)
    if bom is not None or wide is not None:
        text = content.decode(wide or bom or "utf-8", errors="replace")
        return text.removeprefix("\ufeff")
    meta = _META_CHARSET.search(content[:4096])
    candidates = [
        web_codec(_charset_from_header(content_type)),
        web_codec(meta.group(1).decode("ascii", "ignore") if meta else None),
    ]
    for codec in candidates:
        if codec is None or codec in WIDE_CODECS:  # no NULs in the bytes: not UTF-16/32, whatever it says
            continue
        if codec != "utf-8" and is_utf8(content):
            # Sites move to UTF-8 and keep the old label: UTF-8 bytes never decode strictly by chance.
            return content.decode("utf-8", errors="replace")
        if codec in LATIN_CODECS:
            # Servers often declare ISO-8859-1 for Arabic bytes; trust the bytes, not the header.
            legacy = legacy_arabic(content)
            if legacy is not None:
                return content.decode(legacy, errors="replace")
        try:
            return content.decode(codec)
        except UnicodeDecodeError:
            continue
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return content.decode(legacy_arabic(content) or "cp1256", errors="replace")


def _page_date(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# Cheap metadata lookups, tried in order. trafilatura's own metadata pass (with_metadata=True) costs
# about half as much again as the extraction itself; the feed usually gives title, date and author, so we
# look in the page only for what the feed lacked.
_TITLE_XPATHS = ("//meta[@property='og:title']/@content", "//meta[@name='twitter:title']/@content", "//title/text()")
_AUTHOR_XPATHS = (
    "//meta[@name='author']/@content",
    "//meta[@property='article:author']/@content",
    "//meta[@name='byl']/@content",
    "//*[@rel='author']/text()",
)
_DATE_PARAMS: dict[str, Any] = {"extensive_search": False, "original_date": True, "outputformat": "%Y-%m-%dT%H:%M:%S%z"}


def _first(tree: HtmlElement, xpaths: tuple[str, ...]) -> str:
    for xpath in xpaths:
        for value in tree.xpath(xpath):
            text = " ".join(str(value).split())
            if text and not text.startswith(("http://", "https://")):  # article:author is often a profile URL
                return text
    return ""


# trafilatura's recall escalation (stage 4 of ``trafilatura.core.trafilatura_sequence``) extracts the
# page's whole text, then extracts again in recall mode, whenever the result is under 3,000 chars and
# under a fifth of the page's text: on a news page with a menu, teasers and comments that is nearly
# every article, and it costs as much as the main pass itself. The fast pass runs without it; measured
# with bench/bench_extraction_quality.py, no page class loses F1 or leaks more for it. The full path
# keeps it. trafilatura reads the threshold from its module at each call: zero turns the stage off, and
# a lock keeps another extracting thread from seeing it zeroed.
_ESCALATION = threading.Lock()


@contextmanager
def _escalation(*, enabled: bool) -> Iterator[None]:
    with _ESCALATION:
        saved = getattr(trafilatura_core, "ESCALATION_MAX_LENGTH", None)
        if enabled or saved is None:
            yield
            return
        trafilatura_core.ESCALATION_MAX_LENGTH = 0
        try:
            yield
        finally:
            trafilatura_core.ESCALATION_MAX_LENGTH = saved


# The main pass alone is kept when its text is at least this long (shorter texts are where trafilatura's
# fallbacks most often find more: briefs, pages whose body the main pass missed) ...
CONFIDENT_CHARS = 400
# ... in at least this many paragraphs.
CONFIDENT_PARAGRAPHS = 2


def confident(body: Any, text: str) -> bool:
    """Whether the main pass's result (``body``, the extracted element, and its ``text``) can stand
    without trafilatura's fallback extractors: long enough, in paragraphs, not table-dominated, and free
    of the page furniture (nav, aside, figure, footer, time ...) whose presence makes trafilatura's
    comparison try jusText. Each test mirrors a trigger of ``trafilatura.external.compare_extraction``;
    what cannot be known without running a fallback (readability finding twice as much) is bounded by
    the length and paragraph tests, and measured per page class by ``bench/bench_extraction_quality.py``."""
    if body is None or len(text) < CONFIDENT_CHARS:
        return False
    paragraphs = sum(1 for p in body.iter("p") if "".join(p.itertext()).strip())
    if paragraphs < CONFIDENT_PARAGRAPHS or len(body.findall(".//table")) > paragraphs:
        return False
    return not body.xpath(SANITIZED_XPATH)


def extract_body(
    html: str,
    *,
    url: str,
    want_title: bool = True,
    want_author: bool = True,
    want_date: bool = True,
    fallback: str = "auto",
) -> dict[str, Any]:
    """Main text of a page, and the metadata asked for: {text, title, author, date, path} (values may be
    empty; ``path`` says which extraction stood: ``fast``, the main pass alone, or ``full``).

    ``fallback``: ``auto`` runs the fallback extractors only where the main pass is not ``confident``;
    ``always`` runs trafilatura's full default path on every page."""
    tree = load_html(html)
    if tree is None:
        return {}
    meta: dict[str, Any] = {
        "title": _first(tree, _TITLE_XPATHS) if want_title else "",
        "author": _first(tree, _AUTHOR_XPATHS) if want_author else "",
        # htmldate reads meta tags, JSON-LD, <time> and URL patterns; it runs before trafilatura prunes the tree.
        "date": find_date(tree, url=url, **_DATE_PARAMS) if want_date else None,
    }
    # One parse serves the metadata, the date and both passes (trafilatura works on its own copy).
    options: dict[str, Any] = {"url": url, "include_comments": False, "include_tables": True, "config": _CONFIG}
    path = "full"
    doc = None
    if fallback != "always":
        with _escalation(enabled=False):
            doc = trafilatura.bare_extraction(tree, fast=True, **options)
        path = "fast"
        if doc is None or not confident(getattr(doc, "body", None), _text(doc)):
            doc, path = None, "full"
    if doc is None:
        with _escalation(enabled=True):
            doc = trafilatura.bare_extraction(tree, **options)
    meta["text"] = _text(doc)
    meta["path"] = path
    return meta


def _text(doc: Any) -> str:
    text = doc.get("text") if isinstance(doc, dict) else doc.text if doc is not None else None
    return text or ""


def build_article(
    item: FeedItem,
    *,
    html: str | None,
    final_url: str,
    fetched_at: datetime,
    languages: tuple[str, ...],
    min_chars: int = 200,
    prefix_chars: int = 2000,
    no_page_reason: str = "page not downloaded",
    profiles: Sequence[Profile] = (),
    fallback: str = "auto",
) -> Article:
    """Make the article record for a feed item from its page (``html``), or from the feed's own text
    when the page gave nothing usable (``html`` None: the page could not be downloaded).

    Raises:
        ExtractError: neither the page nor the feed gives a body of ``min_chars``.
        LanguageRejected: the text is not in ``languages``.
    """
    meta: dict[str, Any] = {}
    if html:
        meta = extract_body(
            html,
            url=final_url,
            want_title=not item.title,
            want_author=not item.author,
            want_date=item.published_at is None,
            fallback=fallback,
        )
    body = (meta.get("text") or "").strip()
    source = "page"
    if len(body) < min_chars:
        # parse_feed already turned the entry's HTML into plain text with paragraphs kept.
        fallback = (item.content or item.summary).strip()
        if len(fallback) < min_chars:
            reason = "page has no article body" if html else no_page_reason
            raise ExtractError(
                f"{reason} and the feed entry holds {len(fallback)} chars of text", url=item.url, feed_id=item.feed_id
            )
        body, source = fallback, "feed"
    title = item.title or (meta.get("title") or "").strip()
    language = check_language(
        f"{title}\n{body}", allowed=languages, url=item.url, feed_id=item.feed_id, prefix_chars=prefix_chars
    )
    summary = item.summary.strip()
    published = item.published_at or _page_date(meta.get("date")) or fetched_at
    print_ = fingerprint(body)
    topics, topic_matches = tag_article(profiles, title=title, body=body)
    return Article(
        url=item.url,
        canonical_url=item.canonical_url,
        feed_id=item.feed_id,
        outlet=item.outlet,
        title=title,
        body=body,
        summary=summary[:2000],
        author=(item.author or meta.get("author") or None),
        published_at=published,
        fetched_at=fetched_at,
        language=language,
        content_hash=content_hash(body),
        word_count=word_count(body),
        body_source=source,
        lsh_bands=print_.bands,
        minhash=print_.signature,
        topics=tuple(topics),
        topic_matches=tuple(topic_matches),
    )


_HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "application/xml", "text/xml")


def _not_html(content: bytes, content_type: str) -> str:
    """Why ``content`` is no web page ("" when it is one): servers answer article links with PDFs,
    images and videos too."""
    mime = content_type.split(";")[0].strip().lower()
    if mime and mime not in _HTML_TYPES and not mime.endswith("+xml"):
        return f"the link serves {mime}, not a web page"
    if b"\0" in content[:1024] and sniff_wide(content) is None:  # UTF-16 text has NULs too
        return "the link serves binary data, not a web page"
    return ""


class _TookTooLong(BaseException):
    """Raised by the alarm. A BaseException, like KeyboardInterrupt: trafilatura catches Exception in
    places and would carry on extracting."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (only in a process's main thread, where signals arrive:
    the extraction workers; the in-process fallback runs without a limit)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise _TookTooLong

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def process_page(
    item: FeedItem,
    content: bytes | None,
    content_type: str,
    final_url: str,
    fetched_at: datetime,
    languages: tuple[str, ...],
    min_chars: int,
    prefix_chars: int,
    timeout: float = 30.0,
    profiles: Sequence[Profile] = (),
    fallback: str = "auto",
) -> Article | PipelineError:
    """Worker entry point: never raises a PipelineError, returns it (exceptions cross processes badly)."""
    try:
        not_html = _not_html(content, content_type) if content else ""
        html = decode_html(content, content_type) if content and not not_html else None
        with _time_limit(timeout):
            return build_article(
                item,
                html=html,
                final_url=final_url,
                fetched_at=fetched_at,
                languages=languages,
                min_chars=min_chars,
                prefix_chars=prefix_chars,
                no_page_reason=not_html or "page not downloaded",
                profiles=profiles,
                fallback=fallback,
            )
    except PipelineError as err:
        return err
    except _TookTooLong:
        return ExtractError(f"extraction took longer than {timeout:.0f}s", url=item.url, feed_id=item.feed_id)
    except Exception as err:  # noqa: BLE001 - a library bug on one hostile page must not stop the batch
        return ExtractError(f"extraction crashed: {type(err).__name__}: {err}", url=item.url, feed_id=item.feed_id)


PageJob = tuple[FeedItem, bytes | None, str, str, datetime]  # item, content, content type, final URL, fetch time


def process_pages(
    jobs: list[PageJob],
    languages: tuple[str, ...],
    min_chars: int,
    prefix_chars: int,
    timeout: float = 30.0,
    profiles: Sequence[Profile] = (),
    fallback: str = "auto",
) -> list[Article | PipelineError]:
    """``process_page`` over a small batch: one round trip to a worker process for several pages."""
    return [process_page(*job, languages, min_chars, prefix_chars, timeout, profiles, fallback) for job in jobs]
