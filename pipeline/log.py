"""Structured logging: one line per event, JSON when stderr is not a terminal."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import structlog

_configured = False


def configure(*, json: bool | None = None, level: int = logging.INFO) -> None:
    global _configured
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get(name: str) -> Any:
    if not _configured:
        configure()
    return structlog.get_logger(name)


class Laps:
    """Wall time per stage, added into ``out`` (a run summary's, a benchmark's) as each stage ends;
    nothing is kept when ``out`` is None. ``digits`` rounds what is stored."""

    def __init__(self, out: dict[str, float] | None, *, digits: int | None = None) -> None:
        self.out = out
        self.digits = digits
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        if self.out is not None:
            total = self.out.get(stage, 0.0) + now - self.last
            self.out[stage] = total if self.digits is None else round(total, self.digits)
        self.last = now
