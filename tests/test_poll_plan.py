"""Airflow's planner (``tasks.plan_due_batches``) runs once per period of ``NEWS_POLL_SCHEDULE``: it takes the
feeds due before its next run (``POLL_AHEAD_SECONDS``), so a feed's interval is not stretched by a period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from elasticsearch import Elasticsearch

from pipeline.records import FeedState, iso
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.store.es import bulk_write
from pipeline.tasks import plan_due_batches


def test_planner_polls_the_feeds_due_before_its_next_run_and_leaves_the_later_ones(
    settings: Settings, es: Elasticsearch, indexed: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    feeds = [
        {"id": f, "url": f"http://127.0.0.1:9/{f}.xml", "outlet": f} for f in ("soon", "later", "overdue", "never")
    ]
    feeds_file = tmp_path / "feeds.yaml"
    feeds_file.write_text(yaml.safe_dump({"feeds": feeds}), encoding="utf-8")
    next_poll = {"soon": now + timedelta(seconds=40), "later": now + timedelta(minutes=4), "overdue": now}
    states = [
        FeedState(feed_id=f, url=f"http://127.0.0.1:9/{f}.xml", state="ok", next_poll_at=iso(when))
        for f, when in next_poll.items()
    ]
    bulk_write(es, index.feed_state_actions(indexed, states))
    es.indices.refresh(index=f"{indexed}-feeds")
    planned = settings.with_(feeds_file=feeds_file)

    batches, counts = plan_due_batches(planned, now=now)
    assert sorted(f for batch in batches for f in batch) == ["never", "overdue", "soon"]
    assert counts == {"feeds": 4, "due": 3, "batches": 1}
    # Without the look-ahead a feed due 40 s from now waits for the run after.
    batches, _ = plan_due_batches(planned.with_(poll_ahead_seconds=0), now=now)
    assert sorted(f for batch in batches for f in batch) == ["never", "overdue"]
