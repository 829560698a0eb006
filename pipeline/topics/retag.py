"""Re-tag indexed articles after a profile changed: read each article's title and body from the index,
match the profiles again, and write back only the tags that changed (bulk partial updates). Nothing is
downloaded.

It also fills the exact, normalised text fields (``title_norm``, ``summary_norm``, ``body_norm``) of
articles indexed before they existed, in the same partial updates: after upgrading, one ``retag`` makes
quoted phrases exact on the whole archive (until then the search matches them through the analyzer)."""

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
    normalised: int = 0  # articles given their normalised text fields (indexed before they existed)
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
        # title_norm is read only to see whether the document has the normalised fields (it is short).
        fields = ["title", "summary", "body", "topics", "topic_matches", index.NORMALISED["title"]]
        for hit in index.scan_articles(es, alias, fields):
            summary.scanned += 1
            src = hit["_source"]
            doc: dict[str, Any] = {}
            if index.NORMALISED["title"] not in src:
                summary.normalised += 1
                filled.add(hit["_id"])
                title, body = src.get("title") or "", src.get("body") or ""
                doc.update(index.normalised_fields(title=title, summary=src.get("summary") or "", body=body))
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
                changed.add(hit["_id"])
                doc.update({"topics": topics, "topic_matches": matches})
            if doc:
                yield {"_op_type": "update", "_index": alias, "_id": hit["_id"], "doc": doc}

    changed: set[str] = set()
    filled: set[str] = set()
    result = bulk_write(es, updates())
    failed = {doc_id for doc_id, _ in result.failed}
    summary.failed = len(failed)
    summary.changed -= len(failed & changed)
    summary.normalised -= len(failed & filled)
    index.refresh(es, alias)
    if progress:
        progress(summary.scanned, total)
    return summary
