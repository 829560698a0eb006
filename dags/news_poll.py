"""news_poll: poll the feeds on a schedule and land the new articles for processing."""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import dag, get_current_context, task
from news_common import (
    DAG_DEFAULTS,
    FETCH_POOL,
    LANDED,
    add_counts,
    detach_main_module,
    log_counts,
    pipeline_settings,
)

SCHEDULE = os.environ.get("NEWS_POLL_SCHEDULE", "*/15 * * * *")
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
    doc_md="""
### Poll the news feeds

Every 15 minutes (`NEWS_POLL_SCHEDULE`): reads the feed list (`FEEDS_FILE` or the Variable
`news_feeds_file`), cuts it into batches (all feeds of one host in one batch, so the per-host request
bound holds), and maps **poll** over the batches in the `news_fetch` pool. Each poll task downloads the
new items, extracts the articles and writes them as one batch to the landing area (`LANDING_URL`);
feed states are saved only once the batch is safe. **publish** emits the `news_landed_batches` asset
event naming the batches, which starts `news_process`.

A failing feed never fails its task: it is named in the task log and counted in `feeds_failed`
(`python -m pipeline feeds` shows per-feed health). A task fails only when the index or the landing
area cannot be reached; its retry replaces its own batch, so nothing is landed twice.
""",
)
def news_poll() -> None:
    @task(doc_md="Cut the enabled feeds into batches (one host never spans two batches).")
    def plan() -> list[list[str]]:
        from pipeline.tasks import plan_feed_batches

        batches = plan_feed_batches(pipeline_settings())
        log_counts("plan", {"feeds": sum(map(len, batches)), "batches": len(batches)})
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
        log_counts(f"poll {', '.join(feed_ids)}", counts)
        return {k: counts[k] for k in ("batch", "failed_feeds", *POLL_KEYS)}

    @task(outlets=[LANDED], doc_md="Sum the counts and announce the landed batches to news_process.")
    def publish(results: list[dict[str, Any]]) -> dict[str, Any]:
        total: dict[str, Any] = {}
        for r in results:
            add_counts(total, r, POLL_KEYS)
        batches = [r["batch"] for r in results if r.get("batch")]
        # The failures themselves (feed, url, reason), not only their ids: the log names each one.
        total["failed_feeds"] = [f for r in results for f in r.get("failed_feeds") or []]
        total["batches"] = batches
        log_counts("cycle", total)
        get_current_context()["outlet_events"][LANDED].extra = {
            "batches": batches,
            "articles": total["articles_landed"],
        }
        return total

    @task(doc_md="Remove processed landing batches older than LANDING_RETENTION_DAYS.")
    def prune() -> dict[str, Any]:
        from pipeline.tasks import prune_landing

        counts = prune_landing(pipeline_settings())
        log_counts("prune", counts)
        return counts

    publish(poll.expand(feed_ids=plan())) >> prune()


news_poll()
