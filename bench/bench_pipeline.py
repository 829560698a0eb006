"""Throughput of the pipeline against bare trafilatura extraction, on the same pages and cores.

Builds N fixture pages (default 2000, about 87 KB each with the chrome of a real news page) spread
over feeds, serves them from a lean loopback HTTP server in its own process, and runs full cycles
(poll → download → extract → language → dedup → index into the embedded server). In each round it
also runs the same pages, downloaded beforehand, through bare ``trafilatura.extract`` on a process
pool of the same size. Prints articles/s for both, their ratio (the round with the median ratio, and
every round's), the cycle's stage times, the share of each step in a worker's per-page time, the
parent's CPU time and peak memory.

    python bench/bench_pipeline.py [-n 2000] [--workers 2] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import os
import pstats
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import trafilatura

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datetime import UTC

from bench.siteserver import LeanServer  # noqa: E402
from pipeline.demo.site import bench_site  # noqa: E402
from pipeline.ingest.extract import build_article, decode_html  # noqa: E402
from pipeline.records import FeedConfig, FeedItem  # noqa: E402
from pipeline.run import run_cycle  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store.embedded import free_port, start_server, stop_group  # noqa: E402
from pipeline.store.es import connect
from pipeline.stories.cluster import prepare_index  # noqa: E402


def _serve(n: int, port_queue: multiprocessing.Queue, stop: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    # The port must be known before the site (whose links are absolute) is built: reserve one first.
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    resources, feeds = bench_site(base_url, n)
    server = LeanServer(resources, port=port)
    port_queue.put((base_url, feeds))
    stop.wait()
    server.stop()


def _bare(html: bytes) -> int:
    text = trafilatura.extract(html.decode("utf-8", errors="replace"), include_comments=False)
    return len(text or "")


def _hwm_mb(pid: int | str) -> float:
    """Peak resident memory of a live process (VmHWM). Not getrusage: Linux carries a parent's peak
    across fork and exec into a spawned child's ru_maxrss."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class WorkerMemory:
    """Samples the peak memory of this process's extraction workers while they live."""

    def __init__(self, skip: set[int]) -> None:
        self.skip = skip  # the site server and the search server are not ours to count
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(0.2):
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                pid = int(stat.parent.name)
                if fields[1] == me and pid not in self.skip:
                    self.peak = max(self.peak, _hwm_mb(pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3, help="report the round with the median ratio")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # A SIGTERM (timeout, pkill) must still run the finally blocks that stop the servers we started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    ctx = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    stop = ctx.Event()
    server = ctx.Process(target=_serve, args=(args.n, ports, stop), daemon=True)
    server.start()
    base_url, feed_dicts = ports.get(timeout=120)
    feeds = [FeedConfig(**f) for f in feed_dicts]
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    es_proc, es_url = start_server(tmp / "es")
    try:
        settings = Settings(
            es_url=es_url,
            es_index="bench-articles",
            data_dir=tmp,
            allow_private_hosts=True,
            extract_workers=args.workers,
        )
        es = connect(settings, es_url)
        # The same pages, downloaded beforehand, for bare extraction.
        resources, _ = bench_site(base_url, args.n)
        urls = [base_url + p for p in resources if "/bench/" in p and not p.endswith(".xml")]
        with httpx.Client(trust_env=False) as client:
            pages = [client.get(u).content for u in urls]

        parent_before = _hwm_mb("self")
        memory = WorkerMemory(skip={server.pid or 0, es_proc.pid})
        rounds = []
        for r in range(args.rounds):
            # Alternate which goes first, so neither always gets the cooler or quieter machine.
            order = ("bare", "pipeline") if r % 2 == 0 else ("pipeline", "bare")
            figures_r: dict[str, Any] = {}
            for what in order:
                if what == "bare":
                    t1 = time.perf_counter()
                    with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
                        list(pool.map(_bare, pages, chunksize=8))
                    figures_r["bare_s"] = time.perf_counter() - t1
                else:
                    run_settings = settings.with_(es_index=f"bench-{r}")
                    prepare_index(es, run_settings.es_index)
                    t0 = time.perf_counter()
                    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
                    summary = run_cycle(run_settings, es, feeds)
                    figures_r["pipeline_s"] = time.perf_counter() - t0
                    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
                    figures_r["parent_cpu_s"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
                    figures_r["summary"] = summary
            figures_r["ratio"] = (figures_r["summary"].items_new / figures_r["pipeline_s"]) / (
                len(pages) / figures_r["bare_s"]
            )
            rounds.append(figures_r)
        rss_worker = memory.stop()
        # This process holds the bare run's pages (and the site built once more to list them) from the
        # start, so its peak is shown beside its size before any cycle ran.
        rss_parent = _hwm_mb("self")
        median = sorted(rounds, key=lambda f: f["ratio"])[len(rounds) // 2]
        summary = median["summary"]
        processed = summary.items_new
        pipeline_s, bare_s, parent_cpu = median["pipeline_s"], median["bare_s"], median["parent_cpu_s"]
        bare_rate = len(pages) / bare_s
        pipe_rate = processed / pipeline_s

        # Where a worker's time goes: profile our per-page work on a sample, in this process.
        sample = pages[:200]
        items = [FeedItem(feed_id="b", outlet="b", url=u, canonical_url=u, title="") for u in urls[:200]]
        prof = cProfile.Profile()
        prof.enable()
        for item, raw in zip(items, sample, strict=True):
            build_article(
                item,
                html=decode_html(raw, "text/html; charset=utf-8"),
                final_url=item.url,
                fetched_at=summary_time(),
                languages=("ar",),
            )
        prof.disable()
        shares = stage_shares(prof)
        figures = {
            "pages": args.n,
            "workers": args.workers,
            "indexed": summary.indexed,
            "processed": processed,
            "pipeline_seconds": round(pipeline_s, 2),
            "pipeline_articles_per_s": round(pipe_rate, 1),
            "bare_seconds": round(bare_s, 2),
            "bare_pages_per_s": round(bare_rate, 1),
            "ratio": round(pipe_rate / bare_rate, 3),
            "ratio_each_round": [round(f["ratio"], 3) for f in rounds],
            "parent_cpu_seconds_during_pipeline": round(parent_cpu, 2),
            "stage_seconds": summary.stage_seconds,
            "parent_mb_before_cycles": round(parent_before, 1),
            "parent_peak_mb": round(rss_parent, 1),
            "extraction_worker_peak_mb": round(rss_worker, 1),
            "worker_time_shares": shares,
        }
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            for k, v in figures.items():
                print(f"{k:>28}: {v}")
    finally:
        stop_group(es_proc)
        stop.set()
        server.join(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def summary_time():  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime.now(UTC)


def stage_shares(prof: cProfile.Profile) -> dict[str, float]:
    """Cumulative time of each stage function as a share of the per-page total."""
    stats = pstats.Stats(prof)
    total = 0.0
    found: dict[str, float] = {}
    wanted = {
        "decode_html": "decode",
        "extract_body": "trafilatura",
        "_html_to_text": "feed text",
        "check_language": "language",
        "content_hash": "hash",
        "word_count": "word count",
        "build_article": "total",
    }
    for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if name in wanted and "pipeline" in filename:
            found[wanted[name]] = found.get(wanted[name], 0.0) + ct
            if name == "build_article":
                total += ct
    total += found.get("decode", 0.0)
    return {k: round(v / total, 3) for k, v in sorted(found.items(), key=lambda kv: -kv[1]) if k != "total"}


if __name__ == "__main__":
    main()
