"""What the news DAGs share: the assets between them, retry policy, and the pipeline's settings read from
Airflow Connections/Variables and the environment. Parsing this file costs nothing: the pipeline itself
is imported inside the tasks, never at the top of a DAG file."""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import Asset, Connection, Variable

if TYPE_CHECKING:
    from pipeline.settings import Settings

log = logging.getLogger("news")

# Batches of extracted articles written to the landing area by news_poll; the event's extra names them.
LANDED = Asset(name="news_landed_batches", uri="file:///news/landing", group="news")
# Articles indexed by news_process (or a replay); the event's extra carries the counts.
INDEXED = Asset(name="news_indexed_articles", uri="file:///news/indexed", group="news")

# Pool bounding the polling tasks that download at once (each task bounds requests per host itself,
# and all feeds of one host share a task). Created by `python -m pipeline standalone` and the compose
# init service; without it, Airflow queues the tasks in default_pool.
FETCH_POOL = os.environ.get("NEWS_FETCH_POOL", "news_fetch")

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "news",
    "retries": int(os.environ.get("NEWS_TASK_RETRIES", "3")),
    "retry_delay": timedelta(seconds=float(os.environ.get("NEWS_RETRY_DELAY_SECONDS", "60"))),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
}


# What every news DAG shares: no backfill of missed intervals, one run at a time, the retry policy.
DAG_DEFAULTS: dict[str, Any] = {
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
}


def _connection(conn_id: str) -> Any | None:
    try:
        return Connection.get(conn_id)
    except Exception:  # noqa: BLE001 - an absent connection means "use the environment"
        return None


def _variable(key: str) -> str | None:
    try:
        value = Variable.get(key, default=None)
    except Exception:  # noqa: BLE001 - an absent variable means "use the environment"
        return None
    return str(value) if value not in (None, "") else None


def pipeline_settings() -> Settings:
    """The pipeline's settings for a task: environment variables, overridden by the Airflow connections
    ``news_es`` (Elasticsearch: host, port, schema http/https, login/password or extra ``api_key``) and
    ``news_smtp`` (host, port, login/password, extra ``starttls``), and by the Variables ``news_feeds_file``,
    ``news_profiles_dir``, ``news_alert_to``, ``news_alert_from``, ``news_ops_alert_to``,
    ``news_landing_url``. Secrets never live in DAG code."""
    from pipeline import log as pipeline_log
    from pipeline.settings import Settings

    # Every task starts here: the pipeline's events go to the task log through Python's logging, each at
    # its own level (on stderr Airflow would show them all as errors), and the search client's request
    # lines stay out of it.
    pipeline_log.configure(stdlib=True)
    env = dict(os.environ)
    es = _connection("news_es")
    if es is not None and es.host:
        scheme = es.schema or "http"
        env["ES_URL"] = f"{scheme}://{es.host}:{es.port or 9200}"
        if es.login:
            env["ES_USER"], env["ES_PASSWORD"] = es.login, es.password or ""
        if (es.extra_dejson or {}).get("api_key"):
            env["ES_API_KEY"] = es.extra_dejson["api_key"]
    smtp = _connection("news_smtp")
    if smtp is not None and smtp.host:
        auth = f"{quote(smtp.login, safe='')}:{quote(smtp.password or '', safe='')}@" if smtp.login else ""
        tls = "?starttls=1" if str((smtp.extra_dejson or {}).get("starttls", "")).lower() in ("1", "true") else ""
        env["SMTP_URL"] = f"smtp://{auth}{smtp.host}:{smtp.port or 25}{tls}"
    for key, name in [
        ("news_feeds_file", "FEEDS_FILE"),
        ("news_profiles_dir", "PROFILES_DIR"),
        ("news_alert_to", "ALERT_TO"),
        ("news_alert_from", "ALERT_FROM"),
        ("news_ops_alert_to", "OPS_ALERT_TO"),
        ("news_landing_url", "LANDING_URL"),
    ]:
        if (value := _variable(key)) is not None:
            env[name] = value
    return Settings.from_env(env)


def detach_main_module() -> None:
    """Let the extraction processes start clean. They are spawned, and a spawned process first imports
    its parent's main module — in a task that is Airflow's launcher, which would set up Airflow (and its
    database, which tasks may not use) in every extraction process and kill it. The pipeline's workers
    need nothing from the main module."""
    main = sys.modules["__main__"]
    main.__spec__ = None
    main.__dict__.pop("__file__", None)


def _field(entry: Any, key: str) -> str:
    # Failures are {feed, url, reason} mappings; a bare string (an id) is shown as it is, never crashes
    # the task that only wanted to log it.
    return str(entry.get(key) or "") if isinstance(entry, dict) else (str(entry) if key in ("feed", "batch") else "")


def _pairs(counts: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in counts.items()) if isinstance(counts, dict) else str(counts)


def log_counts(what: str, counts: dict[str, Any]) -> None:
    """One readable line per count in the task log, then the feeds' changes of state and the failures by
    name."""
    shown = {
        k: (f"({_pairs(v)})" if isinstance(v, dict) else v)
        for k, v in counts.items()
        if not isinstance(v, list | dict) or k in ("tagged", "skipped_language", "feed_states")
    }
    log.info("%s: %s", what, ", ".join(f"{k}={v}" for k, v in shown.items()))
    for change in counts.get("state_changes") or []:
        if not isinstance(change, dict) or (change.get("previous"), change.get("state")) == ("never_polled", "ok"):
            continue  # a first poll that went well is not news
        level = logging.INFO if change.get("state") == "ok" else logging.WARNING
        why = f": {change['reason']}" if change.get("reason") and change.get("state") != "ok" else ""
        log.log(level, "feed %s: %s → %s%s", change.get("feed"), change.get("previous"), change.get("state"), why)
    for sent in counts.get("sent") or []:
        if isinstance(sent, dict):
            log.info("operators told: feed %s %s (%s)", sent.get("feed"), sent.get("state"), sent.get("message_id"))
    for failure in counts.get("failed_feeds") or []:
        log.warning(
            "feed failed: %s (%s): %s", _field(failure, "feed"), _field(failure, "url"), _field(failure, "reason")
        )
    for bad in counts.get("unreadable") or []:
        log.error("landing batch unreadable, left pending: %s: %s", _field(bad, "batch"), _field(bad, "reason"))
    for failure in counts.get("failures") or []:
        log.warning("failed: %s %s: %s", _field(failure, "feed"), _field(failure, "url"), _field(failure, "reason"))


def add_counts(total: dict[str, int], counts: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        total[key] = total.get(key, 0) + int(counts.get(key) or 0)
