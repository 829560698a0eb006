"""Article bodies out of downloaded pages, with trafilatura, then the language gate.

``process_page`` is what the extraction workers run: decode → extract (the feed's own text as fallback)
→ language check → hashes. It takes and returns picklable records, so it runs in a process pool.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import trafilatura
from trafilatura.settings import use_config

from pipeline.errors import ExtractError, PipelineError
from pipeline.language import check_language
from pipeline.normalize import content_hash, word_count
from pipeline.records import Article, FeedItem

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.IGNORECASE)
_LATIN_LABELS = {"iso-8859-1", "latin-1", "latin1", "l1", "windows-1252", "cp1252", "us-ascii", "ascii"}
# Arabic letters that windows-1256 maps from bytes 0xC1–0xFE; Latin-1 shows these bytes as accented
# Latin letters, which is how a mislabelled Arabic page looks.
_ARABIC_LETTER = re.compile(r"[\u0621-\u064A]")

_CONFIG = use_config()
# No per-document time limit from signals (it does not work in worker threads) and no minimum sizes
# that would drop short wire briefs: we apply our own minimum below.
_CONFIG.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")
_CONFIG.set("DEFAULT", "MIN_OUTPUT_SIZE", "1")
_CONFIG.set("DEFAULT", "MIN_EXTRACTED_SIZE", "1")


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    try:
        import codecs

        return codecs.lookup(label).name
    except LookupError:
        return None


def _charset_from_header(content_type: str) -> str | None:
    match = re.search(r"charset\s*=\s*[\"']?([^;\"'\s]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else None


def _looks_cp1256(content: bytes) -> bool:
    """True when bytes declared Latin are really Windows-1256 Arabic."""
    high = sum(1 for b in content[:20000] if b >= 0x80)
    if high < 20:
        return False
    sample = content[:20000].decode("cp1256", errors="replace")
    return len(_ARABIC_LETTER.findall(sample)) >= high * 0.6


def decode_html(content: bytes, content_type: str = "") -> str:
    """Decode a page: BOM, then the HTTP charset, then the page's meta charset, then UTF-8, then
    Windows-1256 (the commonest legacy Arabic encoding).
    """
    if content.startswith(b"\xef\xbb\xbf"):
        return content[3:].decode("utf-8", errors="replace")
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        return content.decode("utf-16", errors="replace")
    meta = _META_CHARSET.search(content[:4096])
    candidates = [
        _codec(_charset_from_header(content_type)),
        _codec(meta.group(1).decode("ascii", "ignore") if meta else None),
    ]
    for codec in candidates:
        if codec is None:
            continue
        # Servers often declare ISO-8859-1 for Windows-1256 bytes; trust the bytes, not the header.
        if codec in {_codec(x) for x in _LATIN_LABELS} and _looks_cp1256(content):
            return content.decode("cp1256", errors="replace")
        try:
            return content.decode(codec)
        except UnicodeDecodeError:
            continue
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return content.decode("cp1256", errors="replace")


def _page_date(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def extract_body(html: str, *, url: str) -> dict[str, Any]:
    """Main text and metadata of a page: {text, title, author, date} (values may be empty)."""
    doc = trafilatura.bare_extraction(
        html,
        url=url,
        include_comments=False,
        include_tables=True,
        with_metadata=True,
        config=_CONFIG,
        date_extraction_params={
            "extensive_search": False,
            "original_date": True,
            "outputformat": "%Y-%m-%dT%H:%M:%S%z",
        },
    )
    if doc is None:
        return {}
    data = doc if isinstance(doc, dict) else doc.as_dict()
    return {k: data.get(k) for k in ("text", "title", "author", "date")}


def build_article(
    item: FeedItem,
    *,
    html: str | None,
    final_url: str,
    fetched_at: datetime,
    languages: tuple[str, ...],
    min_chars: int = 200,
    prefix_chars: int = 2000,
) -> Article:
    """Make the article record for a feed item from its page (``html``), or from the feed's own text
    when the page gave nothing usable (``html`` None: the page could not be downloaded).

    Raises:
        ExtractError: neither the page nor the feed gives a body of ``min_chars``.
        LanguageRejected: the text is not in ``languages``.
    """
    meta: dict[str, Any] = extract_body(html, url=final_url) if html else {}
    body = (meta.get("text") or "").strip()
    source = "page"
    if len(body) < min_chars:
        # parse_feed already turned the entry's HTML into plain text with paragraphs kept.
        fallback = (item.content or item.summary).strip()
        if len(fallback) < min_chars:
            reason = "page has no article body" if html else "page not downloaded"
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
    )


def process_page(
    item: FeedItem,
    content: bytes | None,
    content_type: str,
    final_url: str,
    fetched_at: datetime,
    languages: tuple[str, ...],
    min_chars: int,
    prefix_chars: int,
) -> Article | PipelineError:
    """Worker entry point: never raises a PipelineError, returns it (exceptions cross processes badly)."""
    try:
        html = decode_html(content, content_type) if content else None
        return build_article(
            item,
            html=html,
            final_url=final_url,
            fetched_at=fetched_at,
            languages=languages,
            min_chars=min_chars,
            prefix_chars=prefix_chars,
        )
    except PipelineError as err:
        return err
    except Exception as err:  # noqa: BLE001 - a library bug on one hostile page must not stop the batch
        return ExtractError(f"extraction crashed: {type(err).__name__}: {err}", url=item.url, feed_id=item.feed_id)
