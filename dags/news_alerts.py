"""news_alerts: email digests of new matching stories, then surges of coverage, when news_process has
indexed articles."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task
from news_common import DAG_DEFAULTS, INDEXED, log_counts, pipeline_settings


@dag(
    dag_id="news_alerts",
    description="Email each profile's new matching stories as one digest per recipient list, once.",
    schedule=[INDEXED],
    **DAG_DEFAULTS,
    tags=["news"],
    doc_md="""
### Alert on new matching stories

Runs when articles are indexed (asset `news_indexed_articles`). Selects stories whose profile score
passes the profile's alert threshold and that were never alerted to that recipient list, and sends one
digest per profile and recipient list (SMTP from the connection `news_smtp` or `SMTP_URL`; `.eml` files
in `DATA_DIR/outbox` without one), and records in the ledger a decision about every tagged article
(`python -m pipeline alerts why`). Then **surge** compares each profile's articles of the last hour
with the same hour of the previous 7 days and sends one email per surge. The ledger in Elasticsearch
makes both safe to retry: a story or a surge is alerted once; when the mail server is down, it waits
for the next run.
""",
)
def news_alerts() -> None:
    @task(doc_md="Send the digests; the return value counts digests, stories sent and still pending, decisions.")
    def alert() -> dict[str, Any]:
        from pipeline.tasks import send_alerts

        counts = send_alerts(pipeline_settings())
        log_counts("alerts", counts)
        return counts

    @task(doc_md="Send the surge emails; the return value counts surges sent and going on.")
    def surge() -> dict[str, Any]:
        from pipeline.tasks import send_surges

        counts = send_surges(pipeline_settings())
        log_counts("surges", counts)
        return counts

    alert() >> surge()


news_alerts()
