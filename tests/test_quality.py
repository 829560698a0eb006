"""The code checks the style guide asks for, run as part of the suite so CI enforces them."""

from __future__ import annotations

import re
import subprocess
import sys

from pipeline.settings import PROJECT_ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", "pipeline", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_pipeline_is_type_checked_strictly() -> None:
    result = run("mypy", "--strict", "pipeline")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stage_layers_and_the_airflow_ban_hold() -> None:
    # .importlinter: cli > run | tasks | ops > demo > ingest | alerts | analysis > stories > topics >
    # store > arabic > kernel, and no import of Airflow from pipeline/ (direct or indirect).
    lint = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    result = subprocess.run([sys.executable, "-c", lint], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


def test_pipeline_never_imports_airflow() -> None:
    imports = re.compile(r"^\s*(from|import)\s+airflow\b", re.MULTILINE)
    offenders = [p.name for p in (PROJECT_ROOT / "pipeline").rglob("*.py") if imports.search(p.read_text("utf-8"))]
    assert offenders == []
