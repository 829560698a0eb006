"""One full cycle: poll → new items → download → extract → language → exact dedup → index.

This wires the stages together; the CLI and the Airflow DAGs call ``run_cycle``. Every per-feed and
per-page failure is logged with its feed and URL and counted in the ``RunSummary``; only an unreachable
index stops the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from elasticsearch import Elasticsearch

from pipeline import flow, index, log
from pipeline.clustering import index_clustered
from pipeline.dedup import drop_exact_duplicates
from pipeline.errors import LanguageRejected
from pipeline.fetch import Fetcher
from pipeline.poll import PollResult
from pipeline.records import Article, FeedConfig, FeedItem, iso
from pipeline.settings import Settings
from pipeline.topics import load_profiles

_log = log.get(__name__)
# Outcomes after which an item is never downloaded again (unless its feed entry says it was updated).
FINAL = {"indexed", "duplicate", "language"}

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(slots=True)
class RunSummary:
    started_at: str = ""
    seconds: float = 0.0
    feeds_total: int = 0
    feeds_ok: int = 0
    feeds_not_modified: int = 0
    feeds_failed: int = 0
    feeds_deferred: int = 0
    failed_feeds: list[dict[str, Any]] = field(default_factory=list)
    moved_feeds: list[dict[str, str]] = field(default_factory=list)
    items_seen: int = 0
    items_same_url: int = 0
    items_known: int = 0
    items_new: int = 0
    pages_downloaded: int = 0
    pages_failed: int = 0
    feed_fallbacks: int = 0
    extract_failed: int = 0
    skipped_language: dict[str, int] = field(default_factory=dict)
    exact_duplicates: int = 0
    indexed: int = 0
    index_failed: int = 0
    # Stages still to come (clustering #4, profiles #5, alerts #6): None means "not run", not zero.
    near_duplicates_clustered: int | None = None
    tagged: dict[str, int] | None = None
    alerts_sent: int | None = None
    failures: list[dict[str, str]] = field(default_factory=list)  # first 50 page failures, for the report
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage

    @property
    def reached_no_feed(self) -> bool:
        return self.feeds_total > 0 and self.feeds_failed == self.feeds_total

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reached_no_feed"] = self.reached_no_feed
        return out


@dataclass(frozen=True, slots=True)
class _Outcome:
    item: FeedItem
    outcome: str  # indexed | duplicate | language | failed
    reason: str = ""


def select_new(
    es: Elasticsearch, alias: str, items: Sequence[FeedItem], *, max_attempts: int
) -> tuple[list[FeedItem], dict[str, int]]:
    """Items not yet handled for good: not indexed, not rejected before, not given up on; plus items whose
    feed entry was updated since we took them. Also returns the previous attempt counts."""
    ids = [item.id for item in items]
    indexed = index.get_many(es, alias, ids, fields=[])
    seen = index.get_many(es, index.Names(alias).seen, ids, fields=["outcome", "attempts", "updated_at"])
    fresh: list[FeedItem] = []
    attempts: dict[str, int] = {}
    for item in items:
        record = seen.get(item.id, {})
        before = record.get("updated_at")
        # The entry says it changed since we took it (or says so for the first time): take it again.
        updated = (
            item.updated_at is not None and bool(record) and (before is None or (iso(item.updated_at) or "") > before)
        )
        if item.id in indexed or record.get("outcome") in FINAL:
            if not updated:
                continue
        elif record.get("outcome") == "failed" and int(record.get("attempts", 0)) >= max_attempts:
            continue
        attempts[item.id] = int(record.get("attempts", 0))
        fresh.append(item)
    return fresh, attempts


def run_cycle(
    settings: Settings,
    es: Elasticsearch,
    feeds: Sequence[FeedConfig],
    *,
    fetcher: Fetcher | None = None,
    progress: Progress | None = None,
) -> RunSummary:
    """Run one cycle over ``feeds`` into the index ``settings.es_index``.

    Raises:
        IndexingError: the index cannot be set up or read (the run cannot happen).
    """
    started = time.monotonic()
    now = datetime.now(UTC)
    summary = RunSummary(started_at=iso(now) or "", feeds_total=len(feeds))
    alias = settings.es_index
    profiles = load_profiles(settings.profiles_dir)  # a bad profile stops the run before any download
    index.ensure_indices(es, alias)
    states = index.load_feed_states(es, alias, [f.id for f in feeds])
    own_fetcher = fetcher is None
    fetcher = fetcher or Fetcher(settings)
    clock = _Clock(summary)
    feed_order = {feed.id: n for n, feed in enumerate(feeds)}
    # canonical URL → (feed position, feed id, outlet) of the earliest-listed feed that carries it.
    claimed: dict[str, tuple[int, str, str]] = {}
    fresh: list[FeedItem] = []
    rank: dict[str, int] = {}
    attempts: dict[str, int] = {}

    def admit(items: Sequence[FeedItem]) -> list[FeedItem]:
        # Runs as each feed is parsed. A URL listed by two feeds is downloaded once, for the feed parsed
        # first; the article is credited to the feed listed first in the feed list (fixed before indexing).
        mine = []
        for position, item in enumerate(items):
            owner = (feed_order.get(item.feed_id, len(feeds)), item.feed_id, item.outlet)
            if item.canonical_url in claimed:
                summary.items_same_url += 1
                claimed[item.canonical_url] = min(claimed[item.canonical_url], owner)
                continue
            claimed[item.canonical_url] = owner
            rank[item.id] = feed_order.get(item.feed_id, len(feeds)) * 1_000_000 + position
            mine.append(item)
        summary.items_seen += len(items)
        new, tried = select_new(es, alias, mine, max_attempts=settings.max_item_attempts)
        attempts.update(tried)
        summary.items_new += len(new)
        summary.items_known += len(mine) - len(new)
        fresh.extend(new)
        return new

    polled: dict[str, PollResult] = {}
    articles: list[Article] = []
    outcomes: list[_Outcome] = []
    try:
        stream = flow.stream(
            settings, fetcher, feeds, states, now=now, admit=admit, progress=progress, profiles=profiles
        )
        for event in stream:
            if isinstance(event, flow.Polled):
                polled[event.result.feed.id] = event.result
                continue
            item, result, fetch_error = event.item, event.result, event.fetch_error
            if fetch_error:
                summary.pages_failed += 1
            else:
                summary.pages_downloaded += 1
            if isinstance(result, Article):
                summary.feed_fallbacks += result.body_source == "feed"
                articles.append(result)
                continue
            elif isinstance(result, LanguageRejected):
                summary.skipped_language[result.language] = summary.skipped_language.get(result.language, 0) + 1
                outcomes.append(_Outcome(item, "language", f"language {result.language}"))
                _log.info("language.rejected", feed=item.feed_id, url=item.url, language=result.language)
            else:
                summary.extract_failed += 1
                reason = f"{fetch_error}; then {result}" if fetch_error else str(result)
                outcomes.append(_Outcome(item, "failed", reason))
                _log.warning("extract.failed", feed=item.feed_id, url=item.url, reason=reason)
                if len(summary.failures) < 50:
                    summary.failures.append({"feed": item.feed_id, "url": item.url, "reason": reason})
        clock.lap("poll+download+extract")
    finally:
        if own_fetcher:
            fetcher.close()
    articles = [_credit(a, claimed[a.canonical_url]) for a in articles]
    ordered_polls = [polled[feed.id] for feed in feeds]
    _count_polls(summary, ordered_polls)

    by_id = {item.id: item for item in fresh}
    deduped = drop_exact_duplicates(articles, _indexed_hashes(es, alias, articles), rank=rank)
    summary.exact_duplicates = len(deduped.duplicates)
    for article, original in deduped.duplicates:
        outcomes.append(_Outcome(by_id[article.id], "duplicate", f"same text as {original}"))
        _log.info("dedup.exact", feed=article.feed_id, url=article.url, duplicate_of=original)

    clock.lap("dedup")
    clustered, written = index_clustered(
        es, alias, deduped.keep, threshold=settings.cluster_threshold, window_days=settings.cluster_window_days
    )
    summary.near_duplicates_clustered = clustered.joined
    summary.tagged = {p.id: 0 for p in profiles}
    for article in clustered.articles:
        for topic in article.topics:
            summary.tagged[topic] = summary.tagged.get(topic, 0) + 1
    summary.indexed = len(written.ok)
    summary.index_failed = len(written.failed)
    for doc_id, reason in written.failed:
        outcomes.append(_Outcome(by_id[doc_id], "failed", f"index: {reason}"))
        _log.warning("index.failed", feed=by_id[doc_id].feed_id, url=by_id[doc_id].url, reason=reason)
    outcomes.extend(_Outcome(by_id[doc_id], "indexed") for doc_id in written.ok)

    index.bulk_write(es, _seen_actions(alias, outcomes, attempts, now))
    index.bulk_write(es, index.feed_state_actions(alias, [r.state for r in ordered_polls]))
    index.refresh(es, alias)
    clock.lap("cluster+index")
    summary.seconds = round(time.monotonic() - started, 3)
    _log.info("run.summary", **{k: v for k, v in summary.to_dict().items() if k != "failures"})
    return summary


def _credit(article: Article, owner: tuple[int, str, str]) -> Article:
    _, feed_id, outlet = owner
    if (article.feed_id, article.outlet) == (feed_id, outlet):
        return article
    return replace(article, feed_id=feed_id, outlet=outlet)


class _Clock:
    def __init__(self, summary: RunSummary) -> None:
        self.summary = summary
        self.last = time.monotonic()

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.summary.stage_seconds[stage] = round(now - self.last, 3)
        self.last = now


def _count_polls(summary: RunSummary, polled: Sequence[PollResult]) -> None:
    for r in polled:
        if r.outcome == "ok":
            summary.feeds_ok += 1
        elif r.outcome == "not_modified":
            summary.feeds_not_modified += 1
        elif r.outcome == "skipped":
            summary.feeds_deferred += 1
        else:
            summary.feeds_failed += 1
            summary.failed_feeds.append(
                {
                    "feed": r.feed.id,
                    "url": r.feed.url,
                    "reason": r.error or "",
                    "consecutive_failures": r.state.consecutive_failures,
                }
            )
        if r.state.moved_to and r.outcome == "ok":
            summary.moved_feeds.append({"feed": r.feed.id, "url": r.feed.url, "moved_to": r.state.moved_to})


def _indexed_hashes(es: Elasticsearch, alias: str, articles: Sequence[Article]) -> dict[tuple[str, str], str]:
    """(outlet, content_hash) → _id of the article already indexed with that text."""
    hashes = sorted({a.content_hash for a in articles})
    found: dict[tuple[str, str], str] = {}
    for start in range(0, len(hashes), 1000):
        chunk = hashes[start : start + 1000]
        resp = es.search(
            index=alias,
            query={"terms": {"content_hash": chunk}},
            size=10000,
            source_includes=["outlet", "content_hash", "published_at"],
            sort=[{"published_at": {"order": "asc"}}],
        )
        for hit in resp["hits"]["hits"]:
            src = hit["_source"]
            found.setdefault((src["outlet"], src["content_hash"]), hit["_id"])
    return found


def _seen_actions(
    alias: str, outcomes: Sequence[_Outcome], attempts: dict[str, int], now: datetime
) -> Iterator[dict[str, Any]]:
    index_name = index.Names(alias).seen
    for o in outcomes:
        yield {
            "_op_type": "index",
            "_index": index_name,
            "_id": o.item.id,
            "_source": {
                "canonical_url": o.item.canonical_url,
                "feed_id": o.item.feed_id,
                "outcome": o.outcome,
                "reason": o.reason[:1000],
                "attempts": attempts.get(o.item.id, 0) + 1,
                "updated_at": iso(o.item.updated_at),
                "last_seen": iso(now),
            },
        }
