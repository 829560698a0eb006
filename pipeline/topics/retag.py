"""Re-tag indexed articles after a profile changed: read each article's title and body from the index,
match the profiles again, and write back only the tags that changed (bulk partial updates). Nothing is
downloaded."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import Elasticsearch

from pipeline.store import index
from pipeline.store.es import bulk_write
from pipeline.topics.profiles import Profile, tag_article


@dataclass(slots=True)
class RetagSummary:
    scanned: int = 0
    changed: int = 0
    failed: int = 0
    tagged: dict[str, int] = field(default_factory=dict)  # articles carrying each re-tagged profile now


def retag_all(
    es: Elasticsearch,
    alias: str,
    profiles: Sequence[Profile],
    *,
    only: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RetagSummary:
    """Re-tag every article of ``alias`` with ``profiles`` (or, with ``only``, with that one profile,
    leaving the other profiles' tags as they are). A profile no longer in ``profiles`` loses its tags
    when ``only`` is not given."""
    chosen = [p for p in profiles if only is None or p.id == only]
    summary = RetagSummary(tagged={p.id: 0 for p in chosen})
    total = int(es.count(index=alias)["count"])

    def updates() -> Iterator[dict[str, Any]]:
        for hit in index.scan_articles(es, alias, ["title", "body", "topics", "topic_matches"]):
            summary.scanned += 1
            src = hit["_source"]
            topics, matches = tag_article(chosen, title=src.get("title", ""), body=src.get("body", ""))
            if only is not None:
                kept = [m for m in src.get("topic_matches", []) if m.get("profile") != only]
                matches = kept + matches
                topics = [t for t in src.get("topics", []) if t != only] + topics
            for topic in topics:
                if topic in summary.tagged:
                    summary.tagged[topic] += 1
            if progress and summary.scanned % 500 == 0:
                progress(summary.scanned, total)
            if topics != src.get("topics", []) or matches != src.get("topic_matches", []):
                summary.changed += 1
                yield {
                    "_op_type": "update",
                    "_index": alias,
                    "_id": hit["_id"],
                    "doc": {"topics": topics, "topic_matches": matches},
                }

    result = bulk_write(es, updates())
    summary.failed = len(result.failed)
    summary.changed -= summary.failed
    index.refresh(es, alias)
    if progress:
        progress(summary.scanned, total)
    return summary
