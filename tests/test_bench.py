"""The benchmarks are code too: each script in ``bench/`` imports (so a moved or renamed pipeline name
breaks the suite, not the next person who measures), and each command-line one answers ``--help``."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.settings import PROJECT_ROOT

SCRIPTS = sorted(p for p in (PROJECT_ROOT / "bench").glob("*.py") if p.name != "__init__.py")


def test_there_are_benchmarks_to_check() -> None:
    assert {"bench_pipeline", "bench_cluster", "bench_compare"} <= {p.stem for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_every_bench_script_imports(script: Path) -> None:
    name = f"bench.{script.stem}"
    sys.modules.pop(name, None)
    module = importlib.import_module(name)
    assert module.__file__ is not None


@pytest.mark.parametrize("script", [p for p in SCRIPTS if "argparse" in p.read_text("utf-8")], ids=lambda p: p.stem)
def test_every_bench_command_answers_help(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]
