"""The operator's view: ``python -m pipeline standalone --demo`` (real ``airflow standalone`` with the
project's DAGs, the embedded search server and the sample feeds), a cycle triggered through Airflow's
REST API, and the runs checked in the rendered Airflow UI in headless Chromium (screenshots kept in
tests/artifacts/)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import _binaries, chrome, screenshot

from pipeline.store.embedded import free_port, wait_ready

pytestmark = pytest.mark.slow
CYCLE = ("news_poll", "news_process", "news_alerts")


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[str]:
    if _binaries() is None:
        pytest.skip("no Chromium: install Debian's chromium and chromium-driver (.ci/run does)")
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "NEWS_POLL_SCHEDULE": "none", "EXTRACT_WORKERS": "2"}
    env.pop("ES_URL", None)
    log = (tmp_path / "standalone.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "standalone", "--demo", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/api/v2/monitor/health", timeout=300, proc=proc)  # type: ignore[arg-type]
        yield url
    finally:
        # SIGTERM to our command only: it stops Airflow's process group and the search server itself.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
        for pid in leftover:
            os.kill(int(pid), signal.SIGKILL)
        assert not leftover, f"processes outlived the standalone command: {leftover}"


def _runs(url: str) -> dict[str, list[dict[str, Any]]]:
    resp = httpx.get(f"{url}/api/v2/dags/~/dagRuns", params={"limit": 50}, timeout=10)
    resp.raise_for_status()
    runs: dict[str, list[dict[str, Any]]] = {}
    for run in resp.json()["dag_runs"]:
        runs.setdefault(run["dag_id"], []).append(run)
    return runs


def test_cycle_triggered_through_the_rest_api_succeeds_in_the_airflow_ui(standalone: str) -> None:
    url = standalone
    resp = httpx.post(f"{url}/api/v2/dags/news_poll/dagRuns", json={"logical_date": None}, timeout=30)
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 300
    runs: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        runs = _runs(url)
        states = [r["state"] for dag in CYCLE for r in runs.get(dag, [])]
        if "failed" in states or all(any(r["state"] == "success" for r in runs.get(d, [])) for d in CYCLE):
            break
        time.sleep(3)
    summary = {dag: [(r["run_type"], r["state"]) for r in runs.get(dag, [])] for dag in CYCLE}
    assert summary["news_poll"] == [("manual", "success")], summary
    assert summary["news_process"] == [("asset_triggered", "success")], summary
    assert summary["news_alerts"] == [("asset_triggered", "success")], summary

    with chrome(1400, 900) as browser:
        browser.get(f"{url}/dag_runs")
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = browser.find_element("tag name", "body").text
            if all(dag in text for dag in CYCLE) and text.count("Success") >= 3:
                break
            time.sleep(1)
        screenshot(browser, "airflow-dag-runs.png")
        assert all(dag in text for dag in CYCLE), text[:2000]
        assert text.count("Success") >= 3 and "Failed" not in text, text[:2000]

        browser.get(f"{url}/dags/news_poll")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = browser.find_element("tag name", "body").text
            if "publish" in text and "Failed Runs" in text:
                break
            time.sleep(1)
        time.sleep(2)  # let the charts finish drawing before the screenshot
        screenshot(browser, "airflow-news-poll.png")
        for task in ("plan", "poll", "publish", "prune"):
            assert task in text, text[:2000]
