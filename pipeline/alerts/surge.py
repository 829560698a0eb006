"""Surges: when a profile's coverage jumps — the "breaking news" signal a per-story digest cannot give.

Measure
    The profile's articles (``topics``) *published* in the last hour, against the same hour of each of
    the previous 7 days: a ``date_histogram`` of one-hour buckets shifted (``offset``) so that one ends
    exactly now, over 7 days and an hour, with the stories (``terms`` on ``cluster_id``, each with its
    earliest article) and the outlets of the last hour — for every profile in one search (a
    ``filters`` bucket per profile), which costs one pass over the index on the embedded server (3.5 s
    at 100,000 articles).
    Publication time, not indexing time: a backlog of old articles indexed at once is not news.

Rule
    A surge is a last hour with at least ``min_articles`` articles and at least ``ratio`` times the
    baseline (the mean of the 7 same hours); both in the profile's ``surge:`` (defaults 5 and 3).
    ``min_articles`` keeps a quiet week from turning 2 articles into an infinite ratio.

Exactly once
    One email per profile and surge, with the ledger's guarantees: the run takes the profile's lease,
    then *claims* the surge's hour in the ledger with ``create`` (``surge:<profile>:<YYYYMMDDTHH>``,
    ``kind: surge``): a 409 means another run has it. The claim is marked ``sent`` once the mail server
    accepted the message, and deleted if it did not (the next run, still in the surge, tries again); a
    dead worker's claim expires after ``ALERT_CLAIM_MINUTES`` like a story's. A surge that goes on into
    the next hour is recorded for that hour as ``continued``, without an email: a new email needs an
    hour with no surge in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import ConflictError, Elasticsearch

from pipeline import log
from pipeline.alerts import mailer
from pipeline.alerts.digest import SurgeReport, SurgeStory, build_surge_message
from pipeline.alerts.ledger import (
    CLAIMED,
    DEFAULT_SENDER,
    SENT,
    claim_ttl,
    delete_claims,
    drop_stale_claims,
    ensure_ledger,
    new_message_id,
    new_owner,
    refresh_ledger,
    release_lease,
    take_lease,
)
from pipeline.alerts.run import recipients_for
from pipeline.errors import AlertError, IndexingError
from pipeline.records import iso, parse_iso_or_none
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.store.es import get_many, translated
from pipeline.topics.profiles import Profile

__all__ = ["CONTINUED", "SURGE", "Hourly", "SurgeRun", "measure", "measure_all", "run_surges", "surge_id"]

_log = log.get(__name__)

SURGE = "surge"  # the ledger document's kind
CONTINUED = "continued"  # the surge of the hour before goes on: recorded, not mailed
DAYS = 7  # the baseline: the same hour on each of this many previous days
WINDOW = timedelta(hours=1)
TOP_STORIES, TOP_OUTLETS = 5, 10


@dataclass(frozen=True, slots=True)
class Hourly:
    """A profile's last hour against the same hour of the previous days, and who is behind it."""

    profile: str
    window_start: datetime
    window_end: datetime
    articles: int
    previous: tuple[int, ...]  # the same hour 1, 2, … DAYS days before
    stories: tuple[SurgeStory, ...] = ()
    outlets: tuple[tuple[str, int], ...] = ()

    @property
    def baseline(self) -> float:
        return sum(self.previous) / len(self.previous) if self.previous else 0.0

    def surging(self, profile: Profile) -> bool:
        rule = profile.surge
        return rule.enabled and self.articles >= rule.min_articles and self.articles >= rule.ratio * self.baseline


@dataclass(slots=True)
class SurgeRun:
    """What one :func:`run_surges` did."""

    sent: int = 0
    continued: int = 0  # surges that went on from the hour before: no email
    surges: list[dict[str, Any]] = field(default_factory=list)  # {profile, window_start, articles, baseline, status}
    failures: list[dict[str, str]] = field(default_factory=list)  # {profile, server, reason}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def surge_id(profile_id: str, hour: datetime) -> str:
    """The ledger id of a profile's surge in the clock hour ``hour`` falls in."""
    return f"{SURGE}:{profile_id}:{hour.astimezone(UTC):%Y%m%dT%H}"


def measure(es: Elasticsearch, alias: str, profile: Profile, *, now: datetime) -> Hourly:
    """The profile's last hour before ``now`` against the same hour of the previous days (one search).

    Raises:
        IndexingError: the index cannot be searched.
    """
    return measure_all(es, alias, [profile], now=now)[profile.id]


def measure_all(es: Elasticsearch, alias: str, profiles: Sequence[Profile], *, now: datetime) -> dict[str, Hourly]:
    """:func:`measure` for every profile in one search (a ``filters`` aggregation with a bucket per
    profile): on the embedded server every search is a pass over the index, whatever it asks.

    Raises:
        IndexingError: the index cannot be searched.
    """
    end = now.astimezone(UTC).replace(microsecond=0)
    start = end - WINDOW
    first = start - timedelta(days=DAYS)
    # Hour buckets that end exactly at `end`: shifted from the clock hours by the minutes and seconds.
    shift = int((end - end.replace(minute=0, second=0)).total_seconds())
    window = {"range": {"published_at": {"gte": iso(start), "lt": iso(end)}}}
    earliest = {"top_hits": {"size": 1, "sort": [{"published_at": {"order": "asc"}}], "_source": _STORY_FIELDS}}
    per_profile: dict[str, Any] = {
        "hours": {
            "date_histogram": {
                "field": "published_at",
                "fixed_interval": "1h",
                "offset": f"+{shift}s",
                "min_doc_count": 1,
            }
        },
        "window": {
            "filter": window,
            "aggs": {
                "outlets": {"terms": {"field": "outlet", "size": TOP_OUTLETS}},
                "stories": {
                    "terms": {"field": "cluster_id", "size": TOP_STORIES},
                    "aggs": {"first": earliest, "outlets": {"terms": {"field": "outlet", "size": TOP_OUTLETS}}},
                },
            },
        },
    }
    ids = [p.id for p in profiles]
    aggs = {"profiles": {"filters": {"filters": {i: {"term": {"topics": i}} for i in ids}}, "aggs": per_profile}}
    query = {
        "bool": {
            "filter": [{"terms": {"topics": ids}}, {"range": {"published_at": {"gte": iso(first), "lt": iso(end)}}}]
        }
    }
    with translated(f"measuring the profiles' coverage in {alias}", url=alias):
        resp = es.search(index=alias, size=0, query=query, aggs=aggs)
    measured = {}
    for profile_id, found in resp["aggregations"]["profiles"]["buckets"].items():
        by_start = {int(b["key"]): int(b["doc_count"]) for b in found["hours"]["buckets"]}
        measured[profile_id] = Hourly(
            profile=profile_id,
            window_start=start,
            window_end=end,
            articles=int(found["window"]["doc_count"]),
            previous=tuple(by_start.get(_ms(start - timedelta(days=d)), 0) for d in range(1, DAYS + 1)),
            stories=tuple(_story(bucket) for bucket in found["window"]["stories"]["buckets"]),
            outlets=tuple((str(b["key"]), int(b["doc_count"])) for b in found["window"]["outlets"]["buckets"]),
        )
    return measured


_STORY_FIELDS = ["title", "outlet", "canonical_url", "url", "published_at"]


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _story(bucket: dict[str, Any]) -> SurgeStory:
    [first] = bucket["first"]["hits"]["hits"]
    src = first["_source"]
    return SurgeStory(
        cluster_id=str(bucket["key"]),
        title=src.get("title") or "",
        outlet=src.get("outlet") or "",
        url=src.get("canonical_url") or src.get("url") or "",
        published_at=parse_iso_or_none(src.get("published_at")),
        articles=int(bucket["doc_count"]),
        outlets=tuple(str(b["key"]) for b in bucket["outlets"]["buckets"]),
    )


def run_surges(
    settings: Settings, es: Elasticsearch, profiles: Sequence[Profile], *, now: datetime | None = None
) -> SurgeRun:
    """Measure every profile's last hour and email each new surge once (module docstring). Idempotent;
    safe to run from several processes at once. Mail failures are counted, never raised.

    Raises:
        IndexingError: the index cannot be searched or the ledger written.
    """
    clock = datetime.now(UTC)
    now = now or clock
    stamp = max(now, clock)
    alias = settings.es_index
    ensure_ledger(es, alias)
    run = SurgeRun()
    owner = new_owner()
    watched = [p for p in profiles if p.surge.enabled]
    measured = measure_all(es, alias, watched, now=now) if watched else {}
    for profile in watched:
        hourly = measured[profile.id]
        if not hourly.surging(profile):
            continue
        recipients = recipients_for(profile, settings)
        if not recipients:
            _fail(run, profile.id, "", "surge not sent: no recipients (set ALERT_TO or the profile's recipients)")
            continue
        lease = take_lease(es, alias, profile.id, now=stamp, ttl=claim_ttl(settings), owner=owner)
        if lease is None:
            continue  # another run works on this profile: it sees the same surge
        try:
            drop_stale_claims(es, alias, profile.id, cutoff=stamp - claim_ttl(settings))
            _surge(settings, es, profile, hourly, recipients, run, now=stamp, owner=owner)
        finally:
            release_lease(es, alias, lease)
    _log.info("surges.summary", sent=run.sent, continued=run.continued, failures=len(run.failures))
    return run


def _surge(
    settings: Settings,
    es: Elasticsearch,
    profile: Profile,
    hourly: Hourly,
    recipients: tuple[str, ...],
    run: SurgeRun,
    *,
    now: datetime,
    owner: str,
) -> None:
    alias = settings.es_index
    ledger = index.Names(alias).alerts
    this, before = surge_id(profile.id, hourly.window_end), surge_id(profile.id, hourly.window_end - WINDOW)
    known = get_many(es, ledger, [this, before], fields=["status"])
    if this in known:
        return  # this hour's surge is already claimed, sent or recorded as going on
    earlier = known.get(before, {}).get("status")
    if earlier == CLAIMED:
        return  # the hour before is being sent right now: the next run sees how that ended
    doc = {
        "kind": SURGE,
        "profile": profile.id,
        "status": CONTINUED if earlier in (SENT, CONTINUED) else CLAIMED,
        "claimed_at": iso(now),
        "claimed_by": owner,
        "recipients": list(recipients),
        "window_start": iso(hourly.window_start),
        "window_end": iso(hourly.window_end),
        "articles": hourly.articles,
        "baseline": round(hourly.baseline, 3),
        "title": hourly.stories[0].title if hourly.stories else "",
        "outlets": [outlet for outlet, _ in hourly.outlets],
    }
    with translated(f"claiming the surge {this}", url=alias):
        try:
            es.create(index=ledger, id=this, document=doc, refresh=True)
        except ConflictError:
            return  # another run claimed it first
    summary = {
        "profile": profile.id,
        "window_start": doc["window_start"],
        "articles": hourly.articles,
        "baseline": doc["baseline"],
        "status": doc["status"],
    }
    if doc["status"] == CONTINUED:
        run.continued += 1
        run.surges.append(summary)
        _log.info("surges.continued", profile=profile.id, articles=hourly.articles, baseline=doc["baseline"])
        return
    report = SurgeReport(
        profile_id=profile.id,
        profile_title=profile.title,
        window_start=hourly.window_start,
        window_end=hourly.window_end,
        articles=hourly.articles,
        baseline=hourly.baseline,
        days=DAYS,
        stories=hourly.stories,
        outlets=hourly.outlets,
    )
    message_id = new_message_id(settings, now)
    message = build_surge_message(
        report, sender=settings.alert_from or DEFAULT_SENDER, recipients=recipients, message_id=message_id, date=now
    )
    try:
        delivery = mailer.deliver(settings, message)
    except AlertError as err:
        delete_claims(es, alias, [this])  # the next run, if the surge goes on, tries again
        _fail(run, profile.id, err.url, f"surge not sent: {err}")
        return
    sent = {"status": SENT, "sent_at": iso(max(now, datetime.now(UTC))), "message_id": message_id}
    try:
        with translated(f"recording the surge {this}", url=alias):
            es.update(index=ledger, id=this, doc={**sent, "recipients": list(delivery.accepted)}, retry_on_conflict=3)
        refresh_ledger(es, alias)
    except IndexingError as err:
        # Delivered but not recorded: the claim expires and the surge, if it goes on, is mailed again.
        _log.error("surges.ledger_write_failed", surge=this, message_id=message_id, reason=str(err))
    run.sent += 1
    run.surges.append({**summary, "status": SENT, "message_id": message_id})
    _log.info("surges.sent", profile=profile.id, message_id=message_id, articles=hourly.articles, where=delivery.where)


def _fail(run: SurgeRun, profile_id: str, server: str, reason: str) -> None:
    run.failures.append({"profile": profile_id, "server": server, "reason": reason})
    _log.warning("surges.failed", profile=profile_id, server=server, reason=reason)
