"""`python -m pipeline profile test|build|explain` as an analyst types them: a labelled set's figures
and errors, a dry run over the real embedded index that writes nothing, a draft with a valid id and
thresholds read off labelled articles. Every article here was written for these tests."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_runner import cli as run_cli
from elasticsearch import Elasticsearch
from test_compare import make_article, write
from test_compare_json import check_contract

from pipeline.settings import PROJECT_ROOT
from pipeline.store import index
from pipeline.topics.draft import profile_id_from
from pipeline.topics.profiles import load_profile

SEED_REPORT = PROJECT_ROOT / "seeds" / "seed-report-iran-russia-assad.txt"
SEED_PROFILE = PROJECT_ROOT / "seeds" / "profiles" / "iran-russia-assad.yaml"
WEIGHTED_SEED = PROJECT_ROOT / "bench" / "profiles" / "iran-russia-assad-v1.yaml"  # weighted terms

PROFILE = """\
id: backing
title: إيران تدعم الأسد
thresholds: {tag: 5, alert: 7}
groups:
  - id: actors
    role: actor
    terms:
      - {text: إيران, kind: place, variants: [طهران, الإيرانية]}
  - id: support
    role: relation
    terms:
      - {text: دعم*, kind: keyword, variants: [تدعم*, يدعم*]}
  - id: regime
    role: beneficiary
    terms:
      - {text: الأسد, kind: person, variants: [دمشق]}
rules:
  - id: backing
    slots: [[actors], [support], [regime]]
    window: 10
    weight: 6
  - id: named
    slots: [[actors]]
    weight: 1
scoring:
  bias: -3
  require: [backing]
"""

# (id, label, title, body): what the profile gets right, a miss and a false alarm, and a borderline.
LABELLED = [
    ("a1", "relevant", "طهران تدعم الأسد", "قالت طهران إنها ستواصل دعم الأسد حتى النهاية."),
    ("a2", "relevant", "إيران والأسد", "أكدت إيران أنها تدعم دمشق في حربها."),
    ("a3", "relevant", "زيارة", "وصل وفد إلى العاصمة السورية لبحث التعاون العسكري."),  # missed: no actor
    ("b1", "not", "إيران والاقتصاد", "ناقش البرلمان الإيراني موازنة العام المقبل."),
    ("b2", "not", "تحليل", "قالت طهران إنها تدعم الأسد، في مقال عن تاريخ الخليج."),  # a false alarm
    ("b3", "not", "طقس", "أمطار غزيرة في المدن الساحلية."),
    ("c1", "borderline", "مبادرة", "طرحت إيران مبادرة تدعم بقاء الأسد في مرحلة انتقالية."),
]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("profile", *args, env=env)


def labelled_set(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "articles.jsonl").open("w", encoding="utf-8") as articles:
        for article_id, _, title, body in LABELLED:
            articles.write(json.dumps({"id": article_id, "title": title, "paragraphs": [body]}, ensure_ascii=False))
            articles.write("\n")
    with (directory / "labels.jsonl").open("w", encoding="utf-8") as labels:
        for article_id, label, _, _ in LABELLED:
            labels.write(json.dumps({"id": article_id, "topic": label, "why": f"written as {label}"}) + "\n")
    return directory


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    path = tmp_path / "backing.yaml"
    path.write_text(PROFILE, encoding="utf-8")
    return path


def test_profile_test_on_labels_gives_figures_borderline_apart_and_each_error_explained(
    profile_file: Path, tmp_path: Path
) -> None:
    labels = labelled_set(tmp_path / "labels")
    result = cli("test", str(profile_file), "--labels", str(labels), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tag"] == {"precision": 0.667, "recall": 0.667, "f1": 0.667, "tp": 2, "fp": 1, "fn": 1, "tn": 2}
    assert report["borderline"] == {"articles": 1, "tagged": 1, "alerted": report["borderline"]["alerted"]}
    errors = {error["id"]: error for error in report["errors"]}
    assert set(errors) == {"a3", "b2"}
    assert errors["a3"]["error"] == "missed" and errors["b2"]["error"] == "false alarm"
    [backing] = [rule for rule in errors["b2"]["explanation"]["rules"] if rule["rule"] == "backing"]
    assert backing["windows"] == ["body: طهران انها تدعم الاسد"]

    human = cli("test", str(profile_file), "--labels", str(labels))
    assert human.returncode == 0, human.stderr
    assert "false alarm: b2" in human.stdout and "missed: a3" in human.stdout
    assert "«body: طهران انها تدعم الاسد»" in human.stdout and "1 of 1" in human.stdout


def test_profile_test_needs_labels_or_a_period_and_a_profile_that_exists(profile_file: Path, tmp_path: Path) -> None:
    assert cli("test", str(profile_file)).returncode == 2
    assert cli("test", str(profile_file), "--labels", str(tmp_path), "--since", "7d").returncode == 2
    missing = cli("test", str(profile_file), "--labels", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "articles.jsonl: no such file" in missing.stderr
    unknown = cli("test", "nope", "--labels", str(tmp_path), env={"PROFILES_DIR": str(tmp_path)})
    assert unknown.returncode == 1 and "no profile 'nope'" in unknown.stderr
    bad_period = cli("test", str(profile_file), "--since", "a week", env={"PROFILES_DIR": str(tmp_path)})
    assert bad_period.returncode == 2 and "36h, 7d, 2w" in bad_period.stderr


def test_profile_test_since_is_a_dry_run_over_the_index_against_the_stored_tags(
    es: Elasticsearch, es_url: str, alias: str, profile_file: Path, tmp_path: Path
) -> None:
    now = datetime.now(UTC)

    def day(days: float) -> str:
        return (now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")

    articles = [
        # Tagged by the installed version and by the tested one.
        make_article("https://a.example/1", "أ", day(1), "طهران تدعم الأسد", "طهران تدعم الأسد.", topics=("backing",)),
        # Newly tagged, and a new alert (the installed version did not see it).
        make_article("https://a.example/2", "أ", day(2), "إيران تدعم الأسد", "إيران تواصل دعم الأسد."),
        # Tagged now, no longer: the relation is not there.
        make_article(
            "https://b.example/3", "ب", day(3), "إيران", "البرلمان الإيراني يناقش الموازنة.", topics=("backing",)
        ),
        # Outside the period: not read.
        make_article("https://b.example/4", "ب", day(30), "إيران تدعم الأسد", "إيران تدعم الأسد.", topics=("backing",)),
    ]
    write(es, alias, articles)
    installed = tmp_path / "profiles"
    installed.mkdir()
    (installed / "backing.yaml").write_text(PROFILE.replace("tag: 5, alert: 7", "tag: 5, alert: 9.9"), encoding="utf-8")
    env = {"ES_URL": es_url, "ES_INDEX": alias, "PROFILES_DIR": str(installed), "DATA_DIR": str(tmp_path / "d")}
    before = {hit["_id"]: hit["_source"] for hit in index.scan_articles(es, alias, ["topics", "topic_matches"])}

    result = cli("test", str(profile_file), "--since", "7d", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["scanned"] == 3 and report["tagged"] == {"now": 2, "would": 2}
    assert [row["title"] for row in report["newly_tagged"]] == ["إيران تدعم الأسد"]
    assert [row["title"] for row in report["untagged"]] == ["إيران"]
    assert report["untagged"][0]["score_now"] == 6.0 and report["untagged"][0]["score"] < 5
    # Stored scores (6.0) are under the installed alert threshold (9.9): no story alerted now.
    assert report["alerted_stories"] == {"now": 0, "would": 2}
    assert {row["title"] for row in report["new_alerts"]} == {"طهران تدعم الأسد", "إيران تدعم الأسد"}

    human = cli("test", "backing", "--since", "7d", env=env)  # the installed profile, by id
    assert human.returncode == 0, human.stderr
    assert "dry run, nothing written" in human.stdout and "tagged:  now 2, would be 2" in human.stdout
    after = {hit["_id"]: hit["_source"] for hit in index.scan_articles(es, alias, ["topics", "topic_matches"])}
    assert after == before


def test_profile_explain_shows_the_rules_and_windows_that_fired(
    es: Elasticsearch, es_url: str, alias: str, profile_file: Path, tmp_path: Path
) -> None:
    article = make_article("https://a.example/x", "أ", "2025-01-02T10:00:00Z", "طهران تدعم الأسد", "طهران تدعم الأسد.")
    write(es, alias, [article])
    installed = tmp_path / "profiles"
    installed.mkdir()
    (installed / "backing.yaml").write_text(PROFILE, encoding="utf-8")
    env = {"ES_URL": es_url, "ES_INDEX": alias, "PROFILES_DIR": str(installed), "DATA_DIR": str(tmp_path / "d")}
    result = cli("explain", article.id, env=env)
    assert result.returncode == 0, result.stderr
    assert "backing in the title: «طهران تدعم الاسد»" in result.stdout
    assert "actors (actor): إيران 1/1" in result.stdout and "tagged" in result.stdout
    data = json.loads(cli("explain", article.id, "--json", env=env).stdout)
    [report] = data["profiles"]
    assert report["model"] == "rules" and report["tagged"]
    assert [rule["rule"] for rule in report["rules"] if rule["windows"]] == ["backing", "named"]


def test_profile_explain_and_test_json_are_unchanged(
    es: Elasticsearch, es_url: str, alias: str, profile_file: Path, tmp_path: Path
) -> None:
    # Both models (rules: the test profile and the seed; weighted terms: the seed's first version), an
    # article some of them tag and one none does; and the explanations `profile test` gives its errors.
    weighted = tmp_path / "weighted.yaml"
    weighted.write_text(
        WEIGHTED_SEED.read_text(encoding="utf-8").replace("id: iran-russia-assad\n", "id: iran-russia-assad-v1\n"),
        encoding="utf-8",
    )
    installed = tmp_path / "profiles"
    installed.mkdir()
    for path in (profile_file, SEED_PROFILE, weighted):
        (installed / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    tagged = make_article(
        "https://a.example/soleimani",
        "أ",
        "2025-01-02T10:00:00Z",
        "سليماني في دمشق وطهران تدعم الأسد",
        "وقال قاسم سليماني إن الغارات الروسية على حلب مستمرة. وأكدت طهران أنها ستواصل دعم الأسد.\n\n"
        "ووصل مستشارون إيرانيون إلى قاعدة حميميم الروسية في ريف اللاذقية.",
    )
    untagged = make_article(
        "https://a.example/rain", "ب", "2025-01-02T11:00:00Z", "طقس", "أمطار غزيرة في المدن الساحلية."
    )
    write(es, alias, [tagged, untagged])
    env = {"ES_URL": es_url, "ES_INDEX": alias, "PROFILES_DIR": str(installed), "DATA_DIR": str(tmp_path / "d")}
    for name, args in (
        ("profile-explain", [tagged.id]),
        ("profile-explain-untagged", [untagged.id]),
        ("profile-explain-one", [tagged.id, "--profile", "iran-russia-assad-v1"]),
    ):
        result = cli("explain", *args, "--json", env=env)
        assert result.returncode == 0, result.stderr
        check_contract(name, result.stdout)
    labels = labelled_set(tmp_path / "labels")
    for name, path in (("profile-test-rules", profile_file), ("profile-test-weighted", weighted)):
        result = cli("test", str(path), "--labels", str(labels), "--json")
        assert result.returncode == 0, result.stderr
        check_contract(name, result.stdout)


@pytest.mark.parametrize(
    ("name", "expected"), [("p", "profile-p"), ("Iran Russia", "iran-russia"), ("ملف", "profile"), ("x_y", "x_y")]
)
def test_a_file_name_becomes_a_valid_profile_id(name: str, expected: str) -> None:
    assert profile_id_from(name) == expected


def test_profile_build_names_the_draft_validly_and_reads_thresholds_off_labels(tmp_path: Path) -> None:
    short = tmp_path / "p.yaml"
    result = cli("build", str(SEED_REPORT), "-o", str(short))
    assert result.returncode == 0, result.stderr
    assert load_profile(short).id == "profile-p"
    bad = cli("build", str(SEED_REPORT), "-o", str(tmp_path / "q.yaml"), "--id", "Bad Id")
    assert bad.returncode == 2 and "--id" in bad.stderr

    labels = labelled_set(tmp_path / "labels")
    out = tmp_path / "draft.yaml"
    built = cli("build", str(SEED_REPORT), "-o", str(out), "--labels", str(labels), "--json")
    assert built.returncode == 0, built.stderr
    summary = json.loads(built.stdout)
    draft = load_profile(out)
    assert summary["profile"] == draft.id == "draft"
    calibrated = summary["calibrated_thresholds"]
    assert calibrated["thresholds"] == {"tag": draft.tag_threshold, "alert": draft.alert_threshold}
    assert calibrated["tag"]["f1"] >= summary["default_thresholds"]["tag"]["f1"]
    human = cli("build", str(SEED_REPORT), "-o", str(out), "--labels", str(labels), "--force")
    assert human.returncode == 0 and "thresholds read off it" in human.stdout
