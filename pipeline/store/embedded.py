"""The embedded default: a pinned ``noida-db`` Elasticsearch-compatible server on loopback.

Started when no ``ES_URL`` is set, with its data under ``DATA_DIR/es``. Several processes may use one
data directory at once (a ``run`` and a ``search``, two runs, Airflow's tasks): the first starts the
server, the others share it, and the last one to leave stops it (its whole process group, with SIGTERM,
on which it saves its data). A server left behind by a process that was killed — ``kill -9``, the
out-of-memory killer — is found through noida-db's own record in the data directory and reused by the
next process, or stopped and replaced when it no longer answers: nobody has to find and kill it by hand.
"""

from __future__ import annotations

import contextlib
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
from pipeline.store.locks import held

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
    data_dir = data_dir.resolve()  # recorded in its command line, where other processes look for it
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


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _option(args: list[str], name: str) -> str | None:
    try:
        return args[args.index(name) + 1]
    except (ValueError, IndexError):
        return None


def recorded_server(data: Path) -> tuple[int, str] | None:
    """The live server that noida-db recorded for ``data`` (its control file names the server's pid), as
    (its process group, its URL); None when there is none. Checked against that process's own command
    line, so a recycled pid is never taken for the server."""
    try:
        pid = int(json.loads((data / "noida.control.json").read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    args = _cmdline(pid)
    where, port = _option(args, "--data-dir"), _option(args, "--elasticsearch-port")
    if where is None or port is None or not port.isdigit() or Path(where).resolve() != data.resolve():
        return None
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return None
    return group, f"http://127.0.0.1:{port}"


def stop_recorded(data: Path, *, timeout: float = 30.0) -> None:
    """Stop the server recorded for ``data``, whoever started it: SIGTERM to its process group (it saves
    its data), SIGKILL after ``timeout`` seconds."""
    found = recorded_server(data)
    if found is None:
        return
    group, url = found
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_alive(group):
        _log.warning("es.embedded.killed", url=url, reason=f"did not stop within {timeout:.0f}s")
        _signal_group(group, signal.SIGKILL)


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    # Members that exited but were not reaped (the server is our own child when we started it) still
    # count as alive for kill(0): reap them first.
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-group, os.WNOHANG)[0]:
            pass
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def usable_dir(path: Path, *, name: str = "DATA_DIR") -> Path:
    """``path`` made (with its parents) and checked writable.

    Raises:
        ConfigError: it cannot be made or written to (a file in the way, no permission, a read-only disk).
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"{name} {path} is not a writable directory: {reason}") from None
    return path


@contextmanager
def embedded_elasticsearch(data_dir: Path) -> Iterator[str]:
    """Yield the URL of the embedded server for ``data_dir`` (``DATA_DIR/es``): shared with the other
    processes using it, started if none runs, stopped when the last one leaves (module docstring).

    Raises:
        ConfigError: ``DATA_DIR`` is not a writable directory, or noida-db is not installed.
        IndexingError: the server did not start.
    """
    usable_dir(data_dir)
    es_dir = usable_dir(data_dir / "es")
    data = es_dir / "data"
    # start.lock: one process at a time starts or stops the server. users.lock: every process using the
    # server holds it shared, so the one that gets it exclusively on leaving knows it is the last.
    # Both are flocks: a process killed with kill -9 releases them with its other files.
    with held(es_dir / "start.lock", wait=120, what="waiting to start the embedded search server"):
        users = (es_dir / "users.lock").open("a+")
        fcntl.flock(users, fcntl.LOCK_SH)
        try:
            url = _reuse_or_start(data)
        except BaseException:
            users.close()
            raise
    previous = signal.getsignal(signal.SIGTERM)
    # A SIGTERM (Airflow, systemd, CI) must still reach the code below: turn it into an exception.
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield url
    finally:
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with held(es_dir / "start.lock", wait=120, what="waiting to stop the embedded search server"):
            fcntl.flock(users, fcntl.LOCK_UN)
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _log.debug("es.embedded.left", url=url)  # others still use it: the last one stops it
            else:
                stop_recorded(data)
                _log.debug("es.embedded.stopped", url=url)
            finally:
                users.close()


def _reuse_or_start(data: Path) -> str:
    found = recorded_server(data)
    if found is not None:
        _, url = found
        if wait_answer(url, seconds=5):
            _log.debug("es.embedded.reused", url=url)
            return url
        _log.warning("es.embedded.replaced", url=url, reason="the recorded server does not answer")
        stop_recorded(data)
    proc, url = start_server(data)
    _started.append(proc)  # kept so that it is not reported as a leaked child; it outlives this call
    _log.debug("es.embedded.started", url=url, data_dir=str(data))
    return url


_started: list[subprocess.Popen[bytes]] = []


def wait_answer(url: str, *, seconds: float) -> bool:
    """True once ``url`` answers 200, False when it has not within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def holds_index(data_dir: Path) -> bool:
    """Whether the embedded server has data in ``data_dir`` (``DATA_DIR/es/data``): saved files, or a
    server running on it now."""
    data = data_dir / "es" / "data"
    return (data / "elasticsearch.json").is_file() or (data / "noida.control.json").is_file()
