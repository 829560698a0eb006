"""Feed health (issue #16): states, the adaptive schedule and the operators' alerts — the pure rules first,
then full cycles against feeds on a loopback site, the embedded index and a real SMTP server."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from conftest import wait_until
from elasticsearch import Elasticsearch
from hypothesis import given
from hypothesis import strategies as st
from smtp_server import RecordingSmtp

from pipeline.alerts.incidents import run_incidents
from pipeline.demo.server import SiteServer
from pipeline.demo.site import CORPUS_CLOCK, STALE_FEED, Resource, build_site, demo_feeds, expectations
from pipeline.ingest import health
from pipeline.ingest.feeds import load_feeds, read_feed
from pipeline.ingest.fetch import Fetcher
from pipeline.ingest.poll import poll_feed, read_hints
from pipeline.records import FeedConfig, FeedState, iso, parse_iso
from pipeline.run import run_cycle
from pipeline.settings import PROJECT_ROOT, Settings
from pipeline.store import index

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POLICY = health.Policy()
OPS = "ops@example.org"


def every(gap: timedelta, n: int = 10, *, newest: datetime = NOW) -> list[datetime]:
    return [newest - gap * k for k in range(n)]


# --- the rules ----------------------------------------------------------------------------------


def test_cadence_is_the_median_gap_between_distinct_item_dates() -> None:
    dates = [NOW, NOW, NOW - timedelta(hours=1), NOW - timedelta(hours=2), NOW - timedelta(hours=30)]
    assert health.cadence(dates) == timedelta(hours=1)  # the repeated stamp counts once; the outlier is outvoted
    assert health.cadence([NOW]) is None and health.cadence([]) is None


def test_a_feed_is_stale_once_its_newest_item_is_five_gaps_and_a_day_old() -> None:
    hourly, weekly = timedelta(hours=1), timedelta(days=7)
    assert not health.is_stale(NOW - timedelta(hours=23), hourly, now=NOW)  # five gaps, but not a day
    assert health.is_stale(NOW - timedelta(hours=25), hourly, now=NOW)
    assert not health.is_stale(NOW - timedelta(days=20), weekly, now=NOW)  # a weekly column, three weeks on
    assert health.is_stale(NOW - timedelta(days=36), weekly, now=NOW)
    assert not health.is_stale(None, hourly, now=NOW)  # no dated item: nothing to judge by
    assert health.is_stale(NOW - timedelta(days=6), None, now=NOW)  # one dated item: a day's gap assumed


def test_the_interval_follows_the_publishing_cadence_within_the_bounds() -> None:
    feed = FeedConfig(id="f", url="https://example.org/rss", outlet="o")
    schedule = {
        label: health.normal_minutes(feed, health.cadence(every(gap)), health.Hints(), POLICY)
        for label, gap in [
            ("5 min", timedelta(minutes=5)),
            ("hourly", timedelta(hours=1)),
            ("daily", timedelta(days=1)),
        ]
    }
    assert schedule == {"5 min": 5.0, "hourly": 30.0, "daily": 360.0}
    assert health.normal_minutes(feed, None, health.Hints(), POLICY) == health.DEFAULT_MINUTES
    # Floors: the feed list's poll_minutes, the feed's <ttl>, the server's max-age; then the ceiling.
    five = timedelta(minutes=5)
    assert health.normal_minutes(replace(feed, poll_minutes=20), five, health.Hints(), POLICY) == 20
    assert health.normal_minutes(feed, five, health.Hints(ttl_minutes=45), POLICY) == 45
    assert health.normal_minutes(feed, five, health.Hints(max_age_seconds=1800), POLICY) == 30
    assert health.normal_minutes(feed, five, health.Hints(ttl_minutes=10_000), POLICY) == 360


def test_backoff_doubles_with_each_failure_less_a_fixed_jitter_up_to_the_ceiling() -> None:
    sequence = [health.backoff_minutes(15, n, feed_id="f", policy=POLICY) for n in range(1, 9)]
    nominal = [15, 30, 60, 120, 240, 360, 360, 360]
    for got, full in zip(sequence, nominal, strict=True):
        assert full * (1 - health.JITTER) <= got <= full
    assert sequence == [health.backoff_minutes(15, n, feed_id="f", policy=POLICY) for n in range(1, 9)]
    others = [health.backoff_minutes(15, n, feed_id="g", policy=POLICY) for n in range(1, 9)]
    assert others != sequence  # feeds that failed together do not come back together


@given(
    base=st.floats(min_value=0, max_value=10_000),
    failures=st.integers(min_value=1, max_value=10_000),
    feed_id=st.text(max_size=20),
)
def test_backoff_never_leaves_the_bounds(base: float, failures: int, feed_id: str) -> None:
    minutes = health.backoff_minutes(base, failures, feed_id=feed_id, policy=POLICY)
    assert POLICY.min_minutes <= minutes <= POLICY.max_minutes


def test_skip_hours_push_the_next_poll_to_the_first_hour_not_skipped() -> None:
    at_two = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    assert health.after_skip_hours(at_two, [1, 2, 3]) == datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
    assert health.after_skip_hours(at_two, [22, 23]) == at_two
    assert health.after_skip_hours(at_two, range(24)) == at_two  # a feed cannot ask never to be read


def test_hints_come_from_cache_control_and_the_channel_not_from_an_item() -> None:
    feed = (
        b"<rss><channel><title>t</title><ttl>90</ttl><skipHours><hour>0</hour><hour>5</hour></skipHours>"
        b"<item><title>x</title><ttl>1</ttl><skipHours><hour>12</hour></skipHours></item></channel></rss>"
    )
    hints = read_hints({"cache-control": "public, max-age=600"}, feed)
    assert hints == health.Hints(max_age_seconds=600, ttl_minutes=90, skip_hours=(0, 5), read=True)
    assert read_hints({"cache-control": "no-cache, max-age=600"}, None).max_age_seconds is None


def assessed(before: FeedState, after: FeedState, outcome: str, dates: Sequence[datetime] = ()) -> FeedState:
    feed = FeedConfig(id=before.feed_id, url=before.url, outlet="o")
    return health.assess(
        feed, before, after, outcome=outcome, item_dates=dates, hints=health.Hints(), now=NOW, policy=POLICY
    )


def test_failures_turn_blocked_on_refusals_and_dead_after_the_dead_days() -> None:
    before = FeedState(feed_id="f", url="https://example.org/rss", state="ok", last_success=iso(NOW))
    refused = assessed(before, replace(before, consecutive_failures=1, last_status=403), "failed")
    assert refused.state == "blocked" and refused.failing_since == iso(NOW)
    long_ago = NOW - timedelta(days=POLICY.dead_days, minutes=1)
    failing = replace(before, state="failing", consecutive_failures=40, failing_since=iso(long_ago))
    dead = assessed(failing, replace(failing, consecutive_failures=41, last_status=500), "failed")
    assert dead.state == "dead" and dead.failing_since == iso(long_ago) and dead.state_since == iso(NOW)
    back = assessed(dead, replace(dead, consecutive_failures=0, last_status=200), "ok", every(timedelta(hours=1)))
    assert back.state == "ok" and back.failing_since is None and back.interval_minutes == 30


# --- full cycles on loopback ------------------------------------------------------------------


PAGE = (
    '<html lang="ar"><head><meta charset="utf-8"></head><body><article><p>{n}: '
    "قالت مصادر في دمشق إن فرق الإغاثة واصلت عملها طوال الليل في الأحياء التي غمرتها مياه الأمطار الغزيرة، "
    "وأضافت أن الدفاع المدني أجلى عشرات العائلات من المنازل القريبة من مجرى النهر بعد ارتفاع منسوب المياه، "
    "ودعت السلطات المحلية السكان إلى تجنب التنقل غير الضروري حتى تتحسن الأحوال الجوية خلال الأيام المقبلة."
    "</p></article></body></html>"
)


def publish(site: SiteServer, path: str, dates: Sequence[datetime], *, status: int = 200) -> None:
    """An RSS feed at ``path`` with one item per date (each with its page), or an error status."""
    if status != 200:
        site.resources[path] = Resource(status, {"Content-Type": "text/html"}, b"<html>no</html>")
        return
    items = "".join(
        f"<item><title>خبر {d:%Y%m%d%H%M}</title><link>{site.base_url}/story/{d:%Y%m%d%H%M}</link>"
        f"<pubDate>{format_datetime(d)}</pubDate></item>"
        for d in dates
    )
    body = f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'
    site.resources[path] = Resource(200, {"Content-Type": "application/rss+xml; charset=utf-8"}, body.encode())
    for d in dates:
        site.resources[f"/story/{d:%Y%m%d%H%M}"] = Resource(
            200, {"Content-Type": "text/html; charset=utf-8"}, PAGE.format(n=f"{d:%Y%m%d%H%M}").encode()
        )


@pytest.fixture
def ops(settings: Settings, smtp: RecordingSmtp) -> Settings:
    return settings.with_(ops_alert_to=(OPS,), smtp_url=smtp.url, alert_from="news@example.org")


def state_of(es: Elasticsearch, settings: Settings, feed_id: str) -> FeedState:
    return index.load_feed_states(es, settings.es_index, [feed_id])[feed_id]


def subjects(smtp: RecordingSmtp) -> list[str]:
    return [str(m["Subject"]) for m in smtp.messages()]


def test_a_feed_that_fails_then_recovers_backs_off_alerts_once_and_once_more_when_back(
    site: SiteServer, es: Elasticsearch, ops: Settings, smtp: RecordingSmtp
) -> None:
    feed = FeedConfig(id="flaky", url=f"{site.base_url}/flaky.xml", outlet="متقلب")
    now = datetime.now(UTC)
    publish(site, "/flaky.xml", every(timedelta(hours=1), 6, newest=now - timedelta(minutes=10)))
    run_cycle(ops, es, [feed])
    healthy = state_of(es, ops, "flaky")
    assert (healthy.state, healthy.cadence_minutes, healthy.interval_minutes) == ("ok", 60.0, 30.0)

    publish(site, "/flaky.xml", [], status=500)
    intervals = []
    for n in range(1, 5):
        summary = run_cycle(ops, es, [feed])
        state = state_of(es, ops, "flaky")
        assert state.state == "failing" and state.consecutive_failures == n
        # The backoff is in the schedule every worker reads: next poll = this attempt + the interval.
        gap = parse_iso(state.next_poll_at or "") - parse_iso(state.last_attempt or "")
        assert abs(gap.total_seconds() / 60 - (state.interval_minutes or 0)) < 0.1
        intervals.append(state.interval_minutes or 0)
        # One email, when the third failure in a row makes it an incident; none for the fourth.
        assert smtp.count() == (1 if n >= 3 else 0), summary.ops_alerts_sent
    for n, minutes in enumerate(intervals):
        assert 30 * 2**n * (1 - health.JITTER) <= minutes <= 30 * 2**n
    [incident] = smtp.messages()
    assert incident["To"] == OPS and str(incident["Subject"]).startswith("[feed health] flaky is failing (3 failed")
    assert "HTTP 500" in incident.get_content() and "feeds check flaky" in incident.get_content()

    publish(site, "/flaky.xml", every(timedelta(hours=1), 6, newest=datetime.now(UTC)))
    run_cycle(ops, es, [feed])
    back = state_of(es, ops, "flaky")
    assert (back.state, back.consecutive_failures, back.interval_minutes, back.failing_since) == ("ok", 0, 30.0, None)
    assert subjects(smtp)[1] == "[feed health] flaky recovered: ok again"
    run_cycle(ops, es, [feed])
    assert smtp.count() == 2  # nothing more while it stays well


def test_a_feed_answering_200_with_old_items_is_stale_and_alerted_once(
    site: SiteServer, es: Elasticsearch, ops: Settings, smtp: RecordingSmtp
) -> None:
    feed = FeedConfig(id="frozen", url=f"{site.base_url}/frozen.xml", outlet="متجمد")
    publish(site, "/frozen.xml", every(timedelta(days=1), 5, newest=datetime.now(UTC) - timedelta(days=9)))
    first = run_cycle(ops, es, [feed])
    assert first.feeds_ok == 1 and first.feed_states == {"stale": 1}
    assert (first.state_changes[0].previous, first.state_changes[0].state) == ("never_polled", "stale")
    state = state_of(es, ops, "frozen")
    assert state.state == "stale" and state.cadence_minutes == 1440
    [message] = smtp.messages()
    assert str(message["Subject"]).startswith("[feed health] frozen is stale (newest item")
    assert "usually publishes every 24.0 h" in message.get_content()
    for _ in range(2):  # answered again: 304, then the same bytes — still stale, no new email
        again = run_cycle(ops, es, [feed])
        assert again.feed_states == {"stale": 1} and smtp.count() == 1
    publish(site, "/frozen.xml", every(timedelta(days=1), 5, newest=datetime.now(UTC)))
    assert run_cycle(ops, es, [feed]).feed_states == {"ok": 1}
    assert subjects(smtp)[1] == "[feed health] frozen recovered: ok again"


def test_a_permanently_redirected_feed_is_moved_until_the_list_names_its_new_url(
    site: SiteServer, es: Elasticsearch, ops: Settings, smtp: RecordingSmtp
) -> None:
    site.resources["/old.xml"] = Resource(301, {"Location": "/new.xml"}, b"")
    publish(site, "/new.xml", every(timedelta(hours=2), 5, newest=datetime.now(UTC)))
    old = FeedConfig(id="m", url=f"{site.base_url}/old.xml", outlet="م")
    summary = run_cycle(ops, es, [old])
    assert summary.feed_states == {"moved": 1} and summary.indexed == 5
    assert state_of(es, ops, "m").moved_to == f"{site.base_url}/new.xml"
    run_cycle(ops, es, [old])
    [moved] = smtp.messages()
    assert f"put {site.base_url}/new.xml in the feed list" in moved.get_content()
    # The operator updates the feed list: the feed starts afresh at its new address, and is ok.
    assert run_cycle(ops, es, [replace(old, url=f"{site.base_url}/new.xml")]).feed_states == {"ok": 1}
    assert subjects(smtp) == [str(moved["Subject"]), "[feed health] m recovered: ok again"]


def test_a_feed_refused_with_403_is_blocked_after_the_alert_threshold(
    site: SiteServer, es: Elasticsearch, ops: Settings, smtp: RecordingSmtp
) -> None:
    publish(site, "/walled.xml", [], status=403)
    feed = FeedConfig(id="walled", url=f"{site.base_url}/walled.xml", outlet="محجوب")
    two = ops.with_(feed_alert_after_failures=2)
    assert run_cycle(two, es, [feed]).feed_states == {"blocked": 1} and smtp.count() == 0
    run_cycle(two, es, [feed])
    [message] = smtp.messages()
    assert str(message["Subject"]) == "[feed health] walled is blocked (2 failed polls in a row)"
    assert "HTTP 403" in message.get_content()


def test_only_due_feeds_are_polled_unless_all_are_asked_for(
    site: SiteServer, es: Elasticsearch, settings: Settings
) -> None:
    publish(site, "/a.xml", every(timedelta(hours=1), 5, newest=datetime.now(UTC)))
    feed = FeedConfig(id="a", url=f"{site.base_url}/a.xml", outlet="أ")
    assert run_cycle(settings, es, [feed], due_only=True).feeds_ok == 1
    later = run_cycle(settings, es, [feed], due_only=True)
    assert later.feeds_deferred == 1 and site.count("/a.xml") == 1  # next poll in 30 minutes
    assert run_cycle(settings, es, [feed]).feeds_not_modified == 1 and site.count("/a.xml") == 2


def test_a_fallback_url_serves_the_feed_while_its_url_fails(
    site: SiteServer, es: Elasticsearch, settings: Settings
) -> None:
    publish(site, "/gone.xml", [], status=404)
    publish(site, "/web/rss", every(timedelta(hours=1), 3, newest=datetime.now(UTC)))
    feed = FeedConfig(id="fb", url=f"{site.base_url}/gone.xml", outlet="ب", fallback_urls=(f"{site.base_url}/web/rss",))
    summary = run_cycle(settings, es, [feed])
    assert summary.feeds_ok == 1 and summary.indexed == 3
    state = state_of(es, settings, "fb")
    assert state.state == "ok" and state.served_by == f"{site.base_url}/web/rss"
    assert state.last_error and "HTTP 404" in state.last_error


def test_two_overlapping_runs_send_one_operator_email(
    site: SiteServer, es: Elasticsearch, ops: Settings, smtp: RecordingSmtp
) -> None:
    publish(site, "/down.xml", [], status=500)
    feed = FeedConfig(id="down", url=f"{site.base_url}/down.xml", outlet="معطل")
    quiet = ops.with_(ops_alert_to=())  # polls that tell nobody: the two runs below do the telling
    for _ in range(3):
        run_cycle(quiet, es, [feed])
    smtp.hold = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(run_incidents, ops, es, [feed])
        wait_until(smtp.holding.is_set, timeout=30)  # the first run is inside its delivery
        second = run_incidents(ops, es, [feed])
        smtp.hold.set()
        done = first.result(timeout=60)
    assert (done.incidents_sent, second.incidents_sent, second.pending) == (1, 0, 0)
    assert smtp.count() == 1
    assert run_incidents(ops, es, [feed]).incidents_sent == 0 and smtp.count() == 1  # and a third, later


def test_an_incident_waits_out_a_mail_server_that_is_down_and_goes_once_it_is_back(
    site: SiteServer, es: Elasticsearch, ops: Settings, smtp: RecordingSmtp
) -> None:
    publish(site, "/down.xml", [], status=500)
    feed = FeedConfig(id="down", url=f"{site.base_url}/down.xml", outlet="معطل")
    one = ops.with_(feed_alert_after_failures=1)
    smtp.stop()
    summary = run_cycle(one, es, [feed])
    assert (summary.ops_alerts_sent, summary.ops_alerts_pending) == (0, 1)
    assert "could not be reached" in summary.ops_alert_failures[0]["reason"]
    smtp.start()
    assert run_incidents(one, es, [feed]).incidents_sent == 1
    assert run_incidents(one, es, [feed]).incidents_sent == 0 and smtp.count() == 1


def test_no_operator_email_without_ops_alert_to_and_never_in_the_analysts_digest(
    site: SiteServer, es: Elasticsearch, settings: Settings, smtp: RecordingSmtp
) -> None:
    publish(site, "/down.xml", [], status=500)
    feed = FeedConfig(id="down", url=f"{site.base_url}/down.xml", outlet="معطل")
    analysts = settings.with_(smtp_url=smtp.url, alert_to=("desk@example.org",), feed_alert_after_failures=1)
    summary = run_cycle(analysts, es, [feed])
    assert summary.ops_alerts_sent is None and smtp.count() == 0
    assert run_incidents(analysts, es, [feed]).feed_states == {"failing": 1}


def test_a_dead_feed_is_reported_as_dead_once_more(
    site: SiteServer, es: Elasticsearch, ops: Settings, smtp: RecordingSmtp
) -> None:
    publish(site, "/down.xml", [], status=500)
    feed = FeedConfig(id="down", url=f"{site.base_url}/down.xml", outlet="معطل")
    for _ in range(3):
        run_cycle(ops, es, [feed])
    # Its failures began longer ago than FEED_DEAD_DAYS (the record says so; nobody waits a week here).
    state = state_of(es, ops, "down")
    weeks_ago = iso(datetime.now(UTC) - timedelta(days=8))
    es.index(index=f"{ops.es_index}-feeds", id="down", document=replace(state, failing_since=weeks_ago).to_doc())
    run_cycle(ops, es, [feed])
    assert state_of(es, ops, "down").state == "dead"
    assert [s.split(" is ")[1].split(" (")[0] for s in subjects(smtp)] == ["failing", "dead"]
    run_cycle(ops, es, [feed])
    assert smtp.count() == 2


# --- the demo's feeds -----------------------------------------------------------------------------


def test_the_demo_site_built_now_has_fresh_feeds_one_stale_feed_and_stable_expectations() -> None:
    now = datetime.now(UTC)
    base = "http://127.0.0.1:8123"
    site = build_site(base, now=now)
    states = {}
    for spec in demo_feeds(base, failing=False, stale=True):
        feed = FeedConfig(**spec)
        resource = site[feed.url.removeprefix(base)]
        dates = [i.published_at for i in read_feed(resource.body, resource.headers, feed=feed, fetched_at=now).items]
        known = [d for d in dates if d is not None]
        states[feed.id] = health.is_stale(max(known), health.cadence(known), now=now)
    assert {k for k, stale in states.items() if stale} == {STALE_FEED[0]}
    # Without a clock the site and its expectations are the corpus's own, as every other test knows them.
    assert expectations() == expectations(now=CORPUS_CLOCK)
    moved = {e.path: e.published_at for e in expectations(now=CORPUS_CLOCK + timedelta(days=2))}
    for e in expectations():
        if e.published_at:
            assert parse_iso(moved[e.path] or "") - parse_iso(e.published_at) == timedelta(days=2)


def test_poll_feed_assesses_health_on_every_poll(site: SiteServer, settings: Settings) -> None:
    publish(site, "/p.xml", every(timedelta(minutes=10), 8, newest=datetime.now(UTC)))
    feed = FeedConfig(id="p", url=f"{site.base_url}/p.xml", outlet="ب", poll_minutes=15)
    with Fetcher(settings) as fetcher:
        first = poll_feed(fetcher, feed, None, now=datetime.now(UTC))
        again = poll_feed(fetcher, feed, first.state, now=datetime.now(UTC))
    assert first.state.state == "ok" and first.state.cadence_minutes == 10
    assert first.state.interval_minutes == 15  # half the cadence is 5 min; the feed list's floor wins
    assert again.outcome == "not_modified" and again.state.state == "ok" and again.state.cadence_minutes == 10


def test_the_seed_list_fixes_what_public_evidence_fixes_and_marks_the_rest_unverified() -> None:
    feeds = {f.id: f for f in load_feeds(PROJECT_ROOT / "seeds" / "feeds.yaml")}
    assert len(feeds) == 32
    no_evidence = {"almayadeen", "alkhaleej", "alriyadh", "kuna", "alakhbar", "ahram", "shorouk", "assabah"}
    assert {i for i, f in feeds.items() if not f.verified} == no_evidence | {"independentarabia", "albayan"}
    sky = feeds["skynewsarabia"]
    assert sky.url == "https://www.skynewsarabia.com/rss.xml"
    assert sky.fallback_urls == ("https://www.skynewsarabia.com/web/rss",)
    assert feeds["alarabiya"].url == "https://www.alarabiya.net/.mrss/ar.xml"


def test_a_record_from_before_feed_health_reads_the_whole_feed_once_to_learn_its_dates(
    site: SiteServer, settings: Settings
) -> None:
    publish(site, "/old.xml", every(timedelta(days=1), 4, newest=datetime.now(UTC) - timedelta(days=30)))
    feed = FeedConfig(id="old", url=f"{site.base_url}/old.xml", outlet="ق")
    with Fetcher(settings) as fetcher:
        first = poll_feed(fetcher, feed, None, now=datetime.now(UTC))
        # What an earlier version kept: validators and the body's hash, no state, no dates.
        legacy = FeedState(
            feed_id="old", url=feed.url, etag=first.state.etag, body_hash=first.state.body_hash, last_success=iso(NOW)
        )
        again = poll_feed(fetcher, feed, legacy, now=datetime.now(UTC))
        after = poll_feed(fetcher, feed, again.state, now=datetime.now(UTC))
    assert site.conditional_hits["/old.xml"] == 1  # only the last poll was conditional
    assert again.outcome == "ok" and again.state.state == "stale" and again.state.cadence_minutes == 1440
    assert after.outcome == "not_modified" and after.state.state == "stale"
