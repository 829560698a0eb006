"""The commands a user types, run as subprocesses: the README's first command's `demo`, `run` with and
without ES_URL (due feeds only, or `--all`), `search`, `feeds`, and the exit codes."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

import pytest
import yaml
from cli_runner import cli

from pipeline.demo.server import SiteServer
from pipeline.demo.site import FAILING_FEEDS, STALE_FEED, build_site, demo_feeds, expectations
from pipeline.settings import PROJECT_ROOT
from pipeline.topics.profiles import load_profile

INDEXED = {"indexed", "feed_fallback"}


@pytest.fixture
def fresh_site() -> Iterator[SiteServer]:
    """The sample site dated as if published in the last days (as the demo serves it): its feeds are ok,
    but for the failing ones."""
    with SiteServer() as server:
        server.resources = dict(build_site(server.base_url, now=datetime.now(UTC)))
        yield server


@pytest.fixture
def feeds_file(fresh_site: SiteServer, tmp_path: Path) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(yaml.safe_dump({"feeds": demo_feeds(fresh_site.base_url)}, allow_unicode=True))
    return path


def noida_processes(data_dir: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "noida-db" in line and str(data_dir) in line]


def test_demo_runs_a_full_cycle_and_finds_the_seed_topic(tmp_path: Path) -> None:
    result = cli("demo", "--json", env={"DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    wanted = sum(1 for e in expectations() if e.outcome in INDEXED)
    assert data["summary"]["indexed"] == wanted
    seed_titles = {e.title for e in expectations() if e.topic == "seed" and e.outcome in INDEXED}
    hits = data["search"]["hits"]
    assert hits and all(h["title"] in seed_titles for h in hits[:3])
    assert not noida_processes(tmp_path), "the embedded server outlived the command"
    # The sample's stale feed is the one stale, its failing feeds fail, and operators were told of the
    # stale one (the failing ones fail once: not an incident yet).
    assert data["summary"]["feed_states"] == {"ok": 7, "failing": len(FAILING_FEEDS), "stale": 1}
    outbox = [message_from_bytes(p.read_bytes()) for p in (tmp_path / "demo" / "outbox").glob("*.eml")]
    ops = [m for m in outbox if str(m["Subject"]).startswith("[feed health]")]
    assert [str(m["To"]) for m in ops] == ["ops@example.org"] and STALE_FEED[0] in str(ops[0]["Subject"])
    assert len(outbox) == 2  # and the analysts' digest, apart
    # `feeds` with the demo's data directory lists the demo's feeds, not the seed list.
    health = json.loads(cli("feeds", "--json", env={"DATA_DIR": str(tmp_path / "demo")}).stdout)
    assert [h["id"] for h in health] == [f["id"] for f in demo_feeds("x", stale=True)]
    assert {h["id"]: h["state"] for h in health}[STALE_FEED[0]] == "stale"
    # Human output too: the summary table and the search.
    text = cli("demo", env={"DATA_DIR": str(tmp_path)})
    assert text.returncode == 0 and "Run summary" in text.stdout and "Search for the seed topic" in text.stdout
    # The hint it prints works as printed (DATA_DIR holds no index of its own: `feeds` finds the demo's).
    hint = next(line.strip() for line in text.stdout.splitlines() if line.strip().endswith("python -m pipeline feeds"))
    assert hint == "python -m pipeline feeds"
    listed = cli("feeds", "--json", env={"DATA_DIR": str(tmp_path)})
    assert [h["id"] for h in json.loads(listed.stdout)] == [f["id"] for f in demo_feeds("x", stale=True)]


def test_run_on_the_embedded_default_then_search_it(feeds_file: Path, fresh_site: SiteServer, tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data"), "FEEDS_FILE": str(feeds_file), "ALLOW_PRIVATE_HOSTS": "1"}
    first = cli("run", "--json", env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["indexed"] == sum(1 for e in expectations() if e.outcome in INDEXED)
    assert (tmp_path / "data" / "es").is_dir()  # the index lives under DATA_DIR
    assert summary["feeds_failed"] == len(FAILING_FEEDS) and {f["feed"] for f in summary["failed_feeds"]} == {
        feed_id for feed_id, *_ in FAILING_FEEDS
    }
    # Run again at once: no feed is due yet (the failing ones back off first), nothing is asked.
    requests = sum(fresh_site.requests.values())
    due = json.loads(cli("run", "--json", env=env).stdout)
    assert due["feeds_deferred"] == summary["feeds_total"] and sum(fresh_site.requests.values()) == requests
    # --all polls every feed now, whatever its schedule.
    again = json.loads(cli("run", "--all", "--json", env=env).stdout)
    assert again["indexed"] == 0 and again["feeds_not_modified"] == summary["feeds_ok"]
    assert again["feeds_failed"] == len(FAILING_FEEDS)
    found = cli("search", "حزب الله", "--json", "--sort", "newest", env=env)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["hits"]
    assert hits and all(
        "حزب الله" in (h["title"] + " ".join(h["snippets"])).replace("<mark>", "").replace("</mark>", "") for h in hits
    )
    dates = [h["published_at"] for h in hits]
    assert dates == sorted(dates, reverse=True)
    health = json.loads(cli("feeds", "--json", env=env).stdout)
    assert [h["id"] for h in health] == [f["id"] for f in demo_feeds("x")]
    failing = {feed_id for feed_id, *_ in FAILING_FEEDS}
    assert {h["id"]: h["state"] for h in health} == {h["id"]: "failing" if h["id"] in failing else "ok" for h in health}
    assert all(h["consecutive_failures"] == 2 for h in health if h["id"] in failing)
    assert not noida_processes(tmp_path)


def test_run_against_an_existing_cluster_with_es_url(feeds_file: Path, es_url: str, alias: str, tmp_path: Path) -> None:
    env = {
        "ES_URL": es_url,
        "ES_INDEX": alias,
        "FEEDS_FILE": str(feeds_file),
        "ALLOW_PRIVATE_HOSTS": "1",
        "DATA_DIR": str(tmp_path),
    }
    result = cli("run", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["indexed"] > 0
    assert not (tmp_path / "es").exists()  # no embedded server was started


def test_private_feeds_are_refused_by_default(feeds_file: Path, tmp_path: Path) -> None:
    result = cli("run", "--json", env={"DATA_DIR": str(tmp_path), "FEEDS_FILE": str(feeds_file)})
    assert result.returncode == 0  # the run happened; every feed failed and says why
    summary = json.loads(result.stdout)
    assert summary["reached_no_feed"] and summary["indexed"] == 0
    reasons = {f["feed"]: f["reason"] for f in summary["failed_feeds"]}
    assert "DNS lookup failed" in reasons.pop("alsham-opinion")  # the one feed whose host does not resolve
    assert all("non-public" in reason for reason in reasons.values()), reasons
    human = cli("run", "--all", env={"DATA_DIR": str(tmp_path), "FEEDS_FILE": str(feeds_file)})
    assert "python -m pipeline demo" in human.stdout


def test_bad_configuration_exits_1_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "feeds.yaml"
    bad.write_text("feeds:\n  - id: x\n    url: ftp://nope\n    outlet: س\n")
    result = cli("run", env={"FEEDS_FILE": str(bad), "DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert f"{bad}:3" in result.stderr and "url" in result.stderr
    unreachable = cli("run", env={"ES_URL": "http://127.0.0.1:9", "DATA_DIR": str(tmp_path)})
    assert unreachable.returncode == 1 and "does not answer" in unreachable.stderr
    wrong = cli("run", env={"LANGUAGES": "arabic", "DATA_DIR": str(tmp_path)})
    assert wrong.returncode == 1 and "LANGUAGES" in wrong.stderr
    assert cli("search").returncode == 2  # usage error: no query


def test_profile_build_writes_a_loadable_profile(tmp_path: Path) -> None:
    out = tmp_path / "profiles" / "seed.yaml"
    report = PROJECT_ROOT / "seeds" / "seed-report-iran-russia-assad.txt"
    result = cli("profile", "build", str(report), "-o", str(out), "--id", "seed-draft", "--title", "مسودة")
    assert result.returncode == 0, result.stderr
    profile = load_profile(out)
    assert profile.id == "seed-draft" and profile.title == "مسودة"
    texts = {t.text for t in profile.terms} | {v for t in profile.terms for v in t.variants}
    assert any("سليماني" in t for t in texts) and any("موسكو" in t for t in texts)
    again = cli("profile", "build", str(report), "-o", str(out))
    assert again.returncode == 1 and "exists" in again.stderr
    missing = cli("profile", "build", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "x.yaml"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_explain_and_retag_after_a_profile_change(feeds_file: Path, fresh_site: SiteServer, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    seed = PROJECT_ROOT / "seeds" / "profiles" / "iran-russia-assad.yaml"
    (profiles / "iran-russia-assad.yaml").write_text(seed.read_text(encoding="utf-8"), encoding="utf-8")
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "FEEDS_FILE": str(feeds_file),
        "ALLOW_PRIVATE_HOSTS": "1",
        "PROFILES_DIR": str(profiles),
    }
    assert cli("run", "--json", env=env).returncode == 0
    seed_titles = {e.title for e in expectations() if e.topic == "seed" and e.outcome in INDEXED}
    hits = json.loads(cli("search", "سليماني", "--json", "-n", "50", env=env).stdout)["hits"]
    tagged = [h for h in hits if h["title"] in seed_titles]
    assert tagged and all(h["topics"] == ["iran-russia-assad"] for h in tagged)
    why = json.loads(cli("profile", "explain", tagged[0]["id"], "--json", env=env).stdout)
    [report] = why["profiles"]
    assert report["tagged"] and report["score"] >= report["threshold"]
    assert any(t["term"] == "قاسم سليماني" and t["occurrences"]["body"] for t in report["terms"])
    # The analyst raises the tag threshold above every score: re-tagging removes the tags, downloads nothing.
    text = (profiles / "iran-russia-assad.yaml").read_text(encoding="utf-8")
    (profiles / "iran-russia-assad.yaml").write_text(
        re.sub(r"(?m)^(\s*(?:tag|alert):\s*)[0-9.]+", r"\g<1>9.99", text), encoding="utf-8"
    )
    requests_before = sum(fresh_site.requests.values())
    result = cli("retag", "--profile", "iran-russia-assad", "--json", env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["changed"] == len(seed_titles) and summary["tagged"] == {"iran-russia-assad": 0}
    assert sum(fresh_site.requests.values()) == requests_before
    hits = json.loads(cli("search", "سليماني", "--json", "-n", "50", env=env).stdout)["hits"]
    assert all(h["topics"] == [] for h in hits)
    unknown = cli("retag", "--profile", "nope", env=env)
    assert unknown.returncode == 1 and "no profile 'nope'" in unknown.stderr
