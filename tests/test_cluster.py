"""Near-duplicate clustering: the pure parts, and clusters kept in the real index across runs."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from elasticsearch import Elasticsearch
from factories import make_article
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pipeline.records import Article
from pipeline.store import index
from pipeline.stories.cluster import index_clustered
from pipeline.stories.fingerprint import Node, assign, estimated_similarity, fingerprint, shingles, similarity

T0 = datetime(2025, 10, 3, 6, 0, tzinfo=UTC)

WIRE = [
    "شنت الطائرات الحربية الروسية فجر اليوم الجمعة سلسلة غارات على مواقع لفصائل المعارضة في ريف إدلب الجنوبي.",
    "وقال المرصد السوري لحقوق الإنسان إن الغارات استهدفت محيط بلدتي كفرنبل وحاس وأسفرت عن مقتل سبعة مدنيين.",
    "وأضاف المرصد أن فرق الدفاع المدني تعمل على انتشال العالقين تحت الأنقاض وسط تحليق مستمر للطيران.",
    "ولم يصدر تعليق فوري من وزارة الدفاع الروسية التي تقول إن ضرباتها تستهدف مواقع الجماعات الإرهابية.",
]
COPY = [
    "شنّت الطائرات الحربية الروسية، فجر اليوم الجمعة، سلسلة غارات على مواقع لفصائل المعارضة في ريف ادلب الجنوبي.",
    "وقال المرصد السوري لحقوق الانسان ان الغارات استهدفت محيط بلدتي كفرنبل وحاس واسفرت عن مقتل ٧ مدنيين.",
    "واضاف المرصد ان فرق الدفاع المدني تعمل على انتشال العالقين تحت الانقاض وسط تحليق مستمر للطيران.",
]
OTHER = [
    "قصفت مقاتلات روسية بعد ظهر الجمعة أطراف مدينة جسر الشغور في ريف إدلب الغربي بعدة صواريخ شديدة الانفجار.",
    "وذكرت مصادر محلية أن القصف طال مزارع ومنشآت زراعية ولم يسفر عن إصابات بشرية حتى ساعة إعداد هذا الخبر.",
    "ويأتي القصف بعد يومين من اجتماع عسكري في أنقرة لبحث ترتيبات وقف إطلاق النار في المنطقة الشمالية الغربية.",
]


def article(n: int, paragraphs: Sequence[str], *, minutes: int = 0, outlet: str = "وكالة", title: str = "") -> Article:
    return make_article(
        f"https://news.example/{n}",
        body="\n\n".join(paragraphs),
        outlet=outlet,
        title=title or f"عنوان {n}",
        published_at=T0 + timedelta(minutes=minutes),
        fetched_at=T0,
        content_hash=f"h{n}",
        fingerprinted=True,
    )


def test_spelling_variants_make_the_same_shingles() -> None:
    assert shingles("قال الرئيسُ إنّ الأمرَ مُهمّ جداً") == shingles("قال الرئيس ان الامر مهم جدا")
    assert shingles("عاد ٣٠٠ لاجئ إلى حلب") == shingles("عاد 300 لاجئ الى حلب")


def test_estimate_follows_the_exact_similarity() -> None:
    a, b, c = ("\n".join(p) for p in (WIRE, COPY, OTHER))
    fa, fb, fc = fingerprint(a), fingerprint(b), fingerprint(c)
    assert abs(estimated_similarity(fa, fb) - similarity(shingles(a), shingles(b))) < 0.15
    assert estimated_similarity(fa, fc) < 0.1
    assert set(fa.bands) & set(fb.bands) and fingerprint(a) == fa  # deterministic


def test_components_and_their_earliest_head() -> None:
    new = [Node("b", T0 + timedelta(hours=1)), Node("c", T0 + timedelta(hours=2)), Node("d", T0)]
    result = assign(new, pairs=[("b", "c")], joins=[("c", "old")], heads={"old": T0 - timedelta(hours=5)})
    assert result.clusters == {"b": "old", "c": "old", "d": "d"}
    assert result.repoint == {} and result.changed == {"old"}
    earlier = assign(
        [Node("e", T0 - timedelta(days=1))], pairs=[], joins=[("e", "old")], heads={"old": T0 - timedelta(hours=5)}
    )
    assert earlier.clusters == {"e": "e"} and earlier.repoint == {"old": "e"}


@hsettings(max_examples=60, deadline=None)
@given(st.permutations(range(6)), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=8))
def test_assignment_does_not_depend_on_order(order: list[int], edges: list[tuple[int, int]]) -> None:
    nodes = [Node(f"n{i}", T0 + timedelta(minutes=i % 3)) for i in range(6)]
    base = assign(nodes, [(f"n{a}", f"n{b}") for a, b in edges], [], {})
    shuffled = assign([nodes[i] for i in order], [(f"n{b}", f"n{a}") for a, b in reversed(edges)], [], {})
    assert base.clusters == shuffled.clusters


def run(es: Elasticsearch, alias: str, batch: Sequence[Article]) -> None:
    index_clustered(es, alias, batch, threshold=0.4, window_days=30)
    es.indices.refresh(index=alias)  # as a cycle does when it has written everything


def clusters_of(es: Elasticsearch, alias: str) -> dict[str, tuple[str, str | None, int]]:
    hits = es.search(index=alias, size=100, source_includes=["cluster_id", "duplicate_of", "cluster_size"])
    return {
        h["_id"]: (h["_source"]["cluster_id"], h["_source"]["duplicate_of"], h["_source"]["cluster_size"])
        for h in hits["hits"]["hits"]
    }


@pytest.mark.usefixtures("indexed")
def test_copies_across_runs_join_the_first_and_other_stories_stay_apart(es: Elasticsearch, alias: str) -> None:
    wire, copy, other = article(1, WIRE), article(2, COPY, minutes=40), article(3, OTHER, minutes=20)
    run(es, alias, [wire])
    run(es, alias, [copy, other])  # a later run, as after a restart: the state is in the index
    got = clusters_of(es, alias)
    assert got[copy.id] == (wire.id, wire.id, 2) and got[wire.id] == (wire.id, None, 2)
    assert got[other.id] == (other.id, None, 1)


@pytest.mark.usefixtures("indexed")
def test_an_earlier_copy_arriving_later_becomes_the_head(es: Elasticsearch, alias: str) -> None:
    late, later, earliest = (
        article(1, WIRE, minutes=30),
        article(2, COPY, minutes=60),
        article(3, WIRE[:3], minutes=-90),
    )
    run(es, alias, [late, later])
    run(es, alias, [earliest])
    got = clusters_of(es, alias)
    assert {v for v in got.values()} == {(earliest.id, None, 3), (earliest.id, earliest.id, 3)}
    assert got[earliest.id] == (earliest.id, None, 3)


def test_clusters_are_the_same_whatever_the_order_of_arrival(es: Elasticsearch, alias: str) -> None:
    articles = [
        article(1, WIRE),
        article(2, COPY, minutes=40),
        article(3, OTHER, minutes=20),
        article(4, WIRE[1:], minutes=-10),
        article(5, OTHER[:2], minutes=5),
    ]
    outcomes = set()
    rng = random.Random(7)
    for attempt in range(3):
        name = f"{alias}{attempt}"
        index.ensure_indices(es, name)
        order = articles[:]
        rng.shuffle(order)
        cut = rng.randrange(1, len(order))
        for batch in (order[:cut], order[cut:]):
            run(es, name, batch)
        outcomes.add(tuple(sorted(clusters_of(es, name).items())))
        for suffix in ("000001", "feeds", "seen", "alerts", "lsh", "journal"):
            es.indices.delete(index=f"{name}-{suffix}", ignore_unavailable=True)
    assert len(outcomes) == 1
    [result] = outcomes
    heads = {cluster for _, (cluster, _, _) in result}
    assert heads == {articles[3].id, articles[4].id}  # the earliest copy of each story


def test_pairs_of_unrelated_articles_are_never_linked() -> None:
    texts = ["\n".join(p) for p in (WIRE, OTHER)]
    for a, b in itertools.combinations(texts, 2):
        assert similarity(shingles(a), shingles(b)) < 0.1
