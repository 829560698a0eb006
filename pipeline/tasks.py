"""The pipeline cut into the steps an orchestrator schedules: plan the feeds that are due, poll a batch of
them into the landing area, tell operators about feed incidents, process landed batches into the index,
send alerts, replay, prune. Each step takes ``Settings``,
opens its own index connection, is safe to retry, and returns plain counts (what the Airflow UI shows
as a task's return value). ``dags/`` wraps these; nothing here imports Airflow.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from elasticsearch import Elasticsearch

from pipeline import log
from pipeline.alerts.incidents import run_incidents
from pipeline.errors import ConfigError, LandingError
from pipeline.ingest import health
from pipeline.ingest.collect import collect, commit_collected
from pipeline.ingest.feeds import enabled_feeds, load_feeds
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.store.embedded import embedded_elasticsearch
from pipeline.store.es import connect
from pipeline.store.landing import Landing, batch_ref
from pipeline.stories.cluster import prepare_index
from pipeline.stories.process import process
from pipeline.topics.profiles import load_profiles
from pipeline.topics.retag import retag_all

_log = log.get(__name__)
# Landed bytes per processing task: about 2,000 articles (a compressed article is ~4 KB with its
# signature) — enough that the per-task overhead (start-up, index look-ups) is small, few enough that
# a failed task redoes little.
PROCESS_BATCH_BYTES = 8 * 1024 * 1024


@contextmanager
def open_index(settings: Settings) -> Iterator[Elasticsearch]:
    """The configured cluster, or the embedded server (started and stopped around the block, or shared
    with the process that runs it already)."""
    if settings.es_url:
        yield connect(settings, settings.es_url)
        return
    with embedded_elasticsearch(settings.data_dir) as url:
        yield connect(settings, url)


def plan_feed_batches(settings: Settings, *, only: Collection[str] | None = None) -> list[list[str]]:
    """The enabled feeds' ids (those in ``only``, when given) cut into batches for parallel polling tasks.
    All feeds of one host share a batch, so the per-host request bound (``FETCH_PER_HOST``) holds across
    tasks too.

    Raises:
        ConfigError: the feed list is invalid.
    """
    by_host: dict[str, list[str]] = defaultdict(list)
    for feed in enabled_feeds(load_feeds(settings.feeds_file)):
        if only is None or feed.id in only:
            by_host[(urlsplit(feed.url).hostname or "").lower()].append(feed.id)
    batches: list[list[str]] = []
    current: list[str] = []
    for host in sorted(by_host, key=lambda h: (-len(by_host[h]), h)):
        if current and len(current) + len(by_host[host]) > settings.poll_batch_feeds:
            batches.append(current)
            current = []
        current.extend(by_host[host])
    if current:
        batches.append(current)
    return batches


def plan_due_batches(settings: Settings, *, now: datetime | None = None) -> tuple[list[list[str]], dict[str, int]]:
    """The enabled feeds that are due (never polled, given a new URL, or their ``next_poll_at`` comes
    within ``POLL_AHEAD_SECONDS``), in batches as ``plan_feed_batches`` cuts them; and the counts (feeds,
    due, batches) for the log. Every worker reads the same schedule: it lives in ``<alias>-feeds``.

    Polling a little ahead is what keeps a feed's interval: the planner runs once per schedule period,
    and a feed due a few seconds after one run would otherwise wait the whole period for the next. A
    server's ``Retry-After`` still holds: the poll itself defers a feed whose wait is not over.

    Raises:
        ConfigError: the feed list is invalid.
        IndexingError: the index cannot be reached.
    """
    now = now or datetime.now(UTC)
    feeds = enabled_feeds(load_feeds(settings.feeds_file))
    with open_index(settings) as es:
        prepare_index(es, settings.es_index)
        states = index.load_feed_states(es, settings.es_index, [f.id for f in feeds])
    horizon = now + timedelta(seconds=settings.poll_ahead_seconds)
    due = {f.id for f in feeds if health.due(f, states.get(f.id), now=horizon)}
    batches = plan_feed_batches(settings, only=due)
    return batches, {"feeds": len(feeds), "due": len(due), "batches": len(batches)}


def poll_to_landing(settings: Settings, feed_ids: Sequence[str], *, name: str) -> dict[str, Any]:
    """Poll the feeds ``feed_ids`` (planned as due: polled whatever their schedule says by now, so a retry
    polls them again), download and extract their new items, and land the articles as batch
    ``name`` (a retry with the same name replaces it). Feed states are written only after the batch is
    safe. Returns the run summary's counts plus ``batch`` (None when nothing was new).

    Raises:
        ConfigError: the feed list or a profile is invalid, or a feed id is unknown.
        IndexingError: the index cannot be reached.
        LandingError: the landing area refused the batch (nothing is committed: the retry redoes it).
    """
    every = load_feeds(settings.feeds_file)
    order = {feed.id: n for n, feed in enumerate(every)}
    by_id = {feed.id: feed for feed in every}
    unknown = [f for f in feed_ids if f not in by_id]
    if unknown:
        raise ConfigError(f"unknown feed ids {unknown} (not in {settings.feeds_file})")
    feeds = [by_id[f] for f in feed_ids]
    now = datetime.now(UTC)
    profiles = load_profiles(settings.profiles_dir)  # a bad profile stops the task before any download
    with open_index(settings) as es:
        prepare_index(es, settings.es_index)
        collected = collect(settings, es, feeds, profiles=profiles, feed_order=order, now=now)
        ref = None
        if collected.articles:
            ref = Landing(settings.landing).write(
                batch_ref(name, now=now),
                collected.articles,
                rank=collected.rank,
                updated=collected.updated,
                attempts=collected.attempts,
                meta={"feeds": list(feed_ids), "polled_at": now.isoformat()},
            )
        commit_collected(es, settings.es_index, collected, landed=ref is not None, now=now)
    out = collected.summary.to_dict()
    out["batch"] = ref
    out["articles_landed"] = len(collected.articles)
    return out


def plan_processing(settings: Settings, refs: Sequence[str] = ()) -> list[list[str]]:
    """The batches to process — ``refs`` (from the triggering asset events) and every other batch still
    pending in the landing area (an event lost, a run that failed) — grouped so that each processing
    task gets about ``PROCESS_BATCH_BYTES`` of landed articles."""
    landing = Landing(settings.landing)
    # A batch processed already (a re-run of the same event) is left out: nothing to do.
    wanted = sorted((set(refs) | set(landing.batches())) - landing.done())
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for ref in wanted:
        count = landing.size(ref)
        if current and size + count > PROCESS_BATCH_BYTES:
            groups.append(current)
            current, size = [], 0
        current.append(ref)
        size += count
    if current:
        groups.append(current)
    return groups


def process_landed(settings: Settings, refs: Sequence[str]) -> dict[str, Any]:
    """Dedup, cluster, index the articles of the landed batches ``refs``, then mark each batch done.
    Idempotent: a batch processed again changes nothing (its articles are ``unchanged``).

    A missing or unreadable batch is logged and returned under ``unreadable``; it stays pending and the
    others are processed.

    Raises:
        ConfigError: a profile is invalid.
        IndexingError: the index cannot be reached.
    """
    landing = Landing(settings.landing)
    batches = []
    unreadable: list[dict[str, str]] = []
    for ref in refs:
        try:
            batches.append(landing.read(ref))
        except LandingError as err:
            # A damaged batch must not hold the others back: it stays pending (and is named in every run's
            # log and counts) until an operator replaces or removes it.
            _log.error("landing.unreadable", ref=ref, url=landing.url, reason=str(err))
            unreadable.append({"batch": ref, "reason": str(err)})
    articles = [a for b in batches for a in b.articles]
    rank: dict[str, int] = {}
    updated: dict[str, str | None] = {}
    attempts: dict[str, int] = {}
    for b in batches:
        for key, value in b.rank.items():
            rank[key] = min(rank.get(key, value), value)
        updated.update(b.updated)
        attempts.update(b.attempts)
    profiles = load_profiles(settings.profiles_dir)
    with open_index(settings) as es:
        prepare_index(es, settings.es_index)
        done = process(settings, es, articles, profiles=profiles, rank=rank, updated=updated, attempts=attempts)
    counts = done.to_dict()
    for batch in batches:
        landing.mark_done(batch.ref, {"articles": len(batch.articles), "processed_with": len(articles)})
    counts["batches"] = [b.ref for b in batches]
    counts["unreadable"] = unreadable
    return counts


def send_feed_alerts(settings: Settings) -> dict[str, Any]:
    """Tell operators (``OPS_ALERT_TO``) about feed incidents and recoveries, once each, from the states
    the polls stored (see ``pipeline/alerts/incidents.py``); returns the feeds per state and what was sent.

    Raises:
        ConfigError: the feed list is invalid.
        IndexingError: the index cannot be reached.
    """
    feeds = enabled_feeds(load_feeds(settings.feeds_file))
    with open_index(settings) as es:
        prepare_index(es, settings.es_index)
        return run_incidents(settings, es, feeds).to_dict()


def send_alerts(settings: Settings) -> dict[str, Any]:
    """Email the digests of new matching stories and record a decision about every tagged article (see
    ``pipeline/alerts/run.py``); surges are :func:`send_surges`, the task after this one."""
    from pipeline.alerts.run import run_alerts

    profiles = load_profiles(settings.profiles_dir)
    with open_index(settings) as es:
        return run_alerts(settings, es, profiles, surges=False).to_dict()


def send_surges(settings: Settings) -> dict[str, Any]:
    """Email each profile's new surge of coverage once (see ``pipeline/alerts/surge.py``)."""
    from pipeline.alerts.surge import run_surges

    profiles = load_profiles(settings.profiles_dir)
    with open_index(settings) as es:
        return run_surges(settings, es, profiles).to_dict()


def retag(settings: Settings, profile: str | None = None) -> dict[str, Any]:
    """Re-tag the indexed articles after a profile changed (``profile``: only that one)."""
    profiles = load_profiles(settings.profiles_dir)
    with open_index(settings) as es:
        result = retag_all(es, settings.es_index, profiles, only=profile)
    return {"scanned": result.scanned, "changed": result.changed, "failed": result.failed, "tagged": result.tagged}


def prune_landing(settings: Settings) -> dict[str, Any]:
    """Remove processed landing batches older than ``LANDING_RETENTION_DAYS``."""
    landing = Landing(settings.landing)
    removed = landing.prune(settings.landing_retention_days)
    return {"removed": removed, "pending": len(landing.pending())}
