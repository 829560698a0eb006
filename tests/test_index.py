"""Index set-up and bulk writes against the real embedded server, including a fault-injecting proxy
that answers 429 the way a busy Elasticsearch does."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from elasticsearch import Elasticsearch
from factories import make_article as factory_article
from proxy import FaultProxy, answer

from pipeline.errors import IndexingError
from pipeline.records import Article
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.store.es import bulk_write, connect


def make_article(n: int, outlet: str = "صوت الشام") -> Article:
    return factory_article(
        f"https://example.org/news/{n}",
        outlet=outlet,
        title=f"عنوان الخبر رقم {n}",
        body=f"نص الخبر رقم {n} عن الغارات الروسية في سوريا",
        content_hash=f"h{n}",
    )


def test_set_up_is_idempotent_and_puts_the_alias_over_a_backing_index(es: Elasticsearch, alias: str) -> None:
    index.ensure_indices(es, alias)
    index.ensure_indices(es, alias)
    aliases = es.indices.get_alias(name=alias)
    assert list(aliases) == [f"{alias}-000001"]
    assert aliases[f"{alias}-000001"]["aliases"][alias]["is_write_index"] is True
    mapping = es.indices.get_mapping(index=alias)[f"{alias}-000001"]["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["properties"]["body"]["analyzer"] == "arabic"


def test_an_index_squatting_on_the_alias_name_is_a_clear_error(es: Elasticsearch, alias: str) -> None:
    es.indices.create(index=alias)
    try:
        with pytest.raises(IndexingError, match="is an index, not an alias"):
            index.ensure_indices(es, alias)
    finally:
        es.indices.delete(index=alias)


def test_bulk_reports_a_bad_document_and_keeps_the_rest(es: Elasticsearch, alias: str) -> None:
    index.ensure_indices(es, alias)
    good = [make_article(n) for n in range(5)]
    actions = list(index.article_actions(alias, good))
    actions.insert(2, {"_op_type": "index", "_index": alias, "_id": "bad", "_source": {"not_a_field": 1}})
    result = bulk_write(es, actions)
    es.indices.refresh(index=alias)
    assert sorted(result.ok) == sorted(a.id for a in good)
    assert [doc_id for doc_id, _ in result.failed] == ["bad"]
    assert es.count(index=alias)["count"] == 5


def test_rewriting_the_same_articles_does_not_duplicate_them(es: Elasticsearch, alias: str) -> None:
    index.ensure_indices(es, alias)
    articles = [make_article(n) for n in range(3)]
    bulk_write(es, index.article_actions(alias, articles))
    bulk_write(es, index.article_actions(alias, articles))
    es.indices.refresh(index=alias)
    assert es.count(index=alias)["count"] == 3


BUSY = b'{"error":{"type":"es_rejected_execution_exception","reason":"queue full"},"status":429}'


class _Busy429Proxy(FaultProxy):
    """Answers the first ``busy`` bulk requests with 429, as a busy Elasticsearch does."""

    def __init__(self, upstream: str, busy: int) -> None:
        self.bulk_calls = 0

        def fault(handler: BaseHTTPRequestHandler, path: str, body: bytes) -> bool:
            if "_bulk" not in path:
                return False
            self.bulk_calls += 1
            if self.bulk_calls > busy:
                return False
            answer(
                handler, 429, b'{"error":{"type":"es_rejected_execution_exception","reason":"queue full"},"status":429}'
            )
            return True

        super().__init__(upstream, fault)


@pytest.fixture
def busy_proxy(es_url: str) -> Iterator[_Busy429Proxy]:
    proxy = _Busy429Proxy(es_url, busy=2)
    yield proxy
    proxy.close()


def test_bulk_retries_429_and_indexes_everything_once(busy_proxy: _Busy429Proxy, es: Elasticsearch, alias: str) -> None:
    index.ensure_indices(es, alias)
    client = connect(Settings(), busy_proxy.url)
    articles = [make_article(n) for n in range(20)]
    result = bulk_write(client, index.article_actions(alias, articles))
    es.indices.refresh(index=alias)
    assert len(result.ok) == 20 and not result.failed
    assert busy_proxy.bulk_calls >= 3  # two refusals, then the batch went through
    assert es.count(index=alias)["count"] == 20


def test_unreachable_cluster_is_an_indexing_error() -> None:
    with pytest.raises(IndexingError, match="does not answer"):
        connect(Settings(), "http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("settings_kw", "expected"),
    [
        ({"es_api_key": "a2V5OnNlY3JldA=="}, "ApiKey a2V5OnNlY3JldA=="),
        (
            {"es_user": "elastic", "es_password": "pässword"},
            "Basic " + base64.b64encode("elastic:pässword".encode()).decode(),
        ),
    ],
)
def test_credentials_reach_the_cluster(es_url: str, settings_kw: dict[str, str], expected: str) -> None:
    proxy = _Busy429Proxy(es_url, busy=0)
    try:
        client = connect(Settings(**settings_kw), proxy.url)  # type: ignore[arg-type]
        client.count(index="*")
        assert proxy.authorization and set(proxy.authorization) == {expected}
    finally:
        proxy.close()
