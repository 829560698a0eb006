"""Throughput of the whole cycle as a user runs it, against bare ``trafilatura.extract`` on the same
pages, the same cores, in the same run.

Builds N distinct Arabic article pages (default 2000, about 90 KB each: the sample outlets' templates
with the chrome of a real news page — mega-menu, inline configuration scripts and styles, "most read"
teasers, related stories, a cookie banner, reader comments, footer links) in feeds of 100 items, and
serves them from a lean HTTP server in another process, listening on 20 loopback addresses
(127.0.0.1 … 127.0.0.20), one per feed group, as 20 news sites would. In each round:

- the cycle: ``python -m pipeline run --json`` as a subprocess (poll, download, extract, cluster, index,
  alerts), into a search server of the round's own (the embedded ``noida-db``, started beforehand), with
  ``EXTRACT_WORKERS`` processes; timed from start to exit, interpreter start-up included;
- bare extraction: the same pages, downloaded beforehand, through ``trafilatura.extract`` (default
  settings but comments, which the pipeline drops too) on a process pool of the same size, pool start-up
  included.

Which one goes first alternates between rounds. Prints per round the articles/s of both and their
ratio, the load average before the round, the cycle's stage shares of its wall time and the CPU used by
the cycle, the search server and the site; then the medians, the peak memory of one extraction worker,
and the share of each step in a worker's time per page (profiled here on a sample).

    python bench/bench_pipeline.py [-n 2000] [--workers 2] [--rounds 3] [--json] [--fallback auto|always]
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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import trafilatura
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.siteserver import LeanServer  # noqa: E402
from pipeline.demo.site import Resource, bench_site  # noqa: E402
from pipeline.ingest.extract import build_article, decode_html  # noqa: E402
from pipeline.records import FeedItem  # noqa: E402
from pipeline.settings import PROJECT_ROOT  # noqa: E402
from pipeline.store.embedded import free_port, start_server, stop_group  # noqa: E402

HOSTS = 20
COOKIE_BANNER = (
    '<div id="cookie-consent" class="cookie-banner" role="dialog"><p>نستخدم ملفات تعريف الارتباط لتحسين تجربتك '
    "وتحليل حركة الزوار وعرض إعلانات تناسب اهتماماتك. بمتابعة التصفح فإنك توافق على سياسة الخصوصية.</p>"
    '<button class="accept">موافق</button> <a href="/privacy">إعدادات الخصوصية</a></div>'
)
COMMENTS = (
    "شكراً على هذا التقرير المفصل، نتمنى متابعة الموضوع في الأيام المقبلة.",
    "أين موقف الجهات الرسمية من كل هذا؟ المواطن ينتظر إجابات واضحة.",
    "تحليل جيد لكن ينقصه رأي الطرف الآخر.",
    "الخبر منشور منذ الصباح في مواقع أخرى.",
)


def _comments(i: int) -> str:
    items = "".join(
        f'<li class="comment"><span class="author">زائر {i % 97 + k}</span>'
        f'<time>منذ {k + 1} ساعة</time><p>{COMMENTS[(i + k) % len(COMMENTS)]}</p><a class="reply">رد</a></li>'
        for k in range(6)
    )
    return (
        f'<section id="comments" class="comments"><h3>التعليقات (6)</h3><ol>{items}</ol>'
        '<form class="comment-form"><textarea placeholder="أضف تعليقك"></textarea><button>إرسال</button></form>'
        "</section>"
    )


def build_sites(port: int, n: int) -> tuple[dict[str, Resource], list[dict[str, Any]]]:
    """The benchmark's pages and feeds, feed k on 127.0.0.(k mod 20 + 1), with a cookie banner and reader
    comments added to every page."""
    base = f"http://127.0.0.1:{port}"
    resources, feeds = bench_site(base, n)
    out: dict[str, Resource] = {}
    for i, (path, res) in enumerate(resources.items()):
        if "/bench/" in path and not path.endswith(".xml"):
            html = res.body.decode("utf-8")
            head, sep, rest = html.partition("<body")
            opening, gt, body = rest.partition(">")
            body = body.replace('<aside class="most-read">', _comments(i) + '<aside class="most-read">', 1)
            res = replace(res, body=(head + sep + opening + gt + COOKIE_BANNER + body).encode("utf-8"))
        out[path] = res
    for k, feed in enumerate(feeds):
        host = f"http://127.0.0.{k % HOSTS + 1}:{port}"
        path = feed["url"].removeprefix(base)
        out[path] = replace(out[path], body=out[path].body.replace(base.encode(), host.encode()))
        feed["url"] = host + path
    return out, feeds


def _serve(n: int, port_queue: multiprocessing.Queue, stop: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    # The port must be known before the site (whose links are absolute) is built: reserve one first.
    port = free_port()
    resources, feeds = build_sites(port, n)
    servers = [LeanServer(resources, port=port, host=f"127.0.0.{h + 1}") for h in range(HOSTS)]
    page_urls = [f"http://127.0.0.1:{port}{p}" for p in resources if "/bench/" in p and not p.endswith(".xml")]
    port_queue.put((feeds, page_urls))
    stop.wait()
    for server in servers:
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


class ChildMemory:
    """Samples the peak memory of the children of ``parent`` (the cycle's extraction workers) while they
    live."""

    def __init__(self, parent: int) -> None:
        self.parent = str(parent)
        self.peak = 0.0
        self.parent_cpu = 0.0  # the coordinating process's own CPU seconds, last seen
        self.workers_cpu: dict[int, float] = {}  # each child's CPU seconds, last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(0.2):
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
                if stat.parent.name == self.parent:
                    self.parent_cpu = cpu
                elif fields[1] == self.parent:
                    self.peak = max(self.peak, _hwm_mb(int(stat.parent.name)))
                    self.workers_cpu[int(stat.parent.name)] = cpu

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def _cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its live descendants (the embedded server runs below
    its console script)."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        pass
    return total


def run_cycle_subprocess(
    feeds: list[dict[str, Any]], workdir: Path, *, workers: int, fallback: str, process_batch: str
) -> dict[str, Any]:
    """One ``python -m pipeline run --json`` into a fresh search server; its summary and figures."""
    workdir.mkdir(parents=True)
    feeds_file = workdir / "feeds.yaml"
    feeds_file.write_text(yaml.safe_dump({"feeds": feeds}, allow_unicode=True), encoding="utf-8")
    es_proc, es_url = start_server(workdir / "es")
    try:
        env = {
            **{k: v for k, v in os.environ.items() if k not in _PIPELINE_VARIABLES},
            "ES_URL": es_url,
            "ES_INDEX": "bench-articles",
            "FEEDS_FILE": str(feeds_file),
            "DATA_DIR": str(workdir / "data"),
            "ALLOW_PRIVATE_HOSTS": "1",
            "EXTRACT_WORKERS": str(workers),
            "EXTRACT_FALLBACK": fallback,
            "ALERT_TO": "analyst@example.org",
            **({"PROCESS_BATCH": process_batch} if process_batch else {}),
        }
        es_cpu0 = _cpu(es_proc.pid)
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", "--json"],
            env=env,
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=(workdir / "run.stderr").open("wb"),
        )
        memory = ChildMemory(proc.pid)
        stdout, _ = proc.communicate(timeout=1800)
        seconds = time.perf_counter() - started
        worker_peak = memory.stop()
        coordinator_cpu = memory.parent_cpu
        workers_cpu = sum(memory.workers_cpu.values())
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"the cycle failed ({proc.returncode}): see {workdir / 'run.stderr'}")
        return {
            "seconds": seconds,
            "summary": json.loads(stdout),
            "worker_peak_mb": worker_peak,
            "cycle_cpu_s": (children1.ru_utime - children0.ru_utime) + (children1.ru_stime - children0.ru_stime),
            "search_server_cpu_s": _cpu(es_proc.pid) - es_cpu0,
            # Sampled every 0.2 s while the run lived: slightly below the final figures.
            "coordinator_cpu_s": coordinator_cpu,
            "workers_cpu_s": workers_cpu,
        }
    finally:
        stop_group(es_proc)


_PIPELINE_VARIABLES = {
    "ES_URL", "ES_INDEX", "ES_API_KEY", "ES_USER", "ES_PASSWORD", "FEEDS_FILE", "PROFILES_DIR", "DATA_DIR",
    "SMTP_URL", "ALERT_TO", "ALERT_FROM", "LANGUAGES", "EXTRACT_WORKERS", "EXTRACT_FALLBACK", "PROCESS_BATCH",
    "FETCH_WORKERS", "FETCH_PER_HOST", "LANDING_URL",
}  # fmt: skip


def stage_shares(summary: dict[str, Any], wall: float) -> dict[str, float]:
    """Each stage's share of the cycle's wall time, as the run summary reports it; start-up is what the
    command spent before and after the cycle (interpreter, imports, connecting, printing)."""
    stages = dict(summary["stage_seconds"])
    overlapped = stages.pop("cluster+index overlapped", 0.0)
    shares = {k: round(v / wall, 3) for k, v in stages.items()}
    shares["start-up and exit"] = round(max(wall - summary["seconds"], 0.0) / wall, 3)
    # Not on the critical path: done while extraction went on (its time is inside poll+download+extract).
    shares["cluster+index while extracting (overlapped)"] = round(overlapped / wall, 3)
    return shares


def worker_shares(pages: list[bytes], urls: list[str], fallback: str) -> dict[str, float]:
    """Where a worker's time per page goes: our per-page work profiled on a sample, in this process."""
    items = [FeedItem(feed_id="b", outlet="b", url=u, canonical_url=u, title="") for u in urls]
    prof = cProfile.Profile()
    now = datetime.now(UTC)
    prof.enable()
    for item, raw in zip(items, pages, strict=True):
        build_article(
            item,
            html=decode_html(raw, "text/html; charset=utf-8"),
            final_url=item.url,
            fetched_at=now,
            languages=("ar",),
            fallback=fallback,
        )
    prof.disable()
    stats = pstats.Stats(prof)
    wanted = {
        "decode_html": "decode",
        "load_html": "HTML parse",
        "bare_extraction": "trafilatura",
        "find_date": "date",
        "check_language": "language",
        "fingerprint": "fingerprint",
        "tag_article": "topic tags",
        "content_hash": "hash",
        "word_count": "word count",
        "build_article": "total",
    }
    found: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if name in wanted and ("pipeline" in filename or name in ("bare_extraction", "load_html", "find_date")):
            found[wanted[name]] = found.get(wanted[name], 0.0) + ct
    total = found.pop("total", 0.0) + found.get("decode", 0.0)
    return {k: round(v / total, 3) for k, v in sorted(found.items(), key=lambda kv: -kv[1])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fallback", choices=("auto", "always"), default="auto", help="EXTRACT_FALLBACK of the cycle")
    parser.add_argument("--process-batch", default="", help="PROCESS_BATCH of the cycle (default: the setting's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # A SIGTERM (timeout, kill) must still run the finally blocks that stop the servers we started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    ctx = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    stop = ctx.Event()
    server = ctx.Process(target=_serve, args=(args.n, ports, stop), daemon=True)
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        feeds, urls = ports.get(timeout=300)
        # The same pages, downloaded beforehand, for bare extraction.
        with httpx.Client(trust_env=False) as client:
            pages = [client.get(u).content for u in urls]
        page_kb = statistics.mean(len(p) for p in pages) / 1024
        rounds = []
        for r in range(args.rounds):
            # Alternate which goes first, so neither always gets the cooler or quieter machine.
            order = ("bare", "cycle") if r % 2 == 0 else ("cycle", "bare")
            figures: dict[str, Any] = {"load_before": round(os.getloadavg()[0], 2)}
            for what in order:
                if what == "bare":
                    started = time.perf_counter()
                    with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
                        list(pool.map(_bare, pages, chunksize=8))
                    figures["bare_s"] = time.perf_counter() - started
                else:
                    site_cpu0 = _cpu(server.pid or 0)
                    figures.update(
                        run_cycle_subprocess(
                            feeds,
                            tmp / f"round-{r}",
                            workers=args.workers,
                            fallback=args.fallback,
                            process_batch=args.process_batch,
                        )
                    )
                    figures["site_cpu_s"] = _cpu(server.pid or 0) - site_cpu0
            summary = figures["summary"]
            figures["cycle_rate"] = summary["items_new"] / figures["seconds"]
            figures["bare_rate"] = len(pages) / figures["bare_s"]
            figures["ratio"] = figures["cycle_rate"] / figures["bare_rate"]
            rounds.append(figures)
            if not args.json:
                print(
                    f"round {r + 1}: cycle {figures['cycle_rate']:.1f} articles/s ({figures['seconds']:.1f} s, "
                    f"{summary['indexed']} indexed), bare {figures['bare_rate']:.1f} pages/s "
                    f"({figures['bare_s']:.1f} s), ratio {figures['ratio']:.3f}, load before {figures['load_before']}",
                    flush=True,
                )
        median = sorted(rounds, key=lambda f: f["ratio"])[len(rounds) // 2]
        summary = median["summary"]
        sample = min(200, len(pages))
        result = {
            "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
            f"Python {sys.version.split()[0]}",
            "pages": len(pages),
            "page_kb": round(page_kb, 1),
            "hosts": HOSTS,
            "workers": args.workers,
            "fallback": args.fallback,
            "rounds": [
                {
                    "cycle_articles_per_s": round(f["cycle_rate"], 1),
                    "cycle_seconds": round(f["seconds"], 2),
                    "indexed": f["summary"]["indexed"],
                    "bare_pages_per_s": round(f["bare_rate"], 1),
                    "bare_seconds": round(f["bare_s"], 2),
                    "ratio": round(f["ratio"], 3),
                    "load_before": f["load_before"],
                }
                for f in rounds
            ],
            "median_ratio": round(statistics.median(f["ratio"] for f in rounds), 3),
            "median_cycle_articles_per_s": round(statistics.median(f["cycle_rate"] for f in rounds), 1),
            "median_bare_pages_per_s": round(statistics.median(f["bare_rate"] for f in rounds), 1),
            "median_round": {
                "stage_seconds": summary["stage_seconds"],
                "stage_shares_of_wall": stage_shares(summary, median["seconds"]),
                "process_batches": summary.get("process_batches"),
                "cycle_cpu_s": round(median["cycle_cpu_s"], 1),
                "coordinator_cpu_s": round(median["coordinator_cpu_s"], 1),
                "extraction_workers_cpu_s": round(median["workers_cpu_s"], 1),
                "search_server_cpu_s": round(median["search_server_cpu_s"], 1),
                "site_cpu_s": round(median["site_cpu_s"], 1),
                "near_duplicates_clustered": summary["near_duplicates_clustered"],
            },
            "extraction_worker_peak_mb": round(max(f["worker_peak_mb"] for f in rounds), 1),
            "worker_time_shares": worker_shares(pages[:sample], urls[:sample], args.fallback),
        }
        if args.json:
            print(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            for k, v in result.items():
                if k != "rounds":
                    print(f"{k:>30}: {v}")
    finally:
        stop.set()
        server.join(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
