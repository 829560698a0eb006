"""The moving parts of a cycle, overlapped: feeds are polled, their new items downloaded and the pages
extracted all at once, so the extraction processes (the physical limit) never wait for a slow feed or a
polling phase. Memory stays bounded: downloads pause while enough pages wait for extraction.

Whatever one feed or one page does, it stays with that feed or page: an exception from polling a feed
fails that feed, one from downloading or extracting a page fails that page (an extraction process that
dies takes no other page with it: the pages it held are tried again one by one). Only the index (when
``admit`` cannot read it) stops the stream. The extraction processes die with this one, however it dies.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from queue import SimpleQueue
from typing import Any

from pipeline import log
from pipeline.errors import ExtractError, FetchError, PipelineError, reason
from pipeline.ingest.extract import PageJob, process_pages
from pipeline.ingest.fetch import Fetcher
from pipeline.ingest.poll import PollResult, poll_feed
from pipeline.records import Article, FeedConfig, FeedItem, FeedState, iso
from pipeline.settings import Settings
from pipeline.topics.profiles import Profile

_log = log.get(__name__)
PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
# Pages per task sent to an extraction process: enough to make the round trip negligible, few enough
# that every worker stays busy until the end.
EXTRACT_BATCH = 8


@dataclass(frozen=True, slots=True)
class Polled:
    result: PollResult


@dataclass(frozen=True, slots=True)
class Extracted:
    item: FeedItem
    result: Article | PipelineError
    fetch_error: str  # why the page could not be downloaded ("" when it was)


def _download(fetcher: Fetcher, item: FeedItem) -> tuple[PageJob, str]:
    fetched_at = datetime.now(UTC)
    try:
        resp = fetcher.get(item.url, feed_id=item.feed_id, accept=PAGE_ACCEPT)
        return (item, resp.content, resp.headers.get("content-type", ""), resp.final_url, fetched_at), ""
    except FetchError as err:
        # Extraction still runs: the feed's own text may stand in for the page.
        return (item, None, "", item.url, fetched_at), reason(err)
    except Exception as err:  # noqa: BLE001 - a bug or a library surprise on one page must not stop the cycle
        return (item, None, "", item.url, fetched_at), f"unexpected {type(err).__name__}: {err}"


def _poll_failed(feed: FeedConfig, state: FeedState | None, err: BaseException, *, now: datetime) -> PollResult:
    """What ``poll_feed`` would have recorded had it caught ``err`` itself."""
    state = state if state is not None and state.url == feed.url else FeedState(feed_id=feed.id, url=feed.url)
    reason = f"unexpected {type(err).__name__}: {err}"
    failed = replace(
        state,
        last_attempt=iso(now),
        consecutive_failures=state.consecutive_failures + 1,
        last_error=reason,
        last_status=None,
    )
    _log.error("poll.crashed", feed=feed.id, url=feed.url, reason=reason)
    return PollResult(feed, failed, (), "failed", reason)


_PR_SET_PDEATHSIG = 1


def _init_worker(parent: int) -> None:
    """Runs first in every extraction process."""
    # Ctrl-C reaches the whole foreground process group; the coordinator handles it and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Die with the coordinator however it dies (kill -9, the out-of-memory killer): Linux's parent-death
    # signal. Elsewhere the coordinator's own clean-up (or the pool noticing) has to do.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the coordinator died before the line above
        os._exit(1)


class _Workers:
    """The extraction executor, made on first use: processes when there is enough work for them,
    else one thread (a handful of pages is not worth starting processes)."""

    def __init__(self, settings: Settings) -> None:
        self.count = settings.extract_workers or os.cpu_count() or 1
        self._executor: Executor | None = None

    def get(self, expected_pages: int) -> Executor:
        if self._executor is None:
            if self.count > 1 and expected_pages >= 2 * self.count:
                # spawn, not fork: this process runs HTTP threads, and forking a threaded process can deadlock.
                self._executor = ProcessPoolExecutor(
                    self.count,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(os.getpid(),),
                )
            else:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="extract")
        return self._executor

    @property
    def current(self) -> Executor | None:
        return self._executor

    def replace_broken(self) -> None:
        """Drop a pool whose process died; the next ``get`` makes a new one."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=False)
            self._executor = None

    def shutdown(self, *, interrupted: bool) -> None:
        """Stop the workers: after their current pages normally, at once when the run was interrupted."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if interrupted and isinstance(executor, ProcessPoolExecutor):
            # Do not wait up to EXTRACT_TIMEOUT for pages nobody will use: stop the processes now. SIGKILL,
            # not SIGTERM: a worker still starting up (reading its spawn data from the pipe the pool is
            # closing) would otherwise print an EOFError traceback on its way out; a worker holds nothing
            # that needs cleaning up.
            processes = list((getattr(executor, "_processes", None) or {}).values())
            executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.kill()
            for process in processes:
                process.join(timeout=5)
            return
        executor.shutdown(wait=not interrupted, cancel_futures=True)


def stream(
    settings: Settings,
    fetcher: Fetcher,
    feeds: Sequence[FeedConfig],
    states: dict[str, FeedState],
    *,
    now: datetime,
    admit: Callable[[Sequence[FeedItem]], list[FeedItem]],
    progress: Callable[[str, int, int], None] | None = None,
    profiles: Sequence[Profile] = (),
) -> Iterator[Polled | Extracted]:
    """Poll ``feeds``, download the items ``admit`` lets through (it sees each feed's items as soon as
    that feed is parsed), and extract them. Yields a ``Polled`` per feed and an ``Extracted`` per item,
    in completion order."""
    workers = _Workers(settings)
    options: tuple[Any, ...] = (
        settings.languages,
        settings.min_body_chars,
        settings.lang_prefix_chars,
        settings.extract_timeout,
        tuple(profiles),
        settings.extract_fallback,
    )
    max_downloads = settings.fetch_workers * 2
    max_batches = workers.count * 3
    queue: deque[FeedItem] = deque()
    jobs: list[tuple[PageJob, str]] = []
    solos: deque[tuple[PageJob, str]] = deque()  # pages to extract one per task (their pool died)
    # Every future reports to one queue when it completes: cheaper than wait() over a changing set.
    finished: SimpleQueue[tuple[str, Future[Any], Any]] = SimpleQueue()
    pending = {"poll": 0, "download": 0, "extract": 0}
    admitted = downloaded = extracted = polled = 0

    def track(kind: str, future: Future[Any], context: Any = None) -> None:
        pending[kind] += 1
        future.add_done_callback(lambda f: finished.put((kind, f, context)))

    def extract(batch: list[tuple[PageJob, str]], *, solo: bool) -> None:
        executor = workers.get(max(admitted, 2 * workers.count) if pending["poll"] else admitted)
        try:
            future = executor.submit(process_pages, [job for job, _ in batch], *options)
        except BrokenProcessPool:
            # A process died while the pool was idle: the pool says so at the next submit. A new one.
            workers.replace_broken()
            executor = workers.get(admitted)
            future = executor.submit(process_pages, [job for job, _ in batch], *options)
        track("extract", future, (batch, solo, executor))

    threads = ThreadPoolExecutor(settings.fetch_workers, thread_name_prefix="fetch")
    completed = False
    try:
        for feed in feeds:
            track("poll", threads.submit(poll_feed, fetcher, feed, states.get(feed.id), now=now), feed)
        while any(pending.values()) or queue or jobs or solos:
            # Back-pressure: no new download while enough pages already wait for a worker.
            room = pending["extract"] < max_batches and len(jobs) < 2 * EXTRACT_BATCH
            while queue and room and pending["download"] < max_downloads:
                track("download", threads.submit(_download, fetcher, queue.popleft()))
            more_soon = pending["poll"] or queue or pending["download"]
            if solos and pending["extract"] < max_batches:
                extract([solos.popleft()], solo=True)
                continue
            if jobs and pending["extract"] < max_batches and (len(jobs) >= EXTRACT_BATCH or not more_soon):
                batch, jobs = jobs[:EXTRACT_BATCH], jobs[EXTRACT_BATCH:]
                extract(batch, solo=False)
                continue
            kind, future, context = finished.get()
            pending[kind] -= 1
            if kind == "poll":
                try:
                    result: PollResult = future.result()
                except Exception as err:  # noqa: BLE001 - one feed's surprise is that feed's failure
                    result = _poll_failed(context, states.get(context.id), err, now=now)
                polled += 1
                yield Polled(result)
                fresh = admit(result.items)
                admitted += len(fresh)
                queue.extend(fresh)
                if progress:
                    progress("poll", polled, len(feeds))
            elif kind == "download":
                job, error = future.result()  # _download returns every failure as its reason
                if error:
                    _log.warning("fetch.failed", feed=job[0].feed_id, url=job[0].url, reason=error)
                jobs.append((job, error))
                downloaded += 1
                if progress:
                    progress("download", downloaded, admitted)
            else:
                batch, solo, executor = context
                failure = future.exception()
                if isinstance(failure, BrokenProcessPool) and not solo:
                    # A process died (a page that blew its memory, a crash in a C library) and took the
                    # pool with it: try these pages again one by one, so only the culprit fails.
                    if workers.current is executor:
                        workers.replace_broken()
                    solos.extend(batch)
                    continue
                if failure is not None:
                    if isinstance(failure, BrokenProcessPool) and workers.current is executor:
                        workers.replace_broken()
                    reason = (
                        "the extraction process died on this page"
                        if isinstance(failure, BrokenProcessPool)
                        else f"extraction failed: {type(failure).__name__}: {failure}"
                    )
                    results: list[Article | PipelineError] = [
                        ExtractError(reason, url=job[0].url, feed_id=job[0].feed_id) for job, _ in batch
                    ]
                else:
                    results = future.result()
                for (job, error), article in zip(batch, results, strict=True):
                    extracted += 1
                    yield Extracted(job[0], article, error)
                if progress:
                    progress("extract", extracted, admitted)
        completed = True
    finally:
        # Interrupted (Ctrl-C, SIGTERM, the index gone): stop now, without waiting for downloads or pages
        # nobody will use.
        threads.shutdown(wait=completed, cancel_futures=True)
        workers.shutdown(interrupted=not completed)
