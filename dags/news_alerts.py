"""news_alerts: email digests of new matching stories when news_process has indexed articles."""

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
in `DATA_DIR/outbox` without one). The ledger in Elasticsearch makes it safe to retry: a story is
alerted once; when the mail server is down, the digest waits for the next run.
""",
)
def news_alerts() -> None:
    @task(doc_md="Send the digests; the return value counts digests, stories sent and still pending.")
    def alert() -> dict[str, Any]:
        from pipeline.tasks import send_alerts

        counts = send_alerts(pipeline_settings())
        log_counts("alerts", counts)
        return counts

    alert()


news_alerts()
