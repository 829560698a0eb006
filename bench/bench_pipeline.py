"""Throughput of the pipeline against bare trafilatura extraction, on the same pages and cores.

Builds N fixture pages (default 2000) spread over feeds, serves them from a loopback HTTP server in its
own process, and runs one full cycle (poll → download → extract → language → dedup → index into the
embedded server). Then runs the same pages, pre-downloaded, through bare ``trafilatura.extract`` on a
process pool of the same size. Prints articles/s for both, the ratio, per-stage time shares (from a
profile of one worker's share of the work) and peak memory (parent and per worker).

    python bench/bench_pipeline.py [-n 2000] [--workers 2]
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
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import trafilatura

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datetime import UTC

from pipeline import index  # noqa: E402
from pipeline.cycle import run_cycle  # noqa: E402
from pipeline.demo.server import SiteServer  # noqa: E402
from pipeline.demo.site import bench_site  # noqa: E402
from pipeline.embedded import start_server, stop_group  # noqa: E402
from pipeline.extract import build_article, decode_html  # noqa: E402
from pipeline.records import FeedConfig, FeedItem  # noqa: E402
from pipeline.settings import Settings  # noqa: E402


def _serve(n: int, port_queue: multiprocessing.Queue, stop: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    server = SiteServer()
    resources, feeds = bench_site(server.base_url, n)
    server.resources = resources
    server.start()
    port_queue.put((server.base_url, feeds))
    stop.wait()
    server.stop()


def _bare(html: bytes) -> int:
    text = trafilatura.extract(html.decode("utf-8", errors="replace"), include_comments=False)
    return len(text or "")


def _peak_rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

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
        es = index.connect(settings, es_url)
        index.ensure_indices(es, settings.es_index)

        t0 = time.perf_counter()
        summary = run_cycle(settings, es, feeds)
        pipeline_s = time.perf_counter() - t0
        processed = summary.items_new

        # The same pages, downloaded beforehand, through bare extraction on the same number of processes.
        urls = [
            hit["_source"]["url"]
            for hit in es.search(index=settings.es_index, size=10000, source=["url"])["hits"]["hits"]
        ]
        with httpx.Client(trust_env=False) as client:
            pages = [client.get(u).content for u in urls]
        t1 = time.perf_counter()
        with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
            list(pool.map(_bare, pages, chunksize=8))
        bare_s = time.perf_counter() - t1
        # Bare extraction processed only the pages that were indexed; scale to the same count.
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
            "peak_rss_parent_mb": round(_peak_rss_mb(resource.RUSAGE_SELF), 1),
            "peak_rss_largest_child_mb": round(_peak_rss_mb(resource.RUSAGE_CHILDREN), 1),
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
        "extract_body": "trafilatura (body+metadata)",
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
