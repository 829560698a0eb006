"""The Elasticsearch features the product relies on, exercised against the pinned embedded server
(noida-db), so that a version bump that breaks one fails here first, with the feature's name. Production
runs on Elasticsearch 8.x, which supports all of these (see ../shared/ES-COMPAT.md)."""

from __future__ import annotations

import pytest
from elasticsearch import ApiError, Elasticsearch
from elasticsearch import helpers as es_helpers

from pipeline.records import Article
from pipeline.store import index


@pytest.fixture
def ready(indexed: str) -> str:
    return indexed


def _doc(n: int, outlet: str, day: int, cluster: str, score: float) -> dict[str, object]:
    return {
        "url": f"https://x.example/{n}",
        "canonical_url": f"https://x.example/{n}",
        "feed_id": "f",
        "outlet": outlet,
        "title": f"الغارات الروسية على إدلب {n}",
        "body": "قالت وزارة الدفاع الروسية إن طائراتها قصفت مواقع في ريف إدلب.",
        "summary": "",
        "published_at": f"2026-11-{day:02d}T08:00:00Z",
        "fetched_at": f"2026-11-{day:02d}T08:05:00Z",
        "language": "ar",
        "content_hash": f"h{n}",
        "word_count": 10,
        "cluster_id": cluster,
        "cluster_size": 1,
        "topics": ["iran-russia-assad"] if score >= 5 else [],
        "topic_matches": [{"profile": "iran-russia-assad", "score": score, "terms": ["روسيا"]}],
    }


def _load(es: Elasticsearch, alias: str) -> None:
    docs = [_doc(1, "أ", 1, "c1", 7.0), _doc(2, "ب", 1, "c1", 6.0), _doc(3, "ب", 2, "c3", 2.0)]
    es_helpers.bulk(es, ({"_index": alias, "_id": f"d{i}", "_source": d} for i, d in enumerate(docs, 1)))
    es.indices.refresh(index=alias)


def test_template_alias_and_strict_mapping(es: Elasticsearch, ready: str) -> None:
    assert es.indices.exists_alias(name=ready)
    assert es.indices.get_index_template(name=index.Names(ready).template)["index_templates"]
    with pytest.raises(ApiError):
        es.index(index=ready, id="x", document={"no_such_field": 1}, refresh=True)


def test_arabic_analyzer_normalises_and_stems(es: Elasticsearch, ready: str) -> None:
    tokens = es.indices.analyze(index=ready, analyzer="arabic", text="الأسد الاسد أسد")["tokens"]
    assert len({t["token"] for t in tokens}) == 1


def test_create_conflicts_and_mget_reads_in_real_time(es: Elasticsearch, ready: str) -> None:
    lsh = index.Names(ready).lsh
    ok = list(es_helpers.streaming_bulk(es, [{"_op_type": "create", "_index": lsh, "_id": "k.0", "_source": {}}]))
    again = list(
        es_helpers.streaming_bulk(
            es, [{"_op_type": "create", "_index": lsh, "_id": "k.0", "_source": {}}], raise_on_error=False
        )
    )
    assert ok[0][0] and not again[0][0] and again[0][1]["create"]["status"] == 409
    # No refresh: look-ups by id see what was just written (the bucket store relies on it).
    assert es.mget(index=lsh, ids=["k.0", "k.1"])["docs"][0]["found"]
    _load(es, ready)
    es.update(index=ready, id="d1", doc={"cluster_size": 2})
    assert es.mget(index=ready, ids=["d1"])["docs"][0]["_source"]["cluster_size"] == 2


def test_queries_highlight_and_search_after(es: Elasticsearch, ready: str) -> None:
    _load(es, ready)
    resp = es.search(
        index=ready,
        query={
            "bool": {
                "must": [{"multi_match": {"query": "الغارات الروسية", "fields": ["title^3", "body"]}}],
                "filter": [
                    {"terms": {"outlet": ["أ", "ب"]}},
                    {"range": {"published_at": {"gte": "2026-11-01", "lte": "2026-11-02T23:59:59Z"}}},
                ],
            }
        },
        highlight={"fields": {"title": {}}},
    )
    assert resp["hits"]["total"]["value"] == 3 and "<em>" in str(resp["hits"]["hits"][0]["highlight"])
    phrase = es.search(index=ready, query={"match_phrase": {"body": "ريف إدلب"}})
    assert phrase["hits"]["total"]["value"] == 3
    page1 = es.search(index=ready, size=2, sort=[{"canonical_url": "asc"}], query={"match_all": {}})
    after = page1["hits"]["hits"][-1]["sort"]
    page2 = es.search(index=ready, size=2, sort=[{"canonical_url": "asc"}], search_after=after)
    assert len(page2["hits"]["hits"]) == 1
    assert es.count(index=ready)["count"] == 3


def test_aggregations_used_by_compare_and_dashboards(es: Elasticsearch, ready: str) -> None:
    _load(es, ready)
    resp = es.search(
        index=ready,
        size=0,
        aggs={
            "outlets": {
                "terms": {"field": "outlet", "order": {"_count": "desc"}},
                "aggs": {"days": {"date_histogram": {"field": "published_at", "calendar_interval": "day"}}},
            },
            "topic": {"filter": {"term": {"topics": "iran-russia-assad"}}},
            "stories": {"cardinality": {"field": "cluster_id"}},
            "first": {"top_hits": {"size": 1, "sort": [{"published_at": "asc"}], "_source": ["outlet"]}},
            "matches": {
                "nested": {"path": "topic_matches"},
                "aggs": {"best": {"max": {"field": "topic_matches.score"}}},
            },
        },
    )
    aggs = resp["aggregations"]
    assert [(b["key"], b["doc_count"]) for b in aggs["outlets"]["buckets"]] == [("ب", 2), ("أ", 1)]
    assert [b["doc_count"] for b in aggs["outlets"]["buckets"][0]["days"]["buckets"]] == [1, 1]
    assert aggs["topic"]["doc_count"] == 2 and aggs["stories"]["value"] == 2
    assert aggs["matches"]["best"]["value"] == 7.0
    multi = es.msearch(searches=[{"index": ready}, {"query": {"term": {"cluster_id": "c1"}}, "size": 0}])
    assert multi["responses"][0]["hits"]["total"]["value"] == 2


def test_article_records_round_trip_through_the_index(es: Elasticsearch, ready: str) -> None:
    _load(es, ready)
    src = es.get(index=ready, id="d1")["_source"]
    article = Article.from_doc({**src, "lsh_bands": [], "minhash": ""})
    assert article.to_doc()["canonical_url"] == src["canonical_url"] and article.outlet == "أ"
