"""Exact deduplication: pure functions, order independence."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from factories import make_article

from pipeline.records import Article
from pipeline.stories.dedup import drop_exact_duplicates

T0 = datetime(2025, 10, 3, 9, 0, tzinfo=UTC)


def art(url: str, outlet: str, text_hash: str, minutes: int = 0) -> Article:
    return make_article(
        url, body="b", outlet=outlet, title="t", published_at=T0 + timedelta(minutes=minutes), fetched_at=T0,
        content_hash=text_hash,
    )  # fmt: skip


def test_same_text_same_outlet_is_dropped_but_other_outlets_keep_theirs() -> None:
    batch = [
        art("https://a.example/1", "A", "h1"),
        art("https://a.example/amp/1", "A", "h1", minutes=5),
        art("https://b.example/9", "B", "h1", minutes=1),
    ]
    result = drop_exact_duplicates(batch, {})
    assert [a.url for a in result.keep] == ["https://a.example/1", "https://b.example/9"]
    assert [(a.url, orig) for a, orig in result.duplicates] == [("https://a.example/amp/1", batch[0].id)]


def test_text_already_indexed_under_another_url_is_dropped() -> None:
    new = art("https://a.example/copy", "A", "h1")
    result = drop_exact_duplicates([new], {("A", "h1"): "earlier-id"})
    assert not result.keep and result.duplicates == [(new, "earlier-id")]
    # The same URL again (an update in place) is not a duplicate of itself.
    assert drop_exact_duplicates([new], {("A", "h1"): new.id}).keep == [new]


def test_the_kept_copy_does_not_depend_on_arrival_order() -> None:
    batch = [
        art("https://a.example/z", "A", "h"),
        art("https://a.example/y", "A", "h"),
        art("https://a.example/x", "A", "h", minutes=-3),
    ]
    rank = {a.id: n for n, a in enumerate(batch)}
    kept = {
        tuple(a.url for a in drop_exact_duplicates(list(p), {}, rank=rank).keep) for p in itertools.permutations(batch)
    }
    assert kept == {("https://a.example/x",)}  # earliest published wins
    same_time = batch[:2]
    kept = {
        tuple(a.url for a in drop_exact_duplicates(list(p), {}, rank=rank).keep)
        for p in itertools.permutations(same_time)
    }
    assert kept == {("https://a.example/z",)}  # then the one listed first in the feeds
