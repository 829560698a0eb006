"""The clustering stage wired to the index: find each new article's earlier copies (in this batch and
in Elasticsearch), confirm them, and give every article its ``cluster_id`` and ``duplicate_of``.

The pure parts (fingerprints, similarity, the components and their heads) are in ``cluster.py``; the
bucket store that finds candidates is ``buckets.py``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch

from pipeline import log
from pipeline.records import Article, parse_iso
from pipeline.store import buckets, index
from pipeline.store.es import BulkResult, bulk_write, get_many
from pipeline.stories.fingerprint import (
    Assignment,
    Fingerprint,
    Node,
    assign,
    fingerprint,
    merge,
    shingles,
    similarity,
    sketch,
)

_log = log.get(__name__)
# Candidates whose estimated similarity falls this far below the threshold are not worth an exact check
# (the estimate from 192 permutations has a standard error of about 0.035).
ESTIMATE_MARGIN = 0.15


@dataclass(frozen=True, slots=True)
class Clustered:
    articles: list[Article]  # with cluster_id, duplicate_of and lsh_bands (the keys filed under) set
    assignment: Assignment
    joined: int  # new articles that joined an earlier article's cluster
    probe: buckets.Probe | None = None  # the buckets read, for filing the articles
    # Candidates whose article was not indexed yet (another worker between filing and indexing it) →
    # the new articles to compare them with once ours are indexed.
    pending: Mapping[str, frozenset[str]] = field(default_factory=dict)
    grams: Mapping[str, frozenset[str]] = field(default_factory=dict)  # article id → its shingles (made once)


def _values(signature: str) -> np.ndarray:
    return Fingerprint((), signature).values()


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The share of MinHash values two signatures have in common (``estimated_similarity`` on decoded ones)."""
    return int(np.count_nonzero(a == b)) / max(len(a), 1)


class _Checker:
    """The exact check of a new article against an indexed one, after a cheap look at their signatures.
    Shingles and decoded signatures are made once per article (``grams`` gives those made already): a
    batch compares each article with many candidates."""

    def __init__(
        self,
        articles: Sequence[Article],
        *,
        threshold: float,
        window_days: int,
        grams: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        known = grams or {}
        self.by_id = {a.id: a for a in articles}
        self.grams = {a.id: known[a.id] if a.id in known else shingles(a.body) for a in articles}
        self._sigs: dict[str, np.ndarray] = {}
        self.threshold = threshold
        self.window = window_days * 86400

    def signature(self, article_id: str) -> np.ndarray:
        """The article's decoded MinHash signature (decoded when first compared: most articles are not)."""
        if article_id not in self._sigs:
            article = self.by_id[article_id]
            self._sigs[article_id] = _values(article.minhash or fingerprint(article.body).signature)
        return self._sigs[article_id]

    def in_window(self, article_id: str, epoch: float) -> bool:
        return abs(self.by_id[article_id].published_at.timestamp() - epoch) <= self.window

    def close(self, article_id: str, doc: Mapping[str, Any], signature: np.ndarray | None = None) -> bool:
        """``signature``: the doc's decoded ``minhash``, when the caller decoded it once for many articles."""
        if not doc.get("minhash") or not doc.get("published_at"):
            return False
        if not self.in_window(article_id, parse_iso(doc["published_at"]).timestamp()):
            return False
        theirs = signature if signature is not None else _values(doc["minhash"])
        return _agreement(self.signature(article_id), theirs) >= self.threshold - ESTIMATE_MARGIN

    def same_story(self, article_id: str, other: frozenset[str]) -> bool:
        return similarity(self.grams[article_id], other) >= self.threshold


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the index holds about a batch's candidates, read by id before anything is decided."""

    docs: Mapping[str, Mapping[str, Any]]  # candidate id → its cluster_id, minhash, published_at
    bodies: Mapping[str, str]  # candidate id → body, for the candidates worth an exact check
    previous: Mapping[str, str]  # batch article id → the cluster it had (an article taken again)
    heads: Mapping[str, datetime]  # cluster id → its head's publication time
    grams: Mapping[str, frozenset[str]] = field(default_factory=dict)  # candidate id → shingles made already


def read_evidence(es: Elasticsearch, alias: str, check: _Checker, candidates: Mapping[str, set[str]]) -> Evidence:
    """The reads a clustering step makes, all by id: the candidates' signatures, the bodies of those
    worth an exact check, the batch's own earlier clusters, and the heads of every cluster met.

    An article joins a cluster when any one of the cluster's members is confirmed, so the bodies are read
    in two rounds: for each (article, cluster), first its candidate with the closest signature; the others
    only where that one was not confirmed. A story carried twenty times costs one body and one exact
    check per new copy, not twenty."""
    docs = get_many(es, alias, sorted(candidates), fields=["cluster_id", "minhash", "published_at"])
    # (article, cluster) → its close candidates, closest signature first
    close: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
    for m, doc in docs.items():
        if not doc.get("minhash") or not doc.get("cluster_id"):
            continue
        theirs = _values(doc["minhash"])
        for a in candidates[m]:
            if check.close(a, doc, theirs):
                close[(a, str(doc["cluster_id"]))].append((-_agreement(check.signature(a), theirs), m))
    for ranked in close.values():
        ranked.sort()
    bodies: dict[str, str] = {}
    grams: dict[str, frozenset[str]] = {}

    def read(ids: set[str]) -> None:
        for m, src in get_many(es, alias, sorted(ids - set(bodies)), fields=["body"]).items():
            bodies[m] = str(src.get("body") or "")

    read({ranked[0][1] for ranked in close.values()})
    unconfirmed: set[str] = set()
    for (a, _), ranked in close.items():
        first = ranked[0][1]
        if first in bodies:
            if first not in grams:
                grams[first] = shingles(bodies[first])
            if check.same_story(a, grams[first]):
                continue
        unconfirmed.update(m for _, m in ranked[1:])
    if unconfirmed:
        read(unconfirmed)
    previous = {
        i: str(src["cluster_id"])
        for i, src in get_many(es, alias, list(check.by_id), fields=["cluster_id"]).items()
        if src.get("cluster_id")
    }
    clusters = sorted({str(doc["cluster_id"]) for doc in docs.values()} | set(previous.values()))
    heads = {
        c: parse_iso(src["published_at"]) for c, src in get_many(es, alias, clusters, fields=["published_at"]).items()
    }
    return Evidence(docs=docs, bodies=bodies, previous=previous, heads=heads, grams=grams)


def _batch_pairs(check: _Checker, found: buckets.Probe, *, threshold: float) -> list[tuple[str, str]]:
    """Copies within the batch: articles sharing a key they looked at, close enough in time. A key that
    this batch and the index together hold CAP times is boilerplate here too."""
    by_id = check.by_id
    shared: dict[str, list[str]] = defaultdict(list)
    for article_id in by_id:
        for key in found.looked[article_id]:
            shared[key].append(article_id)
    seen_pairs: set[tuple[str, str]] = set()
    pairs: list[tuple[str, str]] = []
    # Only the components matter (``assign``): a pair already joined through others needs no check.
    component: dict[str, str] = {}

    def find(x: str) -> str:
        while component.get(x, x) != x:
            x = component[x]
        return x

    for key, ids in shared.items():
        if len(ids) + len(found.buckets[key].members) >= buckets.CAP:
            continue
        for i, x in enumerate(ids):
            for y in ids[i + 1 :]:
                pair = (min(x, y), max(x, y))
                if pair in seen_pairs:
                    continue
                seen_pairs.add(pair)
                if find(x) == find(y) or not check.in_window(x, by_id[y].published_at.timestamp()):
                    continue
                if _agreement(check.signature(x), check.signature(y)) < threshold - ESTIMATE_MARGIN:
                    continue
                if check.same_story(x, check.grams[y]):
                    pairs.append(pair)
                    rx, ry = find(x), find(y)
                    component[max(rx, ry)] = min(rx, ry)
    return pairs


def _candidates(check: _Checker, found: buckets.Probe) -> dict[str, set[str]]:
    """Indexed article id → the new articles it may be a copy of: bucket mates within the window."""
    candidates: dict[str, set[str]] = defaultdict(set)
    for article_id in check.by_id:
        for key in found.looked[article_id]:
            for member in found.buckets[key].members:
                if member.article_id not in check.by_id and check.in_window(article_id, member.published_at):
                    candidates[member.article_id].add(article_id)
    return candidates


def confirm_and_assign(
    articles: Sequence[Article],
    check: _Checker,
    pairs: Sequence[tuple[str, str]],
    candidates: Mapping[str, set[str]],
    evidence: Evidence,
) -> Assignment:
    """The pure half of a clustering step: confirm the candidates whose signature looks close by the
    exact similarity of their texts, then give every article its cluster (``cluster.assign``)."""
    joins: list[tuple[str, str]] = []
    joined: set[tuple[str, str]] = set()
    cluster_heads: dict[str, datetime] = {}
    grams = dict(evidence.grams)
    for other, doc in evidence.docs.items():
        if other not in evidence.bodies or not doc.get("minhash"):
            continue
        theirs = _values(doc["minhash"])
        cluster_id = str(doc["cluster_id"])
        for article_id in sorted(candidates[other]):
            # One confirmed member is enough for the article to join the cluster.
            if (article_id, cluster_id) in joined or not check.close(article_id, doc, theirs):
                continue
            if other not in grams:
                grams[other] = shingles(evidence.bodies[other])
            if check.same_story(article_id, grams[other]):
                joins.append((article_id, cluster_id))
                joined.add((article_id, cluster_id))
                # A stand-in until the head's own time is known: no member is earlier than its head.
                when = parse_iso(doc["published_at"])
                cluster_heads[cluster_id] = min(cluster_heads.get(cluster_id, when), when)
    # An article taken again after an update stays in the cluster it had.
    joins.extend(evidence.previous.items())
    for _, cluster_id in joins:
        if cluster_id in evidence.heads:
            cluster_heads[cluster_id] = evidence.heads[cluster_id]
    for article_id, cluster_id in joins:
        cluster_heads.setdefault(cluster_id, check.by_id[article_id].published_at)  # head gone: keep the link
    return assign([Node(a.id, a.published_at) for a in articles], pairs, joins, cluster_heads)


def cluster_articles(
    es: Elasticsearch,
    alias: str,
    articles: Sequence[Article],
    *,
    threshold: float,
    window_days: int,
    timings: dict[str, float] | None = None,
) -> Clustered:
    """Assign clusters to ``articles`` (not yet indexed) against each other and the index: read the
    candidates (bucket store, then the index, by id), then confirm and assign without another read.
    ``timings`` receives the seconds spent per stage."""
    laps = log.Laps(timings)
    check = _Checker(articles, threshold=threshold, window_days=window_days)
    # In filing order: when the batch crowds a bucket, its earliest articles are the ones filed there.
    order = sorted(articles, key=lambda a: (a.published_at, a.id))
    sketches = {a.id: sketch(check.grams[a.id]) for a in order}
    laps.lap("shingles")
    found = buckets.probe(es, alias, sketches)
    pairs = _batch_pairs(check, found, threshold=threshold)
    candidates = _candidates(check, found)
    laps.lap("lookup")
    evidence = read_evidence(es, alias, check, candidates)
    laps.lap("candidates")
    result = confirm_and_assign(articles, check, pairs, candidates, evidence)
    laps.lap("check")
    out = []
    for a in articles:
        head = result.clusters[a.id]
        filed = tuple(found.filed[a.id])
        out.append(replace(a, cluster_id=head, duplicate_of=None if head == a.id else head, lsh_bands=filed))
    joined = sum(1 for a in out if a.duplicate_of is not None)
    pending = {m: frozenset(ids) for m, ids in candidates.items() if m not in evidence.docs}
    laps.lap("assign")
    return Clustered(articles=out, assignment=result, joined=joined, probe=found, pending=pending, grams=check.grams)


def file_clustered(es: Elasticsearch, alias: str, clustered: Clustered) -> tuple[Clustered, buckets.Filed]:
    """File each article under its sketch keys and its text key, except where it is filed already (a
    retried batch, an updated article). Returns the articles with the sketch keys they are filed under
    in ``lsh_bands`` (a slot lost to a bucket crowded meanwhile is not)."""
    found = clustered.probe or buckets.Probe(buckets={}, looked={}, filed={})
    articles, filed = buckets.file_under(es, alias, clustered.articles, found)
    return replace(clustered, articles=articles), filed


def reconcile(
    es: Elasticsearch,
    alias: str,
    clustered: Clustered,
    late: Mapping[str, Iterable[buckets.Member]],
    *,
    threshold: float,
    window_days: int,
) -> dict[str, str]:
    """Merges for copies another worker indexed while this batch was being clustered: ``late`` are the
    members met in our buckets after our look-up (``buckets.read_late``), and the candidates the look-up met
    whose article was not indexed yet. Returns {cluster id: cluster id it moves to}, usually empty."""
    by_id = {a.id: a for a in clustered.articles}
    filed_under: dict[str, list[str]] = defaultdict(list)
    for a in clustered.articles:
        for key in (*a.lsh_bands, buckets.text_key(a.outlet, a.content_hash)):
            filed_under[key].append(a.id)
    # indexed article id → new articles to compare it with
    unresolved: dict[str, set[str]] = defaultdict(set, {m: set(ids) for m, ids in clustered.pending.items()})
    for key, members in late.items():
        for member in members:
            if member.article_id not in by_id:
                unresolved[member.article_id].update(filed_under.get(key, ()))
    if not unresolved:
        return {}
    check = _Checker(clustered.articles, threshold=threshold, window_days=window_days, grams=clustered.grams)
    docs = get_many(es, alias, sorted(unresolved), fields=["cluster_id", "minhash", "published_at", "body"])
    links: list[tuple[str, str]] = []
    heads: dict[str, datetime] = {}
    for other, doc in docs.items():
        for article_id in sorted(unresolved[other]):
            if check.close(article_id, doc) and check.same_story(article_id, shingles(doc.get("body", ""))):
                ours = check.by_id[article_id]
                links.append((ours.cluster_id, doc["cluster_id"]))
                # Stand-ins until the heads are read (a head may be gone): a member is no earlier than its head.
                heads.setdefault(ours.cluster_id, ours.published_at)
                heads.setdefault(doc["cluster_id"], parse_iso(doc["published_at"]))
    if not links:
        return {}
    for cluster_id, src in get_many(es, alias, sorted(heads), fields=["published_at"]).items():
        heads[cluster_id] = parse_iso(src["published_at"])
    return merge(links, heads)


def update_clusters(
    es: Elasticsearch, alias: str, articles: Sequence[Article], moves: Mapping[str, str], changed: Iterable[str]
) -> None:
    """After ``articles`` are indexed: move every article of each cluster in ``moves`` to the cluster it
    moves to, record each cluster's members in its run (``buckets.cluster_key``), and set ``cluster_size`` on
    every article of the clusters that changed. By id only.

    Workers running at once: a member counts when its document says it is in the cluster or in a cluster
    moving into it (listed in the run, by us or by another worker); a cluster another worker moved away
    meanwhile is followed; and the runs are read again after each write until nothing changed, so of two
    workers growing or moving one cluster at once, the last to write has seen what the other filed.

    Raises:
        IndexingError: the cluster could not be reached, or could not take some writes now.
    """
    moves = dict(moves)

    def final(cluster_id: str) -> str:
        seen = set()
        while cluster_id in moves and cluster_id not in seen:
            seen.add(cluster_id)
            cluster_id = moves[cluster_id]
        return cluster_id

    heads = {*changed, *moves}
    written: dict[str, set[str]] = {}
    for _ in range(8):  # two rounds unless other workers keep changing these clusters
        targets = {final(c) for c in heads}
        if not targets:
            return
        sources = {c for c in moves if final(c) in targets}
        runs = buckets.read_runs(es, alias, [buckets.cluster_key(c) for c in targets | sources])
        listed: dict[str, set[str]] = {c: set() for c in targets}  # cluster → articles that may be in it
        for c in targets | sources:
            listed[final(c)] |= {c, *(m.article_id for m in runs[buckets.cluster_key(c)].members)}
        for a in articles:
            listed.get(final(a.cluster_id), set()).add(a.id)
        state = get_many(es, alias, sorted(set().union(*listed.values())), fields=["cluster_id", "published_at"])
        away = {c: state[c]["cluster_id"] for c in targets if state.get(c, {}).get("cluster_id", c) not in listed[c]}
        if away:  # another worker moved these clusters: follow them
            moves.update(away)
            heads |= set(away.values())
            continue
        entries: list[tuple[str, buckets.Member]] = []
        actions: list[dict[str, Any]] = []
        for c in sorted(targets):
            members = {i for i in listed[c] if i in state and state[i].get("cluster_id") in listed[c]}
            in_run = {m.article_id for m in runs[buckets.cluster_key(c)].members}
            for i in sorted(members - in_run - {c}):
                entries.append(
                    (buckets.cluster_key(c), buckets.Member(i, int(parse_iso(state[i]["published_at"]).timestamp())))
                )
            moved = {i for i in members if state[i]["cluster_id"] != c and final(state[i]["cluster_id"]) == c}
            if members == written.get(c) and not moved:
                continue
            written[c] = members
            for i in sorted(members):
                doc: dict[str, Any] = {"cluster_size": len(members)}
                if i in moved:
                    doc.update(cluster_id=c, duplicate_of=None if i == c else c)
                actions.append({"_op_type": "update", "_index": alias, "_id": i, "doc": doc})
        if not entries and not actions:
            return
        buckets.file_articles(es, alias, entries, runs, limit=None)  # runs first: a crash leaves no member unlisted
        bulk_write(es, actions).raise_if_transient("updating clusters")


def index_clustered(
    es: Elasticsearch,
    alias: str,
    articles: Sequence[Article],
    *,
    threshold: float,
    window_days: int,
    timings: dict[str, float] | None = None,
) -> tuple[Clustered, BulkResult]:
    """Cluster ``articles``, file them in the bucket store, index them, then move indexed clusters whose
    head changed and update the sizes of every cluster that grew. What a cycle does after exact
    deduplication. Reads and writes by id only, and no refresh (on the embedded server a search or a
    refresh costs seconds at 100,000 articles): the caller refreshes once it is done writing.

    The buckets are written before the articles: a crash between the two leaves a slot whose article is
    missing (skipped by look-ups, and found as already filed when the article is retried), never an
    indexed article that later copies cannot find.

    Raises:
        IndexingError: the cluster could not be reached, or could not take the bucket or cluster writes
            now (retry the batch).
    """
    clustered = cluster_articles(es, alias, articles, threshold=threshold, window_days=window_days, timings=timings)
    laps = log.Laps(timings)
    clustered, filed = file_clustered(es, alias, clustered)
    laps.lap("file")
    written = bulk_write(es, index.article_actions(alias, clustered.articles))
    laps.lap("index")
    late = buckets.read_late(es, alias, filed)
    moves = reconcile(es, alias, clustered, late, threshold=threshold, window_days=window_days)
    laps.lap("late")
    ok = set(written.ok)
    update_clusters(
        es,
        alias,
        [a for a in clustered.articles if a.id in ok],
        {**clustered.assignment.repoint, **moves},
        clustered.assignment.changed | set(moves.values()),
    )
    laps.lap("clusters")
    return clustered, written


def prepare_index(es: Elasticsearch, alias: str) -> None:
    """The indices (``index.ensure_indices``), and, on an alias made before the near-duplicate bucket
    store existed, its articles filed there once so that they are found as earlier copies and exact
    duplicates (one pass over the index). What every command and task runs before it reads or writes.

    Raises:
        IndexingError: the cluster refused, or could not take the writes now.
    """
    if index.ensure_indices(es, alias):
        filed = backfill(es, alias)
        _log.info("index.backfilled", alias=alias, articles=filed)


def backfill(es: Elasticsearch, alias: str, *, batch: int = 500) -> int:
    """File the articles indexed before the bucket store existed (an index upgraded in place): their
    sketch and text keys, and their clusters' runs; ``lsh_bands`` is rewritten to the keys filed under.
    Clusters are left as they are. Idempotent; one pass over the index (a search), so run it once, off
    the hot path. Returns the number of articles read.

    Raises:
        IndexingError: the index cannot be read, or the cluster could not take the writes now.
    """
    fields = ["url", "canonical_url", "feed_id", "outlet", "published_at", "fetched_at", "language"]
    fields += ["content_hash", "body", "cluster_id"]
    runs: dict[str, list[buckets.Member]] = defaultdict(list)
    chunk: list[Article] = []
    count = 0

    def flush() -> None:
        order = sorted(chunk, key=lambda a: (a.published_at, a.id))
        found = buckets.probe(es, alias, {a.id: sketch(shingles(a.body)) for a in order})
        filed, _ = buckets.file_under(es, alias, order, found)
        actions = [
            {"_op_type": "update", "_index": alias, "_id": a.id, "doc": {"lsh_bands": list(a.lsh_bands)}} for a in filed
        ]
        bulk_write(es, actions).raise_if_transient("recording filed keys")
        chunk.clear()

    for hit in index.scan_articles(es, alias, fields):
        article = Article.from_doc(hit["_source"])
        chunk.append(article)
        cluster_id = hit["_source"].get("cluster_id") or article.id
        if cluster_id != article.id:
            runs[cluster_id].append(buckets.Member(article.id, int(article.published_at.timestamp())))
        count += 1
        if len(chunk) == batch:
            flush()
    if chunk:
        flush()
    have = buckets.read_runs(es, alias, [buckets.cluster_key(c) for c in runs])
    entries = [
        (buckets.cluster_key(c), m)
        for c, members in sorted(runs.items())
        for m in members
        if all(x.article_id != m.article_id for x in have[buckets.cluster_key(c)].members)
    ]
    buckets.file_articles(es, alias, entries, have, limit=None)
    return count
