"""news_process: index landed batches when news_poll announces them."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, get_current_context, task
from news_common import DAG_DEFAULTS, INDEXED, LANDED, add_counts, log_counts, pipeline_settings

PROCESS_KEYS = (
    "articles_in", "unchanged", "exact_duplicates", "near_duplicates_clustered", "indexed", "index_failed",
)  # fmt: skip


@dag(
    dag_id="news_process",
    description="Dedup, cluster and index the article batches news_poll landed.",
    schedule=[LANDED],
    **DAG_DEFAULTS,
    tags=["news"],
    doc_md="""
### Process landed batches

Runs when `news_poll` lands batches (asset `news_landed_batches`). **plan** takes the batches named in
the triggering events plus any batch still pending in the landing area (an event lost, an earlier run
failed) and groups them into tasks of about 2,000 articles. Each **process** task drops exact
duplicates, clusters near-duplicates against the index, and indexes the articles (tags were set at
extraction), then marks its batches done. **publish** emits `news_indexed_articles`, which starts
`news_alerts`.

Idempotent: articles are keyed by their canonical URL, an article already indexed with the same text is
left alone (`unchanged`), and a batch marked done is not planned again. Tasks of one run run one at a
time so that copies of one story in two batches land in one cluster.
""",
)
def news_process() -> None:
    @task(doc_md="The batches to process: from the triggering events, and every pending one.")
    def plan() -> list[list[str]]:
        from pipeline.tasks import plan_processing

        context = get_current_context()
        events = context.get("triggering_asset_events") or {}
        refs = [ref for evs in events.values() for e in evs for ref in (e.extra or {}).get("batches", [])]
        groups = plan_processing(pipeline_settings(), refs)
        log_counts("plan", {"announced": len(refs), "groups": len(groups), "batches": sum(map(len, groups))})
        return groups

    @task(max_active_tis_per_dagrun=1, doc_md="Dedup, cluster and index one group of landed batches.")
    def process(refs: list[str]) -> dict[str, Any]:
        from pipeline.tasks import process_landed

        counts = process_landed(pipeline_settings(), refs)
        log_counts(f"process {len(refs)} batches", counts)
        return counts

    @task(outlets=[INDEXED], doc_md="Sum the counts and announce the indexed articles to news_alerts.")
    def publish(results: list[dict[str, Any]]) -> dict[str, Any]:
        total: dict[str, Any] = {}
        # One slice, not iteration: iterating the mapped results asks for one past the end, which the
        # task SDK logs as an error ("XCom not found") in a run that went well.
        results = list(results[:])
        for r in results:
            add_counts(total, r, PROCESS_KEYS)
        tagged: dict[str, int] = {}
        for r in results:
            for topic, n in (r.get("tagged") or {}).items():
                tagged[topic] = tagged.get(topic, 0) + n
        total["tagged"] = tagged
        total["unreadable_batches"] = [b["batch"] for r in results for b in r.get("unreadable") or []]
        log_counts("processed", total)
        get_current_context()["outlet_events"][INDEXED].extra = {"indexed": total["indexed"]}
        return total

    publish(process.expand(refs=plan()))


news_process()
