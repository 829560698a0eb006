"""The first half of a cycle: poll the feeds, select their new items, download and extract them
(``stream.stream``), and count what happened in the ``RunSummary``. Reads the index, writes nothing until
``commit_collected``: the articles must be safe first (indexed, or in the landing area)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from elasticsearch import Elasticsearch

from pipeline import log
from pipeline.errors import LanguageRejected
from pipeline.ingest import health, stream
from pipeline.ingest.fetch import Fetcher
from pipeline.ingest.poll import PollResult
from pipeline.records import Article, FeedConfig, FeedItem, FeedState, count_states, iso, state_of
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.store.es import bulk_write, get_many
from pipeline.store.seen import Outcome, seen_actions
from pipeline.topics.profiles import Profile

_log = log.get(__name__)


# Outcomes after which an item is never downloaded again (unless its feed entry says it was updated).
FINAL = {"indexed", "duplicate", "language"}


# An item written to the landing area is not downloaded again for this long while it waits to be
# processed; after that (a batch lost before processing) it is taken again.
LANDED_HOLD = timedelta(hours=6)


Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True, slots=True)
class StateChange:
    """A feed whose health state changed in this run (``previous`` → ``state``), and why."""

    feed: str
    url: str
    previous: str
    state: str
    reason: str
    consecutive_failures: int

    @property
    def news(self) -> bool:
        """Worth telling: anything but a first poll that went well."""
        return (self.previous, self.state) != ("never_polled", "ok")


@dataclass(slots=True)
class RunSummary:
    started_at: str = ""
    seconds: float = 0.0
    feeds_total: int = 0
    feeds_ok: int = 0
    feeds_not_modified: int = 0
    feeds_failed: int = 0
    feeds_deferred: int = 0  # not polled: not due yet (see next_poll_at), or the server asked to wait
    failed_feeds: list[dict[str, Any]] = field(default_factory=list)
    moved_feeds: list[dict[str, str]] = field(default_factory=list)
    # Every feed's health state after this run (the feeds not polled keep theirs), and the changes.
    feed_states: dict[str, int] = field(default_factory=dict)
    state_changes: list[StateChange] = field(default_factory=list)
    items_seen: int = 0
    items_skipped: int = 0  # feed entries with no link we could fetch (javascript:, malformed, none)
    items_same_url: int = 0
    items_known: int = 0
    items_new: int = 0
    pages_downloaded: int = 0
    pages_failed: int = 0
    feed_fallbacks: int = 0
    extract_failed: int = 0
    skipped_language: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0
    exact_duplicates: int = 0
    indexed: int = 0
    index_failed: int = 0
    recovered: int = 0  # articles of an interrupted earlier run whose clusters this run finished
    # None means "this stage did not run" (not zero).
    near_duplicates_clustered: int | None = None
    tagged: dict[str, int] | None = None
    alerts_sent: int | None = None  # stories delivered (in digests) by this run
    alerts_pending: int | None = None  # matching stories not delivered yet (mail server down, no recipient)
    alert_failures: list[dict[str, str]] = field(default_factory=list)
    ops_alerts_sent: int | None = None  # operator emails (feed incidents and recoveries) sent by this run
    ops_alerts_pending: int | None = None  # incidents and recoveries not delivered yet (mail server down)
    ops_alert_failures: list[dict[str, str]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)  # first 50 page failures, for the report
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage
    process_batches: int = 0  # batches clustered and indexed (the command line overlaps them with extraction)

    def note_failure(self, *, feed: str, url: str, reason: str) -> None:
        """Keep a per-item failure for the report (the first 50; every one is logged)."""
        if len(self.failures) < 50:
            self.failures.append({"feed": feed, "url": url, "reason": reason})

    @property
    def reached_no_feed(self) -> bool:
        return self.feeds_total > 0 and self.feeds_failed == self.feeds_total

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reached_no_feed"] = self.reached_no_feed
        return out


@dataclass(slots=True)
class Collected:
    """The first half of a cycle: feeds polled, new pages downloaded and extracted, nothing written yet.
    The Airflow polling DAG writes it to the landing area (``pipeline/store/landing.py``); the command line
    hands it straight to ``process``."""

    summary: RunSummary
    articles: list[Article]
    rank: dict[str, int]  # article id → feed order × 10⁶ + position in its feed (dedup tie-break)
    updated: dict[str, str | None]  # article id → its feed entry's "updated" time
    attempts: dict[str, int]  # item id → earlier failed attempts
    outcomes: list[Outcome]  # final outcomes known already: language rejections and failures
    states: list[FeedState]  # each feed's state after this poll, written once the batch is safe
    handed: frozenset[str] = frozenset()  # ids of the ``articles`` handed to ``collect``'s sink already


@dataclass(frozen=True, slots=True)
class Batch:
    """Articles handed on while later pages are still being extracted (``collect``'s ``sink``), with
    what ``process`` needs to know of them."""

    articles: list[Article]
    rank: dict[str, int]
    updated: dict[str, str | None]
    attempts: dict[str, int]


class Sink(Protocol):
    """Where ``collect`` hands on articles while later pages are still being extracted."""

    def wants(self, count: int) -> bool:
        """Whether a batch of ``count`` articles should be handed on now (else they wait for more)."""

    def __call__(self, batch: Batch) -> None:
        """Take a batch; may block, which pauses the stream (back-pressure)."""


def select_new(
    es: Elasticsearch, alias: str, items: Sequence[FeedItem], *, max_attempts: int, now: datetime | None = None
) -> tuple[list[FeedItem], dict[str, int]]:
    """Items not yet handled for good: not indexed, not rejected before, not given up on, not waiting in
    the landing area; plus items whose feed entry was updated since we took them. Also returns the
    previous attempt counts."""
    now = now or datetime.now(UTC)
    ids = [item.id for item in items]
    indexed = get_many(es, alias, ids, fields=[])
    seen = get_many(es, index.Names(alias).seen, ids, fields=["outcome", "attempts", "updated_at", "last_seen"])
    hold = iso(now - LANDED_HOLD) or ""
    fresh: list[FeedItem] = []
    attempts: dict[str, int] = {}
    for item in items:
        record = seen.get(item.id, {})
        before = record.get("updated_at")
        # The entry says it changed since we took it (or says so for the first time): take it again.
        updated = (
            item.updated_at is not None and bool(record) and (before is None or (iso(item.updated_at) or "") > before)
        )
        waiting = record.get("outcome") == "landed" and (record.get("last_seen") or "") > hold
        if item.id in indexed or record.get("outcome") in FINAL or waiting:
            if not updated:
                continue
        elif record.get("outcome") == "failed" and int(record.get("attempts", 0)) >= max_attempts:
            continue
        attempts[item.id] = int(record.get("attempts", 0))
        fresh.append(item)
    return fresh, attempts


def collect(
    settings: Settings,
    es: Elasticsearch,
    feeds: Sequence[FeedConfig],
    *,
    profiles: Sequence[Profile],
    feed_order: Mapping[str, int] | None = None,
    fetcher: Fetcher | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    due_only: bool = False,
    sink: Sink | None = None,
) -> Collected:
    """Poll ``feeds`` (with ``due_only``, only those whose ``next_poll_at`` has come: see
    ``health.due``), download their new items and extract the articles, tagged against ``profiles``.
    Reads the index (what is known already; its indices must exist: ``clustering.prepare_index``) but
    writes nothing: see ``commit_collected`` and ``process``.

    ``feed_order`` gives every feed's position in the whole feed list when ``feeds`` is one batch of it
    (Airflow maps batches over tasks), so that an article listed by two feeds is credited alike.

    ``sink``, when given, receives articles in batches while later pages are still being extracted (the
    command line clusters and indexes them meanwhile), as large as it ``wants``. An article is handed on
    only once no feed listed before its own is still being polled (such a feed may list its URL too, and
    would be credited with it). ``Collected.handed`` names the articles handed on; the caller processes
    the others.

    Raises:
        IndexingError: the index cannot be read.
    """
    started = time.monotonic()
    now = now or datetime.now(UTC)
    summary = RunSummary(started_at=iso(now) or "", feeds_total=len(feeds))
    alias = settings.es_index
    states = index.load_feed_states(es, alias, [f.id for f in feeds])
    due = [f for f in feeds if health.due(f, states.get(f.id), now=now)] if due_only else list(feeds)
    summary.feeds_deferred = len(feeds) - len(due)
    own_fetcher = fetcher is None
    fetcher = fetcher or Fetcher(settings)
    clock = log.Laps(summary.stage_seconds, digits=3)
    order = dict(feed_order) if feed_order is not None else {feed.id: n for n, feed in enumerate(feeds)}
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
            owner = (order.get(item.feed_id, len(order)), item.feed_id, item.outlet)
            if item.canonical_url in claimed:
                summary.items_same_url += 1
                claimed[item.canonical_url] = min(claimed[item.canonical_url], owner)
                continue
            claimed[item.canonical_url] = owner
            rank[item.id] = order.get(item.feed_id, len(order)) * 1_000_000 + position
            mine.append(item)
        summary.items_seen += len(items)
        new, tried = select_new(es, alias, mine, max_attempts=settings.max_item_attempts, now=now)
        attempts.update(tried)
        summary.items_new += len(new)
        summary.items_known += len(mine) - len(new)
        fresh.extend(new)
        return new

    polled: dict[str, PollResult] = {}
    articles: list[Article] = []
    outcomes: list[Outcome] = []
    waiting: list[Article] = []  # extracted, not handed to the sink yet
    handed: set[str] = set()
    try:
        events = stream.stream(
            settings, fetcher, due, states, now=now, admit=admit, progress=progress, profiles=profiles
        )
        for event in events:
            if isinstance(event, stream.Polled):
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
                if sink is not None:
                    waiting.append(result)
                    if sink.wants(len(waiting)):
                        # Credits are settled up to the first feed still being polled.
                        first = min((order.get(f.id, len(order)) for f in feeds if f.id not in polled), default=None)
                        ready = [a for a in waiting if first is None or claimed[a.canonical_url][0] < first]
                        if ready and sink.wants(len(ready)):
                            sink(_batch(ready, claimed, rank, fresh, attempts))
                            handed.update(a.id for a in ready)
                            waiting = [a for a in waiting if a.id not in handed]
                if fetch_error:  # indexed from the feed's text, but the page's failure is still news
                    summary.note_failure(
                        feed=item.feed_id, url=item.url, reason=f"{fetch_error}; the feed's own text stood in"
                    )
                continue
            elif isinstance(result, LanguageRejected):
                summary.skipped_language[result.language] = summary.skipped_language.get(result.language, 0) + 1
                outcomes.append(Outcome.of(item, "language", f"language {result.language}"))
                _log.info("language.rejected", feed=item.feed_id, url=item.url, language=result.language)
            else:
                summary.extract_failed += 1
                reason = f"{fetch_error}; then {result}" if fetch_error else str(result)
                outcomes.append(Outcome.of(item, "failed", reason))
                _log.warning("extract.failed", feed=item.feed_id, url=item.url, reason=reason)
                summary.note_failure(feed=item.feed_id, url=item.url, reason=reason)
        clock.lap("poll+download+extract")
    finally:
        if own_fetcher:
            fetcher.close()
    articles = [_credit(a, claimed[a.canonical_url]) for a in articles]
    ordered_polls = [polled[feed.id] for feed in due]
    _count_polls(summary, ordered_polls)
    _note_states(summary, feeds, states, ordered_polls)
    by_id = {item.id: item for item in fresh}
    summary.seconds = round(time.monotonic() - started, 3)
    return Collected(
        summary=summary,
        articles=articles,
        rank={a.id: rank[a.id] for a in articles if a.id in rank},
        updated={a.id: iso(by_id[a.id].updated_at) if a.id in by_id else None for a in articles},
        attempts=attempts,
        outcomes=outcomes,
        states=[r.state for r in ordered_polls],
        handed=frozenset(handed),
    )


def _batch(
    articles: Sequence[Article],
    claimed: Mapping[str, tuple[int, str, str]],
    rank: Mapping[str, int],
    fresh: Sequence[FeedItem],
    attempts: Mapping[str, int],
) -> Batch:
    by_id = {item.id: item for item in fresh}
    credited = [_credit(a, claimed[a.canonical_url]) for a in articles]
    return Batch(
        articles=credited,
        rank={a.id: rank[a.id] for a in credited if a.id in rank},
        updated={a.id: iso(by_id[a.id].updated_at) if a.id in by_id else None for a in credited},
        attempts={a.id: attempts[a.id] for a in credited if a.id in attempts},
    )


def commit_collected(
    es: Elasticsearch, alias: str, collected: Collected, *, landed: bool, now: datetime | None = None
) -> None:
    """Remember what this poll learnt: every feed's state (validators, health) and the items that are
    settled (language, failures). With ``landed``, the batch's articles are safe in the landing area:
    they are marked so that the next poll does not download them again while they wait to be processed.
    Called only once the articles are safe (indexed, or written to the landing area): a feed's new
    validators must never hide items that were lost."""
    now = now or datetime.now(UTC)
    outcomes = list(collected.outcomes)
    if landed:
        outcomes += [Outcome.of_article(a, collected.updated.get(a.id), "landed") for a in collected.articles]
    bulk_write(es, seen_actions(alias, outcomes, collected.attempts, now)).raise_if_transient("seen ledger")
    bulk_write(es, index.feed_state_actions(alias, collected.states)).raise_if_transient("feed states")
    index.refresh(es, alias)


def _credit(article: Article, owner: tuple[int, str, str]) -> Article:
    _, feed_id, outlet = owner
    if (article.feed_id, article.outlet) == (feed_id, outlet):
        return article
    return replace(article, feed_id=feed_id, outlet=outlet)


def _count_polls(summary: RunSummary, polled: Sequence[PollResult]) -> None:
    for r in polled:
        summary.items_skipped += len(r.skipped)
        for skipped in r.skipped:
            summary.note_failure(feed=r.feed.id, url=skipped.link, reason=f"feed entry skipped: {skipped.reason}")
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
        if r.state.moved_to and r.outcome in ("ok", "not_modified"):
            summary.moved_feeds.append({"feed": r.feed.id, "url": r.feed.url, "moved_to": r.state.moved_to})


def _note_states(
    summary: RunSummary, feeds: Sequence[FeedConfig], before: Mapping[str, FeedState], polled: Sequence[PollResult]
) -> None:
    """Count every feed's state after the run and log each change of state, naming the feed and why."""
    summary.feed_states = count_states(feeds, {**before, **{r.feed.id: r.state for r in polled}})
    for r in polled:
        was, new = state_of(r.feed, before.get(r.feed.id)), r.state.state
        if was == new:
            continue
        change = StateChange(
            feed=r.feed.id,
            url=r.feed.url,
            previous=was,
            state=new,
            reason=r.error or r.state.last_error or "",
            consecutive_failures=r.state.consecutive_failures,
        )
        summary.state_changes.append(change)
        # A first poll that went well is not news; a recovery is; any other change is a warning.
        emit = (_log.info if change.news else _log.debug) if new == "ok" else _log.warning
        emit("feed.state_changed", **asdict(change))
