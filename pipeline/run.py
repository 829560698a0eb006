"""One full cycle: ``collect`` (poll the due feeds → new items → download → extract → language),
``process`` (exact dedup → near-duplicate clusters → index), ``commit_collected`` (feed states, the seen
ledger), then the alerts: the analysts' digests and the operators' feed incidents. The command line runs
it in one process; Airflow runs the same halves as tasks with a landing area between them (``tasks.py``).
Every per-feed and per-page failure is logged with its feed and URL and counted in the ``RunSummary``;
only an unreachable index stops the run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from elasticsearch import Elasticsearch

from pipeline import log
from pipeline.alerts.incidents import run_incidents
from pipeline.alerts.run import run_alerts
from pipeline.ingest.collect import Progress, RunSummary, collect, commit_collected
from pipeline.ingest.fetch import Fetcher
from pipeline.records import FeedConfig
from pipeline.settings import Settings
from pipeline.stories.cluster import prepare_index
from pipeline.stories.process import Processed, process
from pipeline.topics.profiles import load_profiles

__all__ = ["Progress", "RunSummary", "merge_processed", "run_cycle"]

_log = log.get(__name__)


def run_cycle(
    settings: Settings,
    es: Elasticsearch,
    feeds: Sequence[FeedConfig],
    *,
    fetcher: Fetcher | None = None,
    progress: Progress | None = None,
    due_only: bool = False,
) -> RunSummary:
    """Run one cycle over ``feeds`` into the index ``settings.es_index``: ``collect`` (every feed, or with
    ``due_only`` those whose next poll has come, as ``python -m pipeline run`` does), then ``process``, then
    ``commit_collected`` (in that order, so a crash in between loses nothing: the items are simply taken
    again next time), then the alerts.

    Raises:
        ConfigError: a profile is invalid.
        IndexingError: the index cannot be set up or read (the run cannot happen).
    """
    started = time.monotonic()
    now = datetime.now(UTC)
    profiles = load_profiles(settings.profiles_dir)  # a bad profile stops the run before any download
    prepare_index(es, settings.es_index)
    collected = collect(
        settings, es, feeds, profiles=profiles, fetcher=fetcher, progress=progress, now=now, due_only=due_only
    )
    summary = collected.summary
    clock = log.Laps(summary.stage_seconds, digits=3)
    done = process(
        settings,
        es,
        collected.articles,
        profiles=profiles,
        rank=collected.rank,
        updated=collected.updated,
        attempts=collected.attempts,
        now=now,
    )
    merge_processed(summary, done)
    commit_collected(es, settings.es_index, collected, landed=False, now=now)
    clock.lap("cluster+index")
    alerted = run_alerts(settings, es, profiles)
    summary.alerts_sent = alerted.stories_sent
    summary.alerts_pending = alerted.stories_pending
    summary.alert_failures = alerted.failures[:50]
    if settings.ops_alert_to:
        ops = run_incidents(settings, es, feeds)
        summary.ops_alerts_sent = ops.incidents_sent + ops.recoveries_sent
        summary.ops_alerts_pending = ops.pending
        summary.ops_alert_failures = ops.failures[:50]
    clock.lap("alerts")
    summary.seconds = round(time.monotonic() - started, 3)
    _log.info("run.summary", **{k: v for k, v in summary.to_dict().items() if k != "failures"})
    return summary


def merge_processed(summary: RunSummary, done: Processed) -> None:
    """Add a ``process`` result to a run summary."""
    summary.unchanged += done.unchanged
    summary.exact_duplicates += done.exact_duplicates
    summary.near_duplicates_clustered = (summary.near_duplicates_clustered or 0) + done.near_duplicates_clustered
    tagged = summary.tagged or {}
    for topic, n in done.tagged.items():
        tagged[topic] = tagged.get(topic, 0) + n
    summary.tagged = tagged
    summary.indexed += done.indexed
    summary.index_failed += done.index_failed
    summary.recovered += done.recovered
    summary.failures.extend(done.failures[: max(0, 50 - len(summary.failures))])
