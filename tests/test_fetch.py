"""The fetcher against a real loopback server misbehaving in the ways real sites do."""

from __future__ import annotations

import gzip
import ipaddress
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.demo.server import SiteServer
from pipeline.errors import FetchError, RateLimited, RefusedURL, TooLarge
from pipeline.ingest.addresses import refusal
from pipeline.ingest.fetch import Fetcher, check_url, parse_retry_after
from pipeline.settings import Settings


def reply(status: int, body: bytes = b"", **headers: str):  # type: ignore[no-untyped-def]
    def handler(req: BaseHTTPRequestHandler) -> None:
        req.send_response(status)
        for name, value in headers.items():
            req.send_header(name.replace("_", "-"), value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    return handler


@pytest.fixture
def fetcher(settings: Settings):  # type: ignore[no-untyped-def]
    with Fetcher(settings.with_(max_bytes=100_000, max_redirects=3, per_host=2)) as f:
        yield f


def test_gzip_body_is_decoded(site: SiteServer, fetcher: Fetcher) -> None:
    text = "خبر عاجل من دمشق ".encode() * 200
    site.handlers["/gz"] = reply(200, gzip.compress(text), Content_Encoding="gzip", Content_Type="text/html")
    assert fetcher.get(f"{site.base_url}/gz").content == text


def test_oversized_body_is_refused_even_without_content_length(site: SiteServer, fetcher: Fetcher) -> None:
    def endless(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "text/html")
        req.end_headers()  # no Content-Length: the body ends when the connection closes
        for _ in range(50):
            req.wfile.write(b"x" * 10_000)
        req.close_connection = True

    site.handlers["/endless"] = endless
    with pytest.raises(TooLarge):
        fetcher.get(f"{site.base_url}/endless")


def test_gzip_bomb_is_capped_at_the_decoded_size(site: SiteServer, fetcher: Fetcher) -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB inflating from about 50 KB
    site.handlers["/bomb"] = reply(200, bomb, Content_Encoding="gzip")
    with pytest.raises(TooLarge):
        fetcher.get(f"{site.base_url}/bomb")


def test_declared_length_over_the_cap_is_refused_before_reading(site: SiteServer, fetcher: Fetcher) -> None:
    site.handlers["/big"] = reply(200, b"y" * 200_000)
    with pytest.raises(TooLarge, match="Content-Length"):
        fetcher.get(f"{site.base_url}/big")


def test_redirects_are_followed_up_to_the_limit(site: SiteServer, fetcher: Fetcher) -> None:
    site.handlers["/r1"] = reply(302, Location="/r2")
    site.handlers["/r2"] = reply(301, Location=f"{site.base_url}/final")
    site.handlers["/final"] = reply(200, b"ok")
    resp = fetcher.get(f"{site.base_url}/r1")
    assert resp.final_url == f"{site.base_url}/final" and resp.content == b"ok"
    assert resp.moved_to is None  # the first hop was temporary

    for n in range(5):
        site.handlers[f"/chain/{n}"] = reply(302, Location=f"/chain/{n + 1}")
    with pytest.raises(RefusedURL, match="more than 3 redirects"):
        fetcher.get(f"{site.base_url}/chain/0")
    assert site.count("/chain/4") == 0


def test_a_redirect_loop_is_refused_naming_its_hops(site: SiteServer, fetcher: Fetcher) -> None:
    site.handlers["/loop"] = reply(302, Location="/loop")
    with pytest.raises(RefusedURL, match=r"redirect loop: .*/loop -> .*/loop$"):
        fetcher.get(f"{site.base_url}/loop")
    assert site.count("/loop") == 1


def test_permanent_first_redirect_is_reported_as_moved(site: SiteServer, fetcher: Fetcher) -> None:
    site.handlers["/old"] = reply(301, Location="/new")
    site.handlers["/new"] = reply(200, b"<rss/>")
    assert fetcher.get(f"{site.base_url}/old").moved_to == f"{site.base_url}/new"


def test_private_addresses_are_refused_unless_allowed(site: SiteServer, settings: Settings) -> None:
    site.handlers["/x"] = reply(200, b"ok")
    with Fetcher(settings.with_(allow_private_hosts=False)) as strict, pytest.raises(RefusedURL, match="non-public"):
        strict.get(f"{site.base_url}/x")
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::1]/", "http://0x7f000001/"):
        with pytest.raises(RefusedURL):
            check_url(url, allow_private=False)
    with pytest.raises(RefusedURL, match="scheme"):
        check_url("file:///etc/passwd", allow_private=True)


def test_each_redirect_target_is_checked_against_the_private_rule(site: SiteServer, settings: Settings) -> None:
    # The site itself is let through by name; its redirect to another loopback name is not.
    site.handlers["/to-internal"] = reply(302, Location=f"http://localhost:{site.base_url.rsplit(':', 1)[1]}/x")
    site.handlers["/to-metadata"] = reply(302, Location="http://169.254.169.254/latest/meta-data/")
    site.handlers["/x"] = reply(200, b"secret")
    with Fetcher(settings.with_(allow_private_hosts=False), exempt_hosts=frozenset({"127.0.0.1"})) as f:
        for path in ("/to-internal", "/to-metadata"):
            with pytest.raises(RefusedURL, match="non-public"):
                f.get(f"{site.base_url}{path}")
    assert site.count("/x") == 0


def test_short_retry_after_is_waited_for(site: SiteServer, fetcher: Fetcher) -> None:
    calls = {"n": 0}

    def busy_once(req: BaseHTTPRequestHandler) -> None:
        calls["n"] += 1
        (reply(429, Retry_After="1") if calls["n"] == 1 else reply(200, b"done"))(req)

    site.handlers["/busy"] = busy_once
    assert fetcher.get(f"{site.base_url}/busy").content == b"done"
    assert calls["n"] == 2


def test_long_retry_after_is_reported_not_waited_for(site: SiteServer, fetcher: Fetcher) -> None:
    site.handlers["/later"] = reply(503, Retry_After="3600")
    with pytest.raises(RateLimited) as info:
        fetcher.get(f"{site.base_url}/later")
    assert info.value.retry_after == 3600
    assert site.count("/later") == 1


def test_retry_after_as_http_date() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 30) == 30
    assert parse_retry_after("soon") is None


def test_slow_server_times_out(site: SiteServer, settings: Settings, gate: threading.Event) -> None:
    def stall(req: BaseHTTPRequestHandler) -> None:
        gate.wait(10)

    site.handlers["/stall"] = stall
    with Fetcher(settings.with_(read_timeout=0.3)) as f, pytest.raises(FetchError, match="timed out"):
        f.get(f"{site.base_url}/stall")


def test_http_errors_and_refused_connections_are_fetch_errors(site: SiteServer, fetcher: Fetcher) -> None:
    with pytest.raises(FetchError) as info:
        fetcher.get(f"{site.base_url}/missing")
    assert info.value.status == 404
    with pytest.raises(FetchError, match="connection failed"):
        fetcher.get("http://127.0.0.1:9/")  # discard port: nothing listens


def test_conditional_get_returns_not_modified(site: SiteServer, fetcher: Fetcher) -> None:
    from pipeline.demo.site import Resource

    site.resources["/feed.xml"] = Resource(200, {"Content-Type": "application/rss+xml"}, b"<rss></rss>")
    first = fetcher.get(f"{site.base_url}/feed.xml")
    again = fetcher.get(f"{site.base_url}/feed.xml", etag=first.headers["etag"])
    assert first.status == 200 and again.not_modified and again.content == b""
    by_date = fetcher.get(f"{site.base_url}/feed.xml", last_modified=first.headers["last-modified"])
    assert by_date.not_modified


def test_requests_to_one_host_are_bounded(site: SiteServer, fetcher: Fetcher, gate: threading.Event) -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def slow(req: BaseHTTPRequestHandler) -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        gate.wait(0.3)
        with lock:
            state["now"] -= 1
        reply(200, b"ok")(req)

    site.handlers["/slow"] = slow
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: fetcher.get(f"{site.base_url}/slow?i={i}"), range(8)))
    assert all(r.content == b"ok" for r in results)
    assert state["peak"] == 2  # per_host=2 although 8 threads asked at once


def test_a_body_trickling_in_is_cut_at_the_total_timeout(
    site: SiteServer, settings: Settings, gate: threading.Event
) -> None:
    def trickle(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "text/html")
        req.end_headers()
        for _ in range(200):  # a byte every 50 ms: never slow enough for the read timeout
            if gate.wait(0.05):
                return
            req.wfile.write(b"x")
            req.wfile.flush()

    site.handlers["/trickle"] = trickle
    with (
        Fetcher(settings.with_(read_timeout=1, total_timeout=0.5)) as f,
        pytest.raises(FetchError, match="still arriving"),
    ):
        f.get(f"{site.base_url}/trickle")


# --- the address rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254", "fd20:ce::254", "100.100.100.200",
     "168.63.129.16", "::ffff:169.254.169.254", "::169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::",
     "224.0.0.1", "ff02::1"],
)  # fmt: skip
def test_link_local_metadata_and_multicast_addresses_are_refused_even_when_private_ones_are_allowed(
    address: str,
) -> None:
    assert refusal(ipaddress.ip_address(address), allow_private=True) is not None


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "192.168.0.10", "172.16.0.1", "::1", "fc00::1", "::ffff:127.0.0.1", "0.0.0.0"]
)
def test_the_rule_refuses_private_addresses_unless_allowed(address: str) -> None:
    assert "ALLOW_PRIVATE_HOSTS" in (refusal(ipaddress.ip_address(address), allow_private=False) or "")
    assert refusal(ipaddress.ip_address(address), allow_private=True) is None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_private=False) is None


@given(st.integers(0, 0xFFFF))
def test_every_link_local_ipv4_address_is_refused_in_every_ipv6_form(low: int) -> None:
    v4 = ipaddress.IPv4Address((169 << 24) | (254 << 16) | low)
    forms = [
        v4,
        ipaddress.IPv6Address(f"::ffff:{v4}"),  # mapped
        ipaddress.IPv6Address(f"::{v4}"),  # compatible
        ipaddress.IPv6Address(f"64:ff9b::{v4}"),  # NAT64
        ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80)),  # 6to4
    ]
    for form in forms:
        assert refusal(form, allow_private=True) is not None, form


def test_a_port_the_socket_would_wrap_around_is_refused(site: SiteServer, fetcher: Fetcher) -> None:
    # The socket takes ports modulo 65536: ":99999" would reach whatever listens on 34463.
    with pytest.raises(RefusedURL, match="port 99999 out of range"):
        fetcher.get("http://127.0.0.1:99999/")
    site.handlers["/wrap"] = reply(302, Location="http://127.0.0.1:65536/")
    with pytest.raises(RefusedURL, match="redirect to 'http://127.0.0.1:65536/': malformed URL: port 65536"):
        fetcher.get(f"{site.base_url}/wrap")


def test_a_validator_that_cannot_be_sent_back_is_dropped(site: SiteServer, fetcher: Fetcher) -> None:
    seen: list[str | None] = []

    def record(req: BaseHTTPRequestHandler) -> None:
        seen.append(req.headers.get("If-None-Match"))
        reply(200, b"<rss/>")(req)

    site.handlers["/v"] = record
    assert fetcher.get(f"{site.base_url}/v", etag='"\u062e\u0628\u0631"', last_modified="\x00").status == 200
    assert seen == [None]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), ("\u00b2", None), ("\u0663", None), ("9" * 30, 86400.0),
     ("Fri, 31 Dec 9999 23:59:59 GMT", 86400.0), ("-5", None), ("", None)],
)  # fmt: skip
def test_retry_after_is_a_number_of_seconds_up_to_a_day(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now=1_700_000_000) == expected
