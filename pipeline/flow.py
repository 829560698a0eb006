"""The moving parts of a cycle, overlapped: feeds are polled, their new items downloaded and the pages
extracted all at once, so the extraction processes (the physical limit) never wait for a slow feed or a
polling phase. Memory stays bounded: downloads pause while enough pages wait for extraction.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from queue import SimpleQueue
from typing import Any

from pipeline import log
from pipeline.errors import FetchError, PipelineError
from pipeline.extract import PageJob, process_pages
from pipeline.fetch import Fetcher
from pipeline.poll import PollResult, poll_feed
from pipeline.records import Article, FeedConfig, FeedItem, FeedState
from pipeline.settings import Settings
from pipeline.topics import Profile

_log = log.get(__name__)
PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
# Pages per task sent to an extraction process: enough to make the round trip negligible, few enough
# that every worker stays busy until the end.
EXTRACT_BATCH = 8


@dataclass(frozen=True, slots=True)
class Polled:
    result: PollResult


@dataclass(frozen=True, slots=True)
class Processed:
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
        return (item, None, "", item.url, fetched_at), f"{type(err).__name__}: {err}"


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
                self._executor = ProcessPoolExecutor(self.count, mp_context=multiprocessing.get_context("spawn"))
            else:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="extract")
        return self._executor

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


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
) -> Iterator[Polled | Processed]:
    """Poll ``feeds``, download the items ``admit`` lets through (it sees each feed's items as soon as
    that feed is parsed), and extract them. Yields a ``Polled`` per feed and a ``Processed`` per item,
    in completion order."""
    workers = _Workers(settings)
    options: tuple[Any, ...] = (
        settings.languages,
        settings.min_body_chars,
        settings.lang_prefix_chars,
        settings.extract_timeout,
        tuple(profiles),
    )
    max_downloads = settings.fetch_workers * 2
    max_batches = workers.count * 3
    queue: deque[FeedItem] = deque()
    jobs: list[tuple[PageJob, str]] = []
    # Every future reports to one queue when it completes: cheaper than wait() over a changing set.
    finished: SimpleQueue[tuple[str, Future[Any], Any]] = SimpleQueue()
    pending = {"poll": 0, "download": 0, "extract": 0}
    admitted = downloaded = extracted = polled = 0

    def track(kind: str, future: Future[Any], context: Any = None) -> None:
        pending[kind] += 1
        future.add_done_callback(lambda f: finished.put((kind, f, context)))

    with ThreadPoolExecutor(settings.fetch_workers, thread_name_prefix="fetch") as threads:
        for feed in feeds:
            track("poll", threads.submit(poll_feed, fetcher, feed, states.get(feed.id), now=now))
        try:
            while any(pending.values()) or queue or jobs:
                # Back-pressure: no new download while enough pages already wait for a worker.
                room = pending["extract"] < max_batches and len(jobs) < 2 * EXTRACT_BATCH
                while queue and room and pending["download"] < max_downloads:
                    track("download", threads.submit(_download, fetcher, queue.popleft()))
                more_soon = pending["poll"] or queue or pending["download"]
                if jobs and pending["extract"] < max_batches and (len(jobs) >= EXTRACT_BATCH or not more_soon):
                    executor = workers.get(max(admitted, 2 * workers.count) if pending["poll"] else admitted)
                    batch, jobs = jobs[:EXTRACT_BATCH], jobs[EXTRACT_BATCH:]
                    track("extract", executor.submit(process_pages, [job for job, _ in batch], *options), batch)
                    continue
                kind, future, context = finished.get()
                pending[kind] -= 1
                if kind == "poll":
                    result: PollResult = future.result()
                    polled += 1
                    yield Polled(result)
                    fresh = admit(result.items)
                    admitted += len(fresh)
                    queue.extend(fresh)
                    if progress:
                        progress("poll", polled, len(feeds))
                elif kind == "download":
                    job, error = future.result()
                    if error:
                        _log.warning("fetch.failed", feed=job[0].feed_id, url=job[0].url, reason=error)
                    jobs.append((job, error))
                    downloaded += 1
                    if progress:
                        progress("download", downloaded, admitted)
                else:
                    for (job, error), article in zip(context, future.result(), strict=True):
                        extracted += 1
                        yield Processed(job[0], article, error)
                    if progress:
                        progress("extract", extracted, admitted)
        finally:
            workers.shutdown()
