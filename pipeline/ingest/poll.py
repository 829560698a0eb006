"""Polling feeds: conditional GET, parsing, and the per-feed health record kept between runs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pipeline import log
from pipeline.errors import FeedError, FetchError, PipelineError, RateLimited, reason
from pipeline.ingest.feeds import SkippedItem, read_feed
from pipeline.ingest.fetch import Fetcher, sendable
from pipeline.records import FeedConfig, FeedItem, FeedState, iso

_log = log.get(__name__)
FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"


@dataclass(frozen=True, slots=True)
class PollResult:
    feed: FeedConfig
    state: FeedState
    items: tuple[FeedItem, ...]
    outcome: str  # "ok", "not_modified", "failed", "skipped"
    error: str | None = None
    skipped: tuple[SkippedItem, ...] = ()  # entries with no usable link, and why


def _validator(value: str | None) -> str | None:
    # Kept only if it can be sent back: a validator in raw UTF-8 would fail every later request.
    return value if value and sendable(value) else None


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def poll_feed(fetcher: Fetcher, feed: FeedConfig, state: FeedState | None, *, now: datetime) -> PollResult:
    """Fetch and parse one feed, returning its items and its updated health record. Never raises:
    whatever goes wrong with the feed is recorded in the state and the result, with the reason."""
    state = state or FeedState(feed_id=feed.id, url=feed.url)
    try:
        return _poll(fetcher, feed, state, now=now)
    except Exception as err:  # noqa: BLE001 - one feed's bug must not end the others' polls
        _log.error("poll.crashed", feed=feed.id, url=feed.url, reason=repr(err), exc_info=True)
        failed = replace(
            state,
            last_attempt=iso(now),
            consecutive_failures=state.consecutive_failures + 1,
            last_error=f"{type(err).__name__}: {err}",
            last_status=None,
        )
        return PollResult(feed, failed, (), "failed", f"unexpected {type(err).__name__}: {err}")


def _poll(fetcher: Fetcher, feed: FeedConfig, state: FeedState, *, now: datetime) -> PollResult:
    if state.url != feed.url:
        # The feed list points somewhere new: old validators belong to the old URL.
        state = FeedState(feed_id=feed.id, url=feed.url, consecutive_failures=0)
    until = _when(state.retry_after_until)
    if until and until > now:
        _log.info("poll.deferred", feed=feed.id, url=feed.url, until=state.retry_after_until)
        return PollResult(feed, state, (), "skipped", f"server asked to wait until {state.retry_after_until}")
    last = _when(state.last_attempt)
    if (
        feed.poll_minutes
        and last
        and now - last < timedelta(minutes=feed.poll_minutes)
        and not state.consecutive_failures
    ):
        # The feed list asks for this feed no more often than every poll_minutes.
        due = iso(last + timedelta(minutes=feed.poll_minutes))
        return PollResult(feed, state, (), "skipped", f"not due before {due} (poll_minutes={feed.poll_minutes})")
    attempt = replace(state, last_attempt=iso(now))
    try:
        resp = fetcher.get(
            feed.url, feed_id=feed.id, etag=state.etag, last_modified=state.last_modified, accept=FEED_ACCEPT
        )
        if resp.not_modified:
            ok = replace(
                attempt,
                last_success=iso(now),
                consecutive_failures=0,
                last_error=None,
                last_status=304,
                retry_after_until=None,
                items_last_poll=0,
            )
            return PollResult(feed, ok, (), "not_modified")
        body_hash = hashlib.sha256(resp.content).hexdigest()
        ok = replace(
            attempt,
            etag=_validator(resp.headers.get("etag")),
            last_modified=_validator(resp.headers.get("last-modified")),
            body_hash=body_hash,
            last_success=iso(now),
            consecutive_failures=0,
            last_error=None,
            last_status=resp.status,
            retry_after_until=None,
            moved_to=resp.moved_to,
        )
        if resp.moved_to:
            _log.warning(
                "poll.moved", feed=feed.id, url=feed.url, moved_to=resp.moved_to, hint="update the url in the feed list"
            )
        if body_hash == state.body_hash:
            # No validators on the server, but the same bytes as last time: nothing new.
            return PollResult(feed, replace(ok, items_last_poll=0), (), "not_modified")
        # Relative links resolve against where the feed was finally served from.
        parsed = read_feed(resp.content, resp.headers, feed=replace(feed, url=resp.final_url), fetched_at=now)
        items = tuple(parsed.items)
        return PollResult(feed, replace(ok, items_last_poll=len(items)), items, "ok", skipped=tuple(parsed.skipped))
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
