"""Tune the clustering on the labelled fixtures: for each shingle size and similarity threshold, the
pairwise precision and recall of the connected components, and how many true pairs the sketch keys would
fail to offer as candidates (neither article's first FILED_KEYS keys among the other's first PROBE_STEP)
and how many false pairs they offer. In memory, no index: the same similarity and components the
pipeline uses.

    python bench/tune_cluster.py
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_cluster_accuracy import load_fixtures, pairwise_scores, to_article  # noqa: E402

from pipeline.store.buckets import FILED_KEYS, PROBE_STEP  # noqa: E402
from pipeline.stories.fingerprint import Node, assign, shingles, similarity, sketch  # noqa: E402


def main() -> None:
    items = load_fixtures()
    articles = [to_article(i) for i in items]
    truth = {a.id: i["cluster"] for a, i in zip(articles, items, strict=True)}
    nodes = [Node(a.id, a.published_at) for a in articles]
    true_pairs = {(x.id, y.id) for x, y in itertools.combinations(articles, 2) if truth[x.id] == truth[y.id]}
    keys = {a.id: sketch(shingles(a.body)) for a in articles}

    def offered(x: str, y: str) -> bool:
        a, b = keys[x], keys[y]
        return bool(set(a[:FILED_KEYS]) & set(b[:PROBE_STEP]) or set(b[:FILED_KEYS]) & set(a[:PROBE_STEP]))

    offers = {(x.id, y.id): offered(x.id, y.id) for x, y in itertools.combinations(articles, 2)}
    missed = sum(1 for pair in true_pairs if not offers[pair])
    false = sum(1 for pair, hit in offers.items() if hit and pair not in true_pairs)
    print(
        f"{len(articles)} articles, {len(set(truth.values()))} stories, {len(true_pairs)} true pairs; "
        f"true pairs the sketch keys do not offer: {missed}; other pairs they offer: {false} of {len(offers)}"
    )
    print(f"{'shingle':>7} {'threshold':>9} {'precision':>9} {'recall':>7} {'F1':>6}")
    for size in (2, 3, 4):
        grams = {a.id: shingles(a.body, size=size) for a in articles}
        sims = {(x.id, y.id): similarity(grams[x.id], grams[y.id]) for x, y in itertools.combinations(articles, 2)}
        for threshold in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6):
            links = [pair for pair, s in sims.items() if s >= threshold]
            predicted = assign(nodes, links, [], {}).clusters
            p, r = pairwise_scores(truth, predicted)
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            print(f"{size:>7} {threshold:>9.2f} {p:>9.3f} {r:>7.3f} {f1:>6.3f}")
        within = [s for pair, s in sims.items() if pair in true_pairs]
        between = [s for pair, s in sims.items() if pair not in true_pairs]
        print(
            f"        size {size}: lowest similarity within a story {min(within):.3f}, "
            f"highest between stories {max(between):.3f}"
        )


if __name__ == "__main__":
    main()
