"""The Airflow DAGs, run by real Airflow 3 (``dag.test()`` on SQLite) against the loopback fixture site,
the embedded search server and a real SMTP server. Airflow runs in a subprocess per test (its
configuration is read at import), see ``tests/airflow_run.py``."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch
from proxy import FaultProxy, drop
from smtp_server import RecordingSmtp

from pipeline.demo.server import SiteServer
from pipeline.demo.site import FAILING_FEEDS, STALE_FEED, build_site, demo_feeds, expectations
from pipeline.ingest.urls import canonical_url
from pipeline.ops.standalone import airflow_env, demo_settings
from pipeline.settings import PROJECT_ROOT, Settings
from pipeline.store.landing import Landing

DAGS = PROJECT_ROOT / "dags"
RUNNER = Path(__file__).parent / "airflow_run.py"
INDEXED = {"indexed", "feed_fallback"}
IMPORT_BUDGET_SECONDS = 2.0  # per DAG file, as the dag-processor measures it
OPS = "ops@example.org"

pytestmark = pytest.mark.slow


def _airflow_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__PARALLELISM": "4",
    }


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow home with a migrated SQLite metadata database, shared by this module's tests."""
    home = tmp_path_factory.mktemp("airflow")
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=_airflow_env(home),
        check=True,
        capture_output=True,
        timeout=300,
    )
    return home


@pytest.fixture
def airflow(airflow_home: Path, tmp_path: Path, es_url: str, alias: str) -> Iterator[Any]:
    """Run DAGs: ``airflow(site, "news_poll", "news_process", es=URL, smtp=URL)`` → their results."""

    def run(site: SiteServer, *dags: str, es: str = es_url, smtp: str | None = None, **env: str) -> dict[str, Any]:
        feeds = tmp_path / "feeds.yaml"
        listed = demo_feeds(site.base_url, stale=True)
        feeds.write_text(yaml.safe_dump({"feeds": listed}, allow_unicode=True), encoding="utf-8")
        environ = {
            **_airflow_env(airflow_home),
            "ES_URL": es,
            "ES_INDEX": alias,
            "FEEDS_FILE": str(feeds),
            "DATA_DIR": str(tmp_path / "data"),
            "ALLOW_PRIVATE_HOSTS": "1",
            "EXTRACT_WORKERS": "2",
            "ALERT_FROM": "news@127.0.0.1",
            "ALERT_TO": "analyst@example.org",
            "NEWS_RETRY_DELAY_SECONDS": "1",
            "NEWS_TASK_RETRIES": "2",
            # The site's hanging feed should cost a polling task seconds, not the production read timeout.
            "CONNECT_TIMEOUT": "2",
            "READ_TIMEOUT": "2",
            **env,
        }
        environ.pop("SMTP_URL", None)
        if smtp:
            environ["SMTP_URL"] = smtp
        done = subprocess.run(
            [sys.executable, str(RUNNER), *dags], env=environ, capture_output=True, text=True, timeout=600
        )
        results = {
            r["dag"]: r
            for r in (json.loads(line[7:]) for line in done.stdout.splitlines() if line.startswith("RESULT "))
        }
        assert done.returncode == 0 and len(results) == len(dags), done.stdout[-3000:] + done.stderr[-3000:]
        for result in results.values():
            result["log"] = done.stdout  # what the task logs said, every DAG of the call together
        return results

    yield run


@pytest.fixture
def fresh_site() -> Iterator[SiteServer]:
    """The sample site dated to now, as the demo serves it: its feeds are ok but for the failing ones and
    the stale one."""
    with SiteServer() as server:
        server.resources = dict(build_site(server.base_url, now=datetime.now(UTC)))
        yield server


def _docs(es: Elasticsearch, alias: str) -> dict[str, dict[str, Any]]:
    es.indices.refresh(index=alias)
    resp = es.search(index=alias, query={"match_all": {}}, size=1000)
    return {hit["_source"]["canonical_url"]: hit["_source"] for hit in resp["hits"]["hits"]}


def test_every_dag_imports_quickly_with_no_network_and_no_heavy_work(airflow_home: Path) -> None:
    # The DAG files are parsed as the dag-processor does, with every network connection refused and a
    # record of what got imported: the pipeline and its heavy libraries belong inside the tasks.
    probe = f"""
import json, socket, sys, time
def refuse(*args, **kwargs):
    raise OSError("network used at DAG parse time")
socket.socket.connect = refuse
socket.create_connection = refuse
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
bag = BundleDagBag({str(DAGS)!r}, bundle_path=Path({str(DAGS)!r}), bundle_name="dags-folder")
heavy = [m for m in ("pipeline", "trafilatura", "elasticsearch", "lxml", "feedparser") if m in sys.modules]
dags = {{}}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {{
        "doc": bool(dag.doc_md), "description": dag.description, "schedule": repr(dag.schedule),
        "tags": sorted(dag.tags),
        "tasks": {{t.task_id: {{"doc": bool(t.doc_md), "retries": t.retries}} for t in dag.tasks}},
    }}
stats = {{s.file: s.duration.total_seconds() for s in bag.dagbag_stats}}
errors = {{k: str(v) for k, v in bag.import_errors.items()}}
print(json.dumps({{"errors": errors, "heavy": heavy, "dags": dags, "stats": stats}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], env=_airflow_env(airflow_home), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert report["heavy"] == []
    assert set(report["dags"]) == {"news_poll", "news_process", "news_alerts", "news_retag", "news_replay"}
    assert all(seconds < IMPORT_BUDGET_SECONDS for seconds in report["stats"].values()), report["stats"]
    for dag_id, dag in report["dags"].items():
        assert dag["doc"] and "news" in dag["tags"], dag_id
        assert dag["description"], f"{dag_id} has no description (the UI's Details tab shows it)"
        for task_id, task in dag["tasks"].items():
            assert task["doc"], f"{dag_id}.{task_id} has no doc_md"
            assert task["retries"] >= 1, f"{dag_id}.{task_id} does I/O and has no retries"
    assert "news_landed_batches" in report["dags"]["news_process"]["schedule"]
    assert "news_indexed_articles" in report["dags"]["news_alerts"]["schedule"]


def test_poll_process_alert_index_the_expected_articles_and_send_one_digest(
    airflow: Any, fresh_site: SiteServer, es: Elasticsearch, alias: str, tmp_path: Path
) -> None:
    with RecordingSmtp() as smtp:
        first = airflow(fresh_site, "news_poll", "news_process", "news_alerts", smtp=smtp.url, OPS_ALERT_TO=OPS)
        docs = _docs(es, alias)
        wanted = {canonical_url(fresh_site.base_url + e.path) for e in expectations() if e.outcome in INDEXED}
        assert set(docs) == wanted
        poll, process, alerts = first["news_poll"], first["news_process"], first["news_alerts"]
        assert poll["state"] == process["state"] == alerts["state"] == "success"
        # What the operator sees as return values: the counts of the cycle. The sample's failing feeds
        # (refused, DNS, 500, timeout, malformed redirect) fail the feeds, never the poll or the cycle.
        publish = poll["returns"]["publish"]
        assert publish["feeds_failed"] == len(FAILING_FEEDS) and publish["batches"]
        assert {f["feed"] for f in publish["failed_feeds"]} == {feed_id for feed_id, *_ in FAILING_FEEDS}
        assert poll["tasks"]["publish"]["tries"] == 1
        # The feeds per state, and each change of state, named in the return value and in the log.
        states = {"ok": 7, "failing": len(FAILING_FEEDS), "stale": 1}
        assert publish["feed_states"] == states and poll["returns"]["feed_health"]["feed_states"] == states
        changes = {(c["feed"], c["state"]) for c in publish["state_changes"] if c["state"] != "ok"}
        assert changes == {(f, "failing") for f, *_ in FAILING_FEEDS} | {(STALE_FEED[0], "stale")}
        log = poll["log"]
        assert "feed alnil-sports: never_polled → failing: FetchError: HTTP 500" in log
        assert re.search(r"\[warning\s*\] poll\.failed feed=alnil-sports .*reason=\"HTTP 500\"", log)
        assert "[error" not in log  # a successful cycle with failing feeds: warnings, never errors
        assert "elastic_transport" not in log and "[status:200" not in log  # no search-client request lines
        # Operators heard of the stale feed (the failing ones failed once: not an incident yet), apart
        # from the analysts' one digest.
        assert poll["returns"]["feed_health"]["incidents_sent"] == 1
        assert process["returns"]["publish"]["indexed"] == len(wanted)
        assert process["returns"]["publish"]["tagged"]["iran-russia-assad"] > 0
        assert alerts["returns"]["alert"]["digests_sent"] == 1 and smtp.count() == 2
        [ops] = [m for m in smtp.messages() if m["To"] == OPS]
        assert str(ops["Subject"]).startswith(f"[feed health] {STALE_FEED[0]} is stale")
        [sent] = [m for m in smtp.messages() if m["To"] == "analyst@example.org"]
        html = sent.get_body(("html",)).get_content()
        stories = alerts["returns"]["alert"]["stories_sent"]
        assert stories > 0 and html.count('dir="rtl"') >= 1
        landing = Landing(str(tmp_path / "data" / "landing"))
        assert landing.batches() and landing.pending() == []

        # Each DAG again: no feed is due yet, so nothing is polled, landed, announced, indexed or mailed.
        # news_poll runs every minute: with no feed due, plan is skipped and every task after it too.
        before = {url: (d["cluster_id"], d["fetched_at"]) for url, d in docs.items()}
        requests = sum(fresh_site.requests.values())
        again = airflow(fresh_site, "news_poll", "news_process", "news_alerts", smtp=smtp.url, OPS_ALERT_TO=OPS)
        assert again["news_poll"]["state"] == "success" and sum(fresh_site.requests.values()) == requests
        skipped = {task: info["state"] for task, info in again["news_poll"]["tasks"].items()}
        assert skipped == dict.fromkeys(("plan", "poll", "publish", "announce", "feed_health", "prune"), "skipped")
        assert "no feed is due" in again["news_poll"]["log"]
        assert again["news_process"]["returns"]["plan"] == []
        assert again["news_alerts"]["returns"]["alert"]["digests_sent"] == 0
        assert smtp.count() == 2
        after = _docs(es, alias)
        assert {url: (d["cluster_id"], d["fetched_at"]) for url, d in after.items()} == before


def _flaky_bulk_proxy(upstream: str, *, target: str, count: int) -> tuple[FaultProxy, dict[str, int]]:
    """Drops the connection on the first ``count`` bulk requests that write to the index ``target``: a
    processing task that dies halfway, after its articles were written and before its ledger was.
    Returns the proxy and its count of dropped requests (``n``)."""
    dropped = {"n": 0}

    def fault(handler: BaseHTTPRequestHandler, path: str, body: bytes) -> bool:
        ours = "_bulk" in path and f'"_index":"{target}"'.encode() in body.replace(b" ", b"")
        if ours and dropped["n"] < count:
            dropped["n"] += 1
            drop(handler)
            return True
        return False

    return FaultProxy(upstream, fault), dropped


def test_processing_task_that_fails_halfway_is_retried_and_indexes_every_article_once(
    airflow: Any, demo_site: SiteServer, es: Elasticsearch, es_url: str, alias: str, tmp_path: Path
) -> None:
    polled = airflow(demo_site, "news_poll")["news_poll"]
    assert polled["state"] == "success" and polled["returns"]["publish"]["articles_landed"] > 0
    # The articles are written; the seen-ledger write is dropped, and the client does not wait it out
    # (ES_RETRY_SECONDS=0), so the task fails halfway; Airflow retries it.
    proxy, dropped = _flaky_bulk_proxy(es_url, target=f"{alias}-seen", count=1)
    try:
        # The search server comes from the Airflow connection news_es, which overrides ES_URL (dead here).
        run = airflow(
            demo_site, "news_process", es="http://127.0.0.1:9", AIRFLOW_CONN_NEWS_ES=proxy.url, ES_RETRY_SECONDS="0"
        )
        run = run["news_process"]
    finally:
        proxy.close()
    assert dropped["n"] == 1
    assert run["state"] == "success"
    assert run["tasks"]["process[0]"]["tries"] == 2
    assert run["returns"]["process[0]"]["unchanged"] > 0, run  # the first try's articles, left as they were
    docs = _docs(es, alias)
    wanted = {canonical_url(demo_site.base_url + e.path) for e in expectations() if e.outcome in INDEXED}
    assert set(docs) == wanted
    count = es.count(index=alias)["count"]
    assert count == len(wanted)
    seen = es.search(index=f"{alias}-seen", query={"terms": {"outcome": ["landed"]}}, size=1000)
    assert seen["hits"]["hits"] == []  # every landed article was settled by the retry
    assert Landing(str(tmp_path / "data" / "landing")).pending() == []


def test_standalone_demo_hands_its_tasks_a_recipient_for_digests_and_operator_alerts(tmp_path: Path) -> None:
    # `standalone --demo` once ran news_alerts green and sent nothing ("no recipients"): the tasks never
    # heard of the demo's recipients. They get them now, and the .eml outbox under DATA_DIR.
    home = tmp_path / "airflow"
    base = Settings(data_dir=tmp_path / "data", smtp_url="smtp://127.0.0.1:2525")
    env = airflow_env(
        demo_settings(base.with_(smtp_url=None)), home=home, port=8080, es_url="http://127.0.0.1:9200", feeds_file=home
    )
    assert (env["ALERT_TO"], env["OPS_ALERT_TO"]) == ("analyst@example.org", "ops@example.org")
    assert "SMTP_URL" not in env and env["DATA_DIR"] == str((tmp_path / "data").resolve())
    tasks = Settings.from_env(env)
    assert tasks.alert_to and tasks.ops_alert_to and tasks.smtp_url is None
    # What an operator set is kept, the mail server included.
    chosen = airflow_env(
        demo_settings(base.with_(alert_to=("desk@example.org",))), home=home, port=8080, es_url="x", feeds_file=home
    )
    assert (chosen["ALERT_TO"], chosen["SMTP_URL"]) == ("desk@example.org", "smtp://127.0.0.1:2525")


def test_in_a_task_each_pipeline_event_is_one_line_at_its_own_level_and_client_requests_are_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pipeline import log

    caplog.set_level(logging.DEBUG)
    log.configure(stdlib=True)  # what news_common.pipeline_settings does at the start of every task
    try:
        log.get("pipeline.ingest.poll").warning(
            "poll.failed", feed="alnil-sports", reason="HTTP 500", consecutive_failures=3, outlet="بوابة النيل"
        )
        log.get("pipeline.ingest.collect").info("language.rejected", feed="ofuq-arabic", language="fa")
        logging.getLogger("elastic_transport.transport").info("POST http://127.0.0.1:9200/_bulk [status:200]")
    finally:
        log.configure()
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert records == [
        (
            "pipeline.ingest.poll",
            logging.WARNING,
            'poll.failed feed=alnil-sports reason="HTTP 500" consecutive_failures=3 outlet="بوابة النيل"',
        ),
        ("pipeline.ingest.collect", logging.INFO, "language.rejected feed=ofuq-arabic language=fa"),
    ]
