"""Alerts end to end against real servers on loopback: fixture outlets served over HTTP, full cycles
(``run_cycle``) into the embedded index, then ``run_alerts`` delivering to a real SMTP server (aiosmtpd)
that records what it accepts — or to the ``.eml`` outbox. Digests are checked by parsing the received
message back."""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import cli as run_cli
from conftest import wait_until
from elasticsearch import Elasticsearch
from smtp_server import RecordingSmtp
from test_alerts_digest import Markup

from pipeline.alerts import ledger, operator
from pipeline.alerts.run import AlertRun, run_alerts
from pipeline.demo.server import SiteServer
from pipeline.demo.site import Resource
from pipeline.ingest.urls import canonical_url
from pipeline.records import FeedConfig, doc_id, iso
from pipeline.run import run_cycle
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.topics.profiles import Profile, load_profiles, match_profile

FIXTURE = yaml.safe_load((Path(__file__).parent / "fixtures" / "alerts" / "stories.yaml").read_text(encoding="utf-8"))
PROFILE_TITLE = "إيران وروسيا تدعمان الأسد في سوريا"
SUBJECT_PREFIX = "تنبيه إخباري: "
DESK = "desk@example.org"


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    title: str
    paragraphs: tuple[str, ...]
    published: datetime


class Newsroom:
    """The fixture outlets on a loopback site. ``publish`` puts a story's page online and lists it in its
    outlet's RSS feed (which then changes, so the next cycle takes the new item)."""

    def __init__(self, site: SiteServer) -> None:
        self.site = site
        self.outlets: dict[str, str] = {key: value["name"] for key, value in FIXTURE["outlets"].items()}
        self.items: dict[str, list[Item]] = {key: [] for key in self.outlets}

    def path(self, key: str) -> str:
        return f"/{FIXTURE['stories'][key]['outlet']}/news/{key}"

    def url(self, key: str) -> str:
        return canonical_url(self.site.base_url + self.path(key))

    def id(self, key: str) -> str:
        return doc_id(self.url(key))

    def outlet(self, key: str) -> str:
        return self.outlets[FIXTURE["stories"][key]["outlet"]]

    def publish(self, *keys: str, published: datetime | None = None, title: str | None = None) -> None:
        for key in keys:
            story = FIXTURE["stories"][key]
            item = Item(
                key=key,
                title=title or story["title"],
                paragraphs=tuple(" ".join(p.split()) for p in story["paragraphs"]),
                published=published or datetime.fromisoformat(story["published"]),
            )
            self.items[story["outlet"]].append(item)
            body = "".join(f"<p>{escape(p)}</p>" for p in item.paragraphs)
            page = (
                f'<!DOCTYPE html><html lang="ar" dir="rtl"><head><meta charset="utf-8"><title>{escape(item.title)}'
                f"</title></head><body><header><nav><a href='/'>الرئيسية</a></nav></header><main><article>"
                f"<h1>{escape(item.title)}</h1>{body}</article></main></body></html>"
            )
            self.site.resources[self.path(key)] = Resource(
                200, {"Content-Type": "text/html; charset=utf-8"}, page.encode()
            )
        for outlet in {FIXTURE["stories"][k]["outlet"] for k in keys}:
            self._feed(outlet)

    def _feed(self, outlet: str) -> None:
        entries = "".join(
            f"<item><title>{escape(item.title)}</title><link>{self.site.base_url}{self.path(item.key)}</link>"
            f"<guid>{self.site.base_url}{self.path(item.key)}</guid>"
            f"<pubDate>{format_datetime(item.published.astimezone(UTC), usegmt=True)}</pubDate></item>"
            for item in reversed(self.items[outlet])
        )
        rss = (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{escape(self.outlets[outlet])}</title><link>{self.site.base_url}/{outlet}/</link>"
            f"<language>ar</language>{entries}</channel></rss>"
        )
        self.site.resources[f"/{outlet}/rss.xml"] = Resource(
            200, {"Content-Type": "application/rss+xml; charset=utf-8"}, rss.encode()
        )

    def feeds(self) -> list[FeedConfig]:
        return [
            FeedConfig(id=key, url=f"{self.site.base_url}/{key}/rss.xml", outlet=name, language="ar")
            for key, name in self.outlets.items()
        ]


@pytest.fixture
def newsroom(site: SiteServer) -> Newsroom:
    return Newsroom(site)


@pytest.fixture
def mailing(settings: Settings, smtp: RecordingSmtp) -> Settings:
    return settings.with_(smtp_url=smtp.url, alert_to=(DESK,), alert_from="تنبيهات الأخبار <alerts@example.org>")


@pytest.fixture
def profiles(settings: Settings) -> list[Profile]:
    return load_profiles(settings.profiles_dir)


def index_only(settings: Settings, es: Elasticsearch, feeds: list[FeedConfig]) -> None:
    """A cycle that indexes and alerts nobody (no ALERT_TO), so each test's own ``run_alerts`` call is the
    one whose result it checks, whether or not ``run_cycle`` alerts at its end."""
    run_cycle(settings.with_(alert_to=()), es, feeds)


def cycle(settings: Settings, es: Elasticsearch, newsroom: Newsroom, profiles: list[Profile]) -> AlertRun:
    """One full cycle as the product runs it: poll and index, then alert from the index."""
    index_only(settings, es, newsroom.feeds())
    return run_alerts(settings, es, profiles)


def ledger_records(es: Elasticsearch, alias: str) -> list[dict[str, Any]]:
    """The ledger's stories and leases; the decisions about articles beside them (tests/test_alert_decisions.py)
    take no part in sending."""
    name = index.Names(alias).alerts
    es.indices.refresh(index=name)
    query = {"bool": {"must_not": [{"term": {"kind": "decision"}}]}}
    hits = es.search(index=name, query=query, size=1000)["hits"]["hits"]
    return [{"_id": h["_id"], **h["_source"]} for h in hits]


def expected_terms(key: str, profile: Profile) -> str:
    story = FIXTURE["stories"][key]
    body = "\n\n".join(" ".join(p.split()) for p in story["paragraphs"])
    return "، ".join(match_profile(profile, title=story["title"], body=body).terms)


def entry_lines(newsroom: Newsroom, key: str, n: int, profile: Profile, *others: str) -> list[str]:
    published = datetime.fromisoformat(FIXTURE["stories"][key]["published"]).astimezone(UTC)
    lines = [
        f"{n}. {FIXTURE['stories'][key]['title']}",
        f"   {newsroom.outlet(key)} · {published:%Y-%m-%d %H:%M} UTC",
        f"   {newsroom.url(key)}",
        f"   الكلمات المطابقة: {expected_terms(key, profile)}",
    ]
    if others:
        lines.append("   نشرته أيضًا: " + "، ".join(f"{newsroom.outlet(o)} ({newsroom.url(o)})" for o in others))
    return lines


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def test_a_cycle_with_matching_stories_sends_exactly_the_expected_digest(
    es: Elasticsearch, mailing: Settings, newsroom: Newsroom, smtp: RecordingSmtp, profiles: list[Profile]
) -> None:
    [profile] = profiles
    newsroom.publish(*FIXTURE["stories"].keys() - {"soleimani-moscow-sharq"})
    run = cycle(mailing, es, newsroom, profiles)
    assert (run.digests_sent, run.stories_sent, run.stories_pending, run.failures) == (1, 2, 0, [])

    [received] = smtp.received
    message = received.message
    assert received.rcpt_tos == (DESK,) and received.mail_from == "alerts@example.org"
    assert message["Subject"] == f"{SUBJECT_PREFIX}خبران جديدان — {PROFILE_TITLE}"
    assert message["To"] == DESK and message["From"].addresses[0].display_name == "تنبيهات الأخبار"
    assert message["Message-ID"] == run.messages[0]["message_id"] and message["Date"] is not None
    # One entry per story, newest first; the wire story once, with the other outlet that carried it. The
    # story under the alert threshold (tagged, score 5.6) and the off-topic ones are not there.
    text = text_of(message).splitlines()
    body = text[3 : text.index("--")]
    assert body == [
        *entry_lines(newsroom, "hmeimim-strikes", 1, profile),
        "",
        *entry_lines(newsroom, "soleimani-moscow", 2, profile, "soleimani-moscow-dafta"),
        "",
    ]
    assert text[:2] == [PROFILE_TITLE, f"خبران جديدان — {text[1].split(' — ')[1]}"]
    page = html_of(message)
    assert '<html dir="rtl" lang="ar">' in page
    links = Markup(page).links
    assert links == [
        (newsroom.url("hmeimim-strikes"), FIXTURE["stories"]["hmeimim-strikes"]["title"]),
        (newsroom.url("soleimani-moscow"), FIXTURE["stories"]["soleimani-moscow"]["title"]),
        (newsroom.url("soleimani-moscow-dafta"), newsroom.outlet("soleimani-moscow-dafta")),
    ]
    tagged = index.get_article(es, mailing.es_index, newsroom.id("lavrov-reconstruction"), ["topics"])
    assert tagged["topics"] == [profile.id]  # tagged, yet under the alert threshold: not in the digest

    # The ledger: one sent record per story, with the message id, the recipients and every article.
    records = {r["cluster_id"]: r for r in ledger_records(es, mailing.es_index)}
    head = newsroom.id("soleimani-moscow")
    assert set(records) == {head, newsroom.id("hmeimim-strikes")}
    assert all(r["status"] == "sent" and r["message_id"] == message["Message-ID"] for r in records.values())
    assert all(r["recipients"] == [DESK] and r["sent_at"] and r["profile"] == profile.id for r in records.values())
    assert sorted(records[head]["article_ids"]) == sorted([head, newsroom.id("soleimani-moscow-dafta")])
    assert records[head]["outlets"] == [newsroom.outlet("soleimani-moscow"), newsroom.outlet("soleimani-moscow-dafta")]

    # Nothing new: no email, whether alerts run again alone or after another cycle.
    again = run_alerts(mailing, es, profiles)
    later = cycle(mailing, es, newsroom, profiles)
    assert again.digests_sent == later.digests_sent == 0 and again.stories_pending == later.stories_pending == 0
    assert smtp.count() == 1 and len(ledger_records(es, mailing.es_index)) == 2


def test_a_later_duplicate_of_an_alerted_story_sends_nothing_even_when_it_is_earlier(
    es: Elasticsearch, mailing: Settings, newsroom: Newsroom, smtp: RecordingSmtp, profiles: list[Profile]
) -> None:
    newsroom.publish("soleimani-moscow")
    assert cycle(mailing, es, newsroom, profiles).stories_sent == 1
    # Another outlet's copy arrives a cycle later: it joins the alerted cluster.
    newsroom.publish("soleimani-moscow-sharq")
    late = cycle(mailing, es, newsroom, profiles)
    assert late.digests_sent == 0 and smtp.count() == 1
    # A copy published *before* the alerted article arrives: the whole cluster moves to it (a new
    # cluster_id). Still nothing — but a new story in the same cycle goes out, alone.
    earlier = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    newsroom.publish("soleimani-moscow-dafta", published=earlier)
    newsroom.publish("hmeimim-strikes")
    run = cycle(mailing, es, newsroom, profiles)
    new_head = newsroom.id("soleimani-moscow-dafta")
    moved = index.get_article(es, mailing.es_index, newsroom.id("soleimani-moscow"), ["cluster_id"])
    assert moved["cluster_id"] == new_head  # re-pointed
    assert (run.digests_sent, run.stories_sent) == (1, 1)
    second = smtp.messages()[1]
    assert second["Subject"] == f"{SUBJECT_PREFIX}خبر واحد جديد — {PROFILE_TITLE}"
    assert [href for href, _ in Markup(html_of(second)).links] == [newsroom.url("hmeimim-strikes")]
    assert cycle(mailing, es, newsroom, profiles).digests_sent == 0 and smtp.count() == 2


def test_mail_server_down_then_refusing_then_back_delivers_each_story_exactly_once(
    es: Elasticsearch, settings: Settings, newsroom: Newsroom, profiles: list[Profile]
) -> None:
    server = RecordingSmtp()  # not started yet: its port refuses connections
    mailing = settings.with_(smtp_url=server.url, alert_to=(DESK,))
    newsroom.publish("soleimani-moscow", "hmeimim-strikes")
    try:
        down = cycle(mailing, es, newsroom, profiles)
        assert (down.digests_sent, down.stories_sent, down.stories_pending) == (0, 0, 2)
        [failure] = down.failures
        assert failure["server"] == f"smtp://127.0.0.1:{server.port}" and "could not be reached" in failure["reason"]
        assert ledger_records(es, mailing.es_index) == []  # no claim left behind: the stories are pending
        server.start()
        server.refuse = "451 4.3.0 Mailbox temporarily unavailable"
        refused = cycle(mailing, es, newsroom, profiles)
        assert refused.stories_pending == 2 and "451" in refused.failures[0]["reason"] and server.count() == 0
        server.refuse = None
        back = cycle(mailing, es, newsroom, profiles)
        assert (back.digests_sent, back.stories_sent, back.stories_pending, back.failures) == (1, 2, 0, [])
        assert cycle(mailing, es, newsroom, profiles).digests_sent == 0
        [message] = server.messages()
        assert {href for href, _ in Markup(html_of(message)).links} == {
            newsroom.url("soleimani-moscow"),
            newsroom.url("hmeimim-strikes"),
        }
        assert [r["status"] for r in ledger_records(es, mailing.es_index)] == ["sent", "sent"]
    finally:
        server.stop()


def test_two_overlapping_runs_send_one_email(
    es: Elasticsearch, mailing: Settings, newsroom: Newsroom, smtp: RecordingSmtp, profiles: list[Profile]
) -> None:
    newsroom.publish("soleimani-moscow", "hmeimim-strikes")
    index_only(mailing, es, newsroom.feeds())
    # Started together.
    start = threading.Barrier(2)
    runs: list[AlertRun] = []

    def alert() -> None:
        start.wait()
        runs.append(run_alerts(mailing, es, profiles))

    threads = [threading.Thread(target=alert) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert smtp.count() == 1
    assert sorted(r.stories_sent for r in runs) == [0, 2] and sum(r.digests_sent for r in runs) == 1
    assert run_alerts(mailing, es, profiles).digests_sent == 0 and smtp.count() == 1


def test_a_run_that_holds_a_delivery_open_keeps_a_second_run_out(
    es: Elasticsearch, mailing: Settings, newsroom: Newsroom, smtp: RecordingSmtp, profiles: list[Profile]
) -> None:
    newsroom.publish("soleimani-moscow", "hmeimim-strikes")
    index_only(mailing, es, newsroom.feeds())
    smtp.hold = threading.Event()
    first: list[AlertRun] = []
    worker = threading.Thread(target=lambda: first.append(run_alerts(mailing, es, profiles)))
    worker.start()
    try:
        wait_until(smtp.holding.is_set, timeout=30)
        second = run_alerts(mailing, es, profiles)
        assert second.digests_sent == 0 and second.profiles_busy == ["iran-russia-assad"]
        claims = ledger_records(es, mailing.es_index)
        assert sorted(r["status"] for r in claims) == ["claimed", "claimed", "lease"]
    finally:
        smtp.hold.set()
        worker.join(timeout=60)
    assert first[0].stories_sent == 2 and smtp.count() == 1
    assert sorted(r["status"] for r in ledger_records(es, mailing.es_index)) == ["sent", "sent"]  # lease released
    assert run_alerts(mailing, es, profiles).digests_sent == 0


def test_a_dead_workers_lease_and_claims_expire_and_the_story_goes_out_once(
    es: Elasticsearch, mailing: Settings, newsroom: Newsroom, smtp: RecordingSmtp, profiles: list[Profile]
) -> None:
    [profile] = profiles
    newsroom.publish("soleimani-moscow")
    index_only(mailing, es, newsroom.feeds())
    # What a worker killed in the middle of a delivery leaves: its lease on the profile and its claim.
    now = datetime.now(UTC)
    head = newsroom.id("soleimani-moscow")
    name = index.Names(mailing.es_index).alerts
    es.index(
        index=name,
        id=f"lease:{profile.id}",
        document={"profile": profile.id, "status": "lease", "claimed_at": iso(now), "claimed_by": "dead:1"},
    )
    es.index(
        index=name,
        id=ledger.claim_id(profile.id, [DESK], head),
        document={
            "profile": profile.id,
            "cluster_id": head,
            "article_ids": [head],
            "recipients": [DESK],
            "status": "claimed",
            "claimed_at": iso(now),
            "claimed_by": "dead:1",
        },
        refresh=True,
    )
    assert run_alerts(mailing, es, profiles).profiles_busy == [profile.id]
    assert operator.list_alerts(mailing, es, profiles, status="pending")[0].status == "claimed"
    later = now + timedelta(minutes=mailing.alert_claim_minutes + 1)
    taken = run_alerts(mailing, es, profiles, now=later)
    assert (taken.digests_sent, taken.stories_sent) == (1, 1) and smtp.count() == 1
    assert run_alerts(mailing, es, profiles, now=later + timedelta(minutes=1)).digests_sent == 0
    [record] = ledger_records(es, mailing.es_index)
    assert record["status"] == "sent" and record["claimed_by"] != "dead:1"


HOSTILE_ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>عاجل</title><id>urn:hostile</id>
<updated>2026-11-24T11:20:00Z</updated>
<entry><title type="text">{title}</title><link href="{base}/hostile/1"/><id>urn:hostile:1</id>
<published>2026-11-24T11:20:00Z</published></entry></feed>"""


def test_feed_text_with_html_and_script_arrives_escaped(
    es: Elasticsearch, mailing: Settings, site: SiteServer, smtp: RecordingSmtp, profiles: list[Profile]
) -> None:
    title = '<script>alert("x")</script> <b>عاجل</b>: الطائرات الروسية تقلع من قاعدة حميميم & "تقصف" إدلب'
    outlet = '<i>المرصد</i> & "شركاه" <img src=x onerror=alert(1)>'
    story = FIXTURE["stories"]["hmeimim-strikes"]
    page = "".join(f"<p>{escape(' '.join(p.split()))}</p>" for p in story["paragraphs"])
    site.resources["/hostile/1"] = Resource(
        200,
        {"Content-Type": "text/html; charset=utf-8"},
        f'<html lang="ar"><head><meta charset="utf-8"></head><body><article>{page}</article></body></html>'.encode(),
    )
    site.resources["/hostile.xml"] = Resource(
        200,
        {"Content-Type": "application/atom+xml; charset=utf-8"},
        HOSTILE_ATOM.format(title=escape(title), base=site.base_url).encode(),
    )
    index_only(mailing, es, [FeedConfig(id="hostile", url=f"{site.base_url}/hostile.xml", outlet=outlet)])
    [hit] = es.search(index=mailing.es_index, query={"match_all": {}})["hits"]["hits"]
    assert hit["_source"]["title"] == title  # the feed's text, kept as text
    assert run_alerts(mailing, es, profiles).stories_sent == 1
    [message] = smtp.messages()
    page_html = html_of(message)
    markup = Markup(page_html)
    assert not {tag for tag, _ in markup.tags} & {"script", "b", "i", "img"}
    assert all(not any(name.startswith("on") for name in attrs) for _, attrs in markup.tags)
    shown = "".join(markup.text)
    assert title in shown and outlet in shown
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page_html
    assert f"1. {title}" in text_of(message)  # the plain-text part shows it as written


def test_without_smtp_url_the_digest_is_an_eml_file_in_the_outbox(
    es: Elasticsearch, settings: Settings, newsroom: Newsroom, profiles: list[Profile]
) -> None:
    outbox_settings = settings.with_(alert_to=(DESK, "analyst@example.org"))
    newsroom.publish("soleimani-moscow", "soleimani-moscow-dafta")
    run = cycle(outbox_settings, es, newsroom, profiles)
    assert run.digests_sent == 1
    outbox = outbox_settings.data_dir / "outbox"
    [path] = outbox.iterdir()
    assert run.messages[0]["where"] == str(path)
    from email import policy
    from email.parser import BytesParser

    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    assert [a.addr_spec for a in message["To"].addresses] == [DESK, "analyst@example.org"]
    assert message["Subject"] == f"{SUBJECT_PREFIX}خبر واحد جديد — {PROFILE_TITLE}"
    assert "نشرته أيضًا: صحيفة الضفتين" in text_of(message)
    assert [r["message_id"] for r in ledger_records(es, outbox_settings.es_index)] == [message["Message-ID"]]
    assert cycle(outbox_settings, es, newsroom, profiles).digests_sent == 0 and len(list(outbox.iterdir())) == 1


def test_the_cap_counts_the_rest_and_sends_it_next_time(
    es: Elasticsearch, mailing: Settings, newsroom: Newsroom, smtp: RecordingSmtp, profiles: list[Profile]
) -> None:
    capped = mailing.with_(alert_max_stories=1)
    newsroom.publish("soleimani-moscow", "hmeimim-strikes")
    first = cycle(capped, es, newsroom, profiles)
    assert (first.digests_sent, first.stories_sent, first.stories_pending) == (1, 1, 1)
    assert "وخبر آخر يصل في الرسالة التالية." in text_of(smtp.messages()[0])
    second = run_alerts(capped, es, profiles)
    assert (second.digests_sent, second.stories_sent, second.stories_pending) == (1, 1, 0)
    assert "الرسالة التالية" not in text_of(smtp.messages()[1])
    assert run_alerts(capped, es, profiles).digests_sent == 0
    links = [Markup(html_of(m)).links[0][0] for m in smtp.messages()]
    assert sorted(links) == sorted([newsroom.url("soleimani-moscow"), newsroom.url("hmeimim-strikes")])


def test_a_new_profile_does_not_mail_what_was_indexed_before_the_look_back(
    es: Elasticsearch, mailing: Settings, newsroom: Newsroom, smtp: RecordingSmtp, profiles: list[Profile]
) -> None:
    newsroom.publish("soleimani-moscow", "hmeimim-strikes")
    index_only(mailing, es, newsroom.feeds())
    three_days_on = datetime.now(UTC) + timedelta(hours=mailing.alert_lookback_hours, minutes=5)
    old = run_alerts(mailing, es, profiles, now=three_days_on)
    assert (old.digests_sent, old.stories_pending) == (0, 0) and smtp.count() == 0
    assert run_alerts(mailing, es, profiles).stories_sent == 2


def test_recipients_are_the_profiles_and_alert_to_and_a_newcomer_gets_only_what_others_had(
    es: Elasticsearch, mailing: Settings, newsroom: Newsroom, smtp: RecordingSmtp, tmp_path: Path
) -> None:
    seed = Path(mailing.profiles_dir) / "iran-russia-assad.yaml"
    own = tmp_path / "profiles"
    own.mkdir()
    (own / seed.name).write_text(seed.read_text("utf-8") + "\nrecipients:\n- Analyst@Example.org\n", "utf-8")
    profiles = load_profiles(own)
    newsroom.publish("soleimani-moscow", "hmeimim-strikes")
    first = cycle(mailing, es, newsroom, profiles)
    assert first.messages[0]["recipients"] == ["Analyst@Example.org", DESK]
    # Someone joins ALERT_TO (and the list is written in another case): only the newcomer is owed anything.
    wider = mailing.with_(alert_to=("DESK@example.org", "new@example.org"))
    second = run_alerts(wider, es, profiles)
    assert (second.digests_sent, second.stories_sent) == (1, 2)
    assert smtp.received[1].rcpt_tos == ("new@example.org",)
    assert run_alerts(wider, es, profiles).digests_sent == 0 and smtp.count() == 2


def test_with_no_recipient_the_stories_wait_and_the_run_says_why(
    es: Elasticsearch, mailing: Settings, newsroom: Newsroom, smtp: RecordingSmtp, profiles: list[Profile]
) -> None:
    nobody = mailing.with_(alert_to=())
    newsroom.publish("soleimani-moscow", "hmeimim-strikes")
    run = cycle(nobody, es, newsroom, profiles)
    assert (run.digests_sent, run.stories_pending) == (0, 2) and "no recipients" in run.failures[0]["reason"]
    assert ledger_records(es, nobody.es_index) == [] and smtp.count() == 0
    assert run_alerts(mailing, es, profiles).stories_sent == 2


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env, timeout=120)


def test_operators_list_sent_and_pending_alerts_and_resend_one(
    es: Elasticsearch, mailing: Settings, newsroom: Newsroom, smtp: RecordingSmtp, profiles: list[Profile]
) -> None:
    newsroom.publish("soleimani-moscow", "soleimani-moscow-dafta")
    first = cycle(mailing, es, newsroom, profiles)
    newsroom.publish("hmeimim-strikes")
    index_only(mailing, es, newsroom.feeds())  # indexed, not alerted yet: pending
    message_id = first.messages[0]["message_id"]
    env = {
        "ES_URL": str(mailing.es_url),
        "ES_INDEX": mailing.es_index,
        "DATA_DIR": str(mailing.data_dir),
        "SMTP_URL": str(mailing.smtp_url),
        "ALERT_TO": DESK,
    }
    listed = cli("alerts", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["status"] for r in rows] == ["pending", "sent"]
    pending, sent = rows
    assert sent["message_id"] == message_id and sent["recipients"] == [DESK] and sent["sent_at"]
    assert sent["url"] == newsroom.url("soleimani-moscow") and pending["url"] == newsroom.url("hmeimim-strikes")
    assert pending["recipients"] == [DESK] and pending["message_id"] is None
    only_sent = json.loads(cli("alerts", "list", "--status", "sent", "--json", env=env).stdout)
    assert [r["message_id"] for r in only_sent] == [message_id]
    human = cli("alerts", "list", "--profile", "iran-russia-assad", env=env)
    assert human.returncode == 0 and sent["title"] in human.stdout and "pending" in human.stdout

    # Resend the digest to someone else: delivered, recorded on the same ledger entry, nothing new alerted.
    again = cli("alerts", "resend", message_id, "--to", "editor@example.org", "--json", env=env)
    assert again.returncode == 0, again.stderr
    [resent] = json.loads(again.stdout)["digests"]
    assert resent["resent_of"] == [message_id] and resent["recipients"] == ["editor@example.org"]
    copy = smtp.received[-1]
    assert copy.rcpt_tos == ("editor@example.org",)
    assert copy.message["Subject"] == f"إعادة إرسال — {SUBJECT_PREFIX}خبر واحد جديد — {PROFILE_TITLE}"
    assert Markup(html_of(copy.message)).links[0][0] == sent["url"]
    [record] = [r for r in ledger_records(es, mailing.es_index) if r["status"] == "sent"]
    assert record["message_id"] == message_id and record["resent_message_ids"] == [resent["message_id"]]
    assert record["resent_to"] == ["editor@example.org"]
    # By any article of the story (or its cluster id), to the original recipients.
    by_cluster = cli("alerts", "resend", newsroom.id("soleimani-moscow-dafta"), env=env)
    assert by_cluster.returncode == 0, by_cluster.stderr
    assert smtp.received[-1].rcpt_tos == (DESK,)
    assert smtp.count() == 3
    # The next run sends only the story that was pending.
    last = run_alerts(mailing, es, profiles)
    assert last.stories_sent == 1 and Markup(html_of(smtp.messages()[-1])).links[0][0] == pending["url"]
    assert json.loads(cli("alerts", "list", "--status", "pending", "--json", env=env).stdout) == []

    # Errors: nothing by that key (exit 1, one line); a bad option value (exit 2).
    missing = cli("alerts", "resend", "<nothing@example.org>", env=env)
    assert (
        missing.returncode == 1 and "no sent alert" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    )
    assert cli("alerts", "list", "--status", "lost", env=env).returncode == 2
    assert cli("alerts", "resend", message_id, "--to", "not-an-address", env=env).returncode == 2


def test_a_refused_address_keeps_its_stories_while_the_others_are_served(
    es: Elasticsearch, mailing: Settings, newsroom: Newsroom, smtp: RecordingSmtp, profiles: list[Profile]
) -> None:
    both = mailing.with_(alert_to=(DESK, "away@example.org"))
    smtp.unknown = {"away@example.org"}
    newsroom.publish("soleimani-moscow", "hmeimim-strikes")
    first = cycle(both, es, newsroom, profiles)
    assert (first.digests_sent, first.stories_sent) == (1, 2) and "away@example.org: 550" in first.failures[0]["reason"]
    assert smtp.received[0].rcpt_tos == (DESK,)
    assert {tuple(r["recipients"]) for r in ledger_records(es, both.es_index)} == {(DESK,)}  # only who got it
    still = run_alerts(both, es, profiles)  # owed to the refused address alone, refused again
    assert (still.digests_sent, still.stories_pending) == (0, 2) and "refused every recipient" in still.failures[0][
        "reason"
    ]
    smtp.unknown = set()
    back = run_alerts(both, es, profiles)
    assert (back.digests_sent, back.stories_sent) == (1, 2) and smtp.received[-1].rcpt_tos == ("away@example.org",)
    assert run_alerts(both, es, profiles).digests_sent == 0 and smtp.count() == 2
