"""A loopback HTTP server for the bundled sample site (``demo``), the tests and the benchmark.

It behaves like a well-run news site: ETag and Last-Modified with 304s on conditional requests, gzip
when asked. Tests add hostile routes (``handlers``) beside the static ones.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

LAST_MODIFIED = "Wed, 01 Oct 2025 08:00:00 GMT"


class ResourceLike(Protocol):
    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def body(self) -> bytes: ...


Handler = Callable[[BaseHTTPRequestHandler], None]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response (size cap, timeout) is expected here, not an error.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class SiteServer:
    """Serve ``resources`` (path with query → resource) and ``handlers`` (path → function) on 127.0.0.1."""

    def __init__(self, resources: Mapping[str, ResourceLike] | None = None, *, port: int = 0) -> None:
        self.resources: dict[str, ResourceLike] = dict(resources or {})
        self.handlers: dict[str, Handler] = {}
        self.requests: Counter[str] = Counter()
        self.conditional_hits: Counter[str] = Counter()  # 304s served
        # Requests under /stall/ get no answer until the server stops (a server that hangs: read timeout).
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._gzip_cache: dict[tuple[str, bytes], bytes] = {}
        site = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, the body waits for a delayed ACK
            # (40 ms a response on Linux), which real servers do not impose.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                site._serve(self)

        self._server = _QuietServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="site", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> SiteServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests[path]

    def _gzipped(self, path: str, body: bytes) -> bytes:
        # Compressed once per body, as a CDN or a caching server does, not on every request.
        key = (path, hashlib.sha1(body).digest())
        with self._lock:
            cached = self._gzip_cache.get(key)
        if cached is None:
            cached = gzip.compress(body, compresslevel=6)
            with self._lock:
                self._gzip_cache[key] = cached
        return cached

    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path
        with self._lock:
            self.requests[path] += 1
        handler = self.handlers.get(path.split("?")[0]) or self.handlers.get(path)
        if handler is not None:
            handler(req)
            return
        if path.startswith("/stall/"):
            self._stopping.wait(timeout=120)
            req.close_connection = True
            return
        res = self.resources.get(path)
        if res is None:
            _send(req, 404, {"Content-Type": "text/html; charset=utf-8"}, b"<html><body><h1>404</h1></body></html>")
            return
        headers = dict(res.headers)
        body = res.body
        if res.status == 200:
            etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
            headers.setdefault("ETag", etag)
            headers.setdefault("Last-Modified", LAST_MODIFIED)
            if req.headers.get("If-None-Match") == headers["ETag"] or (
                "If-None-Match" not in req.headers and req.headers.get("If-Modified-Since") == headers["Last-Modified"]
            ):
                with self._lock:
                    self.conditional_hits[path] += 1
                _send(req, 304, {"ETag": headers["ETag"]}, b"")
                return
            if "gzip" in req.headers.get("Accept-Encoding", "") and len(body) > 1024:
                body = self._gzipped(path, body)
                headers["Content-Encoding"] = "gzip"
        _send(req, res.status, headers, body)


def _send(req: BaseHTTPRequestHandler, status: int, headers: Mapping[str, str], body: bytes) -> None:
    try:
        req.send_response(status)
        for name, value in headers.items():
            req.send_header(name, value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if body:
            req.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up (size cap, timeout): nothing to do
