"""One way to run ``python -m pipeline`` from the tests: a subprocess with one scrubbed environment.

Every pipeline setting a developer's shell might hold (``ES_URL``, ``DATA_DIR``, ``SMTP_URL`` …) is
removed first, so a test sees only what it passes; the fixture site's hanging feed costs seconds, not
the production read timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from pipeline.settings import PROJECT_ROOT

# Variables the pipeline reads (settings.py), and the Airflow ones the DAG tests set themselves.
_PIPELINE_PREFIXES = (
    "ES_", "FEEDS_", "PROFILES_", "DATA_DIR", "SMTP_", "ALERT_", "LANGUAGES", "ALLOW_PRIVATE", "FETCH_",
    "EXTRACT_", "PROCESS_", "MAX_", "CONNECT_", "READ_", "TOTAL_", "CLUSTER_", "LANDING_", "POLL_", "NEWS_", "OPS_",
    "FEED_",
)  # fmt: skip
TEST_DEFAULTS = {"CONNECT_TIMEOUT": "2", "READ_TIMEOUT": "2"}


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any pipeline setting, plus ``TEST_DEFAULTS`` and ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_PIPELINE_PREFIXES)}
    return {**base, **TEST_DEFAULTS, **(env or {})}


def cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline ARGS`` to completion, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        cwd=cwd or PROJECT_ROOT,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_cli(*args: str, env: Mapping[str, str] | None = None, out: Path) -> subprocess.Popen[bytes]:
    """``python -m pipeline ARGS`` started in its own session (so a test can signal it alone, or its
    whole group), stdout and stderr to ``out``.stdout/.stderr."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        env=clean_env(env),
        cwd=PROJECT_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=out.with_suffix(".stdout").open("wb"),
        stderr=out.with_suffix(".stderr").open("wb"),
        start_new_session=True,
    )
