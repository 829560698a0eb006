"""One full cycle: poll → new items → download → extract → language → exact dedup → index.

This wires the stages together; the CLI and the Airflow DAGs call ``run_cycle``. Every per-feed and
per-page failure is logged with its feed and URL and counted in the ``RunSummary``; only an unreachable
index stops the run.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import (
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from elasticsearch import Elasticsearch

from pipeline import index, log
from pipeline.dedup import drop_exact_duplicates, unique_items
from pipeline.errors import FetchError, LanguageRejected, PipelineError
from pipeline.extract import process_page
from pipeline.fetch import Fetcher
from pipeline.poll import PollResult, poll_all
from pipeline.records import Article, FeedConfig, FeedItem, iso
from pipeline.settings import Settings

_log = log.get(__name__)
PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
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
        return self.feeds_total > 0 and self.feeds_ok + self.feeds_not_modified == 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reached_no_feed"] = self.reached_no_feed
        return out


@dataclass(frozen=True, slots=True)
class _Outcome:
    item: FeedItem
    outcome: str  # indexed | duplicate | language | failed
    reason: str = ""


def _pool(settings: Settings, jobs: int) -> Executor:
    workers = settings.extract_workers or os.cpu_count() or 1
    if workers <= 1 or jobs < 2 * workers:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract")  # not worth new processes
    # spawn, not fork: the parent runs HTTP threads, and forking a threaded process can deadlock.
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


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
        updated_before = record.get("updated_at")
        updated = bool(item.updated_at and updated_before and iso(item.updated_at) > updated_before)
        if item.id in indexed or record.get("outcome") in FINAL:
            if not updated:
                continue
        elif record.get("outcome") == "failed" and int(record.get("attempts", 0)) >= max_attempts:
            continue
        attempts[item.id] = int(record.get("attempts", 0))
        fresh.append(item)
    return fresh, attempts


def _download(fetcher: Fetcher, item: FeedItem) -> tuple[FeedItem, bytes | None, str, str, datetime, str]:
    fetched_at = datetime.now(UTC)
    try:
        resp = fetcher.get(item.url, feed_id=item.feed_id, accept=PAGE_ACCEPT)
        return item, resp.content, resp.headers.get("content-type", ""), resp.final_url, fetched_at, ""
    except FetchError as err:
        return item, None, "", item.url, fetched_at, f"{type(err).__name__}: {err}"


def process_items(
    settings: Settings,
    fetcher: Fetcher,
    items: Sequence[FeedItem],
    progress: Progress | None = None,
) -> Iterator[tuple[FeedItem, Article | PipelineError, str]]:
    """Download pages on threads and extract them on a process pool as they arrive. Yields
    (item, article or the error that stopped it, the download error if the page could not be had)."""
    total = len(items)
    with (
        ThreadPoolExecutor(max_workers=settings.fetch_workers, thread_name_prefix="fetch") as threads,
        _pool(settings, total) as workers,
    ):
        extracting: dict[Future[Article | PipelineError], tuple[FeedItem, str]] = {}
        for future in as_completed([threads.submit(_download, fetcher, item) for item in items]):
            item, content, ctype, final_url, fetched_at, error = future.result()
            if error:
                _log.warning("fetch.failed", feed=item.feed_id, url=item.url, reason=error)
            if progress:
                progress("download", len(extracting) + 1, total)
            job = workers.submit(
                process_page,
                item,
                content,
                ctype,
                final_url,
                fetched_at,
                settings.languages,
                settings.min_body_chars,
                settings.lang_prefix_chars,
            )
            extracting[job] = (item, error)
        for done, job in enumerate(as_completed(extracting), start=1):
            if progress:
                progress("extract", done, total)
            item, error = extracting[job]
            yield item, job.result(), error


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
    index.ensure_indices(es, alias)
    states = index.load_feed_states(es, alias, [f.id for f in feeds])
    own_fetcher = fetcher is None
    fetcher = fetcher or Fetcher(settings)
    clock = _Clock(summary)
    try:
        polled = poll_all(
            fetcher,
            feeds,
            states,
            workers=settings.fetch_workers,
            now=now,
            on_done=_poll_progress(progress, len(feeds)),
        )
        _count_polls(summary, polled)
        clock.lap("poll")
        items, summary.items_same_url = unique_items(i for r in polled for i in r.items)
        summary.items_seen = len(items) + summary.items_same_url
        fresh, attempts = select_new(es, alias, items, max_attempts=settings.max_item_attempts)
        summary.items_new = len(fresh)
        summary.items_known = len(items) - len(fresh)
        clock.lap("select")

        articles: list[Article] = []
        outcomes: list[_Outcome] = []
        for item, result, fetch_error in process_items(settings, fetcher, fresh, progress):
            if fetch_error:
                summary.pages_failed += 1
            else:
                summary.pages_downloaded += 1
            if isinstance(result, Article):
                summary.feed_fallbacks += result.body_source == "feed"
                articles.append(result)
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
        clock.lap("download+extract")
    finally:
        if own_fetcher:
            fetcher.close()

    by_id = {item.id: item for item in fresh}
    rank = {item.id: n for n, item in enumerate(fresh)}
    deduped = drop_exact_duplicates(articles, _indexed_hashes(es, alias, articles), rank=rank)
    summary.exact_duplicates = len(deduped.duplicates)
    for article, original in deduped.duplicates:
        outcomes.append(_Outcome(by_id[article.id], "duplicate", f"same text as {original}"))
        _log.info("dedup.exact", feed=article.feed_id, url=article.url, duplicate_of=original)

    clock.lap("dedup")
    result = index.bulk_write(es, index.article_actions(alias, deduped.keep))
    summary.indexed = len(result.ok)
    summary.index_failed = len(result.failed)
    for doc_id, reason in result.failed:
        outcomes.append(_Outcome(by_id[doc_id], "failed", f"index: {reason}"))
        _log.warning("index.failed", feed=by_id[doc_id].feed_id, url=by_id[doc_id].url, reason=reason)
    outcomes.extend(_Outcome(by_id[doc_id], "indexed") for doc_id in result.ok)

    index.bulk_write(es, _seen_actions(alias, outcomes, attempts, now))
    index.bulk_write(es, index.feed_state_actions(alias, [r.state for r in polled]))
    index.refresh(es, alias)
    clock.lap("index")
    summary.seconds = round(time.monotonic() - started, 3)
    _log.info("run.summary", **{k: v for k, v in summary.to_dict().items() if k != "failures"})
    return summary


class _Clock:
    def __init__(self, summary: RunSummary) -> None:
        self.summary = summary
        self.last = time.monotonic()

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.summary.stage_seconds[stage] = round(now - self.last, 3)
        self.last = now


def _poll_progress(progress: Progress | None, total: int) -> Callable[[PollResult], None] | None:
    if progress is None:
        return None
    done = 0

    def on_done(_: PollResult) -> None:
        nonlocal done
        done += 1
        progress("poll", done, total)

    return on_done


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
            source=["outlet", "content_hash", "published_at"],
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
