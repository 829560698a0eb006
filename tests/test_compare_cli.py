"""`python -m pipeline compare story|topic` as a user types them, against the embedded test server:
--json, the terminal tables, --html, filters, and one-line errors with exit code 1."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_runner import cli as run_cli
from elasticsearch import Elasticsearch
from test_compare import PROFILE, story_articles, topic_articles, write


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("compare", *args, env=env)


@pytest.fixture
def env(es_url: str, alias: str, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "profiles").mkdir()
    return {
        "ES_URL": es_url,
        "ES_INDEX": alias,
        "DATA_DIR": str(tmp_path / "data"),
        "PROFILES_DIR": str(tmp_path / "profiles"),
    }


def test_compare_story_json_tables_and_html(es: Elasticsearch, alias: str, env: dict[str, str], tmp_path: Path) -> None:
    spec, versions, others = story_articles()
    write(es, alias, [*versions.values(), *others])
    page = tmp_path / "story.html"
    result = cli("story", versions["second"].id, "--json", "--html", str(page), env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [v["lag_minutes"] for v in data["versions"]] == spec["expected"]["lag_minutes"]
    assert data["versions"][1]["is_this"] and data["versions"][1]["diff"]["removed"] == [spec["sentences"]["s4"]]
    assert f"wrote {page}" in result.stderr
    text = page.read_text(encoding="utf-8")
    assert '<html lang="ar" dir="rtl">' in text and versions["fourth"].title in text
    human = cli("story", data["cluster_id"], env=env)
    assert human.returncode == 0, human.stderr
    for outlet in (v.outlet for v in versions.values()):
        assert outlet in human.stdout
    assert "+35 min" in human.stdout and "+26 h" in human.stdout
    assert f"- {spec['sentences']['s3']}" in human.stdout  # the fourth version dropped it
    assert "نبض المدينة" in human.stdout  # active, did not carry it


def test_compare_topic_json_with_filters_tables_and_html(
    es: Elasticsearch, alias: str, env: dict[str, str], tmp_path: Path
) -> None:
    spec, articles = topic_articles()
    write(es, alias, articles)
    a, b = spec["outlets"]["A"], spec["outlets"]["B"]
    page = tmp_path / "report" / "topic.html"
    args = ["--since", "2025-03-01", "--until", "2025-03-06", "--clusters", "3", "--terms", "5"]
    result = cli("topic", PROFILE, *args, "--json", "--html", str(page), env=env)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["totals"]["topic_articles"] == 18 and len(data["clusters"]) == 3
    assert data["never_covered_largest"] == [spec["outlets"]["E"]]
    assert [t["term"] for t in data["terms"]["outlets"][a]["terms"]] == ["الميليشيات", "التدخل الروسي"]
    assert page.exists() and 'dir="rtl"' in page.read_text(encoding="utf-8")
    pair = json.loads(cli("topic", PROFILE, *args, "--outlets", f"{a},{b}", "--json", env=env).stdout)
    assert [r["outlet"] for r in pair["coverage"]] == [a, b] and pair["totals"]["articles"] == 22
    human = cli("topic", PROFILE, *args, env=env)
    assert human.returncode == 0, human.stderr
    for heading in ("Share of the topic", "Articles on the topic per day", "largest stories", "Distinctive terms"):
        assert heading in human.stdout
    assert "الميليشيات" in human.stdout and "over" in human.stdout and "under" in human.stdout


def test_unknown_ids_and_bad_dates_are_clear_errors(es: Elasticsearch, alias: str, env: dict[str, str]) -> None:
    _, articles = topic_articles()
    write(es, alias, articles)
    story = cli("story", "nope", env=env)
    assert story.returncode == 1 and story.stdout == ""
    assert story.stderr.strip().splitlines() == [f"error: no article or story cluster with id nope in {alias}"]
    topic = cli("topic", "nope", env=env)
    assert topic.returncode == 1
    [line] = topic.stderr.strip().splitlines()
    assert line.startswith("error: no article tagged 'nope'") and "no profile 'nope' in" in line
    empty = cli("topic", PROFILE, "--since", "2030-01-01", "--until", "2030-01-31", env=env)
    assert empty.returncode == 1 and "between 2030-01-01" in empty.stderr
    assert cli("topic", PROFILE, "--since", "yesterday", env=env).returncode == 2
