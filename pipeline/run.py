"""One full cycle: ``collect`` (poll the due feeds → new items → download → extract → language),
``process`` (exact dedup → near-duplicate clusters → index), ``commit_collected`` (feed states, the seen
ledger), then the alerts: the analysts' digests and the operators' feed incidents. The command line runs
it in one process; Airflow runs the same halves as tasks with a landing area between them (``tasks.py``).
Every per-feed and per-page failure is logged with its feed and URL and counted in the ``RunSummary``;
only an unreachable index stops the run.

In one process the halves overlap: a thread clusters and indexes the articles extracted so far (at
least ``PROCESS_BATCH`` at a time, and whatever came in meanwhile) while the extraction processes go on
with the next pages, so what is left after the last page is the last few, not the whole run.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from elasticsearch import Elasticsearch

from pipeline import log
from pipeline.alerts.incidents import run_incidents
from pipeline.alerts.run import run_alerts
from pipeline.ingest.collect import Batch, Progress, RunSummary, collect, commit_collected
from pipeline.ingest.fetch import Fetcher
from pipeline.records import FeedConfig
from pipeline.settings import Settings
from pipeline.stories.cluster import prepare_index
from pipeline.stories.process import Processed, finish_abandoned, process
from pipeline.topics.profiles import Profile, load_profiles

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
    ``due_only`` those whose next poll has come, as ``python -m pipeline run`` does), ``process`` (in
    batches while extraction goes on, see the module's docstring), then ``commit_collected`` once every
    article is indexed, so that a crash anywhere loses nothing: feed states and settled items are saved
    only after the articles are safe, and the items not yet indexed are simply taken again next time.
    Then the alerts.

    Raises:
        ConfigError: a profile is invalid.
        IndexingError: the index cannot be set up or read (the run cannot happen).
    """
    started = time.monotonic()
    now = datetime.now(UTC)
    profiles = load_profiles(settings.profiles_dir)  # a bad profile stops the run before any download
    prepare_index(es, settings.es_index)
    # Batches of writers that died are finished first: this run's batches may join their clusters.
    recovered = finish_abandoned(settings, es, now=now)
    processor = _Processor(settings, es, profiles, now=now)
    try:
        collected = collect(
            settings,
            es,
            feeds,
            profiles=profiles,
            fetcher=fetcher,
            progress=progress,
            now=now,
            due_only=due_only,
            sink=processor if settings.process_batch else None,
        )
        summary = collected.summary
        clock = log.Laps(summary.stage_seconds, digits=3)
        rest = [a for a in collected.articles if a.id not in collected.handed]
        processor.submit(
            Batch(
                articles=rest,
                rank={a.id: collected.rank[a.id] for a in rest if a.id in collected.rank},
                updated={a.id: collected.updated.get(a.id) for a in rest},
                attempts=collected.attempts,
            ),
            last=True,
        )
        done = processor.results()
    finally:
        processor.stop()
    summary.recovered += recovered
    summary.process_batches = len(done)
    for result in done:
        merge_processed(summary, result)
    summary.near_duplicates_clustered = (summary.near_duplicates_clustered or 0) + processor.heads_replaced
    commit_collected(es, settings.es_index, collected, landed=False, now=now)
    # What the run waited for after the last page: the last batch, the feed states and the ledger.
    clock.lap("cluster+index")
    summary.stage_seconds["cluster+index overlapped"] = round(processor.busy, 3)
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


# A batch this many times PROCESS_BATCH is handed on even while the previous one is still being processed,
# and waits for it: the stream pauses (back-pressure), so memory stays bounded however far extraction runs
# ahead of indexing.
WAITING_LIMIT = 10


class _Processor:
    """Clusters and indexes batches of a cycle's articles on a thread of its own, one batch at a time and
    in the order handed (so the journal, the dedup look-ups and the clusters see every earlier batch).
    It ``wants`` a batch of ``PROCESS_BATCH`` articles or more whenever it is idle: batches grow while it
    is busy, which keeps the cost per article down when indexing is the slower half, and the last one
    small when it is not. A failure stops the thread and is raised to the caller when it next hands on a
    batch, or at ``results``."""

    def __init__(self, settings: Settings, es: Elasticsearch, profiles: Sequence[Profile], *, now: datetime) -> None:
        self.settings = settings
        self.es = es
        self.profiles = profiles
        self.now = now
        self.busy = 0.0  # seconds spent processing while extraction still went on
        # Articles of this run that headed their cluster when processed and that a later batch's earlier
        # copy replaced: copies after all, counted as in a run processed in one batch.
        self.heads_replaced = 0
        self._processed: set[str] = set()
        self._idle = threading.Event()
        self._idle.set()
        self._queue: queue.Queue[tuple[Batch, bool] | None] = queue.Queue(maxsize=1)
        self._done: list[Processed] = []
        self._error: BaseException | None = None
        self._finished = threading.Event()
        self._stopping = threading.Event()
        # A daemon: an interrupted run must not wait for a batch nobody will use (its journal entry lets
        # the next cycle finish it).
        self._thread = threading.Thread(target=self._run, name="process", daemon=True)
        self._thread.start()

    def wants(self, count: int) -> bool:
        """Whether to take ``count`` articles now: ``PROCESS_BATCH`` or more when idle, and when busy only
        as many as make the stream wait for it.

        Raises:
            IndexingError: an earlier batch could not be indexed (the run stops).
        """
        self._raise_failure()
        minimum = self.settings.process_batch
        return count >= minimum and (self._idle.is_set() or count >= WAITING_LIMIT * minimum)

    def __call__(self, batch: Batch) -> None:
        self.submit(batch)

    def submit(self, batch: Batch, *, last: bool = False) -> None:
        """Hand on a batch once the previous one is processed (``last``: the cycle's final one).

        Raises:
            IndexingError: an earlier batch could not be indexed (the run stops).
        """
        while not self._idle.wait(timeout=0.5):
            self._raise_failure()  # waiting for the thread: look for a failure meanwhile
        self._raise_failure()
        self._idle.clear()
        self._queue.put((batch, last))

    def results(self) -> list[Processed]:
        """Every batch's result, once the last one is processed.

        Raises:
            IndexingError: a batch could not be indexed.
        """
        self._finished.wait()
        self._raise_failure()
        return self._done

    def stop(self) -> None:
        """Take no further batch (the run was interrupted, or it is over)."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):  # a batch waits: the thread sees the flag when it takes it
            self._queue.put_nowait(None)

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                handed = self._queue.get()
                if handed is None or self._stopping.is_set():
                    return
                batch, last = handed
                started = time.perf_counter()
                done = process(
                    self.settings,
                    self.es,
                    batch.articles,
                    profiles=self.profiles,
                    rank=batch.rank,
                    updated=batch.updated,
                    attempts=batch.attempts,
                    now=self.now,
                    recover=False,
                    # commit_collected refreshes the same indices once the last batch is in.
                    refresh=False,
                )
                self._done.append(done)
                self.heads_replaced += sum(1 for head in done.repointed if head in self._processed)
                self._processed.update(a.id for a in batch.articles)
                if last:
                    return
                self.busy += time.perf_counter() - started
                self._idle.set()
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread, which raises it
            self._error = err
        finally:
            self._finished.set()


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
