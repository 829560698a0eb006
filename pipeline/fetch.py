"""HTTP at the edge: every feed and page download goes through ``Fetcher.get``.

What it guarantees, whatever the server does: a bounded number of redirects, each hop checked against
the private-address rule; a size cap on the decoded body (gzip bombs included); connect and read
timeouts; ``Retry-After`` honoured (waited for when short, reported when long); conditional GET; at most
``per_host`` requests in flight to one host, so a pool of threads can fetch many feeds and pages at once.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import httpx

from pipeline.errors import FetchError, RateLimited, RefusedURL, TooLarge
from pipeline.settings import Settings

REDIRECTS = {301, 302, 303, 307, 308}
PERMANENT = {301, 308}
# Worth one more try: the server or a proxy hiccuped. 4xx and timeouts are not retried here (a timeout
# already cost read_timeout; the next run tries again).
TRANSIENT = {502, 503, 504}


@dataclass(frozen=True, slots=True)
class Response:
    url: str  # as requested
    final_url: str  # after redirects
    status: int  # 200 or 304
    headers: Mapping[str, str]  # lower-case names
    content: bytes
    moved_to: str | None = None  # set when the first hop was a permanent redirect

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def check_url(url: str, *, allow_private: bool, resolve: bool = True) -> None:
    """Refuse URLs we must not fetch: other schemes, no host, and (unless allowed) hosts that resolve
    to loopback, private, link-local or otherwise non-public addresses.

    Raises:
        RefusedURL: the URL is not allowed.
        FetchError: the host name does not resolve.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise RefusedURL(f"scheme {parts.scheme or '(none)'!r} is not http(s)", url=url)
    host = parts.hostname
    if not host:
        raise RefusedURL("no host in URL", url=url)
    if allow_private or not resolve:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RefusedURL("bad port in URL", url=url) from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise FetchError(f"DNS lookup failed for {host}: {err}", url=url) from err
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        # is_global is False for loopback, RFC 1918, link-local (cloud metadata), CGNAT, reserved.
        if not address.is_global:
            raise RefusedURL(
                f"{host} resolves to non-public address {address} (set ALLOW_PRIVATE_HOSTS=1 to allow)",
                url=url,
            )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class _ConnectionFailed(FetchError):
    """Refused or dropped connection: retried once, then reported as a FetchError."""


class _Decoder:
    """Decompresses a body ourselves so the size cap applies to what it inflates to."""

    def __init__(self, encoding: str, *, url: str) -> None:
        encoding = encoding.strip().lower()
        self._obj: zlib._Decompress | None
        if encoding in ("", "identity"):
            self._obj = None
        elif encoding in ("gzip", "x-gzip"):
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._obj = zlib.decompressobj(zlib.MAX_WBITS)
            self._raw_deflate_fallback = True
        else:
            raise FetchError(f"unsupported Content-Encoding {encoding!r}", url=url)
        self._url = url
        self._started = False

    def feed(self, chunk: bytes, limit: int) -> bytes:
        if self._obj is None:
            return chunk
        try:
            out = self._obj.decompress(chunk, limit + 1)
        except zlib.error as err:
            # Some servers send raw deflate without the zlib header.
            if not self._started and getattr(self, "_raw_deflate_fallback", False):
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                self._raw_deflate_fallback = False
                return self.feed(chunk, limit)
            raise FetchError(f"corrupt compressed body: {err}", url=self._url) from err
        self._started = True
        if self._obj.unconsumed_tail:
            # More output is pending than the cap allows: the body is too large.
            return out + b"\0" * (limit + 1)
        return out


class Fetcher:
    """A thread-safe HTTP client with the guarantees in the module docstring."""

    def __init__(
        self, settings: Settings, *, allow_private: bool | None = None, exempt_hosts: frozenset[str] = frozenset()
    ) -> None:
        self.settings = settings
        self.allow_private = settings.allow_private_hosts if allow_private is None else allow_private
        # Host names (as written in URLs) let through the private-address rule by name: an intranet feed
        # server, or the demo site, without opening every private address.
        self.exempt_hosts = frozenset(h.lower() for h in exempt_hosts)
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.read_timeout * 4,
            ),
            follow_redirects=False,
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
            limits=httpx.Limits(
                max_connections=settings.fetch_workers * 2,
                max_keepalive_connections=settings.fetch_workers,
            ),
            # We decode ourselves (size cap after decompression) and never trust env proxies in tests.
            trust_env=False,
        )
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    @contextmanager
    def _host_slot(self, url: str) -> Iterator[None]:
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            slot = self._hosts.setdefault(host, threading.BoundedSemaphore(self.settings.per_host))
        with slot:
            yield

    def get(
        self,
        url: str,
        *,
        feed_id: str = "",
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str | None = None,
    ) -> Response:
        """Download ``url`` following at most ``max_redirects`` checked redirects.

        Raises:
            RefusedURL: the URL or a redirect target is not allowed, or too many redirects.
            TooLarge: the (decoded) body exceeds ``max_bytes``.
            RateLimited: the server asked to come back later than ``max_retry_after`` seconds.
            FetchError: network error, timeout, or an HTTP error status.
        """
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        if accept:
            headers["Accept"] = accept
        current = url
        moved_to: str | None = None
        for hop in range(self.settings.max_redirects + 1):
            host = (urlsplit(current).hostname or "").lower()
            check_url(current, allow_private=self.allow_private or host in self.exempt_hosts)
            status, location, resp_headers, content = self._request_with_retries(current, headers, feed_id=feed_id)
            if status in REDIRECTS:
                if not location:
                    raise FetchError(f"HTTP {status} without Location", url=current, feed_id=feed_id, status=status)
                target = urljoin(current, location)
                if hop == 0 and status in PERMANENT:
                    moved_to = target
                current = target
                continue
            return Response(
                url=url, final_url=current, status=status, headers=resp_headers, content=content, moved_to=moved_to
            )
        raise RefusedURL(
            f"more than {self.settings.max_redirects} redirects (last to {current})", url=url, feed_id=feed_id
        )

    def _request_with_retries(
        self, url: str, headers: dict[str, str], *, feed_id: str
    ) -> tuple[int, str | None, dict[str, str], bytes]:
        waited = 0.0
        for attempt in range(3):
            try:
                status, location, resp_headers, content = self._request(url, headers, feed_id=feed_id)
            except _ConnectionFailed:
                if attempt == 0:
                    time.sleep(0.2)  # a dropped connection is worth one quick retry
                    continue
                raise
            if status in (429, 503):
                delay = parse_retry_after(resp_headers.get("retry-after"))
                if delay is not None:
                    if delay + waited > self.settings.max_retry_after or attempt == 2:
                        raise RateLimited(
                            f"HTTP {status}: server asks to retry after {delay:.0f}s",
                            url=url,
                            feed_id=feed_id,
                            retry_after=delay,
                        )
                    time.sleep(delay)
                    waited += delay
                    continue
            if status in TRANSIENT and attempt == 0:
                time.sleep(0.5)
                continue
            if status >= 400:
                raise FetchError(f"HTTP {status}", url=url, feed_id=feed_id, status=status)
            return status, location, resp_headers, content
        raise FetchError("gave up after retries", url=url, feed_id=feed_id)

    def _request(
        self, url: str, headers: dict[str, str], *, feed_id: str
    ) -> tuple[int, str | None, dict[str, str], bytes]:
        limit = self.settings.max_bytes
        try:
            with self._host_slot(url), self._client.stream("GET", url, headers=headers) as resp:
                # From the request on: time spent waiting for a slot on a slow host is not the page's fault.
                deadline = time.monotonic() + self.settings.total_timeout
                resp_headers = {k.lower(): v for k, v in resp.headers.items()}
                status = resp.status_code
                if status in REDIRECTS or status == 304 or status >= 400:
                    return status, resp_headers.get("location"), resp_headers, b""
                declared = resp_headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit and not resp_headers.get("content-encoding"):
                    raise TooLarge(f"Content-Length {declared} exceeds the {limit}-byte cap", url=url, feed_id=feed_id)
                decoder = _Decoder(resp_headers.get("content-encoding", ""), url=url)
                body = bytearray()
                for chunk in resp.iter_raw():
                    body += decoder.feed(chunk, limit - len(body))
                    if len(body) > limit:
                        raise TooLarge(f"body exceeds the {limit}-byte cap", url=url, feed_id=feed_id)
                    if time.monotonic() > deadline:
                        raise FetchError(
                            f"timed out: body still arriving after {self.settings.total_timeout:.0f}s",
                            url=url,
                            feed_id=feed_id,
                        )
                return status, None, resp_headers, bytes(body)
        except httpx.TimeoutException as err:
            raise FetchError(f"timed out ({type(err).__name__})", url=url, feed_id=feed_id) from err
        except httpx.HTTPError as err:
            raise _ConnectionFailed(
                f"connection failed: {err or type(err).__name__}", url=url, feed_id=feed_id
            ) from err


def http_date(when: datetime) -> str:
    return email.utils.format_datetime(when.astimezone(UTC), usegmt=True)
