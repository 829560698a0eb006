"""The polling schedule a feed gets (``pipeline/ingest/health.py``): for a few publishing cadences, the
interval between polls, the polls a day and how late a new item is found on average; then the backoff
while a feed fails, and what a dead feed costs. Pure arithmetic over the same functions the poller
calls: no network, no index.

    python bench/bench_schedule.py [--days 7]
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.ingest import health  # noqa: E402
from pipeline.records import FeedConfig, FeedState, iso  # noqa: E402

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
FIXED_MINUTES = 15  # the schedule before: every feed, every 15 minutes


def cadence_table(policy: health.Policy) -> None:
    feed = FeedConfig(id="f", url="https://example.org/rss", outlet="o")
    print("| publishes | interval | polls a day | before (every 15 min) | a new item waits, on average |")
    print("|---|---|---|---|---|")
    for label, gap in [
        ("every 5 min", timedelta(minutes=5)),
        ("every 20 min", timedelta(minutes=20)),
        ("hourly", timedelta(hours=1)),
        ("every 4 h", timedelta(hours=4)),
        ("daily", timedelta(days=1)),
        ("no dates", None),
    ]:
        dates = [NOW - (gap or timedelta(0)) * k for k in range(20)] if gap else []
        minutes = health.normal_minutes(feed, health.cadence(dates), health.Hints(), policy)
        print(
            f"| {label} | {minutes:g} min | {1440 / minutes:.0f} | {1440 / FIXED_MINUTES:.0f} | {minutes / 2:g} min |"
        )


def backoff_table(policy: health.Policy, days: int) -> None:
    """A feed with an hourly rhythm (30 min between polls) that starts failing at NOW, polled as the
    schedule says, ``days`` days long."""
    feed = FeedConfig(id="aljazeera", url="https://example.org/rss", outlet="o")
    state = FeedState(feed_id=feed.id, url=feed.url, state="ok", cadence_minutes=60.0, last_success=iso(NOW))
    now = NOW
    rows = []
    polls = 0
    while now < NOW + timedelta(days=days):
        failed = FeedState(
            **{**state.to_doc(), "consecutive_failures": state.consecutive_failures + 1, "last_status": 500}
        )
        state = health.assess(
            feed, state, failed, outcome="failed", item_dates=[], hints=health.Hints(), now=now, policy=policy
        )
        polls += 1
        rows.append((state.consecutive_failures, state.state, state.interval_minutes, now - NOW))
        now = datetime.fromisoformat((state.next_poll_at or "").replace("Z", "+00:00"))
    print("| failure | state | next poll after | failing for |")
    print("|---|---|---|---|")
    for n, name, minutes, since in rows[:8]:
        print(f"| {n} | {name} | {minutes:g} min | {since.total_seconds() / 3600:.1f} h |")
    dead = [r for r in rows if r[1] == "dead"]
    print(
        f"\nOver {days} days: {polls} polls of the failing feed (every 15 min it was {days * 96}); "
        f"dead after {dead[0][0]} failures, {dead[0][3].total_seconds() / 86400:.2f} days."
        if dead
        else f"\nOver {days} days: {polls} polls."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=8, help="how long the failing feed is followed")
    args = parser.parse_args()
    policy = health.Policy()
    print(f"Bounds {policy.min_minutes:g}-{policy.max_minutes:g} min, dead after {policy.dead_days:g} days.\n")
    cadence_table(policy)
    print()
    backoff_table(policy, args.days)


if __name__ == "__main__":
    main()
