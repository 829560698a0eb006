"""Near-duplicate story clustering across outlets.

An article's fingerprint is a MinHash signature of its word shingles (normalised Arabic: hamza and alef
forms, diacritics, punctuation and digits do not matter) and its *sketch*: the hashes of its shingles in
ascending order. Two texts with shingle similarity J have each of their smallest shingles in common with
probability about J, so two copies almost always share one of their few smallest shingles (8 of them
miss a pair at J = 0.4 once in 600; the 64 MinHash bands of 3 rows used before missed it once in 70),
while unrelated texts rarely do. An article is filed under its first few sketch keys in a bucket store
in Elasticsearch (``lsh.py``), so the state needed to find earlier copies survives restarts and is
shared by every worker. A new article's candidates are the bucket mates within the look-back window; a
candidate is confirmed when the exact shingle similarity of the two texts passes ``threshold``.
Clusters are the connected components of confirmed pairs, and the head of a cluster is its earliest
article (then the smallest id), so clusters come out the same whatever the order in which the articles
arrived.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from datasketch import MinHash  # type: ignore[import-untyped]

from pipeline.arabic.normalize import normalize_for_hash

NUM_PERM = 192  # the signature estimates similarity within 0.035 (one standard error)
SHINGLE = 3
# Sketch keys an extraction worker records on the article (``lsh_bands``); clustering files the article
# under its first keys that are not boilerplate (see ``lsh.py``) and records those instead.
SKETCH_KEYS = 8
SEED = 20151001
# A token's leading conjunction (و) comes and goes between copies of one text; it says nothing.
_CONJUNCTION = re.compile(r"^و(?=\w{3,})")


@dataclass(frozen=True, slots=True)
class Fingerprint:
    bands: tuple[str, ...]  # the first sketch keys (the field keeps the name it had with LSH bands)
    signature: str  # base64 of the uint32 MinHash values

    def values(self) -> np.ndarray:
        return np.frombuffer(base64.b64decode(self.signature), dtype=np.uint32)


def shingles(text: str, *, size: int = SHINGLE) -> frozenset[str]:
    """Word ``size``-grams of the normalised text (a short text gives its words)."""
    tokens = [_CONJUNCTION.sub("", t) for t in normalize_for_hash(text).split()]
    if len(tokens) < size:
        return frozenset(tokens)
    return frozenset(" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1))


def sketch(grams: Iterable[str]) -> list[str]:
    """The shingles' 64-bit hashes (16 hex digits) in ascending order: the keys an article can be filed
    under. The same hash for every article, so copies share their smallest keys."""
    return sorted({hashlib.blake2b(g.encode("utf-8"), digest_size=8).hexdigest() for g in grams})


# The permutations depend only on NUM_PERM and SEED: drawn once per process, not once per article (a
# fifth of the fingerprint's cost). The same values, so the same signatures.
_TEMPLATE = MinHash(num_perm=NUM_PERM, seed=SEED)


def fingerprint(text: str) -> Fingerprint:
    """MinHash signature and first sketch keys of ``text``."""
    minhash = MinHash(num_perm=NUM_PERM, seed=SEED, permutations=_TEMPLATE.permutations, scheme=_TEMPLATE.scheme)
    grams = shingles(text)
    if grams:
        minhash.update_batch([g.encode("utf-8") for g in grams])
    values = minhash.hashvalues.astype(np.uint32)
    keys = tuple(sketch(grams)[:SKETCH_KEYS])
    return Fingerprint(bands=keys, signature=base64.b64encode(values.tobytes()).decode("ascii"))


def estimated_similarity(a: Fingerprint, b: Fingerprint) -> float:
    return float(np.mean(a.values() == b.values()))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two shingle sets."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True, slots=True)
class Node:
    """A new article as clustering sees it."""

    id: str
    published_at: datetime


@dataclass(frozen=True, slots=True)
class Assignment:
    clusters: dict[str, str]  # new article id → its cluster id (the id of the cluster's earliest article)
    repoint: dict[str, str]  # indexed cluster id → the cluster id its articles move to
    changed: frozenset[str]  # cluster ids whose membership changed (their sizes need updating)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def assign(
    new: Sequence[Node],
    pairs: Iterable[tuple[str, str]],
    joins: Iterable[tuple[str, str]],
    heads: Mapping[str, datetime],
) -> Assignment:
    """Clusters for the ``new`` articles: ``pairs`` are confirmed (new id, new id) links, ``joins``
    confirmed (new id, indexed cluster id) links, ``heads`` the publication time of each indexed
    cluster's head (a cluster's id is its head's id).

    Clusters are the connected components; each one's head is its earliest article (published_at, then
    id). Indexed clusters whose head is no longer the earliest are re-pointed to the new head.
    """
    uf = _UnionFind()
    new_ids = {n.id for n in new}
    for n in new:
        uf.find(n.id)
    for a, b in pairs:
        uf.union(a, b)
    for a, cluster_id in joins:
        uf.union(a, "C:" + cluster_id)
    # (published_at, id, is an indexed cluster): an updated article can be both new and a cluster head.
    groups: dict[str, list[tuple[datetime, str, bool]]] = {}
    for n in new:
        groups.setdefault(uf.find(n.id), []).append((n.published_at, n.id, False))
    for cluster_id, when in heads.items():
        if "C:" + cluster_id in uf.parent:
            groups.setdefault(uf.find("C:" + cluster_id), []).append((when, cluster_id, True))
    clusters: dict[str, str] = {}
    repoint: dict[str, str] = {}
    changed: set[str] = set()
    for group in groups.values():
        head = min((when, member) for when, member, _ in group)[1]
        for _, member, indexed in group:
            if not indexed:
                clusters[member] = head
            elif member != head:
                repoint[member] = head
        if len(group) > 1 or head not in new_ids:
            changed.add(head)
    return Assignment(clusters=clusters, repoint=repoint, changed=frozenset(changed))


def merge(links: Iterable[tuple[str, str]], heads: Mapping[str, datetime]) -> dict[str, str]:
    """Indexed clusters to move when ``links`` (pairs of cluster ids) join them: each component goes to its
    earliest head (``heads``: each cluster's head publication time). Returns {cluster id: new cluster id}.
    """
    uf = _UnionFind()
    for a, b in links:
        uf.union(a, b)
    groups: dict[str, list[str]] = {}
    for cluster_id in list(uf.parent):
        groups.setdefault(uf.find(cluster_id), []).append(cluster_id)
    moves: dict[str, str] = {}
    for group in groups.values():
        head = min(group, key=lambda c: (heads[c], c))
        moves.update({c: head for c in group if c != head})
    return moves
