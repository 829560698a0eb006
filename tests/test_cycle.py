"""Full cycles over the bundled sample site (real HTTP on loopback) into the real embedded index."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import jsonschema
import pytest
from elasticsearch import Elasticsearch

from pipeline.demo.server import SiteServer
from pipeline.demo.site import FAILING_FEEDS, Expected, Resource, demo_feeds, expectations
from pipeline.ingest.urls import canonical_url
from pipeline.records import FeedConfig, doc_id, parse_iso
from pipeline.run import run_cycle
from pipeline.settings import PROJECT_ROOT, Settings
from pipeline.store import index

INDEXED = {"indexed", "feed_fallback"}


def feeds_of(site: SiteServer) -> list[FeedConfig]:
    return [FeedConfig(**f) for f in demo_feeds(site.base_url)]


def all_docs(es: Elasticsearch, alias: str) -> dict[str, dict[str, Any]]:
    resp = es.search(index=alias, query={"match_all": {}}, size=1000)
    return {hit["_source"]["canonical_url"]: hit["_source"] for hit in resp["hits"]["hits"]}


def expected_url(site: SiteServer, e: Expected) -> str:
    return canonical_url(site.base_url + e.path)


@pytest.mark.parametrize("batch", [500, 1], ids=["after the last page", "overlapped with extraction"])
def test_full_run_indexes_exactly_the_expected_articles(
    batch: int, demo_site: SiteServer, es: Elasticsearch, settings: Settings
) -> None:
    summary = run_cycle(settings.with_(process_batch=batch), es, feeds_of(demo_site))
    # Small batches: clustered and indexed while later pages were extracted, with the same outcome.
    assert summary.process_batches == 1 if batch == 500 else summary.process_batches > 2
    docs = all_docs(es, settings.es_index)
    wanted = {expected_url(demo_site, e): e for e in expectations() if e.outcome in INDEXED}
    assert set(docs) == set(wanted)
    # The sample's failing feeds fail, each with its reason; everything else is indexed.
    assert summary.indexed == len(wanted) and summary.feeds_failed == len(FAILING_FEEDS)
    assert {f["feed"] for f in summary.failed_feeds} == {feed_id for feed_id, *_ in FAILING_FEEDS}
    schema = json.loads((PROJECT_ROOT / "schemas" / "article.schema.json").read_text())
    for url, e in wanted.items():
        doc = docs[url]
        jsonschema.validate(doc, schema)
        assert doc["title"] == e.title and doc["outlet"] == e.outlet and doc["feed_id"] == e.feed_id
        assert e.body_marker in doc["body"], url
        if e.boilerplate_marker:
            assert e.boilerplate_marker not in doc["body"], url
        assert doc["language"] == "ar"
        assert doc["body_source"] == ("feed" if e.outcome == "feed_fallback" else "page")
        if e.published_at:
            assert datetime.fromisoformat(doc["published_at"]) == datetime.fromisoformat(e.published_at), url
    # One cluster per story (the wire story carried by three outlets is one), headed by its earliest copy.
    by_story: dict[str, list[dict[str, Any]]] = {}
    for url, e in wanted.items():
        by_story.setdefault(e.story, []).append(docs[url])
    heads = {d["cluster_id"] for group in by_story.values() for d in group}
    assert len(heads) == len(by_story)
    ids = {d["canonical_url"]: index_id for index_id, d in ((doc_id(u), d) for u, d in docs.items())}
    for group in by_story.values():
        assert len({d["cluster_id"] for d in group}) == 1
        first = min(group, key=lambda d: (d["published_at"], ids[d["canonical_url"]]))
        assert first["cluster_id"] == ids[first["canonical_url"]] and first["duplicate_of"] is None
        assert all(d["duplicate_of"] == first["cluster_id"] for d in group if d is not first)
        assert all(d["cluster_size"] == len(group) for d in group)
    assert summary.near_duplicates_clustered == sum(len(g) - 1 for g in by_story.values())
    # The seed profile tags the seed topic's articles, with the terms that earned the tag, and nothing else.
    for url, e in wanted.items():
        topics = docs[url]["topics"]
        assert topics == (["iran-russia-assad"] if e.topic == "seed" else []), (e.title, topics)
        if topics:
            [match] = docs[url]["topic_matches"]
            assert match["profile"] == "iran-russia-assad" and match["terms"] and match["score"] > 0
    assert summary.tagged == {"iran-russia-assad": sum(1 for e in wanted.values() if e.topic == "seed")}
    rejected = Counter(e.language for e in expectations() if e.outcome == "language")
    assert summary.skipped_language == dict(rejected)
    outcomes = Counter(e.outcome for e in expectations())
    assert summary.exact_duplicates == outcomes["duplicate"]
    assert summary.items_same_url == outcomes["same_article"]
    assert summary.extract_failed == outcomes["fetch_failed"]


def test_second_run_downloads_nothing_again_and_indexes_nothing(
    demo_site: SiteServer, es: Elasticsearch, settings: Settings
) -> None:
    feeds = feeds_of(demo_site)
    run_cycle(settings, es, feeds)
    before = dict(demo_site.requests)
    again = run_cycle(settings, es, feeds)
    assert again.indexed == 0 and again.items_new == 0
    working = [f for f in feeds if f.id not in {feed_id for feed_id, *_ in FAILING_FEEDS}]
    assert again.feeds_not_modified == len(working) and again.feeds_failed == len(feeds) - len(working)
    feed_paths = {f.url.removeprefix(demo_site.base_url) for f in working}
    every_feed = {f.url.removeprefix(demo_site.base_url) for f in feeds}  # failing feeds are asked again
    for path, count in demo_site.requests.items():
        if path not in every_feed:
            assert count == before.get(path, 0), f"{path} downloaded again"
    assert all(demo_site.conditional_hits[p] == 1 for p in feed_paths)


def test_new_item_in_a_feed_is_the_only_download(demo_site: SiteServer, es: Elasticsearch, settings: Settings) -> None:
    feeds = feeds_of(demo_site)
    run_cycle(settings, es, feeds)
    # One feed gains an item (a new URL carrying the text of an article the outlet already published).
    first = feeds[0]
    path = first.url.removeprefix(demo_site.base_url)
    old = demo_site.resources[path]
    article = next(e for e in expectations() if e.feed_id == first.id and e.outcome == "indexed")
    new_path = "/extra/late-breaking-story"
    demo_site.resources[new_path] = demo_site.resources[article.path.split("#")[0]]
    text = old.body.decode("utf-8", errors="strict") if b"windows-1256" not in old.body[:200] else None
    if text is None:
        pytest.skip("first feed is not UTF-8")
    marker = "<item>"
    extra = (
        f"<item><title>خبر جديد متأخر</title><link>{demo_site.base_url}{new_path}</link>"
        f"<guid>{demo_site.base_url}{new_path}</guid></item>"
    )
    if marker in text:
        body = text.replace(marker, extra + marker, 1)
    else:  # Atom
        body = text.replace(
            "<entry>",
            f'<entry><title>خبر جديد متأخر</title><link href="{demo_site.base_url}{new_path}"/>'
            f"<id>{demo_site.base_url}{new_path}</id></entry><entry>",
            1,
        )
    fresh_headers = {k: v for k, v in old.headers.items() if k not in ("ETag", "Last-Modified")}
    demo_site.resources[path] = Resource(200, fresh_headers, body.encode("utf-8"))
    before = dict(demo_site.requests)
    summary = run_cycle(settings, es, feeds)
    downloaded = {p for p, n in demo_site.requests.items() if n > before.get(p, 0)}
    feed_paths = {f.url.removeprefix(demo_site.base_url) for f in feeds}
    assert downloaded - feed_paths == {new_path}
    # Same body as an article of the same outlet already indexed: an exact duplicate, not a new article.
    assert summary.items_new == 1 and summary.exact_duplicates == 1 and summary.indexed == 0


def test_broken_feeds_do_not_stop_the_others(demo_site: SiteServer, es: Elasticsearch, settings: Settings) -> None:
    base = demo_site.base_url
    demo_site.resources["/broken/malformed.xml"] = Resource(
        200, {"Content-Type": "application/rss+xml"}, b"<rss><channel><title>x</tit"
    )
    demo_site.resources["/broken/html.xml"] = Resource(
        200, {"Content-Type": "text/html; charset=utf-8"}, "<html><body><h1>الصفحة الرئيسية</h1></body></html>".encode()
    )
    demo_site.resources["/broken/error.xml"] = Resource(500, {"Content-Type": "text/plain"}, b"oops")
    broken = [
        FeedConfig(id="down", url="http://127.0.0.1:9/rss.xml", outlet="لا يعمل"),
        FeedConfig(id="malformed", url=f"{base}/broken/malformed.xml", outlet="مكسور"),
        FeedConfig(id="html", url=f"{base}/broken/html.xml", outlet="صفحة"),
        FeedConfig(id="error", url=f"{base}/broken/error.xml", outlet="خطأ"),
        FeedConfig(id="gone", url=f"{base}/broken/missing.xml", outlet="مفقود"),
    ]
    feeds = broken[:2] + feeds_of(demo_site) + broken[2:]
    summary = run_cycle(settings, es, feeds)
    failing = {f.id for f in broken} | {feed_id for feed_id, *_ in FAILING_FEEDS}
    assert summary.feeds_failed == len(failing)
    assert {f["feed"] for f in summary.failed_feeds} == failing
    reasons = {f["feed"]: f["reason"] for f in summary.failed_feeds}
    assert "HTML" in reasons["html"] and "404" in reasons["gone"] and "500" in reasons["error"]
    wanted = {expected_url(demo_site, e) for e in expectations() if e.outcome in INDEXED}
    assert set(all_docs(es, settings.es_index)) == wanted
    # Health survives between runs and counts failures in a row.
    run_cycle(settings, es, feeds)
    states = index.load_feed_states(es, settings.es_index, [f.id for f in broken])
    assert all(states[f.id].consecutive_failures == 2 and states[f.id].last_error for f in broken)
    assert all(states[f.id].last_success is None for f in broken)


def test_run_reaching_no_feed_says_so(es: Elasticsearch, settings: Settings) -> None:
    summary = run_cycle(settings, es, [FeedConfig(id="a", url="http://127.0.0.1:9/a.xml", outlet="أ")])
    assert summary.reached_no_feed and summary.feeds_failed == 1


def test_tracking_parameters_make_no_second_article(
    demo_site: SiteServer, es: Elasticsearch, settings: Settings
) -> None:
    same = [e for e in expectations() if e.outcome == "same_article"]
    assert same, "the sample site must hold a link differing only by tracking parameters"
    run_cycle(settings, es, feeds_of(demo_site))
    docs = all_docs(es, settings.es_index)
    for e in same:
        assert expected_url(demo_site, e) in docs
        assert "utm_" not in expected_url(demo_site, e)


def test_retry_after_defers_the_feed_to_a_later_run(
    demo_site: SiteServer, es: Elasticsearch, settings: Settings
) -> None:
    demo_site.resources["/busy/rss.xml"] = Resource(429, {"Retry-After": "3600", "Content-Type": "text/plain"}, b"")
    busy = FeedConfig(id="busy", url=f"{demo_site.base_url}/busy/rss.xml", outlet="مزدحم")
    first = run_cycle(settings, es, [busy])
    assert first.feeds_failed == 1 and "retry after 3600" in first.failed_feeds[0]["reason"]
    again = run_cycle(settings, es, [busy])
    assert again.feeds_deferred == 1 and again.feeds_failed == 0
    assert demo_site.count("/busy/rss.xml") == 1  # the second run did not ask before the hour was up
    state = index.load_feed_states(es, settings.es_index, ["busy"])["busy"]
    assert state.retry_after_until and state.consecutive_failures == 1


ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>تجربة</title><id>urn:t</id><updated>{updated}</updated>
<entry><title>{title}</title><link href="{base}/story/1"/><id>urn:t:1</id>
<published>2025-10-01T08:00:00+03:00</published><updated>{updated}</updated></entry></feed>"""

PARAGRAPHS = [
    "قالت مصادر في دمشق إن فرق الإغاثة واصلت عملها طوال الليل في الأحياء التي غمرتها مياه الأمطار الغزيرة.",
    "وأضافت أن الدفاع المدني أجلى عشرات العائلات من المنازل القريبة من مجرى النهر بعد ارتفاع منسوب المياه.",
    "ودعت السلطات المحلية السكان إلى تجنب التنقل غير الضروري حتى تتحسن الأحوال الجوية خلال الأيام المقبلة.",
]


def story_page(paragraphs: list[str]) -> Resource:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    html = f'<html lang="ar"><head><meta charset="utf-8"></head><body><article>{body}</article></body></html>'
    return Resource(200, {"Content-Type": "text/html; charset=utf-8"}, html.encode())


def test_an_updated_entry_is_taken_again_and_updated_in_place(
    site: SiteServer, es: Elasticsearch, settings: Settings
) -> None:
    feed = FeedConfig(id="t", url=f"{site.base_url}/atom.xml", outlet="تجربة")

    def publish(updated: str, title: str) -> None:
        text = ATOM.format(updated=updated, title=title, base=site.base_url)
        site.resources["/atom.xml"] = Resource(200, {"Content-Type": "application/atom+xml"}, text.encode())

    publish("2025-10-01T08:00:00+03:00", "أمطار غزيرة في دمشق")
    site.resources["/story/1"] = story_page(PARAGRAPHS)
    assert run_cycle(settings, es, [feed]).indexed == 1
    correction = "وفي تحديث لاحق، أعلنت السلطات انحسار المياه عن معظم الشوارع صباح اليوم التالي دون تسجيل إصابات."
    site.resources["/story/1"] = story_page([*PARAGRAPHS, correction])
    publish("2025-10-01T12:30:00+03:00", "أمطار غزيرة في دمشق (محدث)")
    again = run_cycle(settings, es, [feed])
    assert again.items_new == 1 and again.indexed == 1 and site.count("/story/1") == 2
    docs = all_docs(es, settings.es_index)
    [doc] = docs.values()
    assert correction in doc["body"] and doc["title"].endswith("(محدث)")
    assert run_cycle(settings, es, [feed]).items_new == 0  # the same update is not taken twice


def test_a_moved_feed_is_reported(site: SiteServer, es: Elasticsearch, settings: Settings) -> None:
    site.resources["/old.xml"] = Resource(301, {"Location": "/atom.xml"}, b"")
    site.resources["/atom.xml"] = Resource(
        200,
        {"Content-Type": "application/atom+xml"},
        ATOM.format(updated="2025-10-01T08:00:00Z", title="خبر", base=site.base_url).encode(),
    )
    site.resources["/story/1"] = story_page(PARAGRAPHS)
    summary = run_cycle(settings, es, [FeedConfig(id="m", url=f"{site.base_url}/old.xml", outlet="م")])
    assert summary.indexed == 1
    assert summary.moved_feeds == [
        {"feed": "m", "url": f"{site.base_url}/old.xml", "moved_to": f"{site.base_url}/atom.xml"}
    ]
    assert index.load_feed_states(es, settings.es_index, ["m"])["m"].moved_to == f"{site.base_url}/atom.xml"


def test_poll_minutes_keeps_a_feed_from_being_asked_too_often(
    site: SiteServer, es: Elasticsearch, settings: Settings
) -> None:
    site.resources["/atom.xml"] = Resource(
        200,
        {"Content-Type": "application/atom+xml"},
        ATOM.format(updated="2025-10-01T08:00:00Z", title="خبر", base=site.base_url).encode(),
    )
    site.resources["/story/1"] = story_page(PARAGRAPHS)
    feed = FeedConfig(id="p", url=f"{site.base_url}/atom.xml", outlet="ب", poll_minutes=30)
    assert run_cycle(settings, es, [feed], due_only=True).feeds_ok == 1
    later = run_cycle(settings, es, [feed], due_only=True)
    assert later.feeds_deferred == 1 and not later.reached_no_feed
    assert site.count("/atom.xml") == 1
    # The feed's one item gives no cadence (15 min by default): poll_minutes is the floor under it.
    state = index.load_feed_states(es, settings.es_index, ["p"])["p"]
    assert state.interval_minutes == 30
    assert parse_iso(state.next_poll_at or "") - parse_iso(state.last_attempt or "") == timedelta(minutes=30)
