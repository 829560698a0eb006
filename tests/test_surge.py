"""Surge alerts against the embedded server and a real SMTP server: tagged articles planted with
``bulk_write`` over a quiet week, then a burst in the last hour — one email naming the stories and outlets,
none on the next run, none for a flat week, none again while the surge goes on, and the mail server
down once on the way."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch
from factories import make_article
from smtp_server import RecordingSmtp
from test_alerts import DESK, text_of

from pipeline.alerts.run import run_alerts
from pipeline.alerts.surge import measure, measure_all, run_surges, surge_id
from pipeline.errors import ConfigError
from pipeline.records import Article
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.store.es import bulk_write
from pipeline.topics.profiles import Profile, SurgeRule, load_profile, load_profiles

OUTLETS = ["الشام الجديد", "بوابة النيل", "صحيفة الواحة", "المنارة المغاربية"]


@pytest.fixture
def profile(settings: Settings) -> Profile:
    [seed] = load_profiles(settings.profiles_dir)
    return seed


@pytest.fixture
def mailing(settings: Settings, smtp: RecordingSmtp) -> Settings:
    return settings.with_(smtp_url=smtp.url, alert_to=(DESK,))


def planted(profile: Profile, n: int, when: datetime, *, story: str, outlet: str, title: str = "") -> Article:
    """An article the profile tagged (under its alert threshold: no digest, only the surge is tested)."""
    return make_article(
        f"https://example.org/{story}/{n}",
        feed_id=f"feed-{OUTLETS.index(outlet)}",
        outlet=outlet,
        title=title or f"خبر {story} رقم {n}",
        body="نص الخبر",
        published_at=when,
        content_hash=f"{story}-{n}",
        cluster_id=f"{story}",
        topics=(profile.id,),
        topic_matches=({"profile": profile.id, "score": profile.tag_threshold, "terms": []},),
    )


def plant(es: Elasticsearch, alias: str, articles: list[Article]) -> None:
    index.ensure_indices(es, alias)
    result = bulk_write(es, index.article_actions(alias, articles))
    assert not result.failed
    es.indices.refresh(index=alias)


def quiet_week(profile: Profile, now: datetime) -> list[Article]:
    """One article at this hour three days ago, and a few at other hours: a baseline of 1/7."""
    week = [planted(profile, 0, now - timedelta(days=3, minutes=20), story="old-a", outlet=OUTLETS[0])]
    week += [
        planted(profile, d, now - timedelta(days=d, hours=6), story=f"old-{d}", outlet=OUTLETS[1]) for d in range(1, 7)
    ]
    return week


def burst(profile: Profile, now: datetime, *, count: int = 9, start: int = 0) -> list[Article]:
    """``count`` articles within the hour before ``now``: three stories, the first carried by every outlet."""
    stories = [
        ("strikes", "غارات روسية مكثفة على ريف إدلب"),
        ("summit", "قمة طارئة في طهران"),
        ("ships", "سفن روسية في طرطوس"),
    ]
    articles = []
    for n in range(start, start + count):
        story, title = stories[0] if n % 2 == 0 else stories[1 + n % 2]
        articles.append(
            planted(
                profile,
                n,
                now - timedelta(minutes=55 - 5 * (n - start)),
                story=story,
                outlet=OUTLETS[n % 4],
                title=title,
            )
        )
    return articles


def surge_records(es: Elasticsearch, alias: str) -> list[dict[str, object]]:
    name = index.Names(alias).alerts
    es.indices.refresh(index=name)
    hits = es.search(index=name, query={"term": {"kind": "surge"}}, size=100, sort=[{"window_end": "asc"}])
    return [{"_id": h["_id"], **h["_source"]} for h in hits["hits"]["hits"]]


def test_a_planted_burst_sends_one_surge_email_and_a_second_run_none(
    es: Elasticsearch, mailing: Settings, smtp: RecordingSmtp, profile: Profile
) -> None:
    now = datetime.now(UTC)
    plant(es, mailing.es_index, quiet_week(profile, now) + burst(profile, now))
    hourly = measure(es, mailing.es_index, profile, now=now)
    assert hourly.articles == 9 and hourly.previous == (0, 0, 1, 0, 0, 0, 0) and hourly.surging(profile)
    # The mail server is down at first: nothing is sent, nothing is recorded as sent, the next run tries again.
    down = run_surges(mailing.with_(smtp_url="smtp://127.0.0.1:9"), es, [profile], now=now)
    assert down.sent == 0 and "could not be reached" in down.failures[0]["reason"]
    assert surge_records(es, mailing.es_index) == []
    first = run_surges(mailing, es, [profile], now=now)
    assert first.sent == 1 and smtp.count() == 1
    [received] = smtp.received
    message = received.message
    assert received.rcpt_tos == (DESK,) and message["X-Alert-Kind"] == "surge"
    assert message["Subject"] == f"ارتفاع مفاجئ في التغطية: 9 مقالات في ساعة — {profile.title}"
    text = text_of(message)
    assert "9 مقالات في الساعة الأخيرة، مقابل 0.1 في المتوسط" in text
    # The stories behind it, most articles first, with every outlet that carried them; then the outlets.
    lines = text.splitlines()
    assert lines[lines.index("أبرز الأخبار:") + 1] == "1. غارات روسية مكثفة على ريف إدلب"
    assert "نشرته أيضًا: " in text and all(outlet in text for outlet in OUTLETS)
    assert "- الشام الجديد: 3 مقالات" in text
    html = message.get_body(("html",))
    assert html is not None and '<html dir="rtl" lang="ar">' in str(html.get_content())
    [record] = surge_records(es, mailing.es_index)
    assert record["status"] == "sent" and record["message_id"] == message["Message-ID"]
    assert record["_id"] == surge_id(profile.id, now) and record["articles"] == 9
    # Again, as part of the whole alert run: no digest (the articles are under the alert threshold), no surge.
    again = run_alerts(mailing, es, [profile], now=now + timedelta(minutes=10))
    assert (again.digests_sent, again.surges_sent) == (0, 0) and smtp.count() == 1


def test_a_flat_week_or_a_small_hour_sends_no_surge(
    es: Elasticsearch, mailing: Settings, smtp: RecordingSmtp, profile: Profile
) -> None:
    now = datetime.now(UTC)
    # Two articles in every hour of the week, two in the last one: coverage as usual.
    flat = [
        planted(profile, h, now - timedelta(hours=h, minutes=30), story=f"flat-{h}", outlet=OUTLETS[h % 4])
        for h in range(0, 24 * 7 + 1)
    ]
    flat += [
        planted(profile, 1000 + h, now - timedelta(hours=h, minutes=10), story=f"flat-{h}", outlet=OUTLETS[0])
        for h in range(0, 24 * 7 + 1)
    ]
    plant(es, mailing.es_index, flat)
    hourly = measure(es, mailing.es_index, profile, now=now)
    assert hourly.articles == 2 and hourly.previous == (2,) * 7 and not hourly.surging(profile)
    assert run_surges(mailing, es, [profile], now=now).sent == 0
    # A quiet profile's three articles in an hour: an infinite ratio, but under min_articles (5).
    quiet = replace(profile, id="quiet-profile")
    few = [replace(a, topics=(quiet.id,)) for a in burst(profile, now, count=3)]
    plant(es, mailing.es_index, few)
    assert not measure(es, mailing.es_index, quiet, now=now).surging(quiet)
    assert run_surges(mailing, es, [quiet], now=now).sent == 0 and smtp.count() == 0
    # Both profiles measured in one search, each on its own articles.
    both = measure_all(es, mailing.es_index, [profile, quiet], now=now)
    assert (both[profile.id].articles, both[quiet.id].articles, both[quiet.id].previous) == (2, 3, (0,) * 7)


def test_a_surge_that_goes_on_is_mailed_once_and_a_new_one_after_a_quiet_hour_again(
    es: Elasticsearch, mailing: Settings, smtp: RecordingSmtp, profile: Profile
) -> None:
    start = datetime.now(UTC)
    plant(es, mailing.es_index, quiet_week(profile, start) + burst(profile, start))
    assert run_surges(mailing, es, [profile], now=start).sent == 1
    # The next hour is as busy: recorded as the same surge going on, not mailed.
    later = start + timedelta(hours=1)
    plant(es, mailing.es_index, burst(profile, later, start=100))
    going_on = run_surges(mailing, es, [profile], now=later)
    assert (going_on.sent, going_on.continued) == (0, 1) and smtp.count() == 1
    # An hour with nothing, then a new burst: a new surge, a new email.
    again = start + timedelta(hours=3)
    assert run_surges(mailing, es, [profile], now=start + timedelta(hours=2)).surges == []
    plant(es, mailing.es_index, burst(profile, again, start=200))
    assert run_surges(mailing, es, [profile], now=again).sent == 1 and smtp.count() == 2
    assert [r["status"] for r in surge_records(es, mailing.es_index)] == ["sent", "continued", "sent"]


def test_surge_thresholds_come_from_the_profile_with_defaults(
    es: Elasticsearch, mailing: Settings, smtp: RecordingSmtp, profile: Profile, tmp_path: Path
) -> None:
    assert profile.surge == SurgeRule(enabled=True, ratio=3.0, min_articles=5)  # the seed has no surge: defaults
    seed = yaml.safe_load(Path(profile.source).read_text(encoding="utf-8"))
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump({**seed, "surge": {"min_articles": 20}}, allow_unicode=True), encoding="utf-8")
    demanding = load_profile(strict)
    assert demanding.surge == SurgeRule(enabled=True, ratio=3.0, min_articles=20)
    now = datetime.now(UTC)
    plant(es, mailing.es_index, quiet_week(profile, now) + burst(profile, now))
    assert run_surges(mailing, es, [demanding], now=now).sent == 0
    off = replace(profile, surge=SurgeRule(enabled=False))
    assert run_surges(mailing, es, [off], now=now).sent == 0 and smtp.count() == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**seed, "surge": {"ratio": 0.5}}, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: surge.ratio"):
        load_profile(bad)


def test_two_runs_at_once_send_one_surge_email(
    es: Elasticsearch, mailing: Settings, smtp: RecordingSmtp, profile: Profile
) -> None:
    now = datetime.now(UTC)
    plant(es, mailing.es_index, quiet_week(profile, now) + burst(profile, now))
    start = threading.Barrier(2)
    sent: list[int] = []

    def surge() -> None:
        start.wait()
        sent.append(run_surges(mailing, es, [profile], now=now).sent)

    threads = [threading.Thread(target=surge) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(sent) == [0, 1] and smtp.count() == 1
