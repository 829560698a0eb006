"""Polling feeds: conditional GET, parsing, and the per-feed health record kept between runs (its state
and next poll computed by :mod:`pipeline.ingest.health`)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pipeline import log
from pipeline.errors import FeedError, FetchError, PipelineError, RateLimited, reason
from pipeline.ingest import health
from pipeline.ingest.feeds import SkippedItem, read_feed
from pipeline.ingest.fetch import Fetcher, Response, sendable
from pipeline.records import FeedConfig, FeedItem, FeedState, iso, parse_iso_or_none

_log = log.get(__name__)
FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
_NO_CACHE = re.compile(r"\b(?:no-cache|no-store)\b", re.IGNORECASE)
_FIRST_ENTRY = re.compile(rb"<(?:[\w-]+:)?(?:item|entry)[\s>]", re.IGNORECASE)
_TTL = re.compile(rb"<(?:[\w-]+:)?ttl>\s*(\d{1,6})\s*</", re.IGNORECASE)
_SKIP_HOURS = re.compile(rb"<(?:[\w-]+:)?skipHours>(.*?)</(?:[\w-]+:)?skipHours>", re.IGNORECASE | re.DOTALL)
_HOUR = re.compile(rb"<(?:[\w-]+:)?hour>\s*(\d{1,2})\s*</", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PollResult:
    feed: FeedConfig
    state: FeedState
    items: tuple[FeedItem, ...]
    outcome: str  # "ok", "not_modified", "failed", "skipped"
    error: str | None = None
    skipped: tuple[SkippedItem, ...] = ()  # entries with no usable link, and why
    hints: health.Hints = health.Hints()  # what the server and the feed said about polling them


def _validator(value: str | None) -> str | None:
    # Kept only if it can be sent back: a validator in raw UTF-8 would fail every later request.
    return value if value and sendable(value) else None


def read_hints(headers: Mapping[str, str], content: bytes | None) -> health.Hints:
    """``Cache-Control: max-age`` from the response, RSS ``<ttl>`` and ``<skipHours>`` from the feed's
    channel (read before its first item, so an item's text cannot fake them)."""
    control = headers.get("cache-control", "")
    found = _MAX_AGE.search(control)
    max_age = float(found.group(1)) if found and not _NO_CACHE.search(control) else None
    if content is None:
        return health.Hints(max_age_seconds=max_age)
    first = _FIRST_ENTRY.search(content)
    channel = content[: first.start()] if first else content[:65536]
    ttl = _TTL.search(channel)
    block = _SKIP_HOURS.search(channel)
    hours = tuple(sorted({int(h) for h in _HOUR.findall(block.group(1)) if int(h) < 24})) if block else ()
    return health.Hints(
        max_age_seconds=max_age, ttl_minutes=int(ttl.group(1)) if ttl else None, skip_hours=hours, read=True
    )


def poll_feed(fetcher: Fetcher, feed: FeedConfig, state: FeedState | None, *, now: datetime) -> PollResult:
    """Fetch and parse one feed, returning its items and its updated health record (state, next poll).
    Never raises: whatever goes wrong with the feed is recorded in the state and the result, with the
    reason."""
    if state is None or state.url != feed.url:
        # New, or the feed list points somewhere new: old validators and rhythm belong to the old URL.
        state = FeedState(feed_id=feed.id, url=feed.url)
    try:
        result = _poll(fetcher, feed, state, now=now)
    except Exception as err:  # noqa: BLE001 - one feed's bug must not end the others' polls
        _log.error("poll.crashed", feed=feed.id, url=feed.url, reason=repr(err), exc_info=True)
        failed = replace(
            state,
            last_attempt=iso(now),
            consecutive_failures=state.consecutive_failures + 1,
            last_error=f"{type(err).__name__}: {err}",
            last_status=None,
        )
        result = PollResult(feed, failed, (), "failed", f"unexpected {type(err).__name__}: {err}")
    try:
        settled = health.assess(
            feed,
            state,
            result.state,
            outcome=result.outcome,
            item_dates=[i.published_at for i in result.items if i.published_at is not None],
            hints=result.hints,
            now=now,
            policy=health.Policy.of(fetcher.settings),
        )
    except Exception as err:  # noqa: BLE001 - a record too broken to assess still leaves its poll's result
        _log.error("poll.health_failed", feed=feed.id, url=feed.url, reason=repr(err), exc_info=True)
        return result
    return replace(result, state=settled)


def _poll(fetcher: Fetcher, feed: FeedConfig, state: FeedState, *, now: datetime) -> PollResult:
    until = parse_iso_or_none(state.retry_after_until)
    if until and until > now:
        # The server's own request (Retry-After) outranks every schedule, `run --all` included.
        _log.info("poll.deferred", feed=feed.id, url=feed.url, until=state.retry_after_until)
        return PollResult(feed, state, (), "skipped", f"server asked to wait until {state.retry_after_until}")
    attempt = replace(state, last_attempt=iso(now))
    # A record never assessed (new, or kept from before feed health) has not seen the feed's items: read
    # the whole feed once, or a feed answering 304 for ever would never show its dates (nor its staleness).
    fresh_look = state.state == "never_polled"
    try:
        resp, fallback, primary_error = _fetch(fetcher, feed, state, validators=not fresh_look)
        hints = read_hints(resp.headers, None if resp.not_modified else resp.content)
        answered = replace(
            attempt,
            last_success=iso(now),
            consecutive_failures=0,
            last_error=None if fallback is None else f"{feed.url} failed ({primary_error}); {fallback} answered",
            last_status=resp.status,
            retry_after_until=None,
            moved_to=resp.moved_to,
            served_by=fallback,
        )
        if resp.moved_to:
            _log.warning(
                "poll.moved", feed=feed.id, url=feed.url, moved_to=resp.moved_to, hint="update the url in the feed list"
            )
        if resp.not_modified:
            return PollResult(feed, replace(answered, items_last_poll=0), (), "not_modified", hints=hints)
        body_hash = hashlib.sha256(resp.content).hexdigest()
        if fallback is None:
            # A fallback's validators would be sent to the url next time: only the url's own are kept.
            answered = replace(
                answered,
                etag=_validator(resp.headers.get("etag")),
                last_modified=_validator(resp.headers.get("last-modified")),
            )
        answered = replace(answered, body_hash=body_hash)
        if body_hash == state.body_hash and not fresh_look:
            # No validators on the server, but the same bytes as last time: nothing new.
            return PollResult(feed, replace(answered, items_last_poll=0), (), "not_modified", hints=hints)
        # Relative links resolve against where the feed was finally served from.
        parsed = read_feed(resp.content, resp.headers, feed=replace(feed, url=resp.final_url), fetched_at=now)
        items = tuple(parsed.items)
        return PollResult(
            feed,
            replace(answered, items_last_poll=len(items)),
            items,
            "ok",
            skipped=tuple(parsed.skipped),
            hints=hints,
        )
    except PipelineError as err:
        retry_until = None
        if isinstance(err, RateLimited):
            retry_until = iso(now + timedelta(seconds=err.retry_after))
        status = err.status if isinstance(err, FetchError) else None
        failed = replace(
            attempt,
            consecutive_failures=state.consecutive_failures + 1,
            last_error=str(err),
            last_status=status,
            retry_after_until=retry_until,
            served_by=None,
        )
        kind = "malformed" if isinstance(err, FeedError) else "unreachable"
        _log.warning(
            "poll.failed",
            feed=feed.id,
            url=feed.url,
            reason=str(err),
            kind=kind,
            consecutive_failures=failed.consecutive_failures,
        )
        return PollResult(feed, failed, (), "failed", reason(err))


def _fetch(
    fetcher: Fetcher, feed: FeedConfig, state: FeedState, *, validators: bool
) -> tuple[Response, str | None, str | None]:
    """The feed's response (conditional with ``validators``), from its url or, while that fails, from the
    first fallback that answers: (response, the fallback used or None, why the url failed or None).

    Raises:
        FetchError: the url and every fallback failed (the url's own error is raised).
    """
    try:
        resp = fetcher.get(
            feed.url,
            feed_id=feed.id,
            etag=state.etag if validators else None,
            last_modified=state.last_modified if validators else None,
            accept=FEED_ACCEPT,
        )
        return resp, None, None
    except FetchError as err:
        for url in feed.fallback_urls:
            try:
                resp = fetcher.get(url, feed_id=feed.id, accept=FEED_ACCEPT)
            except FetchError as other:
                _log.info("poll.fallback_failed", feed=feed.id, url=url, reason=str(other))
                continue
            _log.warning("poll.fallback", feed=feed.id, url=feed.url, fallback=url, reason=str(err))
            return resp, url, reason(err)
        raise
