"""Related coverage of one article: its story cluster (who carried it, when, and how each version's
text differs from the first), then similar stories outside the cluster."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import Elasticsearch

from pipeline.arabic.normalize import normalize_for_hash
from pipeline.records import parse_iso
from pipeline.store import index
from pipeline.store.es import translated

# Sentence ends: Latin and Arabic full stops, question and exclamation marks, semicolons, line breaks.
_SENTENCE_END = re.compile(r"(?<=[.!?؟؛۔])\s+|\n+")
REWORDED = 0.5  # word overlap above which two sentences are one sentence reworded


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) > 1]


def _words(sentence: str) -> set[str]:
    return set(normalize_for_hash(sentence).split())


@dataclass(frozen=True, slots=True)
class TextDiff:
    added: list[str] = field(default_factory=list)  # in this version, not in the first
    removed: list[str] = field(default_factory=list)  # in the first, not in this version
    reworded: list[tuple[str, str]] = field(default_factory=list)  # (first's sentence, this version's)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "reworded": [{"first": a, "this": b} for a, b in self.reworded],
        }


def diff_sentences(first: str, other: str) -> TextDiff:
    """Sentence by sentence on normalised Arabic: spelling, diacritics and punctuation differences do
    not count; a sentence sharing most of its words with one of the other text is "reworded"."""
    a, b = sentences(first), sentences(other)
    a_keys = {normalize_for_hash(s) for s in a}
    b_keys = {normalize_for_hash(s) for s in b}
    only_a = [s for s in a if normalize_for_hash(s) not in b_keys]
    only_b = [s for s in b if normalize_for_hash(s) not in a_keys]
    reworded: list[tuple[str, str]] = []
    unmatched_b = list(only_b)
    removed: list[str] = []
    for s in only_a:
        words = _words(s)
        best, score = None, 0.0
        for t in unmatched_b:
            other_words = _words(t)
            overlap = len(words & other_words) / max(1, len(words | other_words))
            if overlap > score:
                best, score = t, overlap
        if best is not None and score >= REWORDED:
            reworded.append((s, best))
            unmatched_b.remove(best)
        else:
            removed.append(s)
    return TextDiff(added=unmatched_b, removed=removed, reworded=reworded)


_FIELDS = ["title", "outlet", "url", "published_at", "cluster_id", "duplicate_of", "cluster_size", "body", "feed_id"]


def related(es: Elasticsearch, alias: str, article_id: str, *, similar: int = 10) -> dict[str, Any]:
    """The article's cluster in order of publication with each version's differences from the first,
    and up to ``similar`` similar stories from other clusters.

    Raises:
        IndexingError: no such article, or the index cannot be read.
    """
    source = index.get_article(es, alias, article_id, _FIELDS)
    cluster_id = source.get("cluster_id") or article_id
    with translated(f"searching {alias}", url=alias):
        # The headline and the lead say what the story is about; the rest of a body matches too much.
        lead = " ".join(sentences(_without_title(source.get("body", ""), source.get("title", "")))[:2])
        query_text = f"{source.get('title', '')} {lead}"
        others = es.search(
            index=alias,
            size=similar,
            query={
                "bool": {
                    "must": [
                        {
                            "multi_match": {
                                "query": query_text,
                                "fields": ["title^2", "body"],
                                "minimum_should_match": "20%",
                            }
                        }
                    ],
                    "must_not": [{"term": {"cluster_id": cluster_id}}],
                }
            },
            source_includes=["title", "outlet", "url", "published_at", "cluster_id", "cluster_size"],
        )["hits"]["hits"]
    cluster = story_versions(es, alias, cluster_id, this_id=article_id)
    return {
        "article": {"id": article_id, "title": source["title"], "outlet": source["outlet"]},
        "cluster_id": cluster_id,
        "cluster": cluster,
        "similar": [{"id": h["_id"], "score": h.get("_score"), **h["_source"]} for h in others],
    }


def story_versions(
    es: Elasticsearch, alias: str, cluster_id: str, *, this_id: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Every article of a story cluster (up to ``limit``), in order of publication: id, outlet,
    published_at, lag behind the first in minutes, title, url, whether it is ``this_id``, and ``diff``,
    what its text added, dropped or reworded against the first version's (None on the first).
    ``[]`` when no article carries ``cluster_id``.

    Raises:
        IndexingError: the index cannot be read.
    """
    with translated(f"reading {alias}", url=alias):
        members = es.search(
            index=alias,
            size=limit,
            query={"term": {"cluster_id": cluster_id}},
            source_includes=_FIELDS,
            sort=[{"published_at": {"order": "asc"}}],
        )["hits"]["hits"]
    members.sort(key=lambda h: (h["_source"]["published_at"], h["_id"]))
    if not members:
        return []
    first = members[0]["_source"]
    first_time = parse_iso(first["published_at"])
    first_text = _without_title(first.get("body", ""), first.get("title", ""))
    return [
        {
            "id": hit["_id"],
            "outlet": hit["_source"]["outlet"],
            "published_at": hit["_source"]["published_at"],
            "lag_minutes": round((parse_iso(hit["_source"]["published_at"]) - first_time).total_seconds() / 60),
            "title": hit["_source"].get("title", ""),
            "url": hit["_source"].get("url", ""),
            "is_this": hit["_id"] == this_id,
            "diff": None
            if hit is members[0]
            else diff_sentences(
                first_text, _without_title(hit["_source"].get("body", ""), hit["_source"].get("title", ""))
            ).to_dict(),
        }
        for hit in members
    ]


def _without_title(body: str, title: str) -> str:
    """The body without a first line repeating the headline (some pages put the <h1> in the article)."""
    first, _, rest = body.partition("\n")
    return rest.lstrip() if normalize_for_hash(first) == normalize_for_hash(title) else body
