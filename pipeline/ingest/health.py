"""A feed's health and its polling schedule: pure functions of what the feed was (``FeedState``), what one
poll found (outcome, item dates, the server's hints) and the clock. ``poll.poll_feed`` applies them on
every poll; the command line, the Airflow planner and the operator alerts read what they wrote.

States (``records.FEED_STATES``)
    ``failing`` from the first failed poll, ``blocked`` when the failure is a 401, 403 or 429 (the
    server refuses this client: retrying harder will not help), ``dead`` once the failures have lasted
    ``FEED_DEAD_DAYS``. A feed that answers is ``moved`` when it answers through a permanent redirect,
    ``stale`` when its newest item is older than both ``STALE_GAPS`` of its own usual gap between items
    and ``STALE_FLOOR`` — a feed that answers 200 (or 304) with the same old items is not healthy —,
    and ``ok`` otherwise. The usual gap (``cadence_minutes``) is the median gap between the item dates
    the feed last listed: an outlet's rhythm, learnt from its own feed, not a global guess.

Schedule
    After an answer the next poll is due after half the feed's cadence (so a new item waits on average
    a quarter of a gap), never sooner than the feed list's ``poll_minutes``, the feed's RSS ``ttl`` or
    the response's ``Cache-Control: max-age``, and within ``FEED_MIN_MINUTES``–``FEED_MAX_MINUTES``
    (5 min–6 h). A feed that gives no dates is polled every ``DEFAULT_MINUTES``. While a feed fails
    the interval doubles with each failure from that normal interval, up to the maximum, minus up to
    ``JITTER`` of it (fixed by the feed and the failure count, so a test can predict it and feeds
    that failed together do not come back together); the first answer returns it to normal. A
    ``Retry-After`` pushes the next poll to the time the server named, and RSS ``skipHours`` past the
    hours the feed asked to be left alone.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pipeline.records import FeedConfig, FeedState, iso, parse_iso_or_none
from pipeline.settings import Settings

DEFAULT_MINUTES = 15.0  # a feed whose items carry no dates: the old fixed schedule
STALE_GAPS = 5.0  # stale when the newest item is older than this many usual gaps...
STALE_FLOOR = timedelta(hours=24)  # ...and older than this (a weekly column is not stale on day two)
UNKNOWN_GAP = timedelta(hours=24)  # the gap assumed for a feed listing one dated item
JITTER = 0.15  # at most this share of a backoff interval is taken off it
BLOCKING = {401, 403, 429}  # answers that say "not you", not "not now"
SUCCESS = {"ok", "not_modified"}
MAX_DATES = 100  # item dates a cadence is learnt from (the newest ones)


@dataclass(frozen=True, slots=True)
class Hints:
    """What the server and the feed said about polling them (the poll reads them)."""

    max_age_seconds: float | None = None  # Cache-Control: max-age
    ttl_minutes: int | None = None  # RSS <ttl>
    skip_hours: tuple[int, ...] = ()  # RSS <skipHours>, UTC hours
    read: bool = False  # the feed document was read this time (else ttl and skipHours are not known anew)


@dataclass(frozen=True, slots=True)
class Policy:
    min_minutes: float = 5.0
    max_minutes: float = 360.0
    dead_days: float = 7.0

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            min_minutes=settings.feed_min_minutes,
            max_minutes=settings.feed_max_minutes,
            dead_days=settings.feed_dead_days,
        )


def cadence(dates: Iterable[datetime]) -> timedelta | None:
    """The median gap between distinct item dates (the newest ``MAX_DATES``); None with fewer than two."""
    distinct = sorted(set(dates), reverse=True)[:MAX_DATES]
    if len(distinct) < 2:
        return None
    gaps = [(a - b).total_seconds() for a, b in zip(distinct, distinct[1:], strict=False)]
    return timedelta(seconds=statistics.median(gaps))


def stale_after(gap: timedelta | None) -> timedelta:
    """How old a feed's newest item may be before the feed is stale."""
    return max(STALE_GAPS * (gap or UNKNOWN_GAP), STALE_FLOOR)


def is_stale(newest: datetime | None, gap: timedelta | None, *, now: datetime) -> bool:
    """The newest item is far older than the feed's rhythm promises. Unknown without a dated item."""
    return newest is not None and now - newest > stale_after(gap)


def normal_minutes(feed: FeedConfig, gap: timedelta | None, hints: Hints, policy: Policy) -> float:
    """The interval for a feed that answers: half its cadence, over every floor, within the bounds."""
    wanted = gap.total_seconds() / 120 if gap is not None else DEFAULT_MINUTES
    floors = [
        feed.poll_minutes or 0,
        hints.ttl_minutes or 0,
        (hints.max_age_seconds or 0) / 60,
    ]
    return _bounded(max(wanted, *floors), policy)


def backoff_minutes(base: float, failures: int, *, feed_id: str, policy: Policy) -> float:
    """The interval after ``failures`` failed polls in a row: ``base`` doubled per failure after the
    first, capped, less a jitter fixed by the feed and the count."""
    grown = base * 2 ** max(0, min(failures - 1, 30))
    capped = _bounded(grown, policy)
    return max(policy.min_minutes, capped * (1 - JITTER * _jitter(feed_id, failures)))


def _bounded(minutes: float, policy: Policy) -> float:
    return min(policy.max_minutes, max(policy.min_minutes, minutes))


def _jitter(feed_id: str, failures: int) -> float:
    digest = hashlib.sha256(f"{feed_id}\x1f{failures}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def after_skip_hours(when: datetime, skip_hours: Iterable[int]) -> datetime:
    """``when``, or the start of the first UTC hour after it that the feed did not ask to skip."""
    skipped = {h for h in skip_hours if 0 <= h <= 23}
    if not skipped or len(skipped) == 24:
        return when
    moment = when
    for _ in range(24):
        if moment.hour not in skipped:
            return moment
        moment = moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return when


def due(feed: FeedConfig, state: FeedState | None, *, now: datetime) -> bool:
    """Whether ``feed`` should be polled now: never polled, pointed elsewhere by the feed list since,
    or its ``next_poll_at`` has come (a state without one, from before schedules, is due)."""
    if state is None or state.url != feed.url:
        return True
    when = parse_iso_or_none(state.next_poll_at)
    return when is None or when <= now


def assess(
    feed: FeedConfig,
    before: FeedState,
    after: FeedState,
    *,
    outcome: str,
    item_dates: Iterable[datetime],
    hints: Hints,
    now: datetime,
    policy: Policy,
) -> FeedState:
    """``after`` (the state a poll left) with its health state and next poll filled in. ``before`` is the
    state the poll started from (already reset if the feed list gave the feed a new URL)."""
    if outcome == "skipped":  # not polled (the server asked to wait): nothing new was learnt
        return after
    # A 304 or an unchanged body says nothing new about <ttl> and <skipHours>: the last ones read stand.
    ttl, skip = (hints.ttl_minutes, hints.skip_hours) if hints.read else (before.ttl_minutes, before.skip_hours)
    known = Hints(max_age_seconds=hints.max_age_seconds, ttl_minutes=ttl, skip_hours=skip)
    dates = list(item_dates)
    gap = cadence(dates)
    gap = gap if gap is not None else _minutes(before.cadence_minutes)
    newest_before = parse_iso_or_none(before.newest_item_at)
    newest, last_new_item = newest_before, before.last_new_item
    if outcome in SUCCESS:
        newest = max([*dates, *([newest_before] if newest_before else [])], default=None)
        if newest is not None and (newest_before is None or newest > newest_before):
            last_new_item = iso(now)  # when we first saw an item this new
        if after.moved_to:
            state = "moved"
        elif is_stale(newest, gap, now=now):
            state = "stale"
        else:
            state = "ok"
        interval = normal_minutes(feed, gap, known, policy)
        failing_since = None
    else:
        started = parse_iso_or_none(before.failing_since) if before.consecutive_failures else None
        since = started or now
        if now - since > timedelta(days=policy.dead_days):
            state = "dead"
        elif after.last_status in BLOCKING:
            state = "blocked"
        else:
            state = "failing"
        base = normal_minutes(feed, gap, known, policy)
        interval = backoff_minutes(base, after.consecutive_failures, feed_id=feed.id, policy=policy)
        failing_since = iso(since)
    next_at = now + timedelta(minutes=interval)
    server_wait = parse_iso_or_none(after.retry_after_until)
    if server_wait is not None and server_wait > next_at:
        next_at = server_wait
    next_at = after_skip_hours(next_at, skip)
    return replace(
        after,
        state=state,
        state_since=before.state_since if state == before.state and before.state_since else iso(now),
        failing_since=failing_since,
        next_poll_at=iso(next_at),
        interval_minutes=round(interval, 1),
        cadence_minutes=round(gap.total_seconds() / 60, 1) if gap is not None else None,
        ttl_minutes=ttl,
        skip_hours=tuple(sorted(set(skip))),
        newest_item_at=iso(newest),
        last_new_item=last_new_item,
    )


def _minutes(value: float | None) -> timedelta | None:
    return timedelta(minutes=value) if value else None


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """One feed as ``python -m pipeline feeds`` shows it (``--json`` prints these)."""

    id: str
    outlet: str
    url: str
    enabled: bool
    verified: bool
    state: str
    consecutive_failures: int
    next_poll_at: str | None
    interval_minutes: float | None
    last_success: str | None
    last_attempt: str | None
    last_error: str | None
    last_status: int | None
    newest_item_at: str | None
    newest_item_age_hours: float | None
    cadence_minutes: float | None
    state_since: str | None
    moved_to: str | None
    served_by: str | None


def describe(feed: FeedConfig, state: FeedState | None, *, now: datetime) -> FeedHealth:
    """What the feed list and the stored state say of ``feed``; a state kept for another URL (the list
    changed since) counts as none."""
    mine = state if state is not None and state.url == feed.url else None
    newest = parse_iso_or_none(mine.newest_item_at) if mine else None
    return FeedHealth(
        id=feed.id,
        outlet=feed.outlet,
        url=feed.url,
        enabled=feed.enabled,
        verified=feed.verified,
        state=mine.state if mine else "never_polled",
        consecutive_failures=mine.consecutive_failures if mine else 0,
        next_poll_at=mine.next_poll_at if mine else None,
        interval_minutes=mine.interval_minutes if mine else None,
        last_success=mine.last_success if mine else None,
        last_attempt=mine.last_attempt if mine else None,
        last_error=mine.last_error if mine else None,
        last_status=mine.last_status if mine else None,
        newest_item_at=mine.newest_item_at if mine else None,
        newest_item_age_hours=round((now - newest).total_seconds() / 3600, 1) if newest else None,
        cadence_minutes=mine.cadence_minutes if mine else None,
        state_since=mine.state_since if mine else None,
        moved_to=mine.moved_to if mine else None,
        served_by=mine.served_by if mine else None,
    )
