"""``python -m pipeline standalone``: the whole thing on one machine without Docker — ``airflow standalone``
with this project's DAGs, the embedded search server, and (``--demo``) the bundled sample feeds on
loopback. Airflow runs as a child process (nothing here imports it), with its home, SQLite database
and logs under ``DATA_DIR/airflow``; everything stops together on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from pipeline import log
from pipeline.demo import DEMO_ALERT_FROM, DEMO_ALERT_TO, DEMO_OPS_ALERT_TO
from pipeline.errors import ConfigError
from pipeline.settings import PROJECT_ROOT, Settings
from pipeline.store.embedded import embedded_elasticsearch, free_port, stop_group, wait_ready

_log = log.get(__name__)


@dataclass(frozen=True, slots=True)
class Standalone:
    ui_url: str
    es_url: str
    feeds_file: Path
    airflow_home: Path
    process: subprocess.Popen[bytes]


def airflow_env(settings: Settings, *, home: Path, port: int, es_url: str, feeds_file: Path) -> dict[str, str]:
    """The environment Airflow and its tasks run with: this project's DAGs, a small machine's
    parallelism, the API on loopback, and the pipeline's own settings."""
    cores = os.cpu_count() or 2
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # standalone's LocalExecutor would start 32 workers: size it for this machine instead.
        "AIRFLOW__CORE__PARALLELISM": str(max(2, cores * 2)),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(max(2, cores)),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        # Local use only: every visitor of the loopback UI is an admin, no password to look up.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        # A small machine's cores go to the tasks: the DAG files (which change only when edited) are parsed
        # every 2 minutes by one process, not every 30 s by two; new files are looked for every 30 s.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # The log servers of the scheduler and triggerer: free ports, so two instances can coexist.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "ES_URL": es_url,
        "ES_INDEX": settings.es_index,
        "FEEDS_FILE": str(feeds_file),
        "PROFILES_DIR": str(settings.profiles_dir),
        "DATA_DIR": str(settings.data_dir.resolve()),
        "CONNECT_TIMEOUT": str(settings.connect_timeout),
        "READ_TIMEOUT": str(settings.read_timeout),
        "NEWS_FETCH_POOL": "news_fetch",
    }
    if settings.allow_private_hosts:
        env["ALLOW_PRIVATE_HOSTS"] = "1"
    # Who gets the digests and the operators' feed alerts, and how (no SMTP_URL: .eml files in
    # DATA_DIR/outbox): as the settings say, flags and demo defaults included.
    for name, value in [
        ("ALERT_TO", ",".join(settings.alert_to)),
        ("ALERT_FROM", settings.alert_from or ""),
        ("OPS_ALERT_TO", ",".join(settings.ops_alert_to)),
        ("SMTP_URL", settings.smtp_url or ""),
    ]:
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    return env


def demo_settings(settings: Settings) -> Settings:
    """What ``--demo`` runs with: the sample site is local, so loopback feeds are allowed and its hanging
    feed holds a polling task seconds, not a minute; its digest and operator alerts go to the demo's
    recipients (unless set), as ``.eml`` files in ``DATA_DIR/outbox`` unless ``SMTP_URL`` names a server."""
    return settings.with_(
        allow_private_hosts=True,
        connect_timeout=2.0,
        read_timeout=2.0,
        alert_to=settings.alert_to or DEMO_ALERT_TO,
        alert_from=settings.alert_from or DEMO_ALERT_FROM,
        ops_alert_to=settings.ops_alert_to or DEMO_OPS_ALERT_TO,
    )


def _airflow(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise ConfigError(f"airflow {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")


@contextmanager
def standalone(settings: Settings, *, demo: bool, port: int = 0) -> Iterator[Standalone]:
    """Start the embedded search server (unless ``ES_URL`` is set), the sample site with ``demo``, and
    ``airflow standalone``; stop them all when the block exits.

    Raises:
        ConfigError: Airflow is not installed or could not set up its database.
        IndexingError: the search server did not start.
    """
    home = (settings.data_dir / "airflow").resolve()
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    with ExitStack() as stack:
        feeds_file = settings.feeds_file
        if demo:
            from pipeline.demo.server import SiteServer
            from pipeline.demo.site import build_site, demo_feeds

            site = stack.enter_context(SiteServer())
            # Dated as if published in the last days: its stale and failing feeds are the only ones in trouble.
            site.resources = dict(build_site(site.base_url, now=datetime.now(UTC)))
            feeds_file = home / "demo-feeds.yaml"
            feeds_file.write_text(
                yaml.safe_dump({"feeds": demo_feeds(site.base_url, stale=True)}, allow_unicode=True), encoding="utf-8"
            )
            settings = demo_settings(settings)
        es_url = settings.es_url or stack.enter_context(embedded_elasticsearch(settings.data_dir))
        env = airflow_env(settings, home=home, port=port, es_url=es_url, feeds_file=feeds_file)
        _airflow("db", "migrate", env=env)
        fetch_slots = str(max(2, (os.cpu_count() or 2)))
        _airflow("pools", "set", "news_fetch", fetch_slots, "Polling tasks downloading at once", env=env)
        logfile = (home / "standalone.log").open("ab")
        stack.callback(logfile.close)
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "standalone"],
            env=env,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its scheduler, API server and workers stop with the group
        )
        stack.callback(stop_group, proc, timeout=30)
        log_path = home / "standalone.log"
        wait_ready(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=240, proc=proc, log_path=log_path)
        _log.info("standalone.ready", ui=f"http://127.0.0.1:{port}", es=es_url, feeds=str(feeds_file))
        yield Standalone(f"http://127.0.0.1:{port}", es_url, feeds_file, home, proc)
