"""Manual DAGs for operators: re-tag after a profile change, replay landed batches."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from news_common import DAG_DEFAULTS, INDEXED, log_counts, pipeline_settings


@dag(
    dag_id="news_retag",
    description="Re-tag the indexed articles after a profile changed (nothing is downloaded).",
    schedule=None,
    **DAG_DEFAULTS,
    tags=["news", "manual"],
    params={
        "profile": Param("", type="string", title="Profile id", description="Only this profile (empty: every profile).")
    },
    doc_md="""
### Re-tag the index after a profile changed

Trigger with the profile id (or empty for all). Reads every indexed article's title and body from the
index, matches the profiles from `PROFILES_DIR` again, and writes back only the tags that changed.
Nothing is downloaded; safe to run again.
""",
)
def news_retag() -> None:
    @task(doc_md="Re-tag; returns articles scanned, changed, failed, and the count per profile.")
    def retag() -> dict[str, Any]:
        from pipeline.tasks import retag

        profile = get_current_context()["params"].get("profile") or None
        counts = retag(pipeline_settings(), profile)
        log_counts(f"retag {profile or 'all profiles'}", counts)
        return counts

    retag()


@dag(
    dag_id="news_replay",
    description="Process landed batches again (named, or every batch of one day).",
    schedule=None,
    **DAG_DEFAULTS,
    tags=["news", "manual"],
    params={
        "batches": Param(
            [], type="array", title="Batches", description="Batch references (YYYY-MM-DD/name) to process again."
        ),
        "day": Param("", type="string", title="Day", description="Or every batch landed that day (YYYY-MM-DD)."),
    },
    doc_md="""
### Replay landed batches

Processes the named landing batches (or every batch of one day) again — after a fix in processing or a
profile, or to rebuild an index from the landing area. Idempotent: unchanged articles are left alone,
nothing is indexed twice. Emits `news_indexed_articles`, so alerts follow.
""",
)
def news_replay() -> None:
    @task(outlets=[INDEXED], doc_md="Process the chosen batches again.")
    def replay() -> dict[str, Any]:
        from pipeline.store.landing import Landing
        from pipeline.tasks import process_landed

        params = get_current_context()["params"]
        settings = pipeline_settings()
        refs = list(params.get("batches") or [])
        if params.get("day"):
            refs += [r for r in Landing(settings.landing).batches() if r.startswith(f"{params['day']}/")]
        if not refs:
            raise ValueError("name batches or a day to replay")
        counts = process_landed(settings, sorted(set(refs)))
        log_counts(f"replay {len(refs)} batches", counts)
        return counts

    replay()


news_retag()
news_replay()
