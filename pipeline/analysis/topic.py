"""How outlets covered a whole topic (issue #9): articles per outlet over time, each outlet's share of
the topic against its share of everything, who reported the largest stories first and who ignored
them, and which words each outlet prefers. One story's coverage is :mod:`pipeline.analysis.story`.

Every figure except the distinctive terms comes from Elasticsearch aggregations, so the cost does not
grow with what has to be held in memory: ``compare_topic`` makes one search with several aggregations
(two when the period has to be found first) and one multi-search for the largest clusters' coverage and
the term samples. The terms statistic (:mod:`pipeline.analysis.terms`) reads at most ``sample`` articles
per outlet, the most recent of the period. The aggregations work on the embedded server too (terms,
filter, date_histogram, cardinality, top_hits; never min/max on dates, which it answers with null).

The result is a frozen record; ``to_dict()`` is the JSON ``compare topic --json`` prints.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from elasticsearch import Elasticsearch

from pipeline.analysis.story import MAX_OUTLETS
from pipeline.analysis.terms import (
    MIN_DOCS,
    MIN_Z,
    PRIOR_SCALE,
    Score,
    count_terms,
    display_forms,
    distinctive_terms,
    log_odds,
    name_keys,
)
from pipeline.errors import IndexingError, NoCoverage
from pipeline.records import parse_iso
from pipeline.store.es import translated

__all__ = [
    "SAMPLE_PER_OUTLET",
    "TOP_CLUSTERS",
    "TOP_TERMS",
    "ClusterOutlet",
    "DistinctiveTerm",
    "Interval",
    "OutletLag",
    "OutletShare",
    "OutletTerms",
    "OverTime",
    "Period",
    "StoryCluster",
    "TermsMethod",
    "TopicComparison",
    "TopicTerms",
    "Totals",
    "Verdict",
    "compare_topic",
]

SAMPLE_PER_OUTLET = 2000  # articles per outlet read for the terms statistic, the most recent first
TOP_CLUSTERS = 20
TOP_TERMS = 10
PAGE = 10_000  # hits per page of the term samples (the most a search may return)
Z_SIGNIFICANT = 1.96

Progress = Callable[[str, int, int], None]
Interval = Literal["day", "week", "month"]  # the calendar unit of the counts over time
Verdict = Literal["over", "under", "in line"]  # an outlet's topic rate against the others' (|z| >= 1.96)


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _search(es: Elasticsearch, alias: str, **body: Any) -> dict[str, Any]:
    with translated(f"searching {alias}", url=alias):
        return dict(es.search(index=alias, **body))


def _msearch(es: Elasticsearch, alias: str, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if not bodies:
        return []
    searches: list[dict[str, Any]] = []
    for body in bodies:
        searches.extend(({"index": alias}, body))
    with translated(f"searching {alias}", url=alias):
        responses = es.msearch(searches=searches)["responses"]
    for response in responses:
        if "error" in response:
            raise IndexingError(f"search in {alias} failed: {response['error']}", url=alias)
    return [dict(r) for r in responses]


# --- the result -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    since: str  # ISO 8601, UTC
    until: str  # exclusive
    interval: Interval


@dataclass(frozen=True, slots=True)
class Totals:
    articles: int  # everything the outlets published in the period
    topic_articles: int
    topic_clusters: int
    outlets: int
    outlets_covering: int  # with at least one topic article
    articles_of_unlisted_outlets: int  # beyond MAX_OUTLETS


@dataclass(frozen=True, slots=True)
class OutletShare:
    """An outlet's share of the topic against its share of all coverage."""

    outlet: str
    topic_articles: int
    all_articles: int
    topic_share: float
    all_share: float
    ratio: float | None  # topic share / all share
    topic_rate: float  # topic articles / all articles
    z: float | None  # two-proportion z of its topic rate against the other outlets'
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class OverTime:
    interval: Interval
    starts: list[str]  # the buckets' first days
    outlets: dict[str, list[int]]  # topic articles per bucket, for each outlet that covered the topic


@dataclass(frozen=True, slots=True)
class ClusterOutlet:
    outlet: str
    first_at: str
    lag_minutes: int  # behind the cluster's first report
    articles: int


@dataclass(frozen=True, slots=True)
class StoryCluster:
    """One of the topic's largest story clusters: who reported it first, who followed, who never did."""

    cluster_id: str
    topic_articles: int  # copies tagged with the topic, in the period
    articles: int  # every copy, tagged or not, in the period or after
    title: str  # the first report's
    first_outlet: str | None
    first_at: str | None
    outlets: list[ClusterOutlet]  # in order of their first copy
    missing: list[str]  # active outlets that never carried it


@dataclass(frozen=True, slots=True)
class OutletLag:
    outlet: str
    clusters_covered: int
    clusters_missed: int
    first_reports: int
    median_lag_minutes: float | None
    lags_minutes: list[int]


@dataclass(frozen=True, slots=True)
class TermsMethod:
    """How the distinctive terms were computed, in words and figures."""

    statistic: str = field(
        init=False,
        default="log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008), "
        "each outlet against all other outlets of the topic, ranked by z",
    )
    alpha0: float
    prior_scale: float
    prior: str = field(
        init=False,
        default="alpha_w = alpha0 * y_w / n: y_w the count of w in the whole topic sample, n its tokens; "
        "alpha0 = prior_scale * n",
    )
    sample_per_outlet: int
    min_docs: int
    min_z: float
    tokens: str = field(
        init=False,
        default="normalised Arabic, clitics off, Snowball stems, stop words dropped; words and adjacent pairs",
    )


@dataclass(frozen=True, slots=True)
class DistinctiveTerm:
    term: str  # as the outlet commonly writes it
    key: str  # the stems it is counted by
    z: float
    delta: float
    count: int  # in the outlet's sample
    docs: int  # articles of the sample it occurs in
    per_10k: float  # per 10,000 tokens of the outlet
    others_per_10k: float  # per 10,000 tokens of the other outlets

    @classmethod
    def of(cls, score: Score, *, term: str) -> DistinctiveTerm:
        return cls(
            term=term,
            key=score.key,
            z=round(score.z, 3),
            delta=round(score.delta, 4),
            count=score.count,
            docs=score.docs,
            per_10k=round(score.rate, 2),
            others_per_10k=round(score.rest_rate, 2),
        )


@dataclass(frozen=True, slots=True)
class OutletTerms:
    articles_sampled: int
    tokens: int
    terms: list[DistinctiveTerm]  # best first


@dataclass(frozen=True, slots=True)
class TopicTerms:
    method: TermsMethod
    outlets: dict[str, OutletTerms]  # in the order of the coverage table


@dataclass(frozen=True, slots=True)
class TopicComparison:
    """What ``compare topic`` reports."""

    profile: str
    period: Period
    outlets_filter: list[str] | None
    totals: Totals
    coverage: list[OutletShare]  # most topic articles first
    over_time: OverTime
    clusters: list[StoryCluster]  # largest first
    lag_by_outlet: list[OutletLag]
    never_covered_largest: list[str]  # outlets that carried none of the clusters
    terms: TopicTerms
    profile_title: str | None = None  # the profile's title, when the caller knows the profiles

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the figures ----------------------------------------------------------------------------------


def _interval(since: datetime, until: datetime) -> Interval:
    days = (until - since).total_seconds() / 86400
    return "day" if days <= 92 else "week" if days <= 731 else "month"


def _bucket_starts(since: datetime, until: datetime, interval: Interval) -> list[datetime]:
    """The starts of the calendar buckets (UTC; weeks start on Monday) covering [since, until)."""
    day = since.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "week":
        day -= timedelta(days=day.weekday())
    elif interval == "month":
        day = day.replace(day=1)
    starts = []
    while day < until:
        starts.append(day)
        if interval == "day":
            day += timedelta(days=1)
        elif interval == "week":
            day += timedelta(days=7)
        else:
            day = (day + timedelta(days=32)).replace(day=1)
    return starts


def _topic_bounds(es: Elasticsearch, alias: str, filters: list[dict[str, Any]]) -> tuple[datetime, datetime] | None:
    """First and last publication time of the topic's articles (top_hits: date min/max answer null on
    the embedded server)."""
    first_last = {
        name: {"top_hits": {"size": 1, "sort": [{"published_at": {"order": order}}], "_source": ["published_at"]}}
        for name, order in (("first", "asc"), ("last", "desc"))
    }
    resp = _search(es, alias, size=0, query={"bool": {"filter": filters}}, aggs=first_last)
    aggs = resp["aggregations"]
    if not aggs["first"]["hits"]["hits"]:
        return None
    return (
        parse_iso(aggs["first"]["hits"]["hits"][0]["_source"]["published_at"]),
        parse_iso(aggs["last"]["hits"]["hits"][0]["_source"]["published_at"]),
    )


def _coverage(topic: dict[str, int], everything: dict[str, int]) -> list[OutletShare]:
    """Each outlet's share of the topic against its share of all coverage, with a two-proportion z
    (the outlet's topic rate against the other outlets')."""
    t_all, a_all = sum(topic.values()), sum(everything.values())
    rows: list[OutletShare] = []
    for outlet, a in everything.items():
        t = topic.get(outlet, 0)
        topic_share, all_share = t / t_all if t_all else 0.0, a / a_all
        rest = a_all - a
        z: float | None = None
        if rest and 0 < t_all < a_all:
            pooled = t_all / a_all
            se = math.sqrt(pooled * (1 - pooled) * (1 / a + 1 / rest))
            z = ((t / a) - (t_all - t) / rest) / se
        verdict: Verdict = "in line"
        if z is not None and z >= Z_SIGNIFICANT:
            verdict = "over"
        elif z is not None and z <= -Z_SIGNIFICANT:
            verdict = "under"
        rows.append(
            OutletShare(
                outlet=outlet,
                topic_articles=t,
                all_articles=a,
                topic_share=round(topic_share, 4),
                all_share=round(all_share, 4),
                ratio=round(topic_share / all_share, 3) if all_share else None,
                topic_rate=round(t / a, 4),
                z=None if z is None else round(z, 2),
                verdict=verdict,
            )
        )
    rows.sort(key=lambda r: (-r.topic_articles, -r.all_articles, r.outlet))
    return rows


def _clusters(order: list[dict[str, Any]], coverage: dict[str, Any], active: list[str]) -> list[StoryCluster]:
    """Each large cluster: who reported first, every carrying outlet's lag, the outlets that did not."""
    by_id = {b["key"]: b for b in coverage["aggregations"]["clusters"]["buckets"]}
    out: list[StoryCluster] = []
    for bucket in order:
        cov = by_id.get(bucket["key"])
        firsts = []
        for ob in cov["outlets"]["buckets"] if cov else []:
            hit = ob["first"]["hits"]["hits"][0]["_source"]
            firsts.append((hit["published_at"], ob["key"], hit.get("title", ""), ob["doc_count"]))
        firsts.sort()
        start = parse_iso(firsts[0][0]) if firsts else None
        carried = {outlet for _, outlet, _, _ in firsts}
        out.append(
            StoryCluster(
                cluster_id=bucket["key"],
                topic_articles=bucket["doc_count"],
                articles=sum(f[3] for f in firsts),
                title=firsts[0][2] if firsts else "",
                first_outlet=firsts[0][1] if firsts else None,
                first_at=firsts[0][0] if firsts else None,
                outlets=[
                    ClusterOutlet(
                        outlet=outlet,
                        first_at=at,
                        lag_minutes=round((parse_iso(at) - start).total_seconds() / 60) if start else 0,
                        articles=n,
                    )
                    for at, outlet, _, n in firsts
                ],
                missing=[o for o in active if o not in carried],
            )
        )
    return out


def _lags(clusters: list[StoryCluster], active: list[str]) -> list[OutletLag]:
    rows: list[OutletLag] = []
    for outlet in active:
        lags = [o.lag_minutes for c in clusters for o in c.outlets if o.outlet == outlet]
        rows.append(
            OutletLag(
                outlet=outlet,
                clusters_covered=len(lags),
                clusters_missed=len(clusters) - len(lags),
                first_reports=sum(1 for c in clusters if c.first_outlet == outlet),
                median_lag_minutes=statistics.median(lags) if lags else None,
                lags_minutes=lags,
            )
        )
    rows.sort(key=lambda r: (-r.clusters_covered, r.median_lag_minutes or 0, r.outlet))
    return rows


def _sample_cutoffs(over_time: dict[str, dict[str, int]], sample: int) -> dict[str, str | None]:
    """For each outlet, the start of the oldest bucket (day, week, month) that its ``sample`` most recent
    topic articles reach back to, or None when it has no more than ``sample`` in the period."""
    cutoffs: dict[str, str | None] = {}
    for outlet, buckets in over_time.items():
        seen, cutoff = 0, None
        if sum(buckets.values()) > sample:
            for start in sorted(buckets, reverse=True):
                seen += buckets[start]
                cutoff = start
                if seen >= sample:
                    break
        cutoffs[outlet] = cutoff
    return cutoffs


def _sample_body(filters: list[dict[str, Any]], cutoffs: dict[str, str | None]) -> dict[str, Any]:
    """One query for every outlet's sample: its topic articles since its cutoff, newest first. A superset
    by at most one bucket per outlet; :func:`_collect_samples` keeps the ``sample`` most recent. One
    query, not one per outlet: the embedded server answers each search with a pass over the index."""
    per_outlet = [
        {"term": {"outlet": outlet}}
        if cutoff is None
        else {
            "bool": {
                "filter": [{"term": {"outlet": outlet}}, {"range": {"published_at": {"gte": f"{cutoff}T00:00:00Z"}}}]
            }
        }
        for outlet, cutoff in cutoffs.items()
    ]
    return {
        "query": {"bool": {"filter": filters, "should": per_outlet, "minimum_should_match": 1}},
        "sort": [{"published_at": {"order": "desc"}}, {"canonical_url": {"order": "asc"}}],
        "_source": ["outlet", "title", "body"],
    }


def _collect_samples(
    es: Elasticsearch,
    alias: str,
    body: dict[str, Any],
    page: dict[str, Any],
    sample: int,
    *,
    progress: Progress,
    page_size: int = PAGE,
) -> dict[str, list[str]]:
    """Page through the sample query (``page`` is its first page), keeping at most ``sample`` texts per
    outlet, the most recent: pages come newest first, so an outlet's later hits are older and dropped."""
    texts: dict[str, list[str]] = {}
    fetched = 0
    total = page["hits"]["total"]["value"]
    while True:
        hits = page["hits"]["hits"]
        for hit in hits:
            kept = texts.setdefault(hit["_source"]["outlet"], [])
            if len(kept) < sample:
                kept.append(f"{hit['_source'].get('title', '')}\n{hit['_source'].get('body', '')}")
        fetched += len(hits)
        progress("terms", fetched, max(total, fetched))
        if len(hits) < page_size:
            return texts
        page = _search(es, alias, **body, size=page_size, search_after=hits[-1]["sort"])


def compare_topic(
    es: Elasticsearch,
    alias: str,
    profile: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    outlets: Sequence[str] | None = None,
    clusters: int = TOP_CLUSTERS,
    terms: int = TOP_TERMS,
    sample: int = SAMPLE_PER_OUTLET,
    prior_scale: float = PRIOR_SCALE,
    progress: Progress | None = None,
) -> TopicComparison:
    """Coverage of a topic (articles tagged with ``profile``) between ``since`` and ``until`` (exclusive;
    by default the days of its first and last article), by the given ``outlets`` (default: all): articles
    per outlet per day (week, month for long periods), each outlet's share of the topic against its share
    of all coverage, the ``clusters`` largest story clusters with each outlet's lag and the outlets that
    did not carry them, and each outlet's ``terms`` most distinctive terms (log-odds with an informative
    Dirichlet prior ``prior_scale`` times as strong as the sample, on at most ``sample`` articles per outlet).

    Raises:
        NoCoverage: no article tagged with ``profile`` in the period (and outlets).
        IndexingError: the index cannot be read.
    """
    report = progress or (lambda stage, done, total: None)
    scope: list[dict[str, Any]] = [{"terms": {"outlet": list(outlets)}}] if outlets else []
    topic_filter = {"term": {"topics": profile}}
    steps = 3 if since and until else 4
    if since is None or until is None:
        report("queries", 0, steps)
        bounds = _topic_bounds(es, alias, [topic_filter, *scope])
        if bounds is None:
            raise NoCoverage(f"no article tagged {profile!r} in {alias}{_scope_text(outlets)}", url=alias)
        since = since or bounds[0].replace(hour=0, minute=0, second=0, microsecond=0)
        until = until or bounds[1].replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    if until <= since:
        raise NoCoverage(f"the period is empty: {_iso(since)} is not before {_iso(until)}", url=alias)
    interval = _interval(since, until)
    period = [*scope, {"range": {"published_at": {"gte": _iso(since), "lt": _iso(until)}}}]
    report("queries", steps - 3, steps)
    resp = _search(
        es,
        alias,
        size=0,
        query={"bool": {"filter": period}},
        aggs={
            "outlets": {"terms": {"field": "outlet", "size": MAX_OUTLETS}},
            "topic": {
                "filter": topic_filter,
                "aggs": {
                    "outlets": {
                        "terms": {"field": "outlet", "size": MAX_OUTLETS},
                        "aggs": {
                            "over_time": {
                                "date_histogram": {
                                    "field": "published_at",
                                    "calendar_interval": interval,
                                    "min_doc_count": 1,
                                }
                            }
                        },
                    },
                    "clusters": {
                        "terms": {
                            "field": "cluster_id",
                            "size": clusters,
                            "order": [{"_count": "desc"}, {"_key": "asc"}],
                        }
                    },
                    "cluster_count": {"cardinality": {"field": "cluster_id"}},
                },
            },
        },
    )
    aggs = resp["aggregations"]
    topic_aggs = aggs["topic"]
    if not topic_aggs["doc_count"]:
        raise NoCoverage(
            f"no article tagged {profile!r} in {alias} between {_iso(since)} and {_iso(until)}{_scope_text(outlets)}",
            url=alias,
        )
    everything = {b["key"]: b["doc_count"] for b in aggs["outlets"]["buckets"]}
    topic_counts = {b["key"]: b["doc_count"] for b in topic_aggs["outlets"]["buckets"]}
    active = sorted(everything, key=lambda o: (-topic_counts.get(o, 0), -everything[o], o))
    topic_outlets = [o for o in active if topic_counts.get(o)]
    starts = _bucket_starts(since, until, interval)
    over_time = {
        b["key"]: {parse_iso(h["key_as_string"]).date().isoformat(): h["doc_count"] for h in b["over_time"]["buckets"]}
        for b in topic_aggs["outlets"]["buckets"]
    }

    # Second round trip: the large clusters' coverage (every copy, tagged or not, in or after the period)
    # and the first page of the term samples.
    order = topic_aggs["clusters"]["buckets"]
    coverage_body = {
        "size": 0,
        "query": {"bool": {"filter": [*scope, {"terms": {"cluster_id": [b["key"] for b in order]}}]}},
        "aggs": {
            "clusters": {
                "terms": {"field": "cluster_id", "size": max(1, len(order))},
                "aggs": {
                    "outlets": {
                        "terms": {"field": "outlet", "size": MAX_OUTLETS},
                        "aggs": {
                            "first": {
                                "top_hits": {
                                    "size": 1,
                                    "sort": [{"published_at": {"order": "asc"}}],
                                    "_source": ["published_at", "title"],
                                }
                            }
                        },
                    }
                },
            }
        },
    }
    report("queries", steps - 2, steps)
    cutoffs = _sample_cutoffs(over_time, sample)
    sample_body = _sample_body([*period, topic_filter], cutoffs)
    first_page = {**sample_body, "size": PAGE}
    coverage, page = _msearch(es, alias, [coverage_body, first_page])
    texts = _collect_samples(es, alias, sample_body, page, sample, progress=report)
    report("queries", steps - 1, steps)
    cluster_rows = _clusters(order, coverage, active)
    term_section = _distinctive(texts, terms=terms, prior_scale=prior_scale, sample=sample, names=active)
    report("queries", steps, steps)
    unlisted = aggs["outlets"].get("sum_other_doc_count", 0)
    return TopicComparison(
        profile=profile,
        period=Period(since=_iso(since), until=_iso(until), interval=interval),
        outlets_filter=list(outlets) if outlets else None,
        totals=Totals(
            articles=sum(everything.values()) + unlisted,
            topic_articles=topic_aggs["doc_count"],
            topic_clusters=topic_aggs["cluster_count"]["value"],
            outlets=len(active),
            outlets_covering=len(topic_outlets),
            articles_of_unlisted_outlets=unlisted,
        ),
        coverage=_coverage(topic_counts, everything),
        over_time=OverTime(
            interval=interval,
            starts=[s.date().isoformat() for s in starts],
            outlets={o: [over_time.get(o, {}).get(s.date().isoformat(), 0) for s in starts] for o in topic_outlets},
        ),
        clusters=cluster_rows,
        lag_by_outlet=_lags(cluster_rows, active),
        never_covered_largest=[o for o in active if all(o in c.missing for c in cluster_rows)] if cluster_rows else [],
        terms=term_section,
    )


def _scope_text(outlets: Sequence[str] | None) -> str:
    return f" for outlets {', '.join(outlets)}" if outlets else ""


def _distinctive(
    texts: dict[str, list[str]], *, terms: int, prior_scale: float, sample: int, names: list[str]
) -> TopicTerms:
    # In the order of the coverage table (most topic articles first), not of the samples' arrival.
    counts = {outlet: count_terms(texts[outlet]) for outlet in names if outlet in texts}
    comparison = log_odds(counts, prior_scale=prior_scale)
    alpha0 = comparison.alpha0
    exclude = name_keys(names)
    ranked = {
        outlet: distinctive_terms(comparison, outlet, counts[outlet], top=terms, exclude=exclude) for outlet in counts
    }
    forms: dict[str, str] = {}
    for outlet, top in ranked.items():
        forms.update({f"{outlet}\x00{k}": v for k, v in display_forms(texts[outlet], {s.key for s in top}).items()})
    return TopicTerms(
        method=TermsMethod(
            alpha0=alpha0, prior_scale=prior_scale, sample_per_outlet=sample, min_docs=MIN_DOCS, min_z=MIN_Z
        ),
        outlets={
            outlet: OutletTerms(
                articles_sampled=counts[outlet].articles,
                tokens=counts[outlet].tokens,
                terms=[DistinctiveTerm.of(s, term=forms.get(f"{outlet}\x00{s.key}", s.key)) for s in ranked[outlet]],
            )
            for outlet in counts
        },
    )
