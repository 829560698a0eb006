"""File locks between processes sharing one ``DATA_DIR`` (``flock``: released by the kernel when the
holder exits, however it exits — so a run killed with ``kill -9`` never leaves a lock behind)."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from pipeline.errors import ConfigError


@contextmanager
def held(path: Path, *, shared: bool = False, wait: float = 0.0, what: str = "") -> Iterator[IO[str]]:
    """Hold a lock on ``path`` for the block: exclusive, or ``shared`` with other shared holders. Waits
    up to ``wait`` seconds for it; an exclusive holder writes its pid and command into the file, so the
    refusal can say who holds it.

    Raises:
        ConfigError: still held by another process after ``wait`` seconds (``what`` says for what).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+", encoding="utf-8")
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ConfigError(f"{what or 'locked'}: {holder(path)}") from None
                time.sleep(0.05)
        if not shared:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()} {' '.join(sys.argv[:4])}"[:300])
            handle.flush()
        yield handle
    finally:
        handle.close()  # closing the file releases the lock


def holder(path: Path) -> str:
    """Who holds ``path`` exclusively, as its file says: "another run (pid N: command) is using DIR"."""
    try:
        pid, _, command = path.read_text(encoding="utf-8").strip().partition(" ")
    except OSError:
        pid, command = "", ""
    who = f"pid {pid}: {command}" if pid.isdigit() else "pid unknown"
    return f"another run ({who}) is using {path.parent}"
