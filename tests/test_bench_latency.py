"""``bench/bench_latency.py`` runs end to end in its smoke mode (a minute of publications, fast feeds): both
deployments — Airflow standalone and the plain run loop — take in the feeds' history, then every article
published in the window is indexed and reaches the inbox, and the bench prints a figure for each. The
figures' values are the benchmark's business, not a test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_latency_bench_smoke_run_gives_every_article_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    done = subprocess.run(
        [sys.executable, "bench/bench_latency.py", "--smoke", "--modes", "airflow,run", "--json", str(out)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = {r["mode"]: r for r in json.loads(out.read_text(encoding="utf-8"))}
    assert set(results) == {"airflow", "run"}
    for mode, result in results.items():
        articles = result["articles"]
        assert articles, f"{mode}: no article was published in the window"
        for article in articles:
            assert article["indexed_s"] is not None and article["indexed_s"] >= 0, (mode, article)
            assert article["emailed_s"] is not None and article["emailed_s"] >= 0, (mode, article)
            assert article["interval_min"] is not None, (mode, article)
        assert result["emailed"]["n"] == len(articles) and result["emailed"]["p95_s"] is not None
        assert all(feed["interval_minutes"] for feed in result["feeds"].values()), result["feeds"]
    # The report: one line per deployment, with the percentiles.
    assert "| Airflow (standalone) |" in done.stdout and "| run loop |" in done.stdout
