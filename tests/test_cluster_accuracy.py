"""Clustering quality on the labelled fixture set (tests/fixtures/clusters/): pairwise precision and
recall of the clusters built in the real index, with the articles arriving in shuffled batches."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch
from factories import make_article

from pipeline.records import Article
from pipeline.settings import Settings
from pipeline.stories.cluster import index_clustered

FIXTURES = Path(__file__).parent / "fixtures" / "clusters"


def load_fixtures() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        items.extend(yaml.safe_load(path.read_text(encoding="utf-8")))
    return items


def to_article(item: dict[str, Any]) -> Article:
    return make_article(
        f"https://fixtures.example/{item['id']}",
        body=item["body"].strip(),
        outlet=item["outlet"],
        title=item["title"],
        published_at=datetime.fromisoformat(str(item["published_at"]).replace("Z", "+00:00")),
        content_hash=item["id"],
        feed_id="fixtures",
        fingerprinted=True,
    )


def pairs(groups: Iterable[Iterable[str]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for group in groups:
        out.update(itertools.combinations(sorted(group), 2))
    return out


def pairwise_scores(truth: dict[str, str], predicted: dict[str, str]) -> tuple[float, float]:
    def grouped(labels: dict[str, str]) -> list[list[str]]:
        groups: dict[str, list[str]] = {}
        for article_id, label in labels.items():
            groups.setdefault(label, []).append(article_id)
        return list(groups.values())

    true_pairs, predicted_pairs = pairs(grouped(truth)), pairs(grouped(predicted))
    hits = len(true_pairs & predicted_pairs)
    precision = hits / len(predicted_pairs) if predicted_pairs else 1.0
    recall = hits / len(true_pairs) if true_pairs else 1.0
    return precision, recall


@pytest.mark.usefixtures("indexed")
def cluster_in_index(es: Elasticsearch, alias: str, articles: list[Article], seed: int) -> dict[str, str]:
    order = articles[:]
    random.Random(seed).shuffle(order)
    cuts = sorted(random.Random(seed + 1).sample(range(1, len(order)), 3))
    settings = Settings()
    for batch in (order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)):
        index_clustered(
            es, alias, batch, threshold=settings.cluster_threshold, window_days=settings.cluster_window_days
        )
    es.indices.refresh(index=alias)
    hits = es.search(index=alias, size=1000, source_includes=["cluster_id", "duplicate_of", "published_at"])["hits"]
    assert hits["total"]["value"] == len(articles)
    return {h["_id"]: h["_source"]["cluster_id"] for h in hits["hits"]}


@pytest.mark.skipif(not any(FIXTURES.glob("*.yaml")), reason="no labelled cluster fixtures")
def test_clusters_match_the_labels(es: Elasticsearch, alias: str) -> None:
    items = load_fixtures()
    articles = [to_article(i) for i in items]
    truth = {a.id: i["cluster"] for a, i in zip(articles, items, strict=True)}
    assert len(set(truth.values())) >= 40 and len(articles) >= 150
    predicted = cluster_in_index(es, alias, articles, seed=11)
    precision, recall = pairwise_scores(truth, predicted)
    print(
        f"\ncluster fixtures: {len(articles)} articles, {len(set(truth.values()))} stories; "
        f"pairwise precision {precision:.3f}, recall {recall:.3f}"
    )
    assert precision >= 0.98, f"precision {precision:.3f}"
    assert recall >= 0.95, f"recall {recall:.3f}"
    # The head of every cluster is its earliest article.
    times = {a.id: (a.published_at, a.id) for a in articles}
    for cluster_id in set(predicted.values()):
        members = [i for i, c in predicted.items() if c == cluster_id]
        assert cluster_id == min(members, key=lambda i: times[i])
    # Another arrival order, another batching: the same clusters.
    again = cluster_in_index(es, f"{alias}x", articles, seed=99)
    for suffix in ("000001", "feeds", "seen", "alerts", "lsh", "journal"):
        es.indices.delete(index=f"{alias}x-{suffix}", ignore_unavailable=True)
    assert again == predicted
