"""The feed list, and feed documents turned into ``FeedItem`` records.

``load_feeds`` reads ``seeds/feeds.yaml`` and rejects a bad file with the line and field at fault.
``parse_feed`` turns the raw bytes of one RSS/Atom/RDF document into items. Neither touches the network.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from time import struct_time
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser  # type: ignore[import-untyped, unused-ignore]
import jsonschema  # type: ignore[import-untyped, unused-ignore]
import lxml.etree  # type: ignore[import-untyped, unused-ignore]
import lxml.html  # type: ignore[import-untyped, unused-ignore]

from pipeline import log as logging
from pipeline.errors import ConfigError, FeedError
from pipeline.ingest.charsets import LATIN_CODECS, WIDE_CODECS, legacy_arabic, sniff_wide, web_codec
from pipeline.ingest.urls import canonical_url
from pipeline.records import FeedConfig, FeedItem
from pipeline.settings import PROJECT_ROOT
from pipeline.yaml_files import LineIndex, PathKey, Problem, dotted, read_yaml_mapping, schema_errors, sort_key

log = logging.get(__name__)

SCHEMA_PATH = PROJECT_ROOT / "schemas" / "feeds.schema.json"
DEFAULT_LANGUAGE = "ar"


# --- the feed list ------------------------------------------------------------------------------


def load_feeds(path: Path) -> list[FeedConfig]:
    """Read and validate a feed list (see ``schemas/feeds.schema.json``); disabled feeds included.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or breaks the schema, or two feeds
            share an id or a URL. The message names the file, the line and the field, one error a line.
    """
    data, lines = read_yaml_mapping(path, what="feed list", expected="a mapping with a 'feeds' list")

    found = [error for err in _validator().iter_errors(data) for error in schema_errors(err, path, lines)]
    feeds = data.get("feeds")
    if isinstance(feeds, list):
        broken = {at for at, _, _ in found}
        found.extend(_duplicates(feeds, path, lines, broken))
    if found:
        # File order: by line, then by path for errors on one line.
        found.sort(key=lambda error: (error[1], sort_key(error[0])))
        raise ConfigError("\n".join(message for _, _, message in found))

    return [
        FeedConfig(
            id=entry["id"],
            url=entry["url"],
            outlet=entry["outlet"],
            language=entry.get("language", DEFAULT_LANGUAGE),
            enabled=entry.get("enabled", True),
            poll_minutes=entry.get("poll_minutes"),
            line=lines.line(("feeds", index)),
            verified=entry.get("verified", True),
            fallback_urls=tuple(entry.get("fallback_urls") or ()),
        )
        for index, entry in enumerate(data["feeds"])
    ]


def enabled_feeds(feeds: Iterable[FeedConfig]) -> list[FeedConfig]:
    """The feeds to poll: those not switched off with ``enabled: false``."""
    return [feed for feed in feeds if feed.enabled]


@functools.cache
def _validator() -> Any:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _duplicates(feeds: list[Any], path: Path, lines: LineIndex, broken: set[PathKey]) -> Iterator[Problem]:
    """Repeated ids and URLs; ``broken`` paths already failed the schema and are not checked again."""
    first_id: dict[str, int] = {}
    first_url: dict[str, tuple[str, int]] = {}
    for index, entry in enumerate(feeds):
        if not isinstance(entry, dict):
            continue
        feed_id, url = entry.get("id"), entry.get("url")
        at: PathKey = ("feeds", index, "id")
        if isinstance(feed_id, str) and at not in broken:
            line = lines.line(at)
            if feed_id in first_id:
                message = f"duplicate id {feed_id!r}, first declared at line {first_id[feed_id]}"
                yield at, line, f"{path}:{line}: {dotted(at)}: {message}"
            else:
                first_id[feed_id] = line
        at = ("feeds", index, "url")
        if isinstance(url, str) and at not in broken:
            line = lines.line(at)
            # The schema cannot see a bad port or host; canonical_url can.
            try:
                key = canonical_url(url)
            except ValueError as err:
                yield at, line, f"{path}:{line}: {dotted(at)}: {err}"
                continue
            # Two entries for one feed would poll it twice and credit its items to either id.
            if key in first_url:
                other, other_line = first_url[key]
                yield at, line, f"{path}:{line}: {dotted(at)}: the same feed as {other!r} at line {other_line}"
            else:
                first_url[key] = (str(feed_id), line)


# --- feed documents -----------------------------------------------------------------------------

# bozo flags feedparser raises on documents it read perfectly well: a charset it had to override,
# or a feed served as text/html. Many Arabic outlets do both on every poll.
_BENIGN_BOZO = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
_XML_ENCODING_RE = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_CHARSET_RE = re.compile(r";\s*charset\s*=\s*[\"']?([^;\"'\s]*)[\"']?", re.IGNORECASE)
# feedparser's own test for where the document's first element starts (sanitizer.replace_doctype).
_FIRST_ELEMENT_RE = re.compile(rb"<\w")
_XML_DECLARATION_RE = re.compile(rb"^<\?xml[^>]*?>")
_CHAR_REF_RE = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")
# Links longer than this are no article's address (servers refuse them; the index cannot key them).
MAX_LINK_CHARS = 4096
# Publication times before this are a broken clock (epoch zero, year 1), not news: left unknown.
EARLIEST_DATE = datetime(1995, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SkippedItem:
    """An entry of a feed that names no article we can fetch, and why."""

    link: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    items: list[FeedItem]
    skipped: list[SkippedItem]


def parse_feed(
    content: bytes,
    headers: Mapping[str, str],
    *,
    feed: FeedConfig,
    fetched_at: datetime,
    max_items: int = 500,
) -> list[FeedItem]:
    """The items of one fetched feed document: ``read_feed(...).items``.

    Raises:
        FeedError: as ``read_feed``.
    """
    return read_feed(content, headers, feed=feed, fetched_at=fetched_at, max_items=max_items).items


def read_feed(
    content: bytes,
    headers: Mapping[str, str],
    *,
    feed: FeedConfig,
    fetched_at: datetime,
    max_items: int = 500,
) -> ParsedFeed:
    """The items of one fetched feed document, newest first as the feed lists them, and the entries
    skipped with the reason.

    ``headers`` are the response headers (any case); the charset they declare is honoured unless
    the bytes plainly say otherwise (UTF-16 without BOM, Arabic bytes labelled Latin-1, a label naming
    no usable encoding). Links are resolved against the feed URL; entries without a usable http(s)
    link are skipped, at most ``max_items`` returned. Repeated links are all returned: the cycle
    merges them by canonical URL and counts the merges in its summary. A publication time later than
    ``fetched_at`` (an aware datetime) is clamped to it; one before 1995 is taken as unknown.

    The document's DOCTYPE never reaches the XML parsers: no entity it declares is expanded (entity
    bombs), no external entity or DTD is ever loaded.

    Raises:
        FeedError: the document is empty, an HTML page, not a feed, or too broken to yield any entry.
    """
    if fetched_at.tzinfo is None:
        raise ValueError("fetched_at must be timezone-aware")
    if not content.strip():
        raise FeedError("empty response", url=feed.url, feed_id=feed.id)

    lowered = {name.lower(): value for name, value in headers.items()}
    # Relative links resolve against the document's location; feedparser only knows it from here.
    lowered["content-location"] = _location(feed.url, lowered.get("content-location", ""))
    try:
        result = _parse_decoded(content, lowered)
    except FeedError as err:
        err.url, err.feed_id = feed.url, feed.id
        raise

    problem = result.get("bozo_exception") if result.get("bozo") else None
    if isinstance(problem, _BENIGN_BOZO):
        problem = None
    if not result.entries:
        if not result.get("version") and _looks_like_html(content, lowered.get("content-type", "")):
            raise FeedError("returned an HTML page, not a feed", url=feed.url, feed_id=feed.id)
        if problem is not None:
            raise FeedError(f"malformed feed, no entries recoverable: {problem}", url=feed.url, feed_id=feed.id)
        if not result.get("version"):
            raise FeedError("not an RSS, Atom or RDF feed", url=feed.url, feed_id=feed.id)
        return ParsedFeed([], [])  # a well-formed feed with nothing in it right now
    if problem is not None:
        log.warning("feed.malformed", feed=feed.id, url=feed.url, reason=str(problem))

    parsed = ParsedFeed([], [])
    for entry in result.entries:
        if len(parsed.items) >= max_items:
            break
        link = _raw_link(entry)
        try:
            parsed.items.append(_item(entry, link, feed, fetched_at.astimezone(UTC)))
        except _Unusable as why:
            parsed.skipped.append(SkippedItem(link[:200], str(why)))
    if parsed.skipped:
        log.info("feed.items_skipped", feed=feed.id, url=feed.url, count=len(parsed.skipped),
                 reasons=sorted({s.reason for s in parsed.skipped}))  # fmt: skip
    return parsed


def _location(feed_url: str, content_location: str) -> str:
    try:
        return urljoin(feed_url, content_location)
    except ValueError:  # a malformed Content-Location ("http://[::1") says nothing usable
        return feed_url


def _feedparser(content: bytes, headers: dict[str, str]) -> Any:
    """feedparser on ``content``, decoded first and stripped of everything before its first element.

    Decoding is feedparser's own (``convert_to_utf8``: RFC 3023, the XML declaration, its fallbacks)
    after the labels it would trust have been checked against the bytes. Stripping the prolog, once
    the text is UTF-8 whatever it came as, removes the DOCTYPE and with it every entity declaration:
    feedparser keeps "safe" ones itself, and its fallback parser expands them without limit (a 100 KB
    entity referenced 10,000 times took 17 s and 3 GB). Feeds never need their own entities.

    The result's ``encoding`` is the one the bytes were decoded from.
    """
    probe: dict[str, Any] = {}
    decoded = feedparser.encodings.convert_to_utf8(_usable_labels(content, headers), content, probe)
    if not probe.get("encoding"):  # feedparser found no encoding that decodes these bytes
        decoded = content.decode("windows-1256").encode("utf-8")
        probe["encoding"] = "windows-1256"
    # BytesIO, not the bytes: feedparser tries open() on a bytes argument first, so a body reading
    # "/etc/passwd" would be parsed from the local disk. No HTML sanitising or URI rewriting inside
    # content: we never render feed HTML (html_to_text keeps only text; alerts escape it), and
    # sanitising is a third of feedparser's time on full-content feeds.
    try:
        result = feedparser.parse(
            io.BytesIO(_without_bad_char_refs(_without_prolog(decoded))),
            response_headers=_with_charset(headers, "utf-8"),
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as err:  # noqa: BLE001 - a feedparser bug on one hostile document is that feed's failure
        raise FeedError(f"the feed parser failed: {type(err).__name__}: {err}") from err
    result["encoding"] = probe["encoding"]
    return result


def _usable_labels(content: bytes, headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with a charset feedparser may trust: the one the bytes say when they are UTF-16 or
    UTF-32; else the declared one, unless it names no usable encoding or a wide one for narrow bytes
    (then UTF-8 or Windows-1256, whichever decodes), since feedparser would raise or read garbage."""
    wide = sniff_wide(content)
    if wide is not None:
        return _with_charset(headers, wide)
    match = _CHARSET_RE.search(headers.get("content-type", ""))
    declared = _XML_ENCODING_RE.match(content[:512])
    labels = [match.group(1) if match else None, declared.group(1).decode("ascii") if declared else None]
    for label in labels:
        if label is None:
            continue
        codec = web_codec(label)
        if codec is None or codec in WIDE_CODECS:
            return _with_charset(headers, _narrow_fallback(content))
    return dict(headers)


def _narrow_fallback(content: bytes) -> str:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return "windows-1256"  # decodes any byte: the commonest legacy Arabic encoding
    return "utf-8"


def _without_prolog(document: bytes) -> bytes:
    """The XML declaration, then the document from its first element on: no DOCTYPE, no entities."""
    first = _FIRST_ELEMENT_RE.search(document)
    if first is None:
        return document
    declaration = _XML_DECLARATION_RE.match(document)
    head = declaration.group(0) + b"\n" if declaration else b""
    return head + document[first.start() :]


def _without_bad_char_refs(document: bytes) -> bytes:
    """Character references to no character (past U+10FFFF, surrogates, NUL) as U+FFFD: feedparser's
    fallback parser raises on them instead of skipping them."""

    def replace(match: re.Match[bytes]) -> bytes:
        hexadecimal, decimal = match.groups()
        digits = hexadecimal or decimal
        if len(digits) > 8:
            return b"&#xFFFD;"
        code = int(digits, 16 if hexadecimal else 10)
        return match.group(0) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else b"&#xFFFD;"

    return _CHAR_REF_RE.sub(replace, document)


def _parse_decoded(content: bytes, headers: dict[str, str]) -> Any:
    result = _feedparser(content, headers)
    if _codec_name(result.get("encoding")) not in LATIN_CODECS or not _is_mojibake(_text_of(result)):
        return result
    for charset in _charset_candidates(content):
        try:
            content.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
        retry = _feedparser(content, _with_charset(headers, charset))
        if retry.entries and not _is_mojibake(_text_of(retry)):
            return retry
    return result


def _is_mojibake(text: str) -> bool:
    """Whether ``text`` reads like Arabic bytes decoded as Latin-1 or Windows-1252.

    Servers label Windows-1256 (and sometimes UTF-8) feeds ``charset=ISO-8859-1``; feedparser obeys
    and every Arabic letter becomes one or two of "ÇáÍ" / "Ø§Ù". Real Latin text has a few accented
    letters among plain ones; this has little else, so a share of letters in U+00C0-U+00FF above a
    third is taken as the sign to decode again.
    """
    letters = [char for char in text if char.isalpha()]
    if len(letters) < 4:
        return False
    high = sum(1 for char in letters if "\u00c0" <= char <= "\u00ff")
    return high * 3 > len(letters)


def _charset_candidates(content: bytes) -> list[str]:
    # UTF-8 first: a strict UTF-8 decode of Arabic text almost never succeeds by accident, while
    # Windows-1256 decodes any bytes at all. Then what the document itself declares, then whichever
    # of Windows-1256 and ISO-8859-6 reads as Arabic.
    candidates = ["utf-8"]
    declared = _XML_ENCODING_RE.match(content[:512])
    name = web_codec(declared.group(1).decode("ascii")) if declared else None
    if name and name not in LATIN_CODECS:
        candidates.append(name)
    candidates.append(legacy_arabic(content) or "windows-1256")
    return list(dict.fromkeys(candidates))


def _codec_name(name: str | None) -> str:
    return web_codec(name) or ""


def _with_charset(headers: Mapping[str, str], charset: str) -> dict[str, str]:
    media_type = headers.get("content-type", "application/xml").split(";")[0].strip()
    return {**headers, "content-type": f"{media_type or 'application/xml'}; charset={charset}"}


def _text_of(result: Any) -> str:
    parts = [result.feed.get("title", "")]
    for entry in result.entries[:50]:
        parts.append(entry.get("title", ""))
        parts.append(entry.get("summary", ""))
    return " ".join(part for part in parts if isinstance(part, str))


def _looks_like_html(content: bytes, content_type: str) -> bool:
    if content_type.split(";")[0].strip().lower() in {"text/html", "application/xhtml+xml"}:
        return True
    head = content[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<!doctype html") or b"<html" in head


class _Unusable(Exception):
    """An entry names no article we can fetch (the message says why)."""


def _raw_link(entry: Any) -> str:
    link = entry.get("link")
    return link.strip() if isinstance(link, str) else ""


def _item(entry: Any, link: str, feed: FeedConfig, fetched_at: datetime) -> FeedItem:
    """The item for a feed entry.

    Raises:
        _Unusable: no link, not http(s), malformed, or too long.
    """
    if not link:
        raise _Unusable("no link")
    if len(link) > MAX_LINK_CHARS:
        raise _Unusable(f"link longer than {MAX_LINK_CHARS} characters")
    try:
        url = urljoin(feed.url, link)
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise _Unusable(f"not an http(s) link ({scheme or 'no'} scheme)")
        canonical = canonical_url(url)
    except ValueError as err:  # a bad host, port or IPv6 literal
        raise _Unusable(f"bad link: {err}") from None
    # dict.get, not entry.get: feedparser answers "updated_parsed" with the published time when the
    # entry has no update (a deprecated fallback), which would make every item look updated.
    updated = _not_after(_utc(dict.get(entry, "updated_parsed")), fetched_at)
    published = _not_after(_utc(dict.get(entry, "published_parsed")), fetched_at) or updated
    return FeedItem(
        feed_id=feed.id,
        outlet=feed.outlet,
        url=url,
        canonical_url=canonical,
        title=" ".join(_plain(entry.get("title_detail"), entry.get("title")).split()),  # one line
        summary=_plain(entry.get("summary_detail"), entry.get("summary")),
        content=_content(entry.get("content")),
        author=_author(entry),
        published_at=published,
        language=feed.language,
        updated_at=updated,
    )


def _not_after(when: datetime | None, limit: datetime) -> datetime | None:
    # Many sites stamp local time as GMT, putting items hours in the future; "who ran it first"
    # comparisons need times that have at least happened. A time before the web had news feeds is a
    # broken clock (epoch zero, year 1): unknown, so the page's date or the fetch time stands in.
    if when is None or when < EARLIEST_DATE:
        return None
    return min(when, limit)


def _utc(parsed: struct_time | None) -> datetime | None:
    # feedparser's *_parsed values are already converted to UTC.
    if parsed is None:
        return None
    try:
        return datetime(*parsed[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def _author(entry: Any) -> str:
    detail = entry.get("author_detail") or {}
    name = detail.get("name") or entry.get("author") or ""
    return " ".join(str(name).split())


def _content(contents: Any) -> str:
    # Some feeds carry the body twice (plain and HTML); the longest text is the fullest.
    texts = [_plain(part, part.get("value")) for part in contents or []]
    return max(texts, key=len, default="")


def _plain(detail: Any, value: Any) -> str:
    if not isinstance(value, str) or not value:
        return ""
    kind = (detail or {}).get("type", "text/html")
    if kind in {"text/html", "application/xhtml+xml"}:
        return html_to_text(value)
    return _tidy(value)


# --- HTML to text -------------------------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure",
        "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p",
        "pre", "section", "table", "tbody", "thead", "tfoot", "tr", "ul",
    }
)  # fmt: skip
_DROPPED_TAGS = ("script", "style", "noscript", "template", "iframe", "object")
# A newline in HTML source is just a space; only the markup makes line and paragraph breaks.
_SPACES = re.compile(r"\s+")


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: paragraphs separated by a blank line, ``<br>`` a line break."""
    try:
        root = lxml.html.fragment_fromstring(markup, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return _tidy(markup)
    junk = (*_DROPPED_TAGS, lxml.etree.Comment, lxml.etree.ProcessingInstruction)
    for dropped in list(root.iter(*junk)):
        if dropped is not root:
            dropped.drop_tree()
    parts: list[str] = []
    # iterwalk rather than recursion: a hostile feed can nest thousands of elements.
    for event, element in lxml.etree.iterwalk(root, events=("start", "end")):
        tag = element.tag if isinstance(element.tag, str) else ""
        if event == "start":
            if tag in _BLOCK_TAGS:
                parts.append("\n\n")
            elif tag == "br":
                parts.append("\n")
            if tag:
                parts.append(_SPACES.sub(" ", element.text or ""))
        else:
            if tag in _BLOCK_TAGS:
                parts.append("\n\n")
            if element is not root:
                parts.append(_SPACES.sub(" ", element.tail or ""))
    return _tidy("".join(parts))


def _tidy(text: str) -> str:
    """Spaces collapsed within lines; runs of blank lines become one paragraph break."""
    lines = [" ".join(line.split()) for line in text.replace("\r", "\n").split("\n")]
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        if line:
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    return "\n\n".join(paragraphs)
