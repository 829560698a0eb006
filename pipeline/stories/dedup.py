"""Exact deduplication, as the design states it.

- One canonical URL is one article: its ``_id`` is a hash of the canonical URL, and the cycle downloads
  each canonical URL once per run however many feeds or links carry it.
- One outlet's identical normalised body under another URL is not indexed again (AMP copies, section
  re-listings). The same text from *different* outlets is kept: analysts compare who ran what, and the
  near-duplicate clustering groups them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.records import Article


@dataclass(frozen=True, slots=True)
class DedupResult:
    keep: list[Article]
    duplicates: list[tuple[Article, str]]  # (dropped article, _id of the article it duplicates)


def drop_exact_duplicates(
    articles: Sequence[Article], indexed: Mapping[tuple[str, str], str], *, rank: Mapping[str, int] | None = None
) -> DedupResult:
    """Drop articles whose (outlet, content_hash) is already indexed under another id (``indexed`` maps
    that pair to the indexed id), or repeats an earlier article of this batch. Within a batch the
    earliest published copy is kept, then the one listed first in the feeds (``rank``: id → position),
    then the smallest URL, so the result does not depend on the order in which pages arrived."""
    rank = rank or {}
    ordered = sorted(articles, key=lambda a: (a.published_at, rank.get(a.id, len(rank)), a.canonical_url))
    owner = dict(indexed)
    keep: list[Article] = []
    duplicates: list[tuple[Article, str]] = []
    for article in ordered:
        key = (article.outlet, article.content_hash)
        first = owner.get(key)
        if first is not None and first != article.id:
            duplicates.append((article, first))
            continue
        owner[key] = article.id
        keep.append(article)
    return DedupResult(keep=keep, duplicates=duplicates)
