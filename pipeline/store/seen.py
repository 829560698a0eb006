"""The seen-URL ledger, ``<alias>-seen``: what happened to every feed item taken, so that a page is
downloaded again only when its feed entry says it changed, or after a failure (up to a few attempts)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.records import Article, FeedItem, iso
from pipeline.store.index import Names


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one feed item, for the seen-URL ledger (``<alias>-seen``)."""

    id: str
    canonical_url: str
    feed_id: str
    url: str
    updated_at: str | None  # the feed entry's own "updated" time, ISO
    outcome: str  # indexed | duplicate | language | failed | landed
    reason: str = ""

    @classmethod
    def of(cls, item: FeedItem, outcome: str, reason: str = "") -> Outcome:
        return cls(item.id, item.canonical_url, item.feed_id, item.url, iso(item.updated_at), outcome, reason)

    @classmethod
    def of_article(cls, article: Article, updated_at: str | None, outcome: str, reason: str = "") -> Outcome:
        return cls(article.id, article.canonical_url, article.feed_id, article.url, updated_at, outcome, reason)


def seen_actions(
    alias: str, outcomes: Sequence[Outcome], attempts: Mapping[str, int], now: datetime
) -> Iterator[dict[str, Any]]:
    index_name = Names(alias).seen
    for o in outcomes:
        yield {
            "_op_type": "index",
            "_index": index_name,
            "_id": o.id,
            "_source": {
                "canonical_url": o.canonical_url,
                "feed_id": o.feed_id,
                "outcome": o.outcome,
                "reason": o.reason[:1000],
                "attempts": attempts.get(o.id, 0) + (o.outcome == "failed"),
                "updated_at": o.updated_at,
                "last_seen": iso(now),
            },
        }
