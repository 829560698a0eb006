"""Run DAGs with ``dag.test()`` in this process and print one JSON line per run (used by test_dags.py in a
subprocess, so that each test's environment — AIRFLOW_HOME, ES_URL, FEEDS_FILE — is read fresh).

    python tests/airflow_run.py news_poll news_process '{"conf": "for the next one"}' news_alerts
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DAGS = Path(__file__).resolve().parent.parent / "dags"


def main(args: list[str]) -> None:
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = BundleDagBag(str(DAGS), bundle_path=DAGS, bundle_name="dags-folder")
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    conf: dict[str, Any] | None = None
    for arg in args:
        if arg.startswith("{"):
            conf = json.loads(arg)
            continue
        dag = bag.get_dag(arg)
        run = dag.test(run_conf=conf)
        conf = None
        tasks: dict[str, Any] = {}
        returns: dict[str, Any] = {}
        with create_session() as session:
            for ti in run.get_task_instances(session=session):
                key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
                tasks[key] = {"state": str(ti.state), "tries": ti.try_number}
                query = XComModel.get_many(
                    run_id=run.run_id,
                    key="return_value",
                    dag_ids=arg,
                    task_ids=ti.task_id,
                    map_indexes=ti.map_index,
                )
                value = session.scalars(query).first()
                if value is not None:
                    returns[key] = XComModel.deserialize_value(value)
        print("RESULT " + json.dumps({"dag": arg, "state": str(run.state), "tasks": tasks, "returns": returns}))
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
