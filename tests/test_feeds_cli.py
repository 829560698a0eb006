"""``python -m pipeline feeds``, ``feeds check`` and ``feeds discover`` as an operator types them: subprocesses
against a loopback site and the embedded search server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from cli_runner import cli

from pipeline.demo.server import SiteServer
from pipeline.demo.site import FAILING_FEEDS, STALE_FEED, Resource, build_site, demo_feeds
from pipeline.ingest.feeds import load_feeds

CONTRACT = {"id", "state", "next_poll_at", "interval_minutes", "last_success", "last_error", "newest_item_age_hours"}


@pytest.fixture
def fresh_site() -> Iterator[SiteServer]:
    """The sample site as the demo serves it: dated to now, with its failing feeds and its stale one."""
    with SiteServer() as server:
        server.resources = dict(build_site(server.base_url, now=datetime.now(UTC)))
        yield server


def write_feeds(path: Path, feeds: list[dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({"feeds": feeds}, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def polled(fresh_site: SiteServer, tmp_path: Path) -> dict[str, str]:
    """The environment of a data directory whose feeds (the demo's) were polled once."""
    feeds = write_feeds(tmp_path / "feeds.yaml", demo_feeds(fresh_site.base_url, stale=True))
    env = {"DATA_DIR": str(tmp_path / "data"), "FEEDS_FILE": str(feeds), "ALLOW_PRIVATE_HOSTS": "1"}
    ran = cli("run", "--json", "--ops-alert-to", "ops@example.org", env=env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["ops_alerts_sent"] == 1  # the stale feed; the failing ones failed once
    return env


def test_feeds_json_gives_every_feed_its_state_and_schedule(polled: dict[str, str]) -> None:
    result = cli("feeds", "--json", env=polled)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert all(row.keys() >= CONTRACT for row in rows)
    states = {row["id"]: row["state"] for row in rows}
    failing = {feed_id for feed_id, *_ in FAILING_FEEDS}
    assert {k for k, v in states.items() if v == "failing"} == failing
    assert states[STALE_FEED[0]] == "stale"
    assert {v for k, v in states.items() if k not in failing | {STALE_FEED[0]}} == {"ok"}
    for row in rows:
        assert row["next_poll_at"] > row["last_attempt"] and 5 <= row["interval_minutes"] <= 360
        assert (row["last_success"] is None) == (row["id"] in failing)
        assert (row["last_error"] is not None) == (row["id"] in failing)
    stale = next(r for r in rows if r["id"] == STALE_FEED[0])
    assert stale["newest_item_age_hours"] >= 40 * 24 and stale["cadence_minutes"] == 1440
    # Without SMTP_URL the operators' email is an .eml file in DATA_DIR/outbox.
    [email] = (Path(polled["DATA_DIR"]) / "outbox").glob("*.eml")
    assert f"Subject: [feed health] {STALE_FEED[0]} is stale" in email.read_text()


def test_the_feeds_table_reads_on_80_columns(polled: dict[str, str]) -> None:
    result = cli("feeds", env={**polled, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == f"feed list: {polled['FEEDS_FILE']}"  # a path is as long as it is
    lines = lines[:-1]
    assert max(len(line) for line in lines) <= 80, result.stdout
    header = next(line for line in lines if line.startswith("feed"))
    assert header.split() == ["feed", "state", "next", "every", "last", "ok", "newest", "last", "error"]
    for feed in demo_feeds("x", stale=True):
        row = next(line for line in lines if line.startswith(feed["id"] + " "))
        assert any(state in row for state in ("ok", "failing ×1", "stale")), row
    assert lines[-1] == f"13 feeds: 7 ok, {len(FAILING_FEEDS)} failing, 1 stale"


def test_feeds_check_probes_now_and_says_status_items_age_encoding_and_redirects(
    fresh_site: SiteServer, tmp_path: Path
) -> None:
    fresh_site.resources["/moved.xml"] = Resource(301, {"Location": "/alwaha/rss/news.xml"}, b"")
    listed = demo_feeds(fresh_site.base_url, stale=True)
    extra = {"id": "moved", "url": f"{fresh_site.base_url}/moved.xml", "outlet": "م"}
    feeds = write_feeds(tmp_path / "feeds.yaml", [*listed, extra])
    env = {"DATA_DIR": str(tmp_path / "data"), "FEEDS_FILE": str(feeds), "ALLOW_PRIVATE_HOSTS": "1"}
    result = cli("feeds", "check", "alwaha-news", "moved", "alnil-sports", STALE_FEED[0], "--json", env=env)
    assert result.returncode == 0, result.stderr
    probes = {p["feed_id"]: p for p in json.loads(result.stdout)}
    news = probes["alwaha-news"]
    assert (news["ok"], news["status"], news["items"]) == (True, 200, 5)
    assert (news["encoding"], news["header_charset"]) == ("windows-1256", "iso-8859-1")  # the header lies
    assert news["newest_item_age_hours"] < 24 and not news["stale"]
    assert probes["moved"]["moved_to"] == f"{fresh_site.base_url}/alwaha/rss/news.xml"
    assert probes["alnil-sports"]["error"] == "FetchError: HTTP 500" and probes["alnil-sports"]["status"] == 500
    assert probes[STALE_FEED[0]]["stale"]
    assert not (tmp_path / "data").exists()  # a probe stores nothing, and needs no index
    human = cli("feeds", "check", "moved", env=env)
    assert "moved permanently to" in human.stdout and "update the feed list" in human.stdout
    unknown = cli("feeds", "check", "nope", env=env)
    assert unknown.returncode == 1 and "no feed 'nope'" in unknown.stderr


HOME = """<!DOCTYPE html><html lang="ar"><head><meta charset="utf-8"><title>الموقع | الرئيسية</title>
<meta property="og:site_name" content="صحيفة الاختبار">
<link rel="alternate" type="application/rss+xml" title="آخر الأخبار" href="/news/rss.xml">
<link rel="alternate" type="application/rss+xml" title="تعليقات" href="/comments/feed">
</head><body><a href="/ar/economy">اقتصاد</a></body></html>"""


def test_feeds_discover_finds_declared_and_common_feeds_and_prints_entries_for_the_list(
    fresh_site: SiteServer, tmp_path: Path
) -> None:
    news = fresh_site.resources["/almadar/rss/latest.xml"]
    atom = fresh_site.resources["/almanara/feed/atom"]
    fresh_site.resources.update(
        {
            "/home": Resource(200, {"Content-Type": "text/html; charset=utf-8"}, HOME.encode()),
            "/news/rss.xml": news,  # declared by the page
            "/feed": atom,  # not declared: found at a common path
            "/feed/": atom,  # the same feed again under a second path
            "/rss": Resource(200, {"Content-Type": "text/html"}, b"<html><body>not a feed</body></html>"),
        }
    )
    env = {"DATA_DIR": str(tmp_path), "ALLOW_PRIVATE_HOSTS": "1"}
    result = cli("feeds", "discover", f"{fresh_site.base_url}/home", "--json", env=env)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["site_name"] == "صحيفة الاختبار"
    assert [p["url"] for p in found["feeds"]] == [f"{fresh_site.base_url}/news/rss.xml", f"{fresh_site.base_url}/feed"]
    assert f"{fresh_site.base_url}/comments/feed" not in found["candidates"]  # comment feeds are no news
    # The entries go straight into a feed list that validates.
    listed = load_feeds(write_feeds(tmp_path / "found.yaml", found["entries"]))
    assert [(f.url, f.outlet) for f in listed] == [(p["url"], "صحيفة الاختبار") for p in found["feeds"]]
    human = cli("feeds", "discover", f"{fresh_site.base_url}/home", env=env)
    assert "# For the feed list" in human.stdout and "url: " + f"{fresh_site.base_url}/feed" in human.stdout
    refused = cli("feeds", "discover", f"{fresh_site.base_url}/home", env={"DATA_DIR": str(tmp_path)})
    assert refused.returncode == 1 and "non-public" in refused.stderr  # loopback needs ALLOW_PRIVATE_HOSTS
    assert cli("feeds", "discover", env=env).returncode == 2  # no URL: a usage error
