"""The clustering stage wired to the index: find each new article's earlier copies (in this batch and
in Elasticsearch), confirm them, and give every article its ``cluster_id`` and ``duplicate_of``.

The pure parts (fingerprints, similarity, the components and their heads) are in ``cluster.py``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from elasticsearch import Elasticsearch

from pipeline import index
from pipeline.cluster import Assignment, Fingerprint, Node, assign, estimated_similarity, shingles, similarity
from pipeline.records import Article

# Candidates whose estimated similarity falls this far below the threshold are not worth an exact check
# (the estimate from 192 permutations has a standard error of about 0.035).
ESTIMATE_MARGIN = 0.15


@dataclass(frozen=True, slots=True)
class Clustered:
    articles: list[Article]  # with cluster_id and duplicate_of set
    assignment: Assignment
    joined: int  # new articles that joined an earlier article's cluster


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def cluster_articles(
    es: Elasticsearch, alias: str, articles: Sequence[Article], *, threshold: float, window_days: int
) -> Clustered:
    """Assign clusters to ``articles`` (not yet indexed) against each other and the index."""
    prints = {a.id: Fingerprint(a.lsh_bands, a.minhash) for a in articles}
    grams = {a.id: shingles(a.body) for a in articles}
    by_id = {a.id: a for a in articles}
    window = window_days * 86400

    # Within the batch: articles sharing a band, close enough in time.
    buckets: dict[str, list[str]] = defaultdict(list)
    for a in articles:
        for band in a.lsh_bands:
            buckets[band].append(a.id)
    seen_pairs: set[tuple[str, str]] = set()
    pairs: list[tuple[str, str]] = []
    for ids in buckets.values():
        for i, x in enumerate(ids):
            for y in ids[i + 1 :]:
                pair = (min(x, y), max(x, y))
                if pair in seen_pairs:
                    continue
                seen_pairs.add(pair)
                if abs((by_id[x].published_at - by_id[y].published_at).total_seconds()) > window:
                    continue
                if estimated_similarity(prints[x], prints[y]) < threshold - ESTIMATE_MARGIN:
                    continue
                if similarity(grams[x], grams[y]) >= threshold:
                    pairs.append(pair)

    # Against the index: one look-up for the batch, candidates by shared band, then the exact check on the
    # few whose signatures look close.
    margin = timedelta(days=window_days)
    hits = (
        index.cluster_candidates(
            es,
            alias,
            buckets.keys(),
            since=(min(a.published_at for a in articles) - margin).isoformat(),
            until=(max(a.published_at for a in articles) + margin).isoformat(),
        )
        if articles
        else []
    )
    close: list[tuple[str, dict[str, str]]] = []
    for hit in hits:
        if hit["_id"] in by_id or not hit.get("minhash"):
            continue  # in this batch too (an update): compared above
        hit_print = Fingerprint((), hit["minhash"])
        hit_time = _when(hit["published_at"])
        for article_id in {i for band in hit.get("lsh_bands", []) for i in buckets.get(band, ())}:
            if abs(by_id[article_id].published_at - hit_time) > margin:
                continue
            if estimated_similarity(prints[article_id], hit_print) >= threshold - ESTIMATE_MARGIN:
                close.append((article_id, hit))
    bodies = index.get_many(es, alias, sorted({hit["_id"] for _, hit in close}), fields=["body"])
    joins: list[tuple[str, str]] = []
    cluster_heads: dict[str, datetime] = {}
    for article_id, hit in close:
        body = bodies.get(hit["_id"], {}).get("body", "")
        if similarity(grams[article_id], shingles(body)) >= threshold:
            joins.append((article_id, hit["cluster_id"]))
            cluster_heads[hit["cluster_id"]] = _when(hit["published_at"])
    # An article taken again after an update stays in the cluster it had.
    previous = index.get_many(es, alias, list(by_id), fields=["cluster_id"])
    for article_id, src in previous.items():
        if src.get("cluster_id"):
            joins.append((article_id, src["cluster_id"]))
    # The heads' own publication times (the hits above may be later members of their clusters).
    heads = index.get_many(es, alias, sorted({c for _, c in joins}), fields=["published_at"])
    for cluster_id, src in heads.items():
        cluster_heads[cluster_id] = _when(src["published_at"])
    for article_id, cluster_id in joins:
        cluster_heads.setdefault(cluster_id, by_id[article_id].published_at)  # head gone: keep the link anyway

    result = assign([Node(a.id, a.published_at) for a in articles], pairs, joins, cluster_heads)
    out = []
    for a in articles:
        head = result.clusters[a.id]
        out.append(replace(a, cluster_id=head, duplicate_of=None if head == a.id else head))
    joined = sum(1 for a in out if a.duplicate_of is not None)
    return Clustered(articles=out, assignment=result, joined=joined)


def index_clustered(
    es: Elasticsearch, alias: str, articles: Sequence[Article], *, threshold: float, window_days: int
) -> tuple[Clustered, index.BulkResult]:
    """Cluster ``articles``, index them, then move indexed clusters whose head changed and update the
    sizes of every cluster that grew. What a cycle does after exact deduplication."""
    clustered = cluster_articles(es, alias, articles, threshold=threshold, window_days=window_days)
    written = index.bulk_write(es, index.article_actions(alias, clustered.articles))
    index.refresh(es, alias)
    index.repoint_clusters(es, alias, clustered.assignment.repoint)
    index.update_cluster_sizes(es, alias, clustered.assignment.changed)
    return clustered, written
