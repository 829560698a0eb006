"""Structured logging: one line per event, JSON when stderr is not a terminal; or, inside an orchestrator
that reads Python's logging (Airflow's task logs), one readable line per event handed to the standard
``logging`` module at the event's own level."""

from __future__ import annotations

import json as jsonlib
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog

_configured = False
# The search client logs every request at INFO (method, URL, status, duration): tens of lines per task
# that bury what happened. Their warnings and errors still come through.
CLIENT_LOGGERS = ("elasticsearch", "elastic_transport")


def configure(
    *, json: bool | None = None, level: int = logging.INFO, stdlib: bool = False, client_requests: bool = False
) -> None:
    """Set up the pipeline's logging. ``stdlib``: hand every event to ``logging.getLogger(<module>)`` as
    ``event key=value …`` at its level (what Airflow's task logs show at that level; anything written to a
    task's stderr is shown as an error there). ``client_requests``: keep the search client's request log."""
    global _configured
    for name in CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if client_requests else logging.WARNING)
    processors: list[Any]
    factory: Any
    if stdlib:
        # Not merge_contextvars: the orchestrator binds its own (dag_id, task_id, map_index …) and shows
        # them beside every line already.
        processors = [structlog.processors.format_exc_info, one_line]
        factory = structlog.stdlib.LoggerFactory()
    else:
        if json is None:
            json = not sys.stderr.isatty()
        renderer: Any = (
            structlog.processors.JSONRenderer(ensure_ascii=False)
            if json
            else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        )
        processors = [
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ]
        factory = structlog.PrintLoggerFactory(file=sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    _configured = True


def one_line(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
    """``poll.failed feed=alnil-sports reason="HTTP 500" consecutive_failures=3``: the event name, then its
    fields; values with spaces or quotes in JSON quotes, lists and mappings as JSON. Arabic stays Arabic."""
    name = str(event.pop("event", ""))
    trace = event.pop("exception", None)
    parts = [name]
    for key, value in event.items():
        parts.append(f"{key}={_value(value)}")
    text = " ".join(parts)
    return f"{text}\n{trace}" if trace else text


def _value(value: Any) -> str:
    if isinstance(value, str):
        plain = value and not any(c.isspace() or c in "\"'=" for c in value)
        return value if plain else jsonlib.dumps(value, ensure_ascii=False)
    if isinstance(value, bool | int | float) or value is None:
        return jsonlib.dumps(value)
    try:
        return jsonlib.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


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
