"""The second half of a cycle: exact dedup, near-duplicate clustering and indexing of extracted
articles, and the seen ledger; and finishing the clusters of a batch whose writer died (the journal).
Safe to repeat: every write is keyed by the article's stable id."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from elasticsearch import Elasticsearch

from pipeline import log
from pipeline.records import Article
from pipeline.settings import Settings
from pipeline.store import buckets, index, journal
from pipeline.store.es import bulk_write, get_many
from pipeline.store.seen import Outcome, seen_actions
from pipeline.stories.cluster import index_clustered
from pipeline.stories.dedup import drop_exact_duplicates
from pipeline.topics.profiles import Profile

_log = log.get(__name__)


@dataclass(slots=True)
class Processed:
    """The second half of a cycle: what happened to the collected articles."""

    articles_in: int = 0
    unchanged: int = 0  # already indexed with the same text (a replay, or an entry updated in words only)
    exact_duplicates: int = 0
    near_duplicates_clustered: int = 0
    tagged: dict[str, int] = field(default_factory=dict)
    indexed: int = 0
    index_failed: int = 0
    # Articles of a batch that a process died writing, whose clusters this run finished (pipeline/store/journal.py).
    recovered: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    # Clusters whose head this batch replaced with an earlier article: their old heads are copies now.
    repointed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The counts (what a task returns and the log shows), without the ids of ``repointed``."""
        out = asdict(self)
        del out["repointed"]
        return out


def process(
    settings: Settings,
    es: Elasticsearch,
    articles: Sequence[Article],
    *,
    profiles: Sequence[Profile],
    rank: Mapping[str, int],
    updated: Mapping[str, str | None],
    attempts: Mapping[str, int] | None = None,
    now: datetime | None = None,
    recover: bool = True,
    refresh: bool = True,
) -> Processed:
    """Exact dedup, near-duplicate clustering, indexing and the seen ledger for extracted articles (tags
    were set at extraction; ``profiles`` are those counted in ``tagged``). Safe to repeat: an article
    already indexed with the same text is left as it is, every write is keyed by the article's stable id.
    The indices must exist (``clustering.prepare_index``).

    ``recover``: first finish the batches of writers that died (``finish_abandoned``); ``refresh``: make
    the writes visible to searches at the end. A caller that processes one cycle in several batches does
    the first once, before the first batch, and the second once, after the last: the batches themselves
    read by id only, which sees every write at once.

    Raises:
        IndexingError: the index cannot be read or written.
    """
    started = time.monotonic()
    now = now or datetime.now(UTC)
    alias = settings.es_index
    result = Processed(articles_in=len(articles), recovered=finish_abandoned(settings, es, now=now) if recover else 0)
    # One article per id (two landing batches may hold the same URL): the earliest-listed feed's copy.
    unique: dict[str, Article] = {}
    for a in sorted(articles, key=lambda a: (rank.get(a.id, 1 << 62), a.fetched_at)):
        unique.setdefault(a.id, a)
    present = get_many(es, alias, list(unique), fields=["content_hash"])
    outcomes: list[Outcome] = []
    fresh = []
    for a in unique.values():
        if present.get(a.id, {}).get("content_hash") == a.content_hash:
            result.unchanged += 1
            outcomes.append(Outcome.of_article(a, updated.get(a.id), "indexed"))
        else:
            fresh.append(a)
    deduped = drop_exact_duplicates(fresh, buckets.indexed_texts(es, alias, fresh), rank=rank)
    result.exact_duplicates = len(deduped.duplicates)
    for article, original in deduped.duplicates:
        outcomes.append(Outcome.of_article(article, updated.get(article.id), "duplicate", f"same text as {original}"))
        _log.info("dedup.exact", feed=article.feed_id, url=article.url, duplicate_of=original)
    # Filed before the first write and removed after the last: if this process dies in between, the next
    # cycle finishes these articles' clusters.
    entry = journal.open_entry(es, alias, [a.id for a in deduped.keep], now=now) if deduped.keep else None
    clustered, written = index_clustered(
        es, alias, deduped.keep, threshold=settings.cluster_threshold, window_days=settings.cluster_window_days
    )
    # The cluster could not take some articles now: fail, so that the caller retries the whole batch
    # (what was written is then "unchanged"); documents it refused for good are counted as failed.
    written.raise_if_transient("indexing articles")
    result.near_duplicates_clustered = clustered.joined
    result.repointed = sorted(clustered.assignment.repoint)
    result.tagged = {p.id: 0 for p in profiles}
    for article in clustered.articles:
        for topic in article.topics:
            result.tagged[topic] = result.tagged.get(topic, 0) + 1
    result.indexed = len(written.ok)
    result.index_failed = len(written.failed)
    kept = {a.id: a for a in clustered.articles}
    for doc_id, reason in written.failed:
        a = kept[doc_id]
        outcomes.append(Outcome.of_article(a, updated.get(doc_id), "failed", f"index: {reason}"))
        _log.warning("index.failed", feed=a.feed_id, url=a.url, reason=reason)
        if len(result.failures) < 50:
            result.failures.append({"feed": a.feed_id, "url": a.url, "reason": f"index: {reason}"})
    outcomes.extend(Outcome.of_article(kept[i], updated.get(i), "indexed") for i in written.ok)
    bulk_write(es, seen_actions(alias, outcomes, attempts or {}, now)).raise_if_transient("seen ledger")
    journal.close_entry(es, alias, entry)
    if refresh:
        index.refresh(es, alias)
    result.seconds = round(time.monotonic() - started, 3)
    _log.info("process.summary", **{k: v for k, v in result.to_dict().items() if k != "failures"})
    return result


def finish_abandoned(settings: Settings, es: Elasticsearch, *, now: datetime) -> int:
    """Cluster again the articles of every batch whose writer died between indexing them and updating
    their clusters (``pipeline/store/journal.py``), so that cluster ids, heads and sizes converge. Returns how
    many articles were finished.

    Raises:
        IndexingError: the index cannot be read or written.
    """
    alias = settings.es_index
    finished = 0
    for entry in journal.abandoned(es, alias, now=now):
        mine = journal.take_over(es, alias, entry, now=now)
        if mine is None:
            continue  # another process is finishing it
        # Read back from the index: the article as it was written is the article to cluster again.
        articles = [Article.from_doc(src) for src in get_many(es, alias, list(mine.ids)).values()]
        if articles:
            _, written = index_clustered(
                es, alias, articles, threshold=settings.cluster_threshold, window_days=settings.cluster_window_days
            )
            written.raise_if_transient("finishing an interrupted batch")
        journal.close_entry(es, alias, mine)
        _log.warning(
            "journal.finished",
            alias=alias,
            articles=len(articles),
            listed=len(mine.ids),
            writer=f"{entry.host} pid {entry.pid} since {entry.started_at}",
        )
        finished += len(articles)
    return finished
