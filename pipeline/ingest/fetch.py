"""HTTP at the edge: every feed and page download goes through ``Fetcher.get``.

What it guarantees, whatever the server does: a bounded number of redirects, each hop checked (http(s)
only, a well-formed URL, no loop); every connection made to an address allowed by
``pipeline.ingest.addresses``, checked when connecting, on the very address connected to; a size cap on the
decoded body (gzip bombs included); connect and read timeouts, and one deadline for the whole download
(a server trickling headers or body cannot hold a worker); ``Retry-After`` honoured (waited for when
short, reported when long); conditional GET; at most ``per_host`` requests in flight to one host, so a
pool of threads can fetch many feeds and pages at once. Whatever goes wrong, ``get`` raises a
``FetchError``.

It speaks HTTP through httpcore's connection pool rather than an ``httpx.Client``: the client parses
every redirect's ``Location`` itself (raising on malformed ones) and keeps a cookie jar shared by every
site, and its transport cannot be given a network backend, which is where the address rule belongs.
httpx still parses and normalises the URLs (IDNA, percent-encoding) and builds the request headers.
"""

from __future__ import annotations

import contextvars
import email.utils
import ssl
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import httpcore
import httpx

from pipeline import log
from pipeline.errors import FetchError, PipelineError, RateLimited, RefusedURL, TooLarge
from pipeline.ingest.addresses import allowed_addresses
from pipeline.settings import Settings

_log = log.get(__name__)

REDIRECTS = {301, 302, 303, 307, 308}
PERMANENT = {301, 308}
# Worth one more try: the server or a proxy hiccuped. 4xx and timeouts are not retried here (a timeout
# already cost read_timeout; the next run tries again).
TRANSIENT = {502, 503, 504}
# A server cannot switch a feed off for longer than this with one Retry-After.
MAX_RETRY_AFTER = 24 * 3600.0


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


def parse_target(url: str) -> httpx.URL:
    """``url`` as the HTTP client will use it, if it is one we may fetch at all.

    Raises:
        RefusedURL: not http(s), no host, or malformed (bad port, host, characters).
    """
    try:
        target = httpx.URL(url)
        host = target.host  # decodes the IDNA host, which httpx did not check when parsing
    except (httpx.InvalidURL, ValueError) as err:  # ValueError: UnicodeError from IDNA, too
        raise RefusedURL(f"malformed URL: {err}", url=url) from err
    if target.scheme not in ("http", "https"):
        raise RefusedURL(f"scheme {target.scheme or '(none)'!r} is not http(s)", url=url)
    if not host:
        raise RefusedURL("no host in URL", url=url)
    # httpx takes any number; the socket takes it modulo 65536 (":99999" would reach port 34463).
    if target.port is not None and not 0 < target.port < 65536:
        raise RefusedURL(f"malformed URL: port {target.port} out of range", url=url)
    return target


def check_url(url: str, *, allow_private: bool, resolve: bool = True) -> None:
    """Refuse URLs we must not fetch: other schemes, no host, malformed, and hosts resolving to an
    address ``pipeline.ingest.addresses`` forbids (link-local and metadata always; other non-public ones
    unless ``allow_private``). ``Fetcher`` applies the same rule when it connects.

    Raises:
        RefusedURL: the URL is not allowed.
        FetchError: the host name does not resolve.
    """
    target = parse_target(url)
    if not resolve:
        return
    try:
        allowed_addresses(target.host, target.port or _default_port(target), allow_private=allow_private)
    except PipelineError as err:
        err.url = url
        raise


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), at most a day."""
    if not value:
        return None
    value = value.strip()
    # isascii: "²" and "٣" are digits to str.isdigit, and float() refuses the first.
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


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


# --- the network edge: deadline and address rule, below HTTP -------------------------------------

# When the download under way in this thread must be over (time.monotonic()). A context variable:
# httpcore's sync pool does all its I/O in the calling thread, so each read sees its own download's.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("fetch_deadline", default=None)


class _PastDeadline(httpcore.ReadTimeout):
    """The download's total time is up (a timeout to httpcore, so it drops the connection)."""


def _within_deadline(timeout: float | None, *, slack: float = 0.0) -> float | None:
    """``timeout`` shortened to what is left of the current download's time.

    Raises:
        _PastDeadline: less than ``slack`` seconds are left.
    """
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= slack:
        raise _PastDeadline("total time for the download is up")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits no longer than the current download's deadline:
    read_timeout alone is per read, and a server sending a byte a second never trips it."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._inner.read(max_bytes, _within_deadline(timeout))
        except httpcore.ReadTimeout:
            _within_deadline(None, slack=0.01)  # the deadline's timeout, not the read's: say so
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._inner.write(buffer, _within_deadline(timeout))
        except httpcore.WriteTimeout:
            _within_deadline(None, slack=0.01)
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _within_deadline(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """Opens every connection the fetcher makes: resolves the host once, checks every address, and
    connects to a checked address, so the address judged is the address talked to (no second lookup
    for a rebinding DNS server to answer differently)."""

    def __init__(self, *, allow_private: bool, exempt_hosts: frozenset[str]) -> None:
        self._allow_private = allow_private
        self._exempt_hosts = exempt_hosts

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        allow_private = self._allow_private or host.lower() in self._exempt_hosts
        addresses = allowed_addresses(host, port, allow_private=allow_private)
        failure: Exception | None = None
        for address in addresses:
            try:
                # An address literal: create_connection does no DNS lookup for it.
                stream = super().connect_tcp(address, port, _within_deadline(timeout), local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                failure = err
                continue
            return _DeadlineStream(stream)
        raise failure or FetchError(f"no address to connect to for {host}")


# --- the fetcher --------------------------------------------------------------------------------


class Fetcher:
    """A thread-safe HTTP client with the guarantees in the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        allow_private: bool | None = None,
        exempt_hosts: frozenset[str] = frozenset(),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` replaces the default certificate checks (certifi's CAs), e.g. to trust an
        intranet's own CA."""
        self.settings = settings
        self.allow_private = settings.allow_private_hosts if allow_private is None else allow_private
        # Host names (as written in URLs) let through the private-address rule by name: an intranet feed
        # server, or the demo site, without opening every private address. Never the link-local rule.
        self.exempt_hosts = frozenset(h.lower().strip("[]") for h in exempt_hosts)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=settings.fetch_workers * 2,
            max_keepalive_connections=settings.fetch_workers,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(allow_private=self.allow_private, exempt_hosts=self.exempt_hosts),
        )
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.close()

    def get(
        self,
        url: str,
        *,
        feed_id: str = "",
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str | None = None,
    ) -> Response:
        """Download ``url`` following at most ``max_redirects`` checked redirects, all within
        ``total_timeout``.

        Raises:
            RefusedURL: the URL or a redirect target is not allowed or malformed, a redirect loop, or
                too many redirects.
            TooLarge: the (decoded) body exceeds ``max_bytes``.
            RateLimited: the server asked to come back later than ``max_retry_after`` seconds.
            FetchError: network error, timeout, an HTTP error status, or anything else that went wrong.
        """
        headers = {"User-Agent": self.settings.user_agent, "Accept-Encoding": "gzip, deflate"}
        # Validators are echoed from an earlier response: one that cannot be sent back as it came
        # (non-ASCII, control characters) is dropped rather than failing every later poll.
        for name, value in (("If-None-Match", etag), ("If-Modified-Since", last_modified), ("Accept", accept)):
            if value and sendable(value):
                headers[name] = value
            elif value:
                _log.info("fetch.validator_dropped", feed=feed_id, url=url, header=name)
        token = _DEADLINE.set(time.monotonic() + self.settings.total_timeout)
        try:
            with _translated(url, feed_id=feed_id, total_timeout=self.settings.total_timeout):
                return self._follow(url, headers)
        finally:
            _DEADLINE.reset(token)

    def _follow(self, url: str, headers: dict[str, str]) -> Response:
        current = url
        chain = [url]
        moved_to: str | None = None
        for hop in range(self.settings.max_redirects + 1):
            try:
                target = parse_target(current)
                status, location, resp_headers, content = self._request_with_retries(target, headers, current)
            except FetchError as err:
                if hop:
                    # The reason names the target: the URL asked for is fine, where it leads is not.
                    err.message = f"redirect to {current!r}: {err.message}"
                raise
            if status not in REDIRECTS:
                return Response(
                    url=url, final_url=current, status=status, headers=resp_headers, content=content, moved_to=moved_to
                )
            if not location:
                raise FetchError(f"HTTP {status} from {current} without Location", status=status)
            try:
                target_url = urljoin(current, location)
            except ValueError as err:  # urljoin refuses some malformed hosts ("http://[::1")
                raise RefusedURL(f"redirect to malformed target {location!r}: {err}") from err
            if hop == 0 and status in PERMANENT:
                moved_to = target_url
            if target_url in chain:
                raise RefusedURL(f"redirect loop: {' -> '.join([*chain, target_url])}")
            chain.append(target_url)
            current = target_url
        raise RefusedURL(f"more than {self.settings.max_redirects} redirects (last to {current})")

    @contextmanager
    def _host_slot(self, host: str) -> Iterator[None]:
        with self._lock:
            slot = self._hosts.setdefault(host, threading.BoundedSemaphore(self.settings.per_host))
        queued = time.monotonic()
        with slot:
            # Time spent queueing behind this host's other downloads is not this download's: each
            # holder is bounded by its own deadline, so the wait is too.
            deadline = _DEADLINE.get()
            if deadline is not None:
                _DEADLINE.set(deadline + time.monotonic() - queued)
            yield

    def _request_with_retries(
        self, target: httpx.URL, headers: dict[str, str], url: str
    ) -> tuple[int, str | None, dict[str, str], bytes]:
        waited = 0.0
        for attempt in range(3):
            try:
                status, location, resp_headers, content = self._request(target, headers, url)
            except _ConnectionFailed:
                if attempt == 0:
                    time.sleep(0.2)  # a dropped connection is worth one quick retry
                    continue
                raise
            if status in (429, 503):
                delay = parse_retry_after(resp_headers.get("retry-after"))
                if delay is not None:
                    left = _within_deadline(None)  # a wait the download's deadline cannot afford is reported
                    if (
                        delay + waited > self.settings.max_retry_after
                        or (left is not None and delay >= left)
                        or attempt == 2
                    ):
                        raise RateLimited(
                            f"HTTP {status}: server asks to retry after {delay:.0f}s", url=url, retry_after=delay
                        )
                    time.sleep(delay)
                    waited += delay
                    continue
            if status in TRANSIENT and attempt == 0:
                time.sleep(0.5)
                continue
            if status >= 400:
                raise FetchError(f"HTTP {status}", url=url, status=status)
            return status, location, resp_headers, content
        raise FetchError("gave up after retries", url=url)

    def _request(
        self, target: httpx.URL, headers: dict[str, str], url: str
    ) -> tuple[int, str | None, dict[str, str], bytes]:
        request = httpx.Request("GET", target, headers=headers)  # adds Host, validates the values
        try:
            timeout = {
                "connect": self.settings.connect_timeout,
                "read": self.settings.read_timeout,
                "write": self.settings.read_timeout,
                "pool": _within_deadline(self.settings.read_timeout * 4),
            }
            core_request = httpcore.Request(
                b"GET",
                httpcore.URL(scheme=target.raw_scheme, host=target.raw_host, port=target.port, target=target.raw_path),
                headers=request.headers.raw,
                extensions={"timeout": timeout},
            )
            with self._host_slot(target.host):
                resp = self._pool.handle_request(core_request)
                try:
                    return self._read(resp, url, self.settings.max_bytes)
                finally:
                    resp.close()
        except _PastDeadline:
            raise  # _translated words it, with the total time
        except httpcore.TimeoutException as err:
            raise FetchError(f"timed out ({type(err).__name__})", url=url) from err
        except (httpcore.NetworkError, httpcore.RemoteProtocolError) as err:
            raise _ConnectionFailed(f"connection failed: {err or type(err).__name__}", url=url) from err
        except (httpcore.LocalProtocolError, httpcore.UnsupportedProtocol, httpcore.ProxyError) as err:
            raise FetchError(f"request failed: {err or type(err).__name__}", url=url) from err

    def _read(self, resp: httpcore.Response, url: str, limit: int) -> tuple[int, str | None, dict[str, str], bytes]:
        resp_headers = {k.lower(): v for k, v in httpx.Headers(resp.headers).items()}
        status = resp.status
        if status in REDIRECTS or status == 304 or status >= 400:
            return status, resp_headers.get("location"), resp_headers, b""
        declared = resp_headers.get("content-length", "")
        # isascii: "²" is a digit to str.isdigit, and int() refuses it.
        plain = not resp_headers.get("content-encoding")
        if plain and declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"Content-Length {declared} exceeds the {limit}-byte cap", url=url)
        decoder = _Decoder(resp_headers.get("content-encoding", ""), url=url)
        body = bytearray()
        for chunk in resp.iter_stream():
            body += decoder.feed(chunk, limit - len(body))
            if len(body) > limit:
                raise TooLarge(f"body exceeds the {limit}-byte cap", url=url)
        return status, None, resp_headers, bytes(body)


@contextmanager
def _translated(url: str, *, feed_id: str, total_timeout: float) -> Iterator[None]:
    """Every error of a download becomes a ``FetchError`` carrying the URL asked for (its message
    names the redirect target at fault): the one place where what escaped the hop-by-hop handling
    turns into ours, so that callers need no other ``except``."""
    try:
        yield
    except FetchError as err:
        err.url, err.feed_id = url, feed_id
        raise
    except _PastDeadline as err:
        raise FetchError(
            f"timed out: response still arriving after {total_timeout:g}s", url=url, feed_id=feed_id
        ) from err
    except PipelineError as err:  # none is raised below today; a FetchError is what callers expect
        raise FetchError(str(err), url=url, feed_id=feed_id) from err
    except (httpx.InvalidURL, ValueError) as err:  # UnicodeError included: header values, IDNA
        raise FetchError(f"malformed URL or header: {err}", url=url, feed_id=feed_id) from err
    except Exception as err:  # noqa: BLE001 - a library bug on one hostile server must stay with that URL
        _log.error("fetch.crashed", feed=feed_id, url=url, reason=repr(err), exc_info=True)
        raise FetchError(f"download failed: {type(err).__name__}: {err}", url=url, feed_id=feed_id) from err


def sendable(value: str) -> bool:
    """Whether ``value`` can go back in a request header as it is: printable ASCII."""
    return value.isascii() and value.isprintable()


def _default_port(target: httpx.URL) -> int:
    return 443 if target.scheme == "https" else 80


def http_date(when: datetime) -> str:
    return email.utils.format_datetime(when.astimezone(UTC), usegmt=True)
