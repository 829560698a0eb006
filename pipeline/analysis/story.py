"""One story's coverage (issue #9): its versions in order of publication, how each version's text differs
from the first, who carried it and who did not (:func:`compare_story`), and an article's cluster with
similar stories outside it (:func:`related`).

Every result is a frozen record; ``to_dict()`` is the JSON the commands print with ``--json``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from elasticsearch import Elasticsearch

from pipeline.arabic.normalize import normalize_for_hash
from pipeline.errors import NoCoverage
from pipeline.records import iso, parse_iso
from pipeline.store import index
from pipeline.store.es import translated

__all__ = [
    "STORY_WINDOW_HOURS",
    "ArticleRef",
    "FirstReport",
    "NoCoverage",
    "Related",
    "Reworded",
    "SilentOutlet",
    "SimilarStory",
    "StoryComparison",
    "StoryOutlet",
    "StoryVersion",
    "TextDiff",
    "compare_story",
    "diff_sentences",
    "format_lag",
    "related",
    "sentences",
    "story_versions",
]

STORY_WINDOW_HOURS = 48
MAX_VERSIONS = 500
MAX_OUTLETS = 1000  # terms buckets for outlets; a topic counts the rest in articles_of_unlisted_outlets
# Sentence ends: Latin and Arabic full stops, question and exclamation marks, semicolons, line breaks.
_SENTENCE_END = re.compile(r"(?<=[.!?؟؛۔])\s+|\n+")
REWORDED = 0.5  # word overlap above which two sentences are one sentence reworded


LAG_WORDS = ("first", "min", "h", "d")  # the first report; minutes, hours, days


def format_lag(minutes: float | None, words: tuple[str, str, str, str] = LAG_WORDS) -> str:
    """``first``, ``+25 min``, ``+3 h 10 min``, ``+2 d 4 h``; empty when not covered. ``words`` gives
    the first report's name and the units (the HTML report uses Arabic ones)."""
    if minutes is None:
        return ""
    first, mins, hrs, days_ = words
    m = round(minutes)
    if m == 0:
        return first
    if m < 60:
        return f"+{m} {mins}"
    if m < 48 * 60:
        return f"+{m // 60} {hrs} {m % 60} {mins}" if m % 60 else f"+{m // 60} {hrs}"
    days, hours = m // 1440, m % 1440 // 60
    return f"+{days} {days_} {hours} {hrs}" if hours else f"+{days} {days_}"


# --- what a version changed -----------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) > 1]


def _words(sentence: str) -> set[str]:
    return set(normalize_for_hash(sentence).split())


@dataclass(frozen=True, slots=True)
class Reworded:
    first: str  # the first version's sentence
    this: str  # this version's


@dataclass(frozen=True, slots=True)
class TextDiff:
    added: list[str] = field(default_factory=list)  # in this version, not in the first
    removed: list[str] = field(default_factory=list)  # in the first, not in this version
    reworded: list[Reworded] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diff_sentences(first: str, other: str) -> TextDiff:
    """Sentence by sentence on normalised Arabic: spelling, diacritics and punctuation differences do
    not count; a sentence sharing most of its words with one of the other text is "reworded"."""
    a, b = sentences(first), sentences(other)
    a_keys = {normalize_for_hash(s) for s in a}
    b_keys = {normalize_for_hash(s) for s in b}
    only_a = [s for s in a if normalize_for_hash(s) not in b_keys]
    only_b = [s for s in b if normalize_for_hash(s) not in a_keys]
    reworded: list[Reworded] = []
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
            reworded.append(Reworded(first=s, this=best))
            unmatched_b.remove(best)
        else:
            removed.append(s)
    return TextDiff(added=unmatched_b, removed=removed, reworded=reworded)


# --- a story's versions ---------------------------------------------------------------------------

_FIELDS = ["title", "outlet", "url", "published_at", "cluster_id", "duplicate_of", "cluster_size", "body", "feed_id"]


@dataclass(frozen=True, slots=True)
class StoryVersion:
    """One article of a story cluster."""

    id: str
    outlet: str
    published_at: str  # ISO 8601, UTC
    lag_minutes: int  # behind the first version
    title: str
    url: str
    is_this: bool  # the article asked about
    diff: TextDiff | None  # against the first version; None on the first


def story_versions(
    es: Elasticsearch, alias: str, cluster_id: str, *, this_id: str | None = None, limit: int = 200
) -> list[StoryVersion]:
    """Every article of a story cluster (up to ``limit``), in order of publication, with its lag behind
    the first and what its text added, dropped or reworded against the first version's. ``[]`` when no
    article carries ``cluster_id``.

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
        StoryVersion(
            id=hit["_id"],
            outlet=hit["_source"]["outlet"],
            published_at=hit["_source"]["published_at"],
            lag_minutes=round((parse_iso(hit["_source"]["published_at"]) - first_time).total_seconds() / 60),
            title=hit["_source"].get("title", ""),
            url=hit["_source"].get("url", ""),
            is_this=hit["_id"] == this_id,
            diff=None
            if hit is members[0]
            else diff_sentences(
                first_text, _without_title(hit["_source"].get("body", ""), hit["_source"].get("title", ""))
            ),
        )
        for hit in members
    ]


def _without_title(body: str, title: str) -> str:
    """The body without a first line repeating the headline (some pages put the <h1> in the article)."""
    first, _, rest = body.partition("\n")
    return rest.lstrip() if normalize_for_hash(first) == normalize_for_hash(title) else body


# --- who carried a story --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FirstReport:
    outlet: str
    published_at: str
    title: str


@dataclass(frozen=True, slots=True)
class StoryOutlet:
    """An outlet that carried the story: its first version and how many it published."""

    outlet: str
    first_at: str
    lag_minutes: int
    versions: int


@dataclass(frozen=True, slots=True)
class SilentOutlet:
    """An outlet that published other articles within the window but did not carry the story."""

    outlet: str
    articles_in_window: int


@dataclass(frozen=True, slots=True)
class StoryComparison:
    """What ``compare story`` reports."""

    query: str  # the id asked about: an article's or a cluster's
    cluster_id: str
    first: FirstReport
    versions: list[StoryVersion]
    outlets: list[StoryOutlet]  # in order of their first version
    not_carried_by: list[SilentOutlet]  # most active first
    window_hours: int
    truncated: bool  # MAX_VERSIONS versions were read: the cluster may have more

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_story(
    es: Elasticsearch, alias: str, ref: str, *, window_hours: int = STORY_WINDOW_HOURS
) -> StoryComparison:
    """One story cluster, given an article id or a cluster id: its versions in order of publication (lag
    behind the first, headline, sentences added to, dropped from or reworded against the first), each
    outlet's first version, and the outlets that published other articles within ``window_hours`` of the
    first report but did not carry the story.

    Raises:
        NoCoverage: no article and no cluster with that id.
        IndexingError: the index cannot be read.
    """
    with translated(f"searching {alias}", url=alias):
        hits = es.search(
            index=alias,
            size=1,
            query={"bool": {"should": [{"ids": {"values": [ref]}}, {"term": {"cluster_id": ref}}]}},
            source_includes=["cluster_id"],
        )["hits"]["hits"]
    if not hits:
        raise NoCoverage(f"no article or story cluster with id {ref} in {alias}", url=alias)
    # The hit is the article itself, or (when ref is a cluster id) one of its members.
    is_article = hits[0]["_id"] == ref
    cluster_id = (hits[0]["_source"].get("cluster_id") or ref) if is_article else ref
    versions = story_versions(es, alias, cluster_id, this_id=ref if is_article else None, limit=MAX_VERSIONS)
    first = versions[0]
    count = Counter(version.outlet for version in versions)
    firsts: dict[str, StoryVersion] = {}
    for version in versions:
        firsts.setdefault(version.outlet, version)
    carried = [
        StoryOutlet(outlet=v.outlet, first_at=v.published_at, lag_minutes=v.lag_minutes, versions=count[v.outlet])
        for v in firsts.values()
    ]
    start = parse_iso(first.published_at)
    within = {"gte": iso(start), "lt": iso(start + timedelta(hours=window_hours))}
    with translated(f"searching {alias}", url=alias):
        window = es.search(
            index=alias,
            size=0,
            query={
                "bool": {
                    "filter": [{"range": {"published_at": within}}],
                    "must_not": [{"term": {"cluster_id": cluster_id}}],
                }
            },
            aggs={"outlets": {"terms": {"field": "outlet", "size": MAX_OUTLETS}}},
        )
    silent = [
        SilentOutlet(outlet=b["key"], articles_in_window=b["doc_count"])
        for b in window["aggregations"]["outlets"]["buckets"]
        if b["key"] not in count
    ]
    return StoryComparison(
        query=ref,
        cluster_id=cluster_id,
        first=FirstReport(outlet=first.outlet, published_at=first.published_at, title=first.title),
        versions=versions,
        outlets=carried,
        not_carried_by=sorted(silent, key=lambda s: (-s.articles_in_window, s.outlet)),
        window_hours=window_hours,
        truncated=len(versions) >= MAX_VERSIONS,
    )


# --- an article's cluster and similar stories -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArticleRef:
    id: str
    title: str
    outlet: str


@dataclass(frozen=True, slots=True)
class SimilarStory:
    """An article of another cluster that matches the headline and lead."""

    id: str
    score: float | None  # the search's relevance
    cluster_id: str
    cluster_size: int
    outlet: str
    published_at: str
    title: str
    url: str


@dataclass(frozen=True, slots=True)
class Related:
    """What ``related`` reports."""

    article: ArticleRef
    cluster_id: str
    cluster: list[StoryVersion]
    similar: list[SimilarStory]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def related(es: Elasticsearch, alias: str, article_id: str, *, similar: int = 10) -> Related:
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
    return Related(
        article=ArticleRef(id=article_id, title=source["title"], outlet=source["outlet"]),
        cluster_id=cluster_id,
        cluster=cluster,
        similar=[
            SimilarStory(
                id=h["_id"],
                score=h.get("_score"),
                cluster_id=h["_source"].get("cluster_id", ""),
                cluster_size=h["_source"].get("cluster_size", 1),
                outlet=h["_source"].get("outlet", ""),
                published_at=h["_source"].get("published_at", ""),
                title=h["_source"].get("title", ""),
                url=h["_source"].get("url", ""),
            )
            for h in others
        ],
    )
