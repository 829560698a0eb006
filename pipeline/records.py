"""Plain records passed between stages. No behaviour beyond conversion to documents."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


def doc_id(canonical_url: str) -> str:
    """The article's Elasticsearch ``_id``: a stable hash of its canonical URL."""
    return hashlib.sha256(canonical_url.encode("utf-8")).hexdigest()[:32]


def iso(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None


def parse_iso(value: str) -> datetime:
    """The inverse of ``iso`` (a naive time is taken as UTC)."""
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_iso_or_none(value: str | None) -> datetime | None:
    """``parse_iso`` for a stored field: None when it is missing or unreadable."""
    if not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None


def parse_period(text: str, *, now: datetime) -> datetime:
    """``7d``, ``36h``, ``2w`` before ``now``.

    Raises:
        ValueError: not a number followed by h, d or w.
    """
    units = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
    amount, unit = text[:-1], text[-1:].lower()
    if unit not in units or not amount.isdigit() or int(amount) <= 0:
        raise ValueError(f"a period is a number and h, d or w (36h, 7d, 2w), not {text!r}")
    return now - int(amount) * units[unit]


def parse_when(value: str, *, end: bool = False, now: datetime | None = None) -> datetime:
    """A period back from now (``36h``, ``7d``, ``2w``), a date (``2025-10-03``) or an ISO time, in UTC. A
    date given as an ``end`` means the end of that day (the returned time is excluded).

    Raises:
        ValueError: none of these.
    """
    text = value.strip()
    if text[-1:].lower() in ("h", "d", "w") and text[:-1].isdigit():
        return parse_period(text, now=now or datetime.now(UTC))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a date (2025-10-03), an ISO time or a period (36h, 7d, 2w)") from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when + timedelta(days=1) if end and len(text) == 10 else when


@dataclass(frozen=True, slots=True)
class FeedConfig:
    id: str
    url: str
    outlet: str
    language: str | None = None
    enabled: bool = True
    poll_minutes: int | None = None
    line: int = 0  # where the feed is declared in its file, for error messages
    verified: bool = True  # False: no public evidence that the URL is the outlet's feed
    fallback_urls: tuple[str, ...] = ()  # polled, in order, while the url itself fails


# A feed's health, computed on every poll (pipeline/ingest/health.py) and kept in <alias>-feeds:
#   ok            answered, and its newest item is as recent as its own cadence says it should be
#   failing       its last poll failed (consecutive_failures says how many in a row)
#   stale         answers, but its newest item is far older than its usual gap between items
#   moved         answers through a permanent redirect: the feed list should name the new URL
#   blocked       refused with 401, 403 or 429: the server does not want this client
#   dead          failing for longer than FEED_DEAD_DAYS
#   never_polled  no poll yet
FEED_STATES = ("ok", "failing", "stale", "moved", "blocked", "dead", "never_polled")


@dataclass(frozen=True, slots=True)
class FeedState:
    """What we remember of a feed between runs (kept in Elasticsearch)."""

    feed_id: str
    url: str = ""
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    last_attempt: str | None = None
    last_success: str | None = None
    last_new_item: str | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    last_status: int | None = None
    moved_to: str | None = None
    retry_after_until: str | None = None
    items_last_poll: int = 0
    # Health and schedule (pipeline/ingest/health.py).
    state: str = "never_polled"  # one of FEED_STATES
    state_since: str | None = None  # when the feed entered that state
    failing_since: str | None = None  # the first failure of the current run of failures
    next_poll_at: str | None = None  # not polled again before this (unless `run --all`)
    interval_minutes: float | None = None  # the gap that next_poll_at was set with
    cadence_minutes: float | None = None  # median gap between the feed's item dates
    newest_item_at: str | None = None  # publication time of the newest item it listed
    ttl_minutes: int | None = None  # the feed's own RSS <ttl>
    skip_hours: tuple[int, ...] = ()  # the feed's own RSS <skipHours> (UTC hours)
    served_by: str | None = None  # a fallback URL that answered while the url failed

    def __post_init__(self) -> None:
        # Read back from a JSON document the hours are a list; the record compares and hashes as a tuple.
        if not isinstance(self.skip_hours, tuple):
            object.__setattr__(self, "skip_hours", tuple(self.skip_hours or ()))

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)


def state_of(feed: FeedConfig, state: FeedState | None) -> str:
    """A feed's health state as stored: ``never_polled`` without a record, or with one for another URL."""
    return state.state if state is not None and state.url == feed.url else "never_polled"


def count_states(feeds: Iterable[FeedConfig], states: Mapping[str, FeedState]) -> dict[str, int]:
    """How many of ``feeds`` are in each health state (states with none left out)."""
    counts = dict.fromkeys(FEED_STATES, 0)
    for feed in feeds:
        counts[state_of(feed, states.get(feed.id))] += 1
    return {k: v for k, v in counts.items() if v}


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One entry of a feed, with what the feed itself says about the article."""

    feed_id: str
    outlet: str
    url: str
    canonical_url: str
    title: str = ""
    summary: str = ""
    content: str = ""  # the feed's full content (content:encoded, atom:content), if any
    author: str = ""
    published_at: datetime | None = None
    language: str | None = None  # the feed's declared language, a hint only
    updated_at: datetime | None = None  # the entry's own "updated" time: a newer one means re-fetch

    @property
    def id(self) -> str:
        return doc_id(self.canonical_url)


@dataclass(frozen=True, slots=True)
class Page:
    """A downloaded article page. ``html`` is already decoded text."""

    item: FeedItem
    url: str  # where the page was finally served from, after redirects
    html: str
    fetched_at: datetime


@dataclass(frozen=True, slots=True)
class Article:
    """One article as indexed: see ``schemas/article.schema.json``."""

    url: str
    canonical_url: str
    feed_id: str
    outlet: str
    title: str
    body: str
    summary: str
    author: str | None
    published_at: datetime
    fetched_at: datetime
    language: str
    content_hash: str
    word_count: int
    body_source: str = "page"  # "page", or "feed" when the page gave nothing usable
    cluster_id: str = ""
    duplicate_of: str | None = None
    cluster_size: int = 1
    topics: tuple[str, ...] = ()
    topic_matches: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    lsh_bands: tuple[str, ...] = ()  # near-duplicate candidates share one of these (see cluster.py)
    minhash: str = ""  # the MinHash signature the bands come from

    @property
    def id(self) -> str:
        return doc_id(self.canonical_url)

    def to_doc(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "canonical_url": self.canonical_url,
            "feed_id": self.feed_id,
            "outlet": self.outlet,
            "title": self.title,
            "body": self.body,
            "summary": self.summary,
            "author": self.author,
            "published_at": iso(self.published_at),
            "fetched_at": iso(self.fetched_at),
            "language": self.language,
            "content_hash": self.content_hash,
            "word_count": self.word_count,
            "body_source": self.body_source,
            "cluster_id": self.cluster_id or self.id,
            "duplicate_of": self.duplicate_of,
            "cluster_size": self.cluster_size,
            "topics": list(self.topics),
            "topic_matches": [dict(m) for m in self.topic_matches],
            "lsh_bands": list(self.lsh_bands),
            "minhash": self.minhash,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Article:
        """The record back from ``to_doc`` (a landing-area batch, or an indexed document)."""
        return cls(
            url=doc["url"],
            canonical_url=doc["canonical_url"],
            feed_id=doc["feed_id"],
            outlet=doc["outlet"],
            title=doc.get("title") or "",
            body=doc.get("body") or "",
            summary=doc.get("summary") or "",
            author=doc.get("author"),
            published_at=parse_iso(doc["published_at"]),
            fetched_at=parse_iso(doc["fetched_at"]),
            language=doc["language"],
            content_hash=doc["content_hash"],
            word_count=int(doc.get("word_count") or 0),
            body_source=doc.get("body_source") or "page",
            cluster_id="" if doc.get("cluster_id") == doc_id(doc["canonical_url"]) else doc.get("cluster_id") or "",
            duplicate_of=doc.get("duplicate_of"),
            cluster_size=int(doc.get("cluster_size") or 1),
            topics=tuple(doc.get("topics") or ()),
            topic_matches=tuple(dict(m) for m in doc.get("topic_matches") or ()),
            lsh_bands=tuple(doc.get("lsh_bands") or ()),
            minhash=doc.get("minhash") or "",
        )
