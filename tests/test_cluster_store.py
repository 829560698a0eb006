"""The near-duplicate bucket store (pipeline/store/buckets.py) in the real embedded server: workers filing copies at
once, restarts, articles taken again, the look-back window, crowded buckets."""

from __future__ import annotations

import itertools
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from elasticsearch import Elasticsearch
from proxy import FaultProxy
from test_cluster import COPY, OTHER, WIRE, article, clusters_of
from test_cluster_accuracy import load_fixtures, to_article

from pipeline.records import Article
from pipeline.store import buckets, index
from pipeline.store.embedded import start_server, stop_group
from pipeline.store.es import bulk_write, get_many
from pipeline.stories.cluster import backfill, index_clustered, prepare_index
from pipeline.stories.fingerprint import merge, shingles, similarity, sketch

# A copy of WIRE as another outlet runs it: first paragraph reworded, the rest as sent.
COPY2 = [
    "شنت طائرات حربية روسية فجر الجمعة سلسلة غارات على مواقع لفصائل المعارضة في ريف إدلب الجنوبي.",
    *WIRE[1:],
]


def run(es: Elasticsearch, alias: str, batch: Sequence[Article], *, window_days: int = 30) -> None:
    index_clustered(es, alias, batch, threshold=0.4, window_days=window_days)
    es.indices.refresh(index=alias)


def filed_slots(es: Elasticsearch, alias: str, articles: Sequence[Article]) -> dict[str, list[str]]:
    """Key → the article ids in its bucket, for every key the articles are filed under."""
    keys = {
        k
        for src in get_many(es, alias, [a.id for a in articles], fields=["lsh_bands"]).values()
        for k in src["lsh_bands"]
    }
    return {k: [m.article_id for m in b.members] for k, b in buckets.read_buckets(es, alias, keys).items()}


def assert_every_article_filed_once(es: Elasticsearch, alias: str, articles: Sequence[Article]) -> None:
    docs = get_many(es, alias, [a.id for a in articles], fields=["lsh_bands"])
    slots = filed_slots(es, alias, articles)
    for a in articles:
        assert len(docs[a.id]["lsh_bands"]) == buckets.FILED_KEYS
        for key in docs[a.id]["lsh_bands"]:
            assert slots[key].count(a.id) == 1


def test_sketches_of_copies_share_their_first_keys_and_merge_picks_the_earliest_head() -> None:
    a, b, c = (sketch(shingles("\n".join(p))) for p in (WIRE, COPY, OTHER))
    assert a == sorted(a) and sketch(shingles("\n".join(WIRE))) == a  # ordered, deterministic
    assert set(a[: buckets.FILED_KEYS]) & set(b[: buckets.FILED_KEYS])
    assert not set(a[: buckets.PROBE_STEP]) & set(c[: buckets.PROBE_STEP])
    t0 = article(1, WIRE).published_at
    heads = {"x": t0, "y": t0 - timedelta(hours=1), "z": t0 + timedelta(hours=1), "w": t0}
    assert merge([("x", "y"), ("z", "x")], heads) == {"x": "y", "z": "y"}
    assert merge([("x", "w")], heads) == {"x": "w"} or merge([("x", "w")], heads) == {"w": "x"}
    assert merge([("w", "x")], heads) == merge([("x", "w")], heads)  # ties go to the smaller id


@pytest.mark.parametrize("pause_after", ["probe", "file_articles"])
@pytest.mark.usefixtures("indexed")
def test_two_workers_filing_copies_of_one_story_at_once_make_one_cluster(
    es: Elasticsearch, es_url: str, alias: str, monkeypatch: pytest.MonkeyPatch, pause_after: str
) -> None:
    """Both workers look up (or also file) before either writes its article: the worst interleaving."""
    first = [article(1, WIRE, minutes=10), article(3, OTHER, minutes=5)]
    second = [article(2, COPY, minutes=-20), article(4, COPY2, minutes=30, outlet="موقع")]
    barrier = threading.Barrier(2, timeout=30)
    real: Callable[..., Any] = getattr(buckets, pause_after)
    local = threading.local()

    def paused(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        if not getattr(local, "paused", False):  # the first call in each worker: the look-up, or the filing
            local.paused = True
            barrier.wait()
        return out

    monkeypatch.setattr(buckets, pause_after, paused)
    errors: list[BaseException] = []

    def worker(batch: list[Article]) -> None:
        client = Elasticsearch(es_url, request_timeout=30)
        try:
            run(client, alias, batch)
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)
            barrier.abort()
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(batch,)) for batch in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    got = clusters_of(es, alias)
    copies = [first[0], second[0], second[1]]
    assert {got[a.id] for a in copies} == {(second[0].id, None, 3), (second[0].id, second[0].id, 3)}
    assert got[first[1].id] == (first[1].id, None, 1)
    assert_every_article_filed_once(es, alias, [*first, *second])


def server_gone(data_dir: Path) -> bool:
    """No process serves ``data_dir`` any more (the server outlives its launcher by a moment)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(data_dir).encode() in cmdline.read_bytes():
                return False
        except OSError:
            continue
    return True


def test_a_restarted_server_and_a_new_client_see_the_same_clusters(tmp_path: Path) -> None:
    proc, url = start_server(tmp_path / "es")
    alias = "restart-articles"
    wire, copy, other = article(1, WIRE), article(2, COPY, minutes=40), article(3, OTHER, minutes=20)
    try:
        es = Elasticsearch(url, request_timeout=30)
        index.ensure_indices(es, alias)
        run(es, alias, [wire, other])
        es.close()
    finally:
        stop_group(proc)
    wait_until(lambda: server_gone(tmp_path / "es"), timeout=30)
    proc, url = start_server(tmp_path / "es")
    try:
        es = Elasticsearch(url, request_timeout=30)
        index.ensure_indices(es, alias)
        run(es, alias, [copy])
        got = clusters_of(es, alias)
        es.close()
    finally:
        stop_group(proc)
        shutil.rmtree(tmp_path / "es", ignore_errors=True)
    assert got[copy.id] == (wire.id, wire.id, 2) and got[other.id] == (other.id, None, 1)


@pytest.mark.usefixtures("indexed")
def test_an_article_taken_again_keeps_its_cluster_and_is_not_filed_twice(es: Elasticsearch, alias: str) -> None:
    wire, copy = article(1, WIRE), article(2, COPY, minutes=40)
    run(es, alias, [wire, copy])
    before = filed_slots(es, alias, [wire, copy])
    run(es, alias, [copy])  # a retried batch
    updated = article(1, [*WIRE, "وفي وقت لاحق ارتفعت حصيلة القتلى إلى عشرة مدنيين بينهم ثلاثة أطفال."])
    run(es, alias, [updated])  # the same URL, its text updated
    got = clusters_of(es, alias)
    assert got[copy.id] == (wire.id, wire.id, 2) and got[wire.id] == (wire.id, None, 2)
    after = buckets.read_buckets(es, alias, before)
    for key, ids in before.items():
        assert [m.article_id for m in after[key].members][: len(ids)] == ids  # append-only
    assert_every_article_filed_once(es, alias, [updated, copy])


@pytest.mark.usefixtures("indexed")
def test_copies_further_apart_than_the_window_stay_apart(es: Elasticsearch, alias: str) -> None:
    wire = article(1, WIRE)
    late = article(2, COPY, minutes=31 * 24 * 60)
    inside = article(3, COPY2, minutes=29 * 24 * 60)
    run(es, alias, [wire])
    run(es, alias, [late])
    assert clusters_of(es, alias)[late.id] == (late.id, None, 1)
    run(es, alias, [inside])  # within the window of both: it links them (the window bounds pairs)
    got = clusters_of(es, alias)
    assert got[inside.id] == (wire.id, wire.id, 3) and got[late.id] == (wire.id, wire.id, 3)
    # A longer window, in a fresh index: the late copy is found.
    other = f"{alias}w"
    index.ensure_indices(es, other)
    try:
        run(es, other, [wire], window_days=40)
        run(es, other, [late], window_days=40)
        assert clusters_of(es, other)[late.id] == (wire.id, wire.id, 2)
    finally:
        for suffix in ("000001", "feeds", "seen", "alerts", "lsh", "journal"):
            es.indices.delete(index=f"{other}-{suffix}", ignore_unavailable=True)


TEMPLATE = [
    "تابعونا على مواقع التواصل الاجتماعي للحصول على آخر الأخبار العاجلة والتقارير الخاصة من مراسلينا.",
    "جميع الحقوق محفوظة للناشر ويمنع نسخ المحتوى أو إعادة نشره دون إذن خطي مسبق من إدارة التحرير.",
    "للاشتراك في النشرة البريدية اليومية أدخل عنوان بريدك الإلكتروني واضغط على زر الإرسال أدناه.",
]


def with_template(item: dict[str, Any], n: int) -> Article:
    """A labelled fixture article as an outlet whose page template the extractor kept would run it."""
    a = to_article(item)
    return article(n, [a.body, *TEMPLATE], minutes=n)


@pytest.mark.usefixtures("indexed")
def test_a_crowded_bucket_takes_no_more_articles_and_its_members_are_still_found(es: Elasticsearch, alias: str) -> None:
    stories: dict[str, list[dict[str, Any]]] = {}
    for item in load_fixtures():
        stories.setdefault(item["cluster"], []).append(item)
    firsts = [items[0] for items in stories.values()][:24]
    articles = [with_template(item, n) for n, item in enumerate(firsts)]
    grams = [shingles(a.body) for a in articles]
    assert max(similarity(x, y) for x, y in itertools.combinations(grams, 2)) < 0.4  # the template is no story
    for start in range(0, len(articles), 4):
        run(es, alias, articles[start : start + 4])
    shared = set.intersection(*(set(sketch(g)[: buckets.PROBE_STEP]) for g in grams))
    assert shared, "the template's shingles are among every article's first keys"
    read = buckets.read_buckets(es, alias, shared)
    assert all(len(b.members) <= buckets.CROWDED for b in read.values())
    assert all(b.crowded for b in read.values())
    assert_every_article_filed_once(es, alias, articles)  # under later keys once the first were crowded
    got = clusters_of(es, alias)
    assert len({c for c, _, _ in got.values()}) == len(articles)
    # Another outlet's copy of the very first article, filed while the template's keys were still open.
    other = next(
        item
        for item in stories[firsts[0]["cluster"]][1:]
        if similarity(shingles(to_article(item).body), shingles(to_article(firsts[0]).body)) >= 0.5
    )
    copy = with_template(other, 500)
    run(es, alias, [copy])
    assert clusters_of(es, alias)[copy.id] == (articles[0].id, articles[0].id, 2)


@pytest.mark.usefixtures("indexed")
def test_a_full_bucket_is_read_no_further_than_its_last_slot(es: Elasticsearch, alias: str) -> None:
    members = [buckets.Member(f"a{n:03d}", 1_760_000_000 + n) for n in range(buckets.CAP + 3)]
    empty = {"k1": buckets.Bucket()}
    # Workers filing at once can overfill a bucket; write the slots as they would.
    bulk_write(
        es,
        (
            {
                "_op_type": "create",
                "_index": index.Names(alias).lsh,
                "_id": buckets.slot_id("k1", n),
                "_source": {"article_id": m.article_id, "published_at": m.published_at},
            }
            for n, m in enumerate(members)
        ),
    )
    bucket = buckets.read_buckets(es, alias, ["k1", "k2"])
    assert bucket["k1"].full and bucket["k1"].crowded and bucket["k2"].members == [] and not bucket["k2"].crowded
    filed = buckets.file_articles(es, alias, [("k1", buckets.Member("new", 1))], empty)
    assert filed.slots == {}  # slots 0.. are taken and it becomes crowded: not filed there
    assert filed.taken["k1"] == list(range(buckets.CROWDED))


@pytest.mark.usefixtures("indexed")
def test_clustering_reads_and_writes_by_id_only(es: Elasticsearch, es_url: str, alias: str) -> None:
    """No search and no refresh: on the embedded server each costs seconds at 100,000 articles."""
    run(es, alias, [article(1, WIRE, minutes=30), article(3, OTHER)])
    paths: list[str] = []

    def record(handler: BaseHTTPRequestHandler, path: str, body: bytes) -> bool:
        paths.append(f"{handler.command} {path}")
        return False

    proxy = FaultProxy(es_url, record)
    try:
        client = Elasticsearch(proxy.url, request_timeout=30)
        batch = [article(2, COPY, minutes=40), article(4, WIRE[:3], minutes=-90)]  # joins, then moves the cluster
        index_clustered(client, alias, batch, threshold=0.4, window_days=30)
        texts = buckets.indexed_texts(client, alias, batch)
        client.close()
    finally:
        proxy.close()
    assert paths and all(p.split("?")[0].rsplit("/", 1)[-1] in ("_mget", "_bulk") for p in paths), paths
    assert texts == {(a.outlet, a.content_hash): a.id for a in batch}
    es.indices.refresh(index=alias)
    got = clusters_of(es, alias)
    assert {got[a.id] for a in batch} == {(batch[1].id, batch[1].id, 3), (batch[1].id, None, 3)}


@pytest.mark.usefixtures("indexed")
def test_exact_texts_are_found_by_id_per_outlet_and_as_they_are_now(es: Elasticsearch, alias: str) -> None:
    first = article(1, WIRE, outlet="وكالة")
    run(es, alias, [first])
    again = replace(article(2, WIRE, outlet="وكالة"), content_hash=first.content_hash)  # an AMP copy, say
    elsewhere = replace(article(3, WIRE, outlet="صحيفة"), content_hash=first.content_hash)
    assert buckets.indexed_texts(es, alias, [again, elsewhere]) == {("وكالة", first.content_hash): first.id}
    run(es, alias, [replace(article(1, OTHER, outlet="وكالة"), content_hash="changed")])  # its text updated
    assert buckets.indexed_texts(es, alias, [again]) == {}


@pytest.mark.usefixtures("indexed")
def test_a_cluster_grown_over_several_runs_moves_whole_to_an_earlier_copy(es: Elasticsearch, alias: str) -> None:
    copies = [article(1, WIRE), article(2, COPY, minutes=40), article(3, COPY2, minutes=50)]
    for a in copies:
        run(es, alias, [a])
    assert clusters_of(es, alias)[copies[2].id] == (copies[0].id, copies[0].id, 3)
    earliest = article(4, WIRE[1:], minutes=-60)
    run(es, alias, [earliest, article(5, OTHER)])
    got = clusters_of(es, alias)
    assert got[earliest.id] == (earliest.id, None, 4)
    assert all(got[a.id] == (earliest.id, earliest.id, 4) for a in copies)
    runs = buckets.read_runs(es, alias, [buckets.cluster_key(earliest.id)])
    assert sorted(m.article_id for m in runs[buckets.cluster_key(earliest.id)].members) == sorted(a.id for a in copies)


@pytest.mark.usefixtures("indexed")
def test_an_index_from_before_the_store_is_backfilled_and_clusters_on(es: Elasticsearch, alias: str) -> None:
    wire, copy, other = article(1, WIRE, minutes=30), article(2, COPY, minutes=40), article(3, OTHER)
    run(es, alias, [wire, copy, other])
    es.indices.delete(index=index.Names(alias).lsh)  # as an index upgraded in place has none
    prepare_index(es, alias)  # what every command runs first: it files the three articles
    assert_every_article_filed_once(es, alias, [wire, copy, other])
    assert backfill(es, alias, batch=2) == 3  # again: nothing filed twice
    es.indices.refresh(index=alias)
    assert_every_article_filed_once(es, alias, [wire, copy, other])
    earliest, again = article(4, WIRE[:3], minutes=-90), replace(article(5, WIRE), content_hash=wire.content_hash)
    assert buckets.indexed_texts(es, alias, [again]) == {(again.outlet, wire.content_hash): wire.id}
    run(es, alias, [earliest])
    got = clusters_of(es, alias)
    assert {got[a.id] for a in (wire, copy)} == {(earliest.id, earliest.id, 3)}
    assert got[earliest.id] == (earliest.id, None, 3) and got[other.id] == (other.id, None, 1)


@pytest.mark.usefixtures("indexed")
def test_three_workers_taking_copies_in_any_order_agree_on_clusters_and_sizes(
    es_url: str, es: Elasticsearch, alias: str
) -> None:
    wire = [
        article(n, p, minutes=m)
        for n, (p, m) in enumerate([(WIRE, 0), (COPY, 40), (COPY2, 50), (WIRE[1:], -30), (WIRE[:3], 20)])
    ]
    other = [article(10 + n, p, minutes=m) for n, (p, m) in enumerate([(OTHER, 5), (OTHER[:2], 15), (OTHER[1:], -5)])]
    order = [wire[1], other[1], wire[2], other[0], wire[4], wire[0], other[2], wire[3]]
    barrier = threading.Barrier(3, timeout=30)
    errors: list[BaseException] = []

    def worker(batches: list[Article]) -> None:
        client = Elasticsearch(es_url, request_timeout=30)
        try:
            barrier.wait()
            for a in batches:
                index_clustered(client, alias, [a], threshold=0.4, window_days=30)
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(order[k::3],)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    es.indices.refresh(index=alias)
    got = clusters_of(es, alias)
    for family, head in ((wire, wire[3]), (other, other[2])):
        assert {got[a.id] for a in family} == {(head.id, None, len(family)), (head.id, head.id, len(family))}, family
    assert_every_article_filed_once(es, alias, wire + other)


@pytest.mark.usefixtures("indexed")
def test_an_index_made_before_the_bucket_store_is_filed_when_it_is_upgraded(es: Elasticsearch, alias: str) -> None:
    # An index from an earlier version: articles indexed, no bucket store. Setting it up again files them.
    first, copy = article(1, WIRE), article(2, COPY, minutes=120, outlet="صحيفة")
    index_clustered(es, alias, [first], threshold=0.4, window_days=30)
    es.indices.refresh(index=alias)
    es.indices.delete(index=index.Names(alias).lsh)
    prepare_index(es, alias)
    assert buckets.indexed_texts(es, alias, [first]) == {(first.outlet, first.content_hash): first.id}
    clustered, _ = index_clustered(es, alias, [copy], threshold=0.4, window_days=30)
    assert clustered.articles[0].cluster_id == first.id
