"""news_poll: poll the feeds that are due, land their new articles for processing, tell operators about
feeds in trouble."""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException
from news_common import (
    DAG_DEFAULTS,
    FETCH_POOL,
    LANDED,
    add_counts,
    detach_main_module,
    log_counts,
    pipeline_settings,
)

# Every minute: each run polls only the feeds whose own schedule says they are due (5 min to 6 h apart),
# so a feed is polled within a minute of its time rather than at the next tick of a coarser cron, which
# would stretch a 5-minute interval to 10. A minute with no feed due costs one short task (plan).
SCHEDULE = os.environ.get("NEWS_POLL_SCHEDULE", "* * * * *")
POLL_KEYS = (
    "feeds_total", "feeds_ok", "feeds_not_modified", "feeds_failed", "feeds_deferred", "items_seen",
    "items_new", "items_known", "pages_downloaded", "pages_failed", "extract_failed", "articles_landed",
)  # fmt: skip


@dag(
    dag_id="news_poll",
    # A cron expression; "none" for manual runs only (tests, a paused feed list).
    schedule=None if SCHEDULE.lower() == "none" else SCHEDULE,
    **DAG_DEFAULTS,
    tags=["news"],
    description="Poll the feeds that are due, land their new articles, email operators about feed incidents.",
    doc_md="""
### Poll the news feeds

Every minute (`NEWS_POLL_SCHEDULE`) **plan** reads the feed list (`FEEDS_FILE` or the Variable
`news_feeds_file`) and each feed's schedule in `<alias>-feeds`, and keeps the feeds that are due: never
polled, or past their `next_poll_at`. A feed's interval follows its own publishing rhythm (5 min–6 h,
never under its `poll_minutes`, honouring `Retry-After`, `Cache-Control: max-age`, RSS `ttl` and
`skipHours`) and backs off while it fails. The due feeds are cut into batches (all feeds of one host in
one batch, so the per-host request bound holds) and **poll** is mapped over them in the `news_fetch`
pool: each task downloads the new items, extracts the articles and writes them as one batch to the
landing area (`LANDING_URL`); feed states are saved only once the batch is safe. **publish** sums the
counts; **announce** emits the `news_landed_batches` asset event naming the batches (which starts
`news_process`), and is skipped when nothing was landed. **feed_health** counts the feeds per state and
emails `OPS_ALERT_TO` once per feed incident (failing after `FEED_ALERT_AFTER_FAILURES` polls, stale,
moved, blocked, dead) and once per recovery. When no feed is due, **plan** is skipped and so is every
task after it: most minutes cost one short task.

What the logs and return values show: each task's counts on one line, every change of a feed's state
(`feed alnil-sports: ok → failing: FetchError: HTTP 500`), each failing feed with its reason, and the
feeds per state (`feed_states`). A failing feed never fails its task. A task fails only when the index or
the landing area cannot be reached; its retry replaces its own batch, so nothing is landed twice.
`python -m pipeline feeds` lists every feed's state and next poll.
""",
)
def news_poll() -> None:
    @task(doc_md="The enabled feeds that are due, in batches (one host never spans two batches); skipped when none is.")
    def plan() -> list[list[str]]:
        from pipeline.tasks import plan_due_batches

        batches, counts = plan_due_batches(pipeline_settings())
        log_counts("plan", counts)
        if not batches:
            # The run polls every minute: a minute with nothing due must not start five more tasks. Every
            # task below is skipped with this one (nothing polled: no new state to report or prune after).
            raise AirflowSkipException("no feed is due")
        return batches

    @task(
        pool=FETCH_POOL,
        map_index_template="{{ feed_ids[0] }} (+{{ feed_ids | length - 1 }})",
        doc_md="Poll one batch of feeds, download and extract their new items, land the articles.",
    )
    def poll(feed_ids: list[str]) -> dict[str, Any]:
        from pipeline.tasks import poll_to_landing

        detach_main_module()
        context = get_current_context()
        ti = context["ti"]
        name = f"{context['dag_run'].run_id}-{ti.map_index}"
        counts = poll_to_landing(pipeline_settings(), feed_ids, name=name)
        # Each change of state is already in this log (the pipeline's feed.state_changed); publish lists them.
        log_counts(f"poll {', '.join(feed_ids)}", {k: v for k, v in counts.items() if k != "state_changes"})
        return {k: counts[k] for k in ("batch", "failed_feeds", "feed_states", "state_changes", *POLL_KEYS)}

    # Not when plan was skipped (no feed due): the mapped poll is skipped then, and so is everything after.
    @task(trigger_rule="none_failed_min_one_success", doc_md="Sum the polls' counts, feed states and changes of state.")
    def publish(results: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        total: dict[str, Any] = {}
        # One slice, not iteration: iterating the mapped results asks for one past the end, which the
        # task SDK logs as an error ("XCom not found").
        done = list(results[:]) if results is not None else []
        for r in [{}, *done]:  # every count present, zero when no feed was due
            add_counts(total, r, POLL_KEYS)
        states: dict[str, int] = {}
        for r in done:
            for state, n in (r.get("feed_states") or {}).items():
                states[state] = states.get(state, 0) + n
        total["feed_states"] = states
        total["state_changes"] = [c for r in done for c in r.get("state_changes") or []]
        # The failures themselves (feed, url, reason), not only their ids: the log names each one.
        total["failed_feeds"] = [f for r in done for f in r.get("failed_feeds") or []]
        total["batches"] = [r["batch"] for r in done if r.get("batch")]
        log_counts("cycle", total)
        return total

    @task(outlets=[LANDED], doc_md="Announce the landed batches to news_process (skipped when none).")
    def announce(total: dict[str, Any]) -> dict[str, Any]:
        if not total["batches"]:
            # No asset event, so no processing and alerting runs for nothing every few minutes.
            raise AirflowSkipException("no batch landed")
        get_current_context()["outlet_events"][LANDED].extra = {
            "batches": total["batches"],
            "articles": total["articles_landed"],
        }
        return {"batches": total["batches"], "articles": total["articles_landed"]}

    @task(doc_md="Feeds per health state; email operators once per feed incident and once per recovery.")
    def feed_health() -> dict[str, Any]:
        from pipeline.tasks import send_feed_alerts

        counts = send_feed_alerts(pipeline_settings())
        log_counts("feed health", counts)
        return counts

    @task(doc_md="Remove processed landing batches older than LANDING_RETENTION_DAYS.")
    def prune() -> dict[str, Any]:
        from pipeline.tasks import prune_landing

        counts = prune_landing(pipeline_settings())
        log_counts("prune", counts)
        return counts

    total = publish(poll.expand(feed_ids=plan()))
    announce(total)
    total >> [feed_health(), prune()]


news_poll()
