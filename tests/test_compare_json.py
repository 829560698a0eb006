"""The `--json` of `compare story` and `compare topic` is a contract: on the fixture indices of
tests/test_compare.py the commands print exactly what they printed before the results became typed
(tests/fixtures/json_contract/, written by the dict-returning code), key for key, value for value, in
the same order. `assert_same_json` is shared with the `related` and `profile explain|test` contracts."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch
from test_compare import PROFILE, story_articles, topic_articles, write
from test_compare_cli import cli

CONTRACTS = Path(__file__).parent / "fixtures" / "json_contract"
# Set to rewrite the files from the code as it is: only when the contract itself changes, on purpose.
REWRITE = os.environ.get("JSON_CONTRACT_REWRITE") == "1"


def assert_same_json(actual: Any, expected: Any, path: str = "$") -> None:
    """``actual`` is ``expected``: the same keys in the same order, the same list lengths, the same
    values of the same JSON types (an int is not a float, a null is not a 0)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {type(actual).__name__}, not an object"
        assert list(actual) == list(expected), f"{path}: keys {list(actual)} != {list(expected)}"
        for key, value in expected.items():
            assert_same_json(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: {type(actual).__name__}, not an array"
        assert len(actual) == len(expected), f"{path}: {len(actual)} items, not {len(expected)}"
        for n, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_json(a, e, f"{path}[{n}]")
    else:
        assert type(actual) is type(expected), f"{path}: {actual!r} is not a {type(expected).__name__}"
        same = math.isclose(actual, expected, rel_tol=1e-12) if isinstance(expected, float) else actual == expected
        assert same, f"{path}: {actual!r} != {expected!r}"


def check_contract(name: str, stdout: str) -> None:
    """The command's ``--json`` output against tests/fixtures/json_contract/``name``.json."""
    actual = json.loads(stdout)
    path = CONTRACTS / f"{name}.json"
    if REWRITE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert_same_json(actual, json.loads(path.read_text(encoding="utf-8")))


def json_of(*args: str, env: dict[str, str]) -> str:
    result = cli(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def env_for(es_url: str, alias: str, tmp_path: Path) -> dict[str, str]:
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    return {"ES_URL": es_url, "ES_INDEX": alias, "DATA_DIR": str(tmp_path / "data"), "PROFILES_DIR": str(profiles)}


def test_compare_story_json_is_unchanged(es: Elasticsearch, es_url: str, alias: str, tmp_path: Path) -> None:
    _, versions, others = story_articles()
    write(es, alias, [*versions.values(), *others])
    env = env_for(es_url, alias, tmp_path)
    check_contract("compare-story-by-article", json_of("story", versions["third"].id, env=env))
    # By the cluster's id, with a window long enough to reach the outlet that wrote three days later.
    cluster = versions["first"].id
    check_contract("compare-story-by-cluster", json_of("story", cluster, "--window-hours", "96", env=env))


def test_compare_topic_json_is_unchanged(es: Elasticsearch, es_url: str, alias: str, tmp_path: Path) -> None:
    spec, articles = topic_articles()
    write(es, alias, articles)
    env = env_for(es_url, alias, tmp_path)
    period = ["--since", "2025-03-01", "--until", "2025-03-06"]
    check_contract("compare-topic", json_of("topic", PROFILE, *period, "--clusters", "3", "--terms", "5", env=env))
    # The whole period, a profile title from the profiles folder, three outlets, a small term sample.
    (Path(env["PROFILES_DIR"]) / "syria.yaml").write_text(
        f"id: {PROFILE}\ntitle: الحرب في سوريا\nthresholds: {{tag: 3, alert: 6}}\n"
        "terms:\n  - {text: سوريا, kind: place, weight: 2}\n",
        encoding="utf-8",
    )
    names = spec["outlets"]
    narrowed = ["--outlets", f"{names['A']},{names['B']},{names['D']}", "--sample", "3", "--prior-scale", "0.5"]
    check_contract("compare-topic-narrowed", json_of("topic", PROFILE, *narrowed, env=env))


def test_compare_topic_json_by_week_is_unchanged(es: Elasticsearch, es_url: str, alias: str, tmp_path: Path) -> None:
    # A period over 92 days is counted by week; copies of a story outside the topic tag still count.
    _, articles = topic_articles()
    moved = [replace(a, published_at=a.published_at.replace(month=1 + n % 5)) for n, a in enumerate(articles)]
    write(es, alias, moved)
    env = env_for(es_url, alias, tmp_path)
    check_contract("compare-topic-by-week", json_of("topic", PROFILE, "--clusters", "4", env=env))
