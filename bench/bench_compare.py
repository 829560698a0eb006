"""Cost of ``compare topic`` on a large index.

Fills the embedded server with N synthetic Arabic articles (default 100,000) from 12 outlets over 60
days: sentences of the sample corpus and of the compare fixtures, a share of them tagged with a topic
profile (a different share per outlet, so coverage differs), the tagged ones grouped into story clusters
carried by several outlets at random delays, and two outlets writing the topic in planted vocabulary
(``التدخل الروسي``/``الميليشيات`` and ``الدعم الروسي``/``القوات الحليفة``). Then runs ``compare topic`` on the
whole period (median of 3, with its phases), once more through the command line with ``--html``, and
prints the load time, the search server's memory and whether the planted terms lead their outlets'
distinctive terms.

    nice -n 5 python bench/bench_compare.py [-n 100000] [--rounds 3] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_cluster import sentence_pool  # noqa: E402
from pipeline.analysis.topic import TopicComparison, compare_topic  # noqa: E402
from pipeline.arabic.normalize import normalize_for_hash  # noqa: E402
from pipeline.records import Article, doc_id  # noqa: E402
from pipeline.settings import PROJECT_ROOT, Settings  # noqa: E402
from pipeline.store import index  # noqa: E402
from pipeline.store.embedded import start_server, stop_group  # noqa: E402
from pipeline.store.es import bulk_write, connect
from pipeline.stories.cluster import prepare_index  # noqa: E402

T0 = datetime(2025, 9, 1, tzinfo=UTC)
DAYS = 60
PROFILE = "bench-topic"
ALIAS = "bench-compare"
# Outlet names, how much each publishes, and what share of it is on the topic.
OUTLETS = [
    ("منبر الشام", 1.0, 0.30),
    ("صدى الساحل", 1.2, 0.22),
    ("الوسيط اليومي", 0.8, 0.12),
    ("بوابة النهار", 1.5, 0.05),
    ("نشرة الاقتصاد", 0.6, 0.0),
    ("الشرق اليوم", 1.0, 0.10),
    ("صوت المدينة", 0.9, 0.10),
    ("بوابة الخليج", 1.1, 0.08),
    ("أنباء الضفتين", 0.7, 0.15),
    ("الرافد نيوز", 1.0, 0.10),
    ("منارة الأخبار", 0.8, 0.10),
    ("الساحل برس", 1.0, 0.06),
]
PLANTED = {0: ("التدخل الروسي", "الميليشيات"), 1: ("الدعم الروسي", "القوات الحليفة")}
NEUTRAL = ("الدور الروسي", "الفصائل الرديفة")
FRAMES = [
    "وتأتي هذه التطورات في سياق {ru} الذي يوفر الغطاء الجوي لتقدم {mil} على أطراف المدينة.",
    "ويقول محللون إن {ru} غير ميزان القوى على هذه الجبهة خلال أشهر قليلة.",
    "وتشارك {mil} في الهجوم البري إلى جانب وحدات الجيش.",
    "ويرى مراقبون أن {ru} لم يعد يكفي لحسم المعركة من الجو.",
    "وكانت {mil} قد تلقت شحنات مماثلة في الشهر الماضي.",
]


def topic_pool() -> list[str]:
    spec = yaml.safe_load((PROJECT_ROOT / "tests/fixtures/compare/topic.yaml").read_text(encoding="utf-8"))
    return [s for event in spec["events"] for s in event["backbone"]]


def build(n: int, rng: random.Random) -> list[Article]:
    """N articles; the tagged ones in story clusters of 1-8 outlets."""
    general, topical = sentence_pool(), topic_pool()
    weights = [w for _, w, _ in OUTLETS]
    articles: list[Article] = []
    k = 0
    while len(articles) < n:
        o = rng.choices(range(len(OUTLETS)), weights)[0]
        start = T0 + timedelta(minutes=rng.randrange(DAYS * 1440))
        if rng.random() >= OUTLETS[o][2]:
            body = " ".join(rng.sample(general, 6))
            articles.append(_article(k, OUTLETS[o][0], start, body, cluster=None, topic=False))
            k += 1
            continue
        # A topic story: this outlet first, others of the topic's outlets later, each in its own words.
        story = rng.sample(topical, 3) + rng.sample(general, 2)
        carriers = [o] + [x for x in range(len(OUTLETS)) if x != o and rng.random() < OUTLETS[x][2] * 1.5]
        head = doc_id(f"https://bench.example/{k}")
        for rank, x in enumerate(carriers):
            if len(articles) >= n:
                break
            ru, mil = PLANTED.get(x, NEUTRAL)
            frames = [f.format(ru=ru, mil=mil) for f in rng.sample(FRAMES, 2)]
            when = start + timedelta(minutes=0 if rank == 0 else int(rng.expovariate(1 / 240)))
            body = " ".join(story[:4] + frames + story[4:])
            articles.append(_article(k, OUTLETS[x][0], when, body, cluster=head, topic=True))
            k += 1
    return articles


def _article(k: int, outlet: str, when: datetime, body: str, *, cluster: str | None, topic: bool) -> Article:
    url = f"https://bench.example/{k}"
    return Article(
        url=url,
        canonical_url=url,
        feed_id="bench",
        outlet=outlet,
        title=body.split("،")[0][:80],
        body=body,
        summary="",
        author=None,
        published_at=when,
        fetched_at=when,
        language="ar",
        content_hash=f"h{k}",
        word_count=len(body.split()),
        cluster_id=cluster or "",
        topics=(PROFILE,) if topic else (),
        topic_matches=({"profile": PROFILE, "score": 6.0, "terms": []},) if topic else (),
    )


def _same(a: str, b: str) -> bool:
    return normalize_for_hash(a) == normalize_for_hash(b)


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in the server's process group."""
    total = 0.0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(proc.name)) != pgid:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except (OSError, ProcessLookupError):
            continue
    return total


def timed_compare(es: Any, sample: int) -> tuple[float, dict[str, float], TopicComparison]:
    marks: list[tuple[str, int, float]] = []
    t = time.perf_counter()
    data = compare_topic(
        es, ALIAS, PROFILE, sample=sample, progress=lambda s, d, n: marks.append((s, d, time.perf_counter()))
    )
    total = time.perf_counter() - t
    # queries 0 → bounds; 1 → aggregations; 2 → multi-search (clusters + samples); 3 → statistic; 4 → done
    at = {f"{s}{d}": when for s, d, when in marks if s == "queries"}
    phases = {
        "period (first/last article)": at["queries1"] - at["queries0"],
        "aggregations (one search)": at["queries2"] - at["queries1"],
        "multi-search: clusters' coverage + term samples": at["queries3"] - at["queries2"],
        "terms statistic (client side)": at["queries4"] - at["queries3"],
    }
    return total, phases, data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=5000, help="documents per bulk request")
    parser.add_argument("--data-dir", type=Path, help="keep the filled index here and reuse it next time")
    args = parser.parse_args()
    # A SIGTERM (timeout, kill) must still run the finally block that stops the server we started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    tmp = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-compare-"))
    proc, url = start_server(tmp / "es")
    try:
        settings = Settings(es_url=url, es_index=ALIAS, es_timeout=3600)
        es = connect(settings, url)
        prepare_index(es, ALIAS)
        present = es.count(index=ALIAS)["count"]
        t = time.perf_counter()
        articles = build(args.n, random.Random(7))
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        if present < args.n:
            for start in range(present, args.n, args.chunk):
                result = bulk_write(
                    es, index.article_actions(ALIAS, articles[start : start + args.chunk]), chunk_size=args.chunk
                )
                if result.failed:
                    raise SystemExit(f"bulk failures: {result.failed[:3]}")
                print(f"\rloading: {min(args.n, start + args.chunk)}/{args.n}", end="", file=sys.stderr)
            print(file=sys.stderr)
        es.indices.refresh(index=ALIAS)
        load_s = time.perf_counter() - t
        total = es.count(index=ALIAS)["count"]
        tagged = sum(1 for a in articles if a.topics)
        del articles
        rss_loaded = group_rss_mb(proc.pid)
        runs = [timed_compare(es, args.sample) for _ in range(args.rounds)]
        times = [r[0] for r in runs]
        median = statistics.median(times)
        _, phases, data = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        rss_after = group_rss_mb(proc.pid)
        page = tmp / "report.html"
        t = time.perf_counter()
        cli = subprocess.run(
            [sys.executable, "-m", "pipeline", "compare", "topic", PROFILE, "--json", "--html", str(page)],
            env={**os.environ, "ES_URL": url, "ES_INDEX": ALIAS},
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        cli_s = time.perf_counter() - t
        assert json.loads(cli.stdout)["totals"] == data.to_dict()["totals"]
        top = {o: [t.term for t in e.terms[:5]] for o, e in data.terms.outlets.items()}
        hits = {
            OUTLETS[o][0]: all(any(_same(p, t) for t in top[OUTLETS[o][0]]) for p in ps) for o, ps in PLANTED.items()
        }
        sampled = sum(e.articles_sampled for e in data.terms.outlets.values())
        print(f"articles in the index:             {total:,} ({tagged:,} on the topic, ", end="")
        print(f"{len(OUTLETS)} outlets, {DAYS} days)")
        print(f"generating them:                   {build_s:.1f} s")
        rate = (args.n - present) / max(load_s, 1e-9)
        print(f"loading them (bulk, {args.chunk} a request): {load_s:.0f} s ({rate:.0f} articles/s)")
        print(
            f"compare topic (function):          median {median:.1f} s of {args.rounds} "
            f"({', '.join(f'{x:.1f}' for x in times)})"
        )
        for name, seconds in phases.items():
            print(f"  {name:<48} {seconds:6.1f} s")
        print(f"compare topic --json --html (CLI): {cli_s:.1f} s, report {page.stat().st_size / 1e6:.1f} MB")
        print(
            f"term sample:                       {sampled:,} articles (≤ {args.sample} per outlet), alpha0 "
            f"{data.terms.method.alpha0:,.0f}"
        )
        print(f"planted terms in their outlet's top 5: {hits}")
        for outlet, terms in top.items():
            print(f"  {outlet}: {'، '.join(terms)}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"search server memory (RSS):        {rss_loaded:,.0f} MB loaded, {rss_after:,.0f} MB after the runs")
        print(f"this process peak memory:          {peak:,.0f} MB")
    finally:
        stop_group(proc)
        if args.data_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
