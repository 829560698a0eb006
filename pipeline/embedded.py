"""The embedded default: a pinned ``noida-db`` Elasticsearch-compatible server on loopback.

Started when no ``ES_URL`` is set, with its data under ``DATA_DIR/es``; stopped (its whole process group)
when the context exits, also on Ctrl-C. A second process that finds the data directory in use reuses
the running server instead of starting another on the same files.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from pipeline import log
from pipeline.errors import ConfigError, IndexingError

_log = log.get(__name__)


def noida_binary() -> str:
    """The ``noida-db`` console script installed beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "noida-db"
    if beside.exists():
        return str(beside)
    found = shutil.which("noida-db")
    if not found:
        raise ConfigError("noida-db is not installed: run the README's install command, or set ES_URL")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str, *, timeout: float, proc: subprocess.Popen[bytes] | None = None, log_path: Path | None = None
) -> None:
    """Poll ``url`` until it answers 200.

    Raises:
        IndexingError: the server exited or did not answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise IndexingError(f"embedded search server exited with code {proc.returncode}: {_tail(log_path)}")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise IndexingError(f"embedded search server did not answer at {url} within {timeout:.0f}s: {_tail(log_path)}")


def _tail(path: Path | None, lines: int = 5) -> str:
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    useful = [line for line in text if "GLIBC" not in line]  # a harmless loader warning on some hosts
    return " | ".join(useful[-lines:]) or "(empty log)"


def stop_group(proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """Stop the server and any children it started (it runs in its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def start_server(data_dir: Path, *, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server on a free loopback port; returns the process and its URL once it answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [
                noida_binary(),
                "start",
                "--only",
                "elasticsearch",
                "--elasticsearch-port",
                str(port),
                "--host",
                "127.0.0.1",
                "--data-dir",
                str(data_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, so stop_group takes every child with it
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout=60, proc=proc, log_path=log_path)
    except BaseException:
        stop_group(proc)
        raise
    return proc, url


@contextmanager
def embedded_elasticsearch(data_dir: Path) -> Iterator[str]:
    """Yield the URL of the embedded server for ``data_dir`` (``DATA_DIR/es``), started if need be."""
    es_dir = data_dir / "es"
    es_dir.mkdir(parents=True, exist_ok=True)
    lock_file = open(es_dir / "server.lock", "a+")  # noqa: SIM115 - held for the server's lifetime
    info_path = es_dir / "server.json"
    try:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Another run owns the server on these files: share it rather than corrupt them.
            url = json.loads(info_path.read_text())["url"] if info_path.exists() else ""
            if not url:
                raise ConfigError(f"{es_dir} is locked by another process that has no server running") from None
            wait_ready(url, timeout=30)
            _log.debug("es.embedded.shared", url=url, data_dir=str(es_dir))
            yield url
            return
        proc, url = start_server(es_dir / "data")
        info_path.write_text(json.dumps({"url": url, "pid": proc.pid}))
        _log.debug("es.embedded.started", url=url, data_dir=str(es_dir))
        previous = signal.getsignal(signal.SIGTERM)
        # A SIGTERM (Airflow, systemd, CI) must still stop the server: turn it into an exception.
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            yield url
        finally:
            stop_group(proc)
            info_path.unlink(missing_ok=True)
            if previous in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _log.debug("es.embedded.stopped", url=url)
    finally:
        lock_file.close()


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
