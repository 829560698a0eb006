"""A lean asyncio HTTP/1.1 server for the benchmark: the same resources as ``SiteServer``, with every
response (headers and gzipped body) prepared before the clock starts, so the stand-in for remote news
sites spends as little of the two cores as a real remote site would (none)."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Mapping
from typing import Any


def _response(status: int, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'X'}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


class LeanServer:
    def __init__(self, resources: Mapping[str, Any], *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.plain: dict[str, bytes] = {}
        self.gzipped: dict[str, bytes] = {}
        for path, res in resources.items():
            self.plain[path] = _response(res.status, res.headers, res.body)
            if len(res.body) > 1024:
                self.gzipped[path] = _response(
                    res.status, {**res.headers, "Content-Encoding": "gzip"}, gzip.compress(res.body, compresslevel=6)
                )
        self.missing = _response(404, {"Content-Type": "text/plain"}, b"not found")
        self.loop = asyncio.new_event_loop()
        self.port = port
        self.host = host
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, self.host, self.port))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, _, rest = head.partition(b"\r\n")
                path = request_line.split(b" ")[1].decode("latin-1")
                gzip_ok = b"gzip" in rest.lower()
                writer.write((self.gzipped.get(path) if gzip_ok else None) or self.plain.get(path) or self.missing)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
