"""Alert decisions — "why wasn't I alerted?" — end to end: full cycles over the fixture outlets on a
loopback site (beside a feed that fails) into the embedded index, alerts delivered to a real SMTP
server, and every tagged article's decision read back from the ledger, through ``alerts why`` and
``alerts list``."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cli_runner import cli
from elasticsearch import Elasticsearch
from smtp_server import RecordingSmtp
from test_alerts import DESK, FIXTURE, Newsroom

from pipeline.alerts.decisions import Decision, decisions_of, record_decisions
from pipeline.alerts.run import AlertRun, run_alerts
from pipeline.demo.server import SiteServer
from pipeline.records import FeedConfig, iso
from pipeline.run import run_cycle
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.topics.profiles import Profile, load_profiles

ON_TOPIC = [k for k in FIXTURE["stories"] if k != "soleimani-moscow-sharq"]


@pytest.fixture
def newsroom(site: SiteServer) -> Newsroom:
    return Newsroom(site)


@pytest.fixture
def profiles(settings: Settings) -> list[Profile]:
    return load_profiles(settings.profiles_dir)


def feeds(newsroom: Newsroom) -> list[FeedConfig]:
    """The fixture outlets, and one feed whose server answers 404: the world is never whole."""
    gone = FeedConfig(id="gone", url=f"{newsroom.site.base_url}/gone/rss.xml", outlet="موقع مغلق")
    return [*newsroom.feeds(), gone]


def cycle(settings: Settings, es: Elasticsearch, newsroom: Newsroom, profiles: list[Profile]) -> AlertRun:
    summary = run_cycle(settings.with_(alert_to=()), es, feeds(newsroom))
    assert "gone" in {f["feed"] for f in summary.failed_feeds}
    return run_alerts(settings, es, profiles)


def tagged_ids(es: Elasticsearch, alias: str, profile: Profile) -> set[str]:
    es.indices.refresh(index=alias)
    hits = es.search(index=alias, query={"term": {"topics": profile.id}}, size=100)["hits"]["hits"]
    return {h["_id"] for h in hits}


def decisions(es: Elasticsearch, alias: str) -> dict[str, list[Decision]]:
    es.indices.refresh(index=index.Names(alias).alerts)
    found: dict[str, list[Decision]] = {}
    for decision in decisions_of(es, alias):
        found.setdefault(decision.article_id, []).append(decision)
    return found


def reasons(es: Elasticsearch, alias: str) -> dict[str, str]:
    """article id → its latest decision's reason (one recipient list in these tests)."""
    return {article: decided[0].reason for article, decided in decisions(es, alias).items()}


def cli_env(settings: Settings) -> dict[str, str]:
    env = {"ES_URL": str(settings.es_url), "ES_INDEX": settings.es_index, "DATA_DIR": str(settings.data_dir)}
    return {**env, "ALERT_TO": ",".join(settings.alert_to)}


def test_every_tagged_article_gets_a_decision_that_follows_it_until_it_is_alerted(
    es: Elasticsearch, settings: Settings, newsroom: Newsroom, smtp: RecordingSmtp, profiles: list[Profile]
) -> None:
    [profile] = profiles
    capped = settings.with_(smtp_url=smtp.url, alert_to=(DESK,), alert_max_stories=1)
    alias = capped.es_index
    newsroom.publish(*ON_TOPIC)
    first = cycle(capped, es, newsroom, profiles)
    assert (first.digests_sent, first.stories_sent, first.stories_pending) == (1, 1, 1)
    [message_id] = [m["message_id"] for m in first.messages]
    # Every article the profile tagged has its decision, with the reason: the story sent first (two outlets'
    # copies), the story over the cap, the one under the alert threshold.
    tagged = tagged_ids(es, alias, profile)
    found = decisions(es, alias)
    assert set(found) == tagged and len(tagged) == 4
    now = reasons(es, alias)
    sent_story = {newsroom.id("soleimani-moscow"), newsroom.id("soleimani-moscow-dafta")}
    assert {a for a, r in now.items() if r == "alerted"} in (sent_story, {newsroom.id("hmeimim-strikes")})
    held = (
        newsroom.id("hmeimim-strikes")
        if now[newsroom.id("hmeimim-strikes")] != "alerted"
        else newsroom.id("soleimani-moscow")
    )
    assert now[held] == "held_by_cap" and "ALERT_MAX_STORIES (1)" in found[held][0].detail
    lavrov = found[newsroom.id("lavrov-reconstruction")][0]
    assert lavrov.reason == "below_threshold" and lavrov.threshold == profile.alert_threshold
    assert lavrov.score < profile.alert_threshold and lavrov.recipients == (DESK,)
    assert all(d.message_id == message_id for a, (d, *_) in found.items() if now[a] == "alerted")

    # The mail server goes away: the held story now waits for it, with the server's answer.
    down = capped.with_(smtp_url="smtp://127.0.0.1:9")
    assert run_alerts(down, es, profiles).stories_pending == 1
    failed = decisions(es, alias)[held][0]
    assert failed.reason == "mail_failed" and "127.0.0.1:9" in failed.detail
    # Back: sent, and the same decision document now says so (overwritten, not added).
    back = run_alerts(capped, es, profiles)
    assert back.stories_sent == 1 and smtp.count() == 2
    [latest] = decisions(es, alias)[held]
    assert latest.reason == "alerted" and latest.message_id == back.messages[0]["message_id"]

    # A third outlet's copy of the story sent first arrives later: a duplicate, naming the digest it is a copy of.
    newsroom.publish("soleimani-moscow-sharq")
    assert cycle(capped, es, newsroom, profiles).digests_sent == 0
    [copy] = decisions(es, alias)[newsroom.id("soleimani-moscow-sharq")]
    story_message = decisions(es, alias)[newsroom.id("soleimani-moscow")][0].message_id
    assert copy.reason == "duplicate" and copy.message_id == story_message
    assert copy.story_article == newsroom.id("soleimani-moscow")
    assert set(decisions(es, alias)) == tagged_ids(es, alias, profile)

    # Nothing changed since: a run rewrites no decision (read by id, written only when they change).
    before = {h["_id"]: h["_seq_no"] for h in _decision_hits(es, alias)}
    assert run_alerts(capped, es, profiles).digests_sent == 0
    assert {h["_id"]: h["_seq_no"] for h in _decision_hits(es, alias)} == before

    # What an analyst sees: `alerts why` by URL or id, `alerts list` with the decisions per story.
    env = cli_env(capped)
    answer = cli("alerts", "why", newsroom.url("soleimani-moscow-sharq"), env=env)
    assert answer.returncode == 0, answer.stderr
    assert (
        "duplicate" in answer.stdout
        and f"a copy of a story already alerted in the digest {story_message}" in answer.stdout
    )
    assert len(answer.stdout.splitlines()) <= 24  # one screen
    why_lavrov = json.loads(cli("alerts", "why", newsroom.id("lavrov-reconstruction"), "--json", env=env).stdout)
    [verdict] = why_lavrov["answers"]
    assert verdict["status"] == "below_threshold" and f"< {profile.alert_threshold:g}" in verdict["verdict"]
    off_topic = json.loads(cli("alerts", "why", newsroom.id("damascus-rain"), "--json", env=env).stdout)
    assert (
        off_topic["answers"][0]["status"] == "not_tagged"
        and "under the tag threshold" in off_topic["answers"][0]["verdict"]
    )
    listed = json.loads(cli("alerts", "list", "--json", env=env).stdout)
    by_status: dict[str, list[dict[str, Any]]] = {}
    for row in listed:
        by_status.setdefault(row["status"], []).append(row)
    assert sorted(by_status) == ["not alerted", "sent"]
    [story_row] = [r for r in by_status["sent"] if r["url"] == newsroom.url("soleimani-moscow")]
    assert story_row["decisions"] == {"alerted": 2, "duplicate": 1}
    [not_alerted] = by_status["not alerted"]
    assert not_alerted["reason"] == "below_threshold" and not_alerted["url"] == newsroom.url("lavrov-reconstruction")
    assert cli("alerts", "why", "no-such-article", env=env).returncode == 1


def _decision_hits(es: Elasticsearch, alias: str) -> list[dict[str, Any]]:
    name = index.Names(alias).alerts
    es.indices.refresh(index=name)
    query = {"term": {"kind": "decision"}}
    return list(es.search(index=name, query=query, size=100, seq_no_primary_term=True)["hits"]["hits"])


def test_a_story_waiting_for_recipients_leaves_the_look_back_window_and_says_so(
    es: Elasticsearch, settings: Settings, newsroom: Newsroom, profiles: list[Profile]
) -> None:
    nobody = settings.with_(alert_to=())
    newsroom.publish("soleimani-moscow", "hmeimim-strikes")
    run = cycle(nobody, es, newsroom, profiles)
    assert run.stories_pending == 2 and run.decisions == {"no_recipients": 2}
    assert set(reasons(es, nobody.es_index).values()) == {"no_recipients"}
    env = cli_env(nobody)
    waiting = json.loads(cli("alerts", "why", newsroom.id("hmeimim-strikes"), "--json", env=env).stdout)
    assert waiting["answers"][0]["status"] == "no_recipients" and "ALERT_TO" in waiting["answers"][0]["verdict"]
    # Four days on, still nobody to send to: the stories have left the window, and the ledger says so.
    later = datetime.now(UTC) + timedelta(hours=nobody.alert_lookback_hours + 24)
    assert run_alerts(nobody, es, profiles, now=later).stories_pending == 0
    aged = decisions(es, nobody.es_index)[newsroom.id("hmeimim-strikes")][0]
    assert aged.reason == "outside_lookback" and aged.detail.startswith("was no recipients; indexed ")
    # Recipients now: nothing goes out, it is too late — and the decision stays.
    mailing = nobody.with_(alert_to=(DESK,))
    assert run_alerts(mailing, es, profiles, now=later).stories_sent == 0
    assert set(reasons(es, nobody.es_index).values()) == {"outside_lookback"}


def test_an_alerted_decision_is_final_and_an_unchanged_one_is_not_rewritten(es: Elasticsearch, alias: str) -> None:
    index.ensure_indices(es, alias)
    now = datetime.now(UTC)
    alerted = Decision(
        profile="p", article_id="a1", cluster_id="a1", recipients=(DESK,), reason="alerted", score=8.0,
        threshold=5.0, message_id="<m@x>",
    )  # fmt: skip
    assert record_decisions(es, alias, [alerted], now=now) == 1
    failed = replace(alerted, reason="mail_failed", message_id=None, detail="down")
    assert record_decisions(es, alias, [failed], now=now) == 0  # never downgraded
    assert record_decisions(es, alias, [alerted], now=now + timedelta(minutes=5)) == 0  # unchanged
    es.indices.refresh(index=index.Names(alias).alerts)
    [stored] = decisions_of(es, alias, article_ids=["a1"])
    assert stored.reason == "alerted" and stored.decided_at == iso(now)
    # Another recipient list is another decision about the same article.
    other = replace(failed, recipients=("new@example.org",))
    assert record_decisions(es, alias, [other], now=now) == 1
    es.indices.refresh(index=index.Names(alias).alerts)
    assert sorted(d.reason for d in decisions_of(es, alias, article_ids=["a1"])) == ["alerted", "mail_failed"]
