"""Cost of near-duplicate clustering with a large index.

Fills the embedded server with N synthetic Arabic articles (default 100,000; distinct texts built from
the sample corpus's sentences, with their MinHash bands), then clusters and indexes batches of new
articles against it, a third of them copies of indexed articles (edited as republished wire copy is).
Prints the clustering cost per article (fingerprint, candidate look-up, exact checks, assignment), the
index size, and the memory of this process and of the search server.

    python bench/bench_cluster.py [-n 100000] [--batch 500] [--batches 4]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import index  # noqa: E402
from pipeline.cluster import fingerprint  # noqa: E402
from pipeline.clustering import index_clustered  # noqa: E402
from pipeline.demo.site import _corpus  # noqa: E402
from pipeline.embedded import start_server, stop_group  # noqa: E402
from pipeline.records import Article  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

T0 = datetime(2025, 10, 1, tzinfo=UTC)


def sentence_pool() -> list[str]:
    corpus = _corpus()
    pool = []
    for item in corpus.items:
        if item.lang == "ar":
            for paragraph in item.paragraphs:
                pool.extend(s.strip() for s in paragraph.replace("؟", ".").split(".") if len(s.split()) > 5)
    return pool


def make_article(n: int, rng: random.Random, pool: list[str], *, body: str | None = None, minutes: int = 0) -> Article:
    if body is None:
        picked = rng.sample(pool, 8)
        body = "\n\n".join(f"{s} ({n}-{k} {rng.randrange(10**6)})." for k, s in enumerate(picked))
    fp = fingerprint(body)
    url = f"https://bench.example/{n}"
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
        content_hash=f"h{n}",
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--data-dir", type=Path, help="keep the filled index here and reuse it next time")
    args = parser.parse_args()
    # A SIGTERM (timeout, pkill) must still run the finally blocks that stop the servers we started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rng = random.Random(1)
    pool = sentence_pool()
    tmp = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    proc, url = start_server(tmp / "es")
    try:
        settings = Settings(es_url=url, es_index="bench-cluster", es_timeout=600)
        es = index.connect(settings, url)
        index.ensure_indices(es, settings.es_index)
        t = time.perf_counter()
        chunk: list[Article] = []
        indexed: list[Article] = []
        present = es.count(index=settings.es_index)["count"]
        for n in range(args.n):
            article = make_article(n, rng, pool)  # made again when reusing an index: the same texts
            if n % 100 == 0:
                indexed.append(article)  # kept to republish later
            if n >= present:
                chunk.append(article)
            if len(chunk) == 2000 or (n == args.n - 1 and chunk):
                index.bulk_write(es, index.article_actions(settings.es_index, chunk))
                chunk = []
                print(f"\rfilling the index: {n + 1}/{args.n}", end="", file=sys.stderr)
        es.indices.refresh(index=settings.es_index)
        fill_s = time.perf_counter() - t
        print(file=sys.stderr)
        costs = []
        joined = 0
        for b in range(args.batches):
            batch = []
            for k in range(args.batch):
                n = args.n + b * args.batch + k
                if k % 3 == 0:
                    original = rng.choice(indexed)
                    batch.append(
                        make_article(
                            n,
                            rng,
                            pool,
                            body=republish(original, rng),
                            minutes=int((original.published_at - T0).total_seconds() // 60) + 30,
                        )
                    )
                else:
                    batch.append(make_article(n, rng, pool))
            t = time.perf_counter()
            clustered, _ = index_clustered(
                es,
                settings.es_index,
                batch,
                threshold=settings.cluster_threshold,
                window_days=settings.cluster_window_days,
            )
            costs.append((time.perf_counter() - t) / len(batch))
            joined += clustered.joined
        fp_t = time.perf_counter()
        for a in batch[:200]:
            fingerprint(a.body)
        fp_ms = (time.perf_counter() - fp_t) / 200 * 1000
        total = es.count(index=settings.es_index)["count"]
        print(f"articles in the index:          {total}")
        print(f"filling the index:              {fill_s:.0f} s ({args.n / fill_s:.0f} articles/s, bulk)")
        print(
            f"clustering + indexing per new article: {1000 * sorted(costs)[len(costs) // 2]:.2f} ms "
            f"(median of {args.batches} batches of {args.batch}; each: {[round(c * 1000, 2) for c in costs]})"
        )
        print(f"  of which the fingerprint (in the extraction workers): {fp_ms:.2f} ms")
        print(f"copies joined to their original: {joined} of {args.batches * ((args.batch + 2) // 3)} planted")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        server = sum(rss_mb(p.name) for p in Path("/proc").glob("[0-9]*") if _is_noida(p))
        print(f"memory: this process {rss_mb('self'):.0f} MB (peak {peak:.0f} MB), search server {server:.0f} MB")
    finally:
        stop_group(proc)
        if args.data_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _is_noida(proc_dir: Path) -> bool:
    try:
        return (
            b"noida-db" in (proc_dir / "cmdline").read_bytes()
            and b"bench-cluster-" in (proc_dir / "cmdline").read_bytes()
        )
    except OSError:
        return False


if __name__ == "__main__":
    main()
