"""Near-duplicate clustering on real writing: the development set ``../shared/corpus-dev`` (451 real
Arabic articles; research use only: read from there, never copied into the repository).

Each article goes through the production path as a cycle takes it: its body fingerprinted as extraction
does, exact duplicates dropped by content hash (``process``'s exact dedup), the rest clustered and
indexed on the embedded server with ``index_clustered`` in shuffled batches of ``--batch``. The final
clusters are read back from the index and scored pairwise against the set's duplicate groups
(``near_dup_group``: word 5-gram Jaccard >= 0.5 between outlets, machine-derived, so a reference rather
than a hand truth). Prints pairwise precision and recall, the exact groups caught by the content hash,
and every pair missed or wrongly joined, with titles.

    python bench/bench_cluster_corpus.py [--corpus ../shared/corpus-dev] [--batch 50] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.arabic.normalize import content_hash, word_count  # noqa: E402
from pipeline.records import Article, doc_id, parse_iso  # noqa: E402
from pipeline.settings import PROJECT_ROOT, Settings  # noqa: E402
from pipeline.store.embedded import start_server, stop_group  # noqa: E402
from pipeline.store.es import connect, get_many  # noqa: E402
from pipeline.stories.cluster import index_clustered, prepare_index  # noqa: E402
from pipeline.stories.fingerprint import fingerprint  # noqa: E402

CORPUS = PROJECT_ROOT.parent / "shared" / "corpus-dev"


def load(corpus: Path) -> tuple[list[Article], dict[str, dict[str, object]]]:
    labels = {
        row["id"]: row for row in map(json.loads, (corpus / "labels.jsonl").read_text(encoding="utf-8").splitlines())
    }
    articles = []
    for line in (corpus / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        body = "\n\n".join(row["paragraphs"])
        print_ = fingerprint(body)
        when = parse_iso(row["published"])
        url = f"https://corpus-dev.example/{row['id']}"  # the id, so a cluster can be scored by label
        articles.append(
            Article(
                url=url,
                canonical_url=url,
                feed_id=row["outlet"],
                outlet=row["outlet"],
                title=row["title"],
                body=body,
                summary="",
                author=None,
                published_at=when,
                fetched_at=when,
                language="ar",
                content_hash=content_hash(body),
                word_count=word_count(body),
                lsh_bands=print_.bands,
                minhash=print_.signature,
            )
        )
    return articles, labels


def pairs(groups: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(a, b) for members in groups.values() for a, b in combinations(sorted(members), 2)}


@dataclass
class Scored:
    articles: int
    exact_dropped: int
    exact_groups: int
    exact_caught: int
    clustered: int
    truth: set[tuple[str, str]]
    found: set[tuple[str, str]]
    titles: dict[str, str] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return len(self.truth & self.found) / len(self.found) if self.found else 1.0

    @property
    def recall(self) -> float:
        return len(self.truth & self.found) / len(self.truth) if self.truth else 1.0


def measure(corpus: Path, *, batch_size: int = 50, seed: int = 1) -> Scored:
    """Cluster the corpus through the production path on a server of its own and score the clusters."""
    articles, labels = load(corpus)
    settings = Settings()
    key = {a.url.rsplit("/", 1)[1]: a for a in articles}
    # Exact dedup as a cycle does it: the first article of each content hash stays.
    kept: dict[str, Article] = {}
    for article in sorted(articles, key=lambda a: a.published_at):
        kept.setdefault(article.content_hash, article)
    exact_groups: dict[str, set[str]] = defaultdict(set)
    for name, row in labels.items():
        if row.get("exact_dup_group"):
            exact_groups[str(row["exact_dup_group"])].add(name)
    caught = sum(1 for members in exact_groups.values() if len({key[m].content_hash for m in members}) == 1)
    survivors = {a.url.rsplit("/", 1)[1] for a in kept.values()}
    order = list(kept.values())
    random.Random(seed).shuffle(order)
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-corpus-"))
    proc, url = start_server(tmp / "es")
    try:
        es = connect(settings.with_(es_url=url), url)
        alias = "corpus-dev"
        prepare_index(es, alias)
        for start in range(0, len(order), batch_size):
            index_clustered(
                es,
                alias,
                order[start : start + batch_size],
                threshold=settings.cluster_threshold,
                window_days=settings.cluster_window_days,
            )
        stored = get_many(es, alias, [doc_id(a.canonical_url) for a in order], fields=["cluster_id", "canonical_url"])
    finally:
        stop_group(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    clusters: dict[str, set[str]] = defaultdict(set)
    for source in stored.values():
        clusters[source["cluster_id"]].add(source["canonical_url"].rsplit("/", 1)[1])
    near: dict[str, set[str]] = defaultdict(set)
    for name, row in labels.items():
        if row.get("near_dup_group") and name in survivors:
            near[str(row["near_dup_group"])].add(name)
    return Scored(
        articles=len(articles),
        exact_dropped=len(articles) - len(kept),
        exact_groups=len(exact_groups),
        exact_caught=caught,
        clustered=len(kept),
        truth=pairs(near),
        found=pairs(clusters),
        titles={name: f"{a.outlet} «{a.title[:50]}»" for name, a in key.items()},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not (args.corpus / "articles.jsonl").is_file():
        print(f"no corpus at {args.corpus} (articles.jsonl, labels.jsonl)", file=sys.stderr)
        return 1
    r = measure(args.corpus, batch_size=args.batch, seed=args.seed)
    print(
        f"{r.articles} articles, {r.exact_dropped} dropped as exact duplicates ({r.exact_caught} of "
        f"{r.exact_groups} labelled exact groups caught by the content hash); {r.clustered} clustered at "
        f"threshold {Settings().cluster_threshold} in batches of {args.batch}"
    )
    print(
        f"pairwise precision {r.precision:.3f}, recall {r.recall:.3f} "
        f"({len(r.truth & r.found)} of {len(r.truth)} labelled pairs found, {len(r.found)} pairs joined)"
    )
    for label, listed in (("missed", r.truth - r.found), ("joined, not labelled", r.found - r.truth)):
        for a, b in sorted(listed):
            print(f"  {label}: {a} {r.titles[a]} ~ {b} {r.titles[b]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
