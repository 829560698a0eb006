"""`compare story` and `compare topic` on hand-written fixtures (tests/fixtures/compare/) in the real
embedded index: order and lags, sentences added and dropped, shares against hand-computed figures, the
largest clusters' coverage, filters, and each outlet's planted vocabulary among its distinctive terms."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch
from factories import make_article as factory_article

from pipeline.analysis import topic as topic_module
from pipeline.analysis.story import FirstReport, compare_story, format_lag
from pipeline.analysis.terms import (
    TermCounts,
    _terms_of,
    count_terms,
    display_forms,
    distinctive_terms,
    log_odds,
)
from pipeline.analysis.topic import Period, compare_topic
from pipeline.arabic.normalize import normalize_for_hash, normalize_text, word_count
from pipeline.errors import NoCoverage
from pipeline.records import Article, parse_when
from pipeline.store import index
from pipeline.store.es import bulk_write

FIXTURES = Path(__file__).parent / "fixtures" / "compare"
PROFILE = "syria-war"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def make_article(
    url: str,
    outlet: str,
    published_at: str,
    title: str,
    body: str,
    *,
    cluster_id: str = "",
    topics: tuple[str, ...] = (),
) -> Article:
    return factory_article(
        url,
        feed_id="fixture",
        outlet=outlet,
        title=title,
        body=body,
        published_at=when(published_at),
        fetched_at=when(published_at) + timedelta(minutes=5),
        word_count=word_count(body),
        cluster_id=cluster_id,
        topics=topics,
        topic_matches=tuple({"profile": t, "score": 6.0, "terms": []} for t in topics),
    )


def write(es: Elasticsearch, alias: str, articles: list[Article]) -> None:
    index.ensure_indices(es, alias)
    shuffled = list(articles)
    random.Random(9).shuffle(shuffled)  # arrival order must not matter
    result = bulk_write(es, index.article_actions(alias, shuffled))
    assert not result.failed
    index.refresh(es, alias)


# --- the story fixture ----------------------------------------------------------------------------

_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "،": ","})


def _spelled(sentence: str, spelling: str | None) -> str:
    if spelling == "folded":
        return sentence.translate(_FOLD)
    if spelling == "vocalised":
        return sentence.replace("القصف", "القَصْف").replace("المنظمة", "المنـظمة").replace("الإنسانية", "الإنسانيّة")
    return sentence


def story_articles() -> tuple[dict[str, Any], dict[str, Article], list[Article]]:
    """The fixture, its versions by key (cluster set as the pipeline would), and the other articles."""
    spec = load("story.yaml")
    versions: dict[str, Article] = {}
    for v in spec["versions"]:
        text = [_spelled(v.get("reworded", {}).get(k, spec["sentences"][k]), v.get("spelling")) for k in v["keep"]]
        body = "\n\n".join([*text, *v.get("added", [])])
        url = f"https://story.example/{v['key']}"
        versions[v["key"]] = make_article(url, v["outlet"], v["published_at"], v["title"], body)
    head = versions[spec["expected"]["order"][0]].id
    versions = {k: replace(a, cluster_id=head) for k, a in versions.items()}
    others = [
        make_article(f"https://other.example/{n}", o["outlet"], o["published_at"], o["title"], o["body"])
        for n, o in enumerate(spec["others"])
    ]
    return spec, versions, others


@pytest.fixture
def story(es: Elasticsearch, alias: str) -> tuple[dict[str, Any], dict[str, Article]]:
    spec, versions, others = story_articles()
    write(es, alias, [*versions.values(), *others])
    return spec, versions


def test_story_lists_outlets_in_order_with_lags_and_edits(
    es: Elasticsearch, alias: str, story: tuple[dict[str, Any], dict[str, Article]]
) -> None:
    spec, versions = story
    expected = spec["expected"]
    sentence = spec["sentences"]
    data = compare_story(es, alias, versions["third"].id)
    assert data.cluster_id == versions["first"].id
    assert [v.id for v in data.versions] == [versions[k].id for k in expected["order"]]
    assert [v.lag_minutes for v in data.versions] == expected["lag_minutes"]
    assert [v.outlet for v in data.versions] == [versions[k].outlet for k in expected["order"]]
    assert [v.title for v in data.versions] == [versions[k].title for k in expected["order"]]
    assert [v.is_this for v in data.versions] == [k == "third" for k in expected["order"]]
    assert data.versions[0].diff is None
    for key, version in zip(expected["order"][1:], data.versions[1:], strict=True):
        diff = version.diff
        assert diff is not None
        assert diff.added == expected["added"][key], key
        # Dropped sentences are reported as the first version wrote them.
        assert diff.removed == [sentence[k] for k in expected["removed"][key]], key
        assert [r.first for r in diff.reworded] == [sentence[k] for k in expected["reworded"].get(key, [])], key
    fourth = data.versions[3].diff
    assert fourth is not None
    [reworded] = fourth.reworded
    assert reworded.this == spec["versions"][0]["reworded"]["s2"]
    assert data.first == FirstReport(
        outlet=versions["first"].outlet, published_at="2025-03-02T06:40:00Z", title=versions["first"].title
    )
    assert [(o.outlet, o.lag_minutes, o.versions) for o in data.outlets] == [
        (versions[k].outlet, lag, 1) for k, lag in zip(expected["order"], expected["lag_minutes"], strict=True)
    ]
    # Who published within 48 hours without carrying it (not the outlet that wrote three days later).
    assert [s.outlet for s in data.not_carried_by] == expected["not_carried_by"]


def test_story_by_cluster_id_is_the_same_story(
    es: Elasticsearch, alias: str, story: tuple[dict[str, Any], dict[str, Article]]
) -> None:
    _, versions = story
    by_article = compare_story(es, alias, versions["fifth"].id)
    by_cluster = compare_story(es, alias, versions["first"].id)
    assert [v.id for v in by_article.versions] == [v.id for v in by_cluster.versions]
    assert by_cluster.versions[0].is_this and not by_article.versions[0].is_this


def test_story_of_an_unknown_id_is_a_clear_error(es: Elasticsearch, alias: str) -> None:
    index.ensure_indices(es, alias)
    with pytest.raises(NoCoverage, match="no article or story cluster with id nope in"):
        compare_story(es, alias, "nope")


# --- the topic fixture ----------------------------------------------------------------------------


def topic_articles() -> tuple[dict[str, Any], list[Article]]:
    spec = load("topic.yaml")
    names = spec["outlets"]
    articles: list[Article] = []
    for event in spec["events"]:
        members = []
        for n, a in enumerate(event["articles"]):
            backbone = [s for i, s in enumerate(event["backbone"]) if i not in a.get("drop", [])]
            body = "\n\n".join([" ".join(backbone), " ".join(a["framing"])])
            url = f"https://{a['outlet'].lower()}.example/{event['id']}/{n}"
            members.append(
                make_article(url, names[a["outlet"]], a["published_at"], a["title"], body, topics=(PROFILE,))
            )
        head = min(members, key=lambda m: m.published_at).id
        articles.extend(replace(m, cluster_id=head) for m in members)
    bodies = spec["off_topic_bodies"]
    n = 0
    for key, days in spec["off_topic"].items():
        for day, count in days.items():
            for k in range(count):
                url = f"https://{key.lower()}.example/off/{day}/{k}"
                hour = 12 + k
                articles.append(
                    make_article(url, names[key], f"{day}T{hour}:15:00Z", f"خبر محلي {n}", bodies[n % len(bodies)])
                )
                n += 1
    return spec, articles


@pytest.fixture
def topic(es: Elasticsearch, alias: str) -> dict[str, str]:
    spec, articles = topic_articles()
    write(es, alias, articles)
    return dict(spec["outlets"])


SINCE, UNTIL = parse_when("2025-03-01"), parse_when("2025-03-06", end=True)


def test_shares_and_over_under_coverage_match_hand_computed_figures(
    es: Elasticsearch, alias: str, topic: dict[str, str]
) -> None:
    data = compare_topic(es, alias, PROFILE, since=SINCE, until=UNTIL)
    assert data.period == Period(since="2025-03-01T00:00:00Z", until="2025-03-07T00:00:00Z", interval="day")
    assert data.totals.topic_articles == 18 and data.totals.articles == 46
    rows = {r.outlet: r for r in data.coverage}
    A, B, C, D, E = (topic[k] for k in "ABCDE")
    # topic articles / all articles in the period, from the fixture's counts
    expected = {A: (7, 10), B: (6, 12), C: (3, 8), D: (2, 10), E: (0, 6)}
    assert [r.outlet for r in data.coverage] == [A, B, C, D, E]
    for outlet, (t, a) in expected.items():
        row = rows[outlet]
        assert (row.topic_articles, row.all_articles) == (t, a)
        assert row.topic_share == round(t / 18, 4) and row.all_share == round(a / 46, 4)
        assert row.ratio == round((t / 18) / (a / 46), 3)
        pooled = 18 / 46
        z = (t / a - (18 - t) / (46 - a)) / math.sqrt(pooled * (1 - pooled) * (1 / a + 1 / (46 - a)))
        assert row.z == round(z, 2)
    # A: 70 % of its output against 31 % elsewhere (z 2.26); E: none against 45 % (z -2.11); D: 20 %
    # against 44 % is not enough evidence in ten articles (z -1.40).
    assert {o: r.verdict for o, r in rows.items()} == {
        A: "over",
        B: "in line",
        C: "in line",
        D: "in line",
        E: "under",
    }
    assert rows[A].ratio == 1.789 and rows[E].ratio == 0.0
    assert data.over_time.starts == [f"2025-03-0{d}" for d in range(1, 7)]
    assert data.over_time.outlets == {
        A: [2, 1, 1, 1, 1, 1],
        B: [1, 1, 1, 1, 1, 1],
        C: [1, 1, 1, 0, 0, 0],
        D: [1, 1, 0, 0, 0, 0],
    }


def test_largest_clusters_show_who_reported_first_their_lags_and_who_never_did(
    es: Elasticsearch, alias: str, topic: dict[str, str]
) -> None:
    A, B, C, D, E = (topic[k] for k in "ABCDE")
    data = compare_topic(es, alias, PROFILE, since=SINCE, until=UNTIL, clusters=3)
    clusters = data.clusters
    assert [c.topic_articles for c in clusters] == [5, 4, 3]
    assert [c.first_outlet for c in clusters] == [A, B, A]
    assert [c.first_at for c in clusters] == ["2025-03-01T07:10:00Z", "2025-03-02T06:00:00Z", "2025-03-03T10:00:00Z"]
    assert [[(o.outlet, o.lag_minutes) for o in c.outlets] for c in clusters] == [
        [(A, 0), (B, 35), (C, 110), (D, 380)],
        [(B, 0), (A, 20), (C, 120), (D, 840)],
        # D's follow-up came six days later, after the period: late, but it carried the story.
        [(A, 0), (C, 60), (B, 150), (D, 6 * 1440)],
    ]
    assert clusters[0].articles == 5 and clusters[2].articles == 4  # every copy, in the period or not
    assert clusters[0].title == "الميليشيات تحشد في ريف حلب بعد غارات على سوق الأتارب"
    assert [c.missing for c in clusters] == [[E], [E], [E]]
    assert data.never_covered_largest == [E]
    lags = {r.outlet: r for r in data.lag_by_outlet}
    assert {o: (r.clusters_covered, r.first_reports, r.median_lag_minutes) for o, r in lags.items()} == {
        A: (3, 2, 0),
        B: (3, 1, 35),
        C: (3, 0, 110),
        D: (3, 0, 840),
        E: (0, 0, None),
    }
    every = compare_topic(es, alias, PROFILE, since=SINCE, until=UNTIL)
    assert len(every.clusters) == 6 == every.totals.topic_clusters
    assert sorted(len(c.missing) for c in every.clusters) == [1, 1, 1, 3, 3, 3]  # e4-e6: C, D and E
    assert every.never_covered_largest == [E]


def test_since_until_and_outlets_narrow_every_figure(es: Elasticsearch, alias: str, topic: dict[str, str]) -> None:
    A, B, C, D, E = (topic[k] for k in "ABCDE")
    # By default the period runs from the topic's first day to its last (D's follow-up on 9 March).
    whole = compare_topic(es, alias, PROFILE)
    assert whole.period.since == "2025-02-27T00:00:00Z" and whole.period.until == "2025-03-10T00:00:00Z"
    assert whole.totals.topic_articles == 20 and whole.totals.articles == 49
    later = compare_topic(es, alias, PROFILE, since=parse_when("2025-03-04"), until=UNTIL)
    assert {r.outlet: r.topic_articles for r in later.coverage} == {A: 3, B: 3, C: 0, D: 0, E: 0}
    assert later.totals.articles == 6 + 1 + 3 + 2 + 3 + 3  # topic + untagged from 4 to 6 March
    pair = compare_topic(es, alias, PROFILE, since=SINCE, until=UNTIL, outlets=[A, B])
    assert [(r.outlet, r.topic_articles, r.all_articles) for r in pair.coverage] == [(A, 7, 10), (B, 6, 12)]
    assert pair.totals.articles == 22 and pair.outlets_filter == [A, B]
    assert pair.coverage[0].topic_share == round(7 / 13, 4) and pair.coverage[0].all_share == round(10 / 22, 4)
    assert all(c.missing == [] for c in pair.clusters)  # A and B carried everything
    assert set(pair.terms.outlets) == {A, B}
    with pytest.raises(NoCoverage, match="no article tagged 'syria-war'"):
        compare_topic(es, alias, PROFILE, since=SINCE, until=UNTIL, outlets=[E])
    with pytest.raises(NoCoverage, match="no article tagged 'nope'"):
        compare_topic(es, alias, "nope")


PLANTED = {
    "A": ["الميليشيات", "التدخل الروسي"],
    "B": ["القوات الحليفة", "الدعم الروسي"],
    "C": ["الفصائل الرديفة", "الدور الروسي"],
    "D": ["الحضور الروسي", "المجموعات الموالية"],
}
SHARED = ["الغارات", "حلب", "مدنيين", "الغطاء الجوي", "ريف حلب", "الروسي", "سهل الغاب", "الجيش", "إدلب"]


def _same(a: str, b: str) -> bool:
    return normalize_for_hash(a) == normalize_for_hash(b)


def test_each_outlets_planted_words_are_its_distinctive_terms_and_shared_words_are_not(
    es: Elasticsearch, alias: str, topic: dict[str, str]
) -> None:
    data = compare_topic(es, alias, PROFILE, since=SINCE, until=UNTIL, terms=5)
    outlets = data.terms.outlets
    assert set(outlets) == {topic[k] for k in "ABCD"}  # E never wrote on the topic
    top = {outlet: [t.term for t in entry.terms] for outlet, entry in outlets.items()}
    # A and B tell the same events in different words, in six or seven articles each: their planted
    # words lead, significantly (z >= 1.96); nothing else of theirs passes.
    for key in "AB":
        assert [normalize_for_hash(t) for t in top[topic[key]]] == [normalize_for_hash(t) for t in PLANTED[key]]
    # "القوات" is over-used by B only inside "القوات الحليفة": the phrase is listed, the word is not.
    assert not any(_same("القوات", t) for terms in top.values() for t in terms)
    # C and D wrote three and two articles: not enough for any word to pass the test.
    assert top[topic["C"]] == [] and top[topic["D"]] == []
    for terms in top.values():
        for shared in SHARED:
            assert not any(_same(shared, t) for t in terms), (shared, terms)
    for term in outlets[topic["A"]].terms:
        assert term.z >= 1.96 and term.docs >= 2 and term.count >= term.docs
    method = data.terms.method
    tokens = sum(entry.tokens for entry in outlets.values())
    assert method.alpha0 == tokens and method.prior_scale == 1.0 and method.sample_per_outlet == 2000


def _fixture_counts() -> tuple[dict[str, str], dict[str, TermCounts]]:
    spec, articles = topic_articles()
    names = spec["outlets"]
    texts: dict[str, list[str]] = {}
    for a in articles:
        if a.topics and SINCE <= a.published_at < UNTIL:
            texts.setdefault(a.outlet, []).append(f"{a.title}\n{a.body}")
    return names, {outlet: count_terms(docs) for outlet, docs in texts.items()}


@pytest.mark.parametrize("prior_scale", [0.1, 1.0, 3.0])
def test_planted_words_rank_first_by_z_whatever_the_prior_strength(prior_scale: float) -> None:
    names, counts = _fixture_counts()
    comparison = log_odds(counts, prior_scale=prior_scale)
    shared = {" ".join(_key(w) for w in term.split()) for term in SHARED}
    for key, planted in PLANTED.items():
        # The raw ranking, before any filter: each outlet's planted phrases are in its top five, and its
        # top three are made of nothing but the planted words.
        top = [s.key for s in comparison.scores[names[key]][:5]]
        phrases = {" ".join(_key(w) for w in term.split()) for term in planted}
        words = {w for phrase in phrases for w in phrase.split()}
        assert phrases <= set(top), (key, top)
        assert all(set(k.split()) <= words for k in top[:3]), (key, top)
        assert not shared & set(top), (key, top)


def _key(word: str) -> str:
    [(key, _)] = [t for t in _terms_of(word) if " " not in t[0]]
    return key


def test_terms_that_only_echo_a_listed_term_are_left_out() -> None:
    # Outlet "b" says "القوات الحليفة" where "a" says "الميليشيات"; both say "القوات النظامية" and "تقدم".
    a = count_terms(["تقدم الميليشيات. القوات النظامية. تقدم الجيش."] * 100)
    b = count_terms(["تقدم القوات الحليفة. القوات النظامية. تقدم الجيش."] * 100)
    comparison = log_odds({"a": a, "b": b})
    raw_b = [s.key for s in comparison.scores["b"] if s.z >= 1.96]
    assert _key("القوات") in raw_b and f"{_key('تقدم')} {_key('القوات')}" in raw_b  # echoes, before the filter
    listed = [s.key for s in distinctive_terms(comparison, "b", b)]
    assert listed == [f"{_key('القوات')} {_key('الحليفة')}"]
    # "a" never writes الميليشيات outside "تقدم الميليشيات": the phrase stands for the word.
    assert [s.key for s in distinctive_terms(comparison, "a", a)] == [f"{_key('تقدم')} {_key('الميليشيات')}"]
    assert distinctive_terms(comparison, "a", a, exclude=frozenset({_key("تقدم"), _key("الميليشيات")})) == []


def test_log_odds_matches_the_formula_by_hand() -> None:
    x, y = TermCounts(), TermCounts()
    x.counts.update({"a": 3, "b": 1})
    y.counts.update({"a": 1, "b": 3})
    comparison = log_odds({"x": x, "y": y})
    scores = comparison.scores
    assert comparison.alpha0 == 8 and comparison.tokens == 8  # the pooled counts: alpha_a = alpha_b = 4
    delta = math.log(7 / 5) - math.log(5 / 7)
    z = delta / math.sqrt(1 / 7 + 1 / 5)
    [a, b] = scores["x"]
    assert (a.key, b.key) == ("a", "b")
    assert math.isclose(a.delta, delta) and math.isclose(a.z, z) and math.isclose(b.z, -z)
    assert math.isclose(scores["y"][0].z, z) and scores["y"][0].key == "b"
    assert log_odds({"x": x}).scores == {"x": []}  # nobody to compare with


def test_tokens_are_normalised_stemmed_words_and_phrases_without_stop_words() -> None:
    terms = list(_terms_of("وقال الوزير إن للتدخل الروسيّة في سوريا، والميليشيات الموالية."))
    assert [d for _, d in terms] == [
        "الوزير",  # وقال and إن are stop words
        "التدخل",  # ل + ال → the article comes back
        "الروسية",
        "التدخل الروسية",
        "سوريا",
        "الميليشيات",  # و taken off; the comma ended the phrase before
        "الموالية",
        "الميليشيات الموالية",
    ]
    keys = dict((d, k) for k, d in terms)
    assert keys["التدخل"] == _key("تدخل") == _key("بالتدخل") and _key("وزير") == _key("الوزير")
    counts = count_terms(["التدخل الروسي. التدخل الروسي!", "الدعم الروسي"])
    assert counts.articles == 2 and counts.docs[_key("الروسي")] == 2 and counts.counts[_key("الروسي")] == 3
    assert display_forms(["بالتدخل الروسي", "التدخل الروسي", "التدخل الروسي"], {keys["التدخل"]}) == {
        keys["التدخل"]: "التدخل"
    }


def test_a_small_sample_is_each_outlets_most_recent_articles(
    es: Elasticsearch, alias: str, topic: dict[str, str]
) -> None:
    data = compare_topic(es, alias, PROFILE, since=SINCE, until=UNTIL, sample=3)
    assert {o: e.articles_sampled for o, e in data.terms.outlets.items()} == {
        topic["A"]: 3,
        topic["B"]: 3,
        topic["C"]: 3,
        topic["D"]: 2,
    }
    # Which three: one query for all outlets, cut at the day that reaches back three articles, paged
    # (two hits a page here), and trimmed to three per outlet, newest first.
    over_time = {topic["A"]: {"2025-03-01": 2, "2025-03-04": 1, "2025-03-05": 1, "2025-03-06": 1}, topic["D"]: {"x": 2}}
    cutoffs = topic_module._sample_cutoffs(over_time, 3)
    assert cutoffs == {topic["A"]: "2025-03-04", topic["D"]: None}
    body = topic_module._sample_body([{"term": {"topics": PROFILE}}], cutoffs)
    first = es.search(index=alias, **body, size=2)
    texts = topic_module._collect_samples(es, alias, body, first, 3, progress=lambda *a: None, page_size=2)
    titles = {o: [t.split("\n")[0] for t in ts] for o, ts in texts.items()}
    assert titles == {
        topic["A"]: [
            "موسكو تتمسك بالعمليات والميليشيات تتسلم مواقع جديدة",
            "نزوح واسع من إدلب وحلب مع اتساع التدخل الروسي",
            "عتاد جديد للميليشيات يصل إلى مطار حماة",
        ],
        # No period and no cutoff here: all three of D's articles, its follow-up of 9 March first.
        topic["D"]: [
            "حصيلة معارك سهل الغاب ترتفع",
            "غارات كثيفة على ريف إدلب الغربي",
            "غارات على سوق الأتارب توقع سبعة قتلى",
        ],
    }


def test_lags_read_as_an_analyst_would_say_them() -> None:
    assert [format_lag(m) for m in (None, 0, 35, 60, 245, 1560, 8640)] == [
        "",
        "first",
        "+35 min",
        "+1 h",
        "+4 h 5 min",
        "+26 h",
        "+6 d",
    ]
    assert format_lag(1560 + 1440) == "+2 d 2 h"
    assert parse_when("2025-03-06", end=True) == datetime(2025, 3, 7, tzinfo=UTC)
    assert parse_when("2025-03-06T10:00:00+02:00") == datetime(2025, 3, 6, 8, tzinfo=UTC)
    assert normalize_text("التدخل") == "التدخل"


def test_a_long_period_is_counted_by_week(es: Elasticsearch, alias: str) -> None:
    days = ["2025-01-01T10:00:00Z", "2025-01-03T10:00:00Z", "2025-02-15T10:00:00Z", "2025-04-20T23:30:00Z"]
    write(
        es,
        alias,
        [
            make_article(f"https://w.example/{n}", "منبر الشام", day, "عنوان", "نص.", topics=(PROFILE,))
            for n, day in enumerate(days)
        ],
    )
    data = compare_topic(es, alias, PROFILE)
    series = data.over_time
    assert series.interval == "week" and data.period.interval == "week"
    assert series.starts[0] == "2024-12-30" and series.starts[-1] == "2025-04-14"  # Mondays
    counts = dict(zip(series.starts, series.outlets["منبر الشام"], strict=True))
    assert counts["2024-12-30"] == 2 and counts["2025-02-10"] == 1 and counts["2025-04-14"] == 1
    assert sum(counts.values()) == 4
