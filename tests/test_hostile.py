"""The fetch and feed edge against a hostile server (``tests/hostile_site.py``), over real sockets.

For every class of hostility: nothing escapes but the pipeline's own errors, the reason is reported
(``PollResult``, ``RunSummary``), the good feeds and pages next to it are still indexed, and no
connection is ever made to a refused address (``ConnectionAudit`` sees every ``socket.connect``).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from conftest import wait_until
from elasticsearch import Elasticsearch
from hostile_site import (
    ABSURD_DATES,
    MALFORMED_TARGETS,
    METADATA_SPELLINGS,
    SCHEME_TARGETS,
    ConnectionAudit,
    HostileSite,
    Item,
    fake_dns,
    story_paragraphs,
    story_title,
)
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from smtp_server import self_signed

from pipeline.errors import FetchError, RefusedURL, TooLarge
from pipeline.ingest.extract import process_page
from pipeline.ingest.fetch import Fetcher, check_url
from pipeline.ingest.poll import PollResult, poll_feed
from pipeline.ingest.urls import canonical_url
from pipeline.records import Article, FeedConfig, FeedItem, FeedState
from pipeline.run import RunSummary, run_cycle
from pipeline.settings import Settings

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def fast(**changes: Any) -> Settings:
    """Settings for fetch and poll tests: small caps and short timeouts, loopback allowed."""
    base: dict[str, Any] = {
        "allow_private_hosts": True,
        "connect_timeout": 1,
        "read_timeout": 1,
        "total_timeout": 2,
        "max_bytes": 300_000,
        "max_redirects": 5,
        "max_retry_after": 1,
        "fetch_workers": 8,
    }
    return Settings(**{**base, **changes})


@pytest.fixture
def hostile() -> Iterator[HostileSite]:
    with HostileSite() as site:
        yield site


@pytest.fixture
def audit() -> Iterator[ConnectionAudit]:
    with ConnectionAudit() as seen:
        yield seen


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names other than localhost fail at once instead of asking a real DNS server."""
    monkeypatch.setattr(socket, "getaddrinfo", fake_dns({}))


@pytest.fixture
def cycle_settings(settings: Settings) -> Settings:
    # One extraction thread (no process pool to start), short timeouts: a cycle over hostile feeds
    # takes a few seconds.
    return settings.with_(
        connect_timeout=1, read_timeout=1, total_timeout=3, max_bytes=300_000, extract_workers=1, max_retry_after=1
    )


def poll(site: HostileSite, path: str, *, settings: Settings | None = None) -> PollResult:
    feed = FeedConfig(id=path.strip("/").replace("/", "-").replace(".", "-"), url=site.url(path), outlet="معاد")
    with Fetcher(settings or fast()) as fetcher:
        return poll_feed(fetcher, feed, None, now=NOW)


def feed_config(site: HostileSite, path: str) -> FeedConfig:
    return FeedConfig(id=path.strip("/").replace("/", "-").replace(".", "-"), url=site.url(path), outlet=path)


def indexed_urls(es: Elasticsearch, alias: str) -> set[str]:
    es.indices.refresh(index=alias)
    hits = es.search(index=alias, query={"match_all": {}}, size=1000)["hits"]["hits"]
    return {hit["_source"]["canonical_url"] for hit in hits}


def stories(site: HostileSite, *numbers: int) -> set[str]:
    return {canonical_url(site.url(f"/story/{n}")) for n in numbers}


def reasons(summary: RunSummary) -> dict[str, str]:
    return {f["feed"]: f["reason"] for f in summary.failed_feeds}


def assert_no_connection_left_loopback(audit: ConnectionAudit) -> None:
    assert audit.outside_loopback == [], f"connected outside loopback: {audit.outside_loopback}"


# --- redirects: malformed targets, other schemes, loops (issue #13 items 2 and 4) -----------------


@pytest.mark.parametrize("name", sorted(MALFORMED_TARGETS))
def test_a_malformed_redirect_target_is_a_fetch_error_that_names_it(
    hostile: HostileSite, audit: ConnectionAudit, no_dns: None, name: str
) -> None:
    with Fetcher(fast()) as fetcher, pytest.raises(FetchError) as caught:
        fetcher.get(hostile.url(f"/redirect/malformed-{name}"))
    message = str(caught.value)
    target = MALFORMED_TARGETS[name]
    if name == "empty":
        assert "without Location" in message
    else:
        shown = target.decode("utf-8") if name != "not-utf8" else target.decode("latin-1")
        assert f"redirect to {shown!r}" in message or f"redirect to malformed target {shown!r}" in message, message
    assert caught.value.url == hostile.url(f"/redirect/malformed-{name}")
    assert {port for _, port in audit.connections} == {hostile.port}


@pytest.mark.parametrize("scheme", sorted(SCHEME_TARGETS))
def test_a_redirect_to_another_scheme_is_refused_and_named(
    hostile: HostileSite, audit: ConnectionAudit, scheme: str
) -> None:
    with Fetcher(fast()) as fetcher, pytest.raises(RefusedURL) as caught:
        fetcher.get(hostile.url(f"/redirect/scheme-{scheme}"))
    assert f"redirect to {SCHEME_TARGETS[scheme]!r}" in str(caught.value)
    assert f"scheme {scheme!r} is not http(s)" in str(caught.value)
    assert {port for _, port in audit.connections} == {hostile.port}


def test_a_redirect_loop_is_refused_naming_its_hops(hostile: HostileSite) -> None:
    with Fetcher(fast()) as fetcher, pytest.raises(RefusedURL, match="redirect loop: .*loop-a -> .*loop-b -> .*loop-a"):
        fetcher.get(hostile.url("/redirect/loop-a"))
    assert hostile.count("/redirect/loop-a") == 1 and hostile.count("/redirect/loop-b") == 1


def test_an_endless_redirect_chain_stops_at_the_limit(hostile: HostileSite) -> None:
    with Fetcher(fast(max_redirects=4)) as fetcher, pytest.raises(RefusedURL, match="more than 4 redirects"):
        fetcher.get(hostile.url("/redirect/chain/0"))
    assert [hostile.count(f"/redirect/chain/{n}") for n in range(6)] == [1, 1, 1, 1, 1, 0]


def test_one_malformed_redirect_does_not_stop_the_cycle(
    hostile: HostileSite, es: Elasticsearch, cycle_settings: Settings, audit: ConnectionAudit
) -> None:
    feeds = [
        feed_config(hostile, "/redirect/scheme-javascript"),
        feed_config(hostile, "/redirect/malformed-open-bracket"),
        feed_config(hostile, "/feeds/good.xml"),
    ]
    summary = run_cycle(cycle_settings, es, feeds)
    why = reasons(summary)
    assert summary.feeds_failed == 2 and summary.feeds_ok == 1
    assert "javascript:alert(document.cookie)" in why[feeds[0].id]
    assert "http://[::1" in why[feeds[1].id]
    assert indexed_urls(es, cycle_settings.es_index) == stories(hostile, 1, 2, 3)
    assert_no_connection_left_loopback(audit)


def test_a_page_redirecting_to_javascript_is_a_reported_page_failure(
    hostile: HostileSite, es: Elasticsearch, cycle_settings: Settings
) -> None:
    page = hostile.url("/redirect/scheme-javascript")
    hostile.feed("/feeds/to-javascript.xml", [page, hostile.url("/story/5")])
    summary = run_cycle(cycle_settings, es, [feed_config(hostile, "/feeds/to-javascript.xml")])
    [failure] = summary.failures
    assert failure["url"] == page and "javascript:alert(document.cookie)" in failure["reason"]
    assert summary.pages_failed == 1 and summary.extract_failed == 1
    assert indexed_urls(es, cycle_settings.es_index) == stories(hostile, 5)


def test_a_page_download_failure_is_in_the_summary_even_when_the_feed_text_stands_in(
    hostile: HostileSite, es: Elasticsearch, cycle_settings: Settings
) -> None:
    page = hostile.url("/redirect/scheme-javascript")
    long_text = " ".join(story_paragraphs(6))
    hostile.feed("/feeds/to-javascript-long.xml", [Item(page, title=story_title(6), description=long_text)])
    summary = run_cycle(cycle_settings, es, [feed_config(hostile, "/feeds/to-javascript-long.xml")])
    assert summary.indexed == 1 and summary.feed_fallbacks == 1 and summary.pages_failed == 1
    assert any(f["url"] == page and "javascript:" in f["reason"] for f in summary.failures), summary.failures


# --- refused addresses: link-local, metadata, private, in every spelling (issue #13 item 3) -------


@pytest.mark.parametrize("url", METADATA_SPELLINGS)
def test_metadata_and_link_local_addresses_are_refused_in_every_spelling_even_with_private_hosts_allowed(
    audit: ConnectionAudit, url: str
) -> None:
    with Fetcher(fast(allow_private_hosts=True)) as fetcher, pytest.raises(RefusedURL) as caught:
        fetcher.get(url)
    assert "never fetched" in str(caught.value) or "malformed" in str(caught.value)
    with pytest.raises(RefusedURL):
        check_url(url, allow_private=True)
    assert audit.connections == []


@pytest.mark.parametrize("url", METADATA_SPELLINGS)
def test_a_redirect_to_metadata_is_refused_before_connecting_even_from_an_exempt_host(
    hostile: HostileSite, audit: ConnectionAudit, url: str
) -> None:
    start = hostile.redirect_to(url)
    exempt = frozenset({"127.0.0.1", "169.254.169.254", "2852039166", "0xa9fea9fe", "::ffff:a9fe:a9fe"})
    with Fetcher(fast(allow_private_hosts=False), exempt_hosts=exempt) as fetcher, pytest.raises(RefusedURL) as caught:
        fetcher.get(start)
    assert str(caught.value).startswith(f"redirect to {url!r}")
    assert {port for _, port in audit.connections} == {hostile.port}


def loopback_spellings(port: int) -> list[str]:
    return [
        f"http://localhost:{port}/secret",
        f"http://LOCALHOST:{port}/secret",
        f"http://2130706433:{port}/secret",
        f"http://0x7f000001:{port}/secret",
        f"http://0x7f.1:{port}/secret",
        f"http://127.1:{port}/secret",
        f"http://127.0.0.1.:{port}/secret",
        f"http://0:{port}/secret",
        f"http://[::ffff:127.0.0.1]:{port}/secret",
        f"http://[::ffff:7f00:1]:{port}/secret",
        f"http://[::1]:{port}/secret",
        f"http://10.0.0.1:{port}/secret",
        f"http://192.168.1.1:{port}/secret",
    ]


def test_loopback_in_every_spelling_is_refused_when_private_hosts_are_not_allowed(
    hostile: HostileSite, audit: ConnectionAudit
) -> None:
    with HostileSite() as internal:  # stands in for a service on the machine's loopback
        internal.static("/secret", "INTERNAL")
        strict = Fetcher(fast(allow_private_hosts=False), exempt_hosts=frozenset({"127.0.0.1"}))
        with strict:
            for url in loopback_spellings(internal.port):
                # "127.0.0.1." is a name to httpx and no name to the resolver: a DNS failure.
                with pytest.raises(FetchError, match="non-public|malformed|DNS lookup failed"):
                    strict.get(hostile.redirect_to(url))
        assert internal.count("/secret") == 0
        assert audit.to_port(internal.port) == []


def test_a_name_with_a_metadata_address_among_its_answers_is_refused(
    hostile: HostileSite, audit: ConnectionAudit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", fake_dns({"twofaced.test": ["127.0.0.1", "169.254.169.254"]}))
    with Fetcher(fast(allow_private_hosts=True)) as fetcher, pytest.raises(RefusedURL, match="169.254.169.254"):
        fetcher.get(f"http://twofaced.test:{hostile.port}/story/1")
    assert audit.connections == [] and hostile.count("/story/1") == 0


def test_a_name_that_changes_its_answer_is_judged_on_the_address_connected_to(
    audit: ConnectionAudit, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([["93.184.216.34"]])  # a public address first, then the metadata service for ever

    def rebinding() -> list[str]:
        return next(answers, ["169.254.169.254"])

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns({"rebind.test": rebinding}))
    with Fetcher(fast(allow_private_hosts=False)) as fetcher, pytest.raises(FetchError):
        fetcher.get("http://rebind.test/latest/meta-data/")
    assert [c for c in audit.connections if c[0].startswith("169.254.")] == []


# --- encodings: mislabelled and legacy ------------------------------------------------------------


def page_article(site: HostileSite, path: str) -> Article | Any:
    with Fetcher(fast()) as fetcher:
        resp = fetcher.get(site.url(path))
    item = FeedItem(feed_id="f", outlet="o", url=site.url(path), canonical_url=canonical_url(site.url(path)))
    return process_page(
        item, resp.content, resp.headers.get("content-type", ""), resp.final_url, NOW, ("ar",), 200, 2000
    )


@pytest.mark.parametrize(
    ("path", "n"),
    [("/enc/cp1256-as-latin1.html", 201), ("/enc/iso-8859-6-as-latin1.html", 202), ("/enc/iso-8859-6.html", 203),
     ("/enc/utf16le-no-bom.html", 204), ("/enc/utf16be-no-bom.html", 205), ("/enc/bogus-charset.html", 206)],
)  # fmt: skip
def test_mislabelled_and_legacy_pages_decode_exactly(hostile: HostileSite, path: str, n: int) -> None:
    article = page_article(hostile, path)
    assert isinstance(article, Article), article
    assert article.body_source == "page"
    for paragraph in story_paragraphs(n):
        assert paragraph in article.body


@pytest.mark.parametrize(
    "path",
    ["/enc/cp1256-as-latin1.xml", "/enc/iso-8859-6-as-latin1.xml", "/enc/utf16le-no-bom.xml",
     "/enc/charset-undefined.xml", "/enc/charset-base64.xml", "/enc/charset-idna.xml", "/enc/declared-undefined.xml"],
)  # fmt: skip
def test_mislabelled_legacy_and_nonsense_charsets_in_feeds_decode_exactly(hostile: HostileSite, path: str) -> None:
    result = poll(hostile, path)
    assert result.outcome == "ok", result.error
    assert [item.title for item in result.items] == [story_title(211), story_title(212)]


# --- XML: external entities, DTDs, entity bombs -------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/xml/xxe-file.xml", "/xml/xxe-file-one-line.xml", "/xml/xxe-http.xml", "/xml/parameter-entity.xml",
     "/xml/external-dtd.xml"],
)  # fmt: skip
def test_external_entities_and_dtds_are_never_resolved(hostile: HostileSite, audit: ConnectionAudit, path: str) -> None:
    result = poll(hostile, path)
    assert result.outcome == "ok", result.error
    text = " ".join(f"{i.title} {i.summary} {i.content}" for i in result.items)
    assert "root:" not in text and "SECRET" not in text
    assert hostile.count("/xml/secret.txt") == 0 and hostile.count("/xml/evil.dtd") == 0
    assert story_title(221) in [i.title for i in result.items]
    assert len(audit.connections) == 1


@pytest.mark.parametrize("path", ["/xml/billion-laughs.xml", "/xml/billion-laughs-one-line.xml", "/xml/quadratic.xml"])
def test_entity_bombs_are_parsed_in_bounded_time_and_memory(hostile: HostileSite, path: str) -> None:
    with Fetcher(fast()) as fetcher:
        resp = fetcher.get(hostile.url(path))
    feed = FeedConfig(id="bomb", url=hostile.url(path), outlet="معاد")
    from pipeline.ingest.feeds import parse_feed

    tracemalloc.start()
    started = time.monotonic()
    try:
        items = parse_feed(resp.content, resp.headers, feed=feed, fetched_at=NOW)
        seconds = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < 1.0 and peak < 32 * 1024 * 1024, (seconds, peak)
    assert all(len(i.title) < 10_000 for i in items)
    assert story_title(221) in [i.title for i in items]


def test_a_character_reference_to_no_character_does_not_fail_the_feed(hostile: HostileSite) -> None:
    result = poll(hostile, "/xml/char-ref-out-of-range.xml")
    assert result.outcome == "ok", result.error
    assert [i.title.split()[0] for i in result.items] == ["قبل", story_title(221).split()[0]]


# --- sizes: decompression bombs, endless bodies and headers -------------------------------------


@pytest.mark.parametrize("path", ["/bomb/gzip.xml", "/bomb/deflate.html", "/huge/endless.xml", "/huge/declared.xml"])
def test_bombs_and_endless_bodies_are_cut_at_the_size_cap(hostile: HostileSite, path: str) -> None:
    started = time.monotonic()
    with Fetcher(fast()) as fetcher, pytest.raises(TooLarge, match="300000-byte cap"):
        fetcher.get(hostile.url(path))
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "path", ["/bomb/gzip-twice.xml", "/bomb/brotli.xml", "/huge/headers.xml", "/huge/one-header.xml"]
)
def test_unasked_encodings_and_endless_headers_are_fetch_errors(hostile: HostileSite, path: str) -> None:
    started = time.monotonic()
    result = poll(hostile, path)
    assert result.outcome == "failed" and result.error
    assert time.monotonic() - started < 2.5


# --- slow servers: trickling, hanging, hanging up, absurd Retry-After ---------------------------


@pytest.mark.parametrize("path", ["/slow/trickle-headers.xml", "/slow/trickle-body.xml"])
def test_a_trickling_response_is_cut_at_the_total_timeout(hostile: HostileSite, path: str) -> None:
    started = time.monotonic()
    with Fetcher(fast(read_timeout=1, total_timeout=1)) as fetcher, pytest.raises(FetchError, match="still arriving"):
        fetcher.get(hostile.url(path))
    assert time.monotonic() - started < 2


def test_a_hanging_server_times_out_at_the_read_timeout(hostile: HostileSite) -> None:
    started = time.monotonic()
    with Fetcher(fast(read_timeout=0.5)) as fetcher, pytest.raises(FetchError, match="timed out"):
        fetcher.get(hostile.url("/slow/hang.xml"))
    assert time.monotonic() - started < 1.5


def test_a_feed_queued_behind_a_tarpit_on_its_host_is_still_read(hostile: HostileSite) -> None:
    # The wait for the host's only slot is not the queued download's time: the tarpit is bounded by
    # its own deadline, and the good feed then has all of its own.
    with Fetcher(fast(per_host=1, read_timeout=1, total_timeout=1.5)) as fetcher, ThreadPoolExecutor(1) as pool:
        tarpit = pool.submit(poll_feed, fetcher, feed_config(hostile, "/slow/trickle-body.xml"), None, now=NOW)
        wait_until(lambda: hostile.count("/slow/trickle-body.xml") == 1)
        good = poll_feed(fetcher, feed_config(hostile, "/feeds/good.xml"), None, now=NOW)
    assert "still arriving" in (tarpit.result().error or "")
    assert good.outcome == "ok" and len(good.items) == 3


@pytest.fixture
def tls_site(tmp_path: Path) -> Iterator[tuple[HostileSite, ssl.SSLContext]]:
    cert, key = self_signed(tmp_path)
    with HostileSite(tls=(cert, key)) as site:
        yield site, ssl.create_default_context(cafile=str(cert))


def test_https_goes_through_the_same_guarded_connection(
    tls_site: tuple[HostileSite, ssl.SSLContext], audit: ConnectionAudit
) -> None:
    site, trusting = tls_site
    with Fetcher(fast(), ssl_context=trusting) as fetcher:
        assert story_paragraphs(1)[0] in fetcher.get(site.url("/story/1")).content.decode()
        started = time.monotonic()
        with pytest.raises(FetchError, match="still arriving"):
            fetcher.get(site.url("/slow/trickle-body.xml"))
        assert time.monotonic() - started < 3
    with Fetcher(fast()) as strict, pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
        strict.get(site.url("/story/1"))  # the site's own certificate is no CA's
    assert {port for _, port in audit.connections} == {site.port}


@pytest.mark.parametrize("path", ["/slow/hang-up.xml", "/slow/garbage.xml", "/slow/bad-status.xml"])
def test_servers_that_hang_up_or_speak_garbage_fail_their_feed_with_a_reason(hostile: HostileSite, path: str) -> None:
    result = poll(hostile, path)
    assert result.outcome == "failed" and result.error and "connection failed" in result.error


@pytest.mark.parametrize("name", ["huge", "superscript", "far-future"])
def test_absurd_retry_after_values_defer_the_feed_a_day_at_most(hostile: HostileSite, name: str) -> None:
    result = poll(hostile, f"/slow/retry-after-{name}.xml")
    assert result.outcome == "failed" and result.error
    if name == "superscript":  # not a number at all: an ordinary 503
        assert result.error == "FetchError: HTTP 503"
        return
    assert "retry after" in result.error
    assert result.state.retry_after_until is not None
    until = datetime.fromisoformat(result.state.retry_after_until.replace("Z", "+00:00"))
    assert NOW < until <= NOW + timedelta(days=1)


def test_validators_in_raw_utf8_do_not_break_the_next_poll(hostile: HostileSite) -> None:
    feed = feed_config(hostile, "/feeds/utf8-etag.xml")
    with Fetcher(fast()) as fetcher:
        first = poll_feed(fetcher, feed, None, now=NOW)
        again = poll_feed(fetcher, feed, first.state, now=NOW + timedelta(hours=1))
    assert first.outcome == "ok" and [i.title for i in first.items] == [story_title(71)]
    assert (first.state.etag, first.state.last_modified) == (None, None)  # not kept: they cannot be sent back
    assert again.outcome == "not_modified", again.error
    assert hostile.count("/feeds/utf8-etag.xml") == 2


# --- feed content: odd links, duplicate guids, absurd dates, HTML for feeds ---------------------


def test_a_corrupt_health_record_is_read_as_absent_and_replaced(hostile: HostileSite) -> None:
    # An unreadable Retry-After time must neither raise nor fail the feed on every later poll (it would
    # go dead over a bad field): it is read as no wait, the feed is polled, and its record rewritten.
    feed = feed_config(hostile, "/feeds/good.xml")
    corrupt = FeedState(feed_id=feed.id, url=feed.url, retry_after_until="after the holidays", consecutive_failures=2)
    with Fetcher(fast()) as fetcher:
        result = poll_feed(fetcher, feed, corrupt, now=NOW)
    assert result.outcome == "ok", result.error
    assert result.state.retry_after_until is None and result.state.consecutive_failures == 0
    assert hostile.count("/feeds/good.xml") == 1


def test_odd_item_links_are_skipped_with_a_reason(hostile: HostileSite) -> None:
    result = poll(hostile, "/feeds/odd-links.xml")
    assert result.outcome == "ok"
    urls = [item.url for item in result.items]
    assert hostile.url("/story/31") in urls
    assert hostile.url("/story/32") in urls  # relative
    assert hostile.url("/story/33") in urls  # protocol-relative
    assert hostile.url("/story/34") in urls  # padded with white space
    assert "http://xn--mgbh0fb.xn--kgbechtv/%D8%AE%D8%A8%D8%B1" in [item.canonical_url for item in result.items]
    skipped = [(s.link, s.reason) for s in result.skipped]
    long_link = hostile.url(f"/story/{'x' * 10_000}")[:200]
    assert skipped == [
        ("javascript:alert(1)", "not an http(s) link (javascript scheme)"),
        ("mailto:desk@hostile.example", "not an http(s) link (mailto scheme)"),
        ("data:text/html,hello", "not an http(s) link (data scheme)"),
        ("ftp://127.0.0.1/story", "not an http(s) link (ftp scheme)"),
        ("", "no link"),  # white space only
        ("", "no link"),  # "http://[oops/": feedparser drops what it cannot resolve
        (long_link, "link longer than 4096 characters"),
    ]


def test_items_linking_to_refused_or_unknown_hosts_fail_alone_and_are_reported(
    hostile: HostileSite, es: Elasticsearch, cycle_settings: Settings, audit: ConnectionAudit, no_dns: None
) -> None:
    feeds = [feed_config(hostile, "/feeds/odd-links.xml"), feed_config(hostile, "/feeds/good.xml")]
    summary = run_cycle(cycle_settings, es, feeds)
    assert summary.feeds_ok == 2
    assert indexed_urls(es, cycle_settings.es_index) == stories(hostile, 1, 2, 3, 31, 32, 33, 34)
    failed = {f["url"]: f["reason"] for f in summary.failures}
    assert "never fetched" in failed["http://169.254.169.254/latest/meta-data/"]
    assert "never fetched" in failed["http://2852039166/latest/meta-data/"]
    idn = "http://\u0645\u062b\u0627\u0644.\u0625\u062e\u062a\u0628\u0627\u0631/\u062e\u0628\u0631"
    assert "DNS lookup failed" in failed[idn]
    assert_no_connection_left_loopback(audit)


def test_skipped_item_links_are_counted_and_named_in_the_run_summary(
    hostile: HostileSite, es: Elasticsearch, cycle_settings: Settings, no_dns: None
) -> None:
    summary = run_cycle(cycle_settings, es, [feed_config(hostile, "/feeds/odd-links.xml")])
    assert summary.to_dict()["items_skipped"] == 7  # as test_odd_item_links_are_skipped_with_a_reason lists them
    assert any(f["url"] == "javascript:alert(1)" and "http(s)" in f["reason"] for f in summary.failures)


def test_duplicate_guids_and_links_index_each_article_once(
    hostile: HostileSite, es: Elasticsearch, cycle_settings: Settings
) -> None:
    summary = run_cycle(cycle_settings, es, [feed_config(hostile, "/feeds/duplicate-guids.xml")])
    assert indexed_urls(es, cycle_settings.es_index) == stories(hostile, 41, 42, 43, 44)
    assert summary.items_seen == 7 and summary.items_same_url == 3 and summary.indexed == 4
    assert hostile.count("/story/43") == 1 and hostile.count("/story/43?utm_source=rss") == 0


def test_absurd_dates_never_reach_the_index(hostile: HostileSite, es: Elasticsearch, cycle_settings: Settings) -> None:
    started = datetime.now(UTC)
    summary = run_cycle(cycle_settings, es, [feed_config(hostile, "/feeds/absurd-dates.xml")])
    assert summary.indexed == len(ABSURD_DATES)
    es.indices.refresh(index=cycle_settings.es_index)
    hits = es.search(index=cycle_settings.es_index, query={"match_all": {}}, size=100)["hits"]["hits"]
    for hit in hits:
        published = datetime.fromisoformat(hit["_source"]["published_at"].replace("Z", "+00:00"))
        assert datetime(1995, 1, 1, tzinfo=UTC) <= published <= datetime.now(UTC), hit["_source"]["url"]
    year_one = next(h for h in hits if h["_source"]["url"].endswith("/story/50"))["_source"]
    assert datetime.fromisoformat(year_one["published_at"].replace("Z", "+00:00")) >= started - timedelta(seconds=5)


def test_html_where_the_feed_should_be_fails_that_feed_and_a_feed_served_as_html_is_read(
    hostile: HostileSite, es: Elasticsearch, cycle_settings: Settings
) -> None:
    paths = ["/feeds/html-as-feed.xml", "/feeds/html-page.xml", "/feeds/not-xml.xml", "/feeds/feed-as-html.xml"]
    summary = run_cycle(cycle_settings, es, [feed_config(hostile, p) for p in paths])
    why = reasons(summary)
    assert "HTML page" in why["feeds-html-as-feed-xml"] and "HTML page" in why["feeds-html-page-xml"]
    assert "not an RSS" in why["feeds-not-xml-xml"] or "malformed" in why["feeds-not-xml-xml"]
    assert summary.feeds_ok == 1
    assert indexed_urls(es, cycle_settings.es_index) == stories(hostile, 61, 62)


# --- everything at once -------------------------------------------------------------------------

# Each hostile feed, and what its reason in the summary must say ("" : the feed is read).
HOSTILE_FEEDS = {
    "/redirect/loop-a": "redirect loop",
    "/redirect/chain/0": "more than 5 redirects",
    "/redirect/no-location": "without Location",
    "/redirect/malformed-open-bracket": "'http://[::1'",
    "/redirect/malformed-zone-id": "'http://[fe80::1%25eth0]/'",
    "/redirect/scheme-javascript": "'javascript:alert(document.cookie)'",
    "/redirect/scheme-file": "'file:///etc/passwd'",
    "/redirect/scheme-data": "scheme 'data' is not http(s)",
    "/bomb/gzip.xml": "300000-byte cap",
    "/bomb/gzip-twice.xml": "unsupported Content-Encoding",
    "/huge/endless.xml": "300000-byte cap",
    "/huge/declared.xml": "Content-Length 10737418240",
    "/huge/headers.xml": "connection failed",
    "/slow/trickle-headers.xml": "still arriving",
    "/slow/trickle-body.xml": "still arriving",
    "/slow/hang.xml": "timed out",
    "/slow/hang-up.xml": "connection failed",
    "/slow/garbage.xml": "connection failed",
    "/slow/retry-after-huge.xml": "retry after 86400s",
    "/slow/retry-after-superscript.xml": "HTTP 503",
    "/feeds/html-as-feed.xml": "HTML page",
    "/feeds/not-xml.xml": "malformed feed",
    "/xml/xxe-file.xml": "",
    "/xml/quadratic.xml": "",
    "/xml/billion-laughs-one-line.xml": "",
    "/xml/char-ref-out-of-range.xml": "",
    "/enc/charset-undefined.xml": "",
    "/enc/declared-undefined.xml": "",
    "/enc/utf16le-no-bom.xml": "",
    "/feeds/odd-links.xml": "",
    "/feeds/absurd-dates.xml": "",
}


def test_one_cycle_over_every_hostile_feed_indexes_the_good_work_and_names_every_failure(
    hostile: HostileSite, es: Elasticsearch, cycle_settings: Settings, audit: ConnectionAudit, no_dns: None
) -> None:
    pages = ["/bomb/deflate.html", "/huge/endless.xml", "/slow/hang.xml", "/slow/trickle-body.xml",
             "/redirect/scheme-javascript", "/redirect/malformed-port-too-big", "/enc/utf16le-no-bom.html",
             "/enc/iso-8859-6-as-latin1.html"]  # fmt: skip
    for metadata in METADATA_SPELLINGS[:6]:
        pages.append(hostile.redirect_to(metadata).removeprefix(hostile.base_url))
    hostile.feed("/feeds/to-hostile-pages.xml", [hostile.url(p) for p in pages])
    paths = [*HOSTILE_FEEDS, "/feeds/to-hostile-pages.xml", "/feeds/good.xml"]
    feeds = [feed_config(hostile, p) for p in paths]
    started = time.monotonic()
    summary = run_cycle(cycle_settings, es, feeds)
    assert time.monotonic() - started < 30
    why = reasons(summary)
    failing = {feed_config(hostile, p).id: reason for p, reason in HOSTILE_FEEDS.items() if reason}
    assert set(why) == set(failing)
    for feed_id, expected in failing.items():
        assert expected in why[feed_id], (feed_id, why[feed_id])
    assert summary.feeds_ok == len(feeds) - len(failing)
    indexed = indexed_urls(es, cycle_settings.es_index)
    assert stories(hostile, 1, 2, 3, 31, 211, 212, 221) <= indexed
    assert {canonical_url(hostile.url("/enc/utf16le-no-bom.html")),
            canonical_url(hostile.url("/enc/iso-8859-6-as-latin1.html"))} <= indexed  # fmt: skip
    failed_pages = {f["url"]: f["reason"] for f in summary.failures}
    assert {hostile.url(p) for p in pages if "/enc/" not in p} <= set(failed_pages)
    assert all("never fetched" in failed_pages[hostile.url(p)] for p in pages if p.startswith("/to/"))
    assert hostile.count("/xml/secret.txt") == 0
    assert_no_connection_left_loopback(audit)


# --- whatever the server sends ------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_site() -> Iterator[HostileSite]:
    """One site for the property tests (hypothesis runs each many times; fixtures run once)."""
    with HostileSite() as site:
        yield site


@example(location=b"javascript:alert(1)")  # httpx.InvalidURL escaped the fetcher (issue #13, item 2)
@example(location=b"http://[::1")
@example(location=b"http://xn--/")
@example(location=b"http://127.0.0.1:99999/")
@given(location=st.binary(max_size=80).filter(lambda b: b"\r" not in b and b"\n" not in b))
@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_fetcher_raises_nothing_but_fetch_errors_whatever_the_location_header(
    shared_site: HostileSite, location: bytes
) -> None:
    with (
        ConnectionAudit() as seen,
        mock.patch.object(socket, "getaddrinfo", fake_dns({})),
        Fetcher(fast(max_redirects=2)) as fetcher,
    ):
        shared_site.redirect("/start", location)
        with contextlib.suppress(FetchError):
            fetcher.get(shared_site.url("/start"))
    assert seen.outside_loopback == []


XML_TOKENS = [
    "<?xml version='1.0' encoding='utf-8'?>", "<?xml version='1.0' encoding='undefined'?>", "<rss version='2.0'>",
    "<channel>", "<item>", "</item>", "<title>", "</title>", "<link>", "</link>", "http://", "javascript:", "[",
    "]>", "<!DOCTYPE rss [", '<!ENTITY a "ببب">', '<!ENTITY b "&a;&a;&a;">', "&a;", "&b;", "&#0;", "&#x110000;",
    "<![CDATA[", "]]>", "<pubDate>", "</pubDate>", "Mon, 01 Jan 0001 00:00:00 GMT", "<feed xmlns='http://www.w3.org/2005/Atom'>",
    "<entry>", "<link href='//x'/>", "\u0000", "\ufeff", "خبر", " ",
]  # fmt: skip


@example(body="<rss version='2.0'><channel><item><link>x</link></item></channel></rss>", charset="undefined")
@given(body=st.lists(st.sampled_from(XML_TOKENS), max_size=40).map("".join), charset=st.sampled_from(
    ["utf-8", "utf-16", "windows-1256", "iso-8859-6", "undefined", "base64", ""]))  # fmt: skip
@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_poll_feed_never_raises_whatever_the_feed_says(shared_site: HostileSite, body: str, charset: str) -> None:
    content_type = f"application/rss+xml; charset={charset}" if charset else "application/rss+xml"
    shared_site.static("/fuzz.xml", body.encode("utf-8", "surrogatepass"), headers={"Content-Type": content_type})
    result = poll(shared_site, "/fuzz.xml")
    assert result.outcome in {"ok", "failed"}
    assert result.outcome == "ok" or result.error
