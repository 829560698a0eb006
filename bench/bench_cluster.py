"""Cost of near-duplicate clustering as the index grows.

Fills the embedded server with synthetic Arabic articles (distinct texts built from the sample corpus's
sentences) through the production path (``index_clustered``: look-up, filing in the bucket store,
indexing), and at each checkpoint clusters and indexes batches of new articles against it, a third of
them copies of indexed articles (edited as republished wire copy is). Prints, per checkpoint, the cost
per new article by stage as a cycle spends it (the exact-dedup look-up by id, then ``index_clustered``;
median over the batches), the copies found, the search-based exact-dedup look-up cycles made before,
and the memory of the search server.

The synthetic texts are harsher than news: each is 8 sentences drawn from a pool of 132, so nine in ten
of its shingles are shared with 6 % of all articles (boilerplate to the bucket store).

    python bench/bench_cluster.py [-n 5000,20000,100000] [--batch 200] [--batches 5]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from elasticsearch import Elasticsearch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.demo.site import _corpus  # noqa: E402
from pipeline.records import Article  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store import index  # noqa: E402
from pipeline.store.buckets import indexed_texts  # noqa: E402
from pipeline.store.embedded import start_server, stop_group  # noqa: E402
from pipeline.store.es import connect, get_many
from pipeline.stories.cluster import index_clustered, prepare_index  # noqa: E402
from pipeline.stories.fingerprint import fingerprint  # noqa: E402

T0 = datetime(2025, 10, 1, tzinfo=UTC)
STAGES = ("dedup", "shingles", "lookup", "candidates", "check", "assign", "file", "index", "late", "clusters")


def sentence_pool() -> list[str]:
    corpus = _corpus()
    pool = []
    for item in corpus.items:
        if item.lang == "ar":
            for paragraph in item.paragraphs:
                pool.extend(s.strip() for s in paragraph.replace("؟", ".").split(".") if len(s.split()) > 5)
    return pool


def make_article(
    n: int, rng: random.Random, pool: list[str], *, body: str | None = None, minutes: int = 0, site: str = "bench"
) -> Article:
    if body is None:
        picked = rng.sample(pool, 8)
        body = "\n\n".join(f"{s} ({n}-{k} {rng.randrange(10**6)})." for k, s in enumerate(picked))
    fp = fingerprint(body)
    url = f"https://{site}.example/{n}"
    return Article(
        url=url,
        canonical_url=url,
        feed_id="bench",
        outlet=f"outlet-{n % 40}",
        title=f"خبر {n}",
        body=body,
        summary="",
        author=None,
        published_at=T0 + timedelta(minutes=minutes or n % 40000),
        fetched_at=T0,
        language="ar",
        content_hash=f"h{site}{n}",
        word_count=len(body.split()),
        lsh_bands=fp.bands,
        minhash=fp.signature,
    )


def republish(original: Article, rng: random.Random) -> str:
    paragraphs = original.body.split("\n\n")
    del paragraphs[rng.randrange(len(paragraphs))]  # a dropped paragraph
    paragraphs = [p.replace("أ", "ا").replace("،", ",") for p in paragraphs]  # spelling and punctuation
    return "\n\n".join(paragraphs)


def rss_mb(pid: int | str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def server_rss_mb(data_dir: Path) -> float:
    """Resident memory of the noida-db processes serving ``data_dir``."""
    total = 0.0
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc_dir / "cmdline").read_bytes()
            if b"noida-db" in cmdline and str(data_dir).encode() in cmdline:
                total += rss_mb(proc_dir.name)
        except OSError:
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", default="5000,20000,100000", help="index sizes to measure at (comma-separated)")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--fill-batch", type=int, default=2000)
    parser.add_argument("--data-dir", type=Path, help="keep the filled index here and reuse it next time")
    parser.add_argument("--tag", default="", help="new articles' URLs (measure again on a kept index)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each batch's stages")
    args = parser.parse_args()
    checkpoints = sorted(int(x) for x in args.n.split(","))
    # A SIGTERM (timeout, kill) must still run the finally blocks that stop the servers we started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rng = random.Random(1)
    pool = sentence_pool()
    tmp = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    proc, url = start_server(tmp / "es")
    try:
        settings = Settings(es_url=url, es_index="bench-cluster", es_timeout=600)
        alias = settings.es_index
        es = connect(settings, url)
        prepare_index(es, alias)
        present = es.count(index=f"{alias}-000001", query={"prefix": {"canonical_url": "https://bench.example/"}})
        present_n = present["count"]
        originals: list[Article] = []  # every 100th filled article, to republish later
        fill_s = 0.0
        n = 0
        rows = []
        for checkpoint in checkpoints:
            t = time.perf_counter()
            chunk: list[Article] = []
            while n < checkpoint:
                article = make_article(n, rng, pool)  # made again when reusing an index: the same texts
                if n % 100 == 0:
                    originals.append(article)
                if n >= present_n:
                    chunk.append(article)
                n += 1
                if len(chunk) == args.fill_batch or (n == checkpoint and chunk):
                    index_clustered(
                        es, alias, chunk, threshold=settings.cluster_threshold, window_days=settings.cluster_window_days
                    )
                    chunk = []
                    print(f"\rfilling the index: {n}/{checkpoint}", end="", file=sys.stderr)
            fill_s += time.perf_counter() - t
            print(file=sys.stderr)
            rows.append(measure(es, settings, checkpoint, originals, pool, args, tmp, fill_s))
        print_table(rows, args)
    finally:
        stop_group(proc)
        if args.data_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


def measure(
    es: Elasticsearch,
    settings: Settings,
    checkpoint: int,
    originals: list[Article],
    pool: list[str],
    args: argparse.Namespace,
    tmp: Path,
    fill_s: float,
) -> dict[str, object]:
    alias = settings.es_index
    rng = random.Random(checkpoint)
    site = f"new{args.tag}"
    per_batch: list[dict[str, float]] = []
    texts_ms: list[float] = []
    planted = joined = 0
    batches: list[list[Article]] = []
    for b in range(args.batches):
        batch = []
        copies: dict[str, str] = {}
        for k in range(args.batch):
            n = checkpoint * 10 + b * args.batch + k  # never a filled article's URL
            if k % 3 == 0:
                original = rng.choice(originals)
                minutes = int((original.published_at - T0).total_seconds() // 60) + 30
                copy = make_article(n, rng, pool, body=republish(original, rng), minutes=minutes, site=site)
                copies[copy.id] = original.id
                batch.append(copy)
            else:
                batch.append(make_article(n, rng, pool, site=site))
        batches.append(batch)
        # As a cycle does: the exact-dedup look-up (by id), then clustering and indexing.
        timings: dict[str, float] = {}
        t = time.perf_counter()
        indexed_texts(es, alias, batch)
        timings["dedup"] = time.perf_counter() - t
        clustered, _ = index_clustered(
            es,
            alias,
            batch,
            threshold=settings.cluster_threshold,
            window_days=settings.cluster_window_days,
            timings=timings,
        )
        timings["total"] = time.perf_counter() - t
        per_batch.append({k: v / len(batch) * 1000 for k, v in timings.items()})
        if args.verbose:
            print(" ".join(f"{k} {v:.1f}" for k, v in per_batch[-1].items()), file=sys.stderr)
        heads = get_many(es, alias, sorted(set(copies.values())), fields=["cluster_id"])
        for a in clustered.articles:
            if a.id in copies:
                planted += 1
                joined += a.cluster_id == heads.get(copies[a.id], {}).get("cluster_id")
    # The exact-dedup look-up by id alone, on the same batches, after the timed ones. (The search-based
    # look-up it replaced, measured in the README, is gone from the code.)
    for batch in batches:
        t = time.perf_counter()
        indexed_texts(es, alias, batch)
        texts_ms.append((time.perf_counter() - t) * 1000)
    fp_t = time.perf_counter()
    for a in originals[:200]:
        fingerprint(a.body)
    fp_ms = (time.perf_counter() - fp_t) / min(200, len(originals)) * 1000
    es.indices.refresh(index=[alias, index.Names(alias).lsh])
    row: dict[str, object] = {
        "articles": es.count(index=alias)["count"],
        "slots": es.count(index=index.Names(alias).lsh)["count"],
        "fill_s": fill_s,
        "fingerprint": fp_ms,
        "texts_ms": statistics.median(texts_ms),
        "server_mb": server_rss_mb(tmp),
        "joined": f"{joined}/{planted}",
        "totals": [round(p["total"], 2) for p in per_batch],
    }
    for stage in (*STAGES, "total"):
        row[stage] = statistics.median(p.get(stage, 0.0) for p in per_batch)
    print(
        f"{row['articles']} articles, {row['slots']} slots: {row['total']:.2f} ms per new article "
        f"(batches {row['totals']}), server {row['server_mb']:.0f} MB",
        file=sys.stderr,
    )
    return row


def print_table(rows: list[dict[str, object]], args: argparse.Namespace) -> None:
    print(f"batches of {args.batch} new articles, a third of them copies; medians of {args.batches} batches")
    print("ms per new article by stage:")
    header = ["articles indexed", *STAGES, "total", "exact-dedup look-up by id, ms/batch", "copies found"]
    header += ["slot docs", "server RSS MB", "fill s (cumulative)"]
    print(" | ".join(header))
    for row in rows:
        cells = [str(row["articles"]), *(f"{row[s]:.2f}" for s in (*STAGES, "total"))]
        cells += [f"{row['texts_ms']:.0f}", str(row["joined"]), str(row["slots"])]
        cells += [f"{row['server_mb']:.0f}", f"{row['fill_s']:.0f}"]
        print(" | ".join(cells))
    print(f"fingerprint in the extraction workers: {rows[-1]['fingerprint']:.2f} ms per article")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"this process: {rss_mb('self'):.0f} MB (peak {peak:.0f} MB)")


if __name__ == "__main__":
    main()
