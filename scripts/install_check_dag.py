"""The Airflow half of ``scripts/install-check``: parse the DAGs, run the indicators DAG once.

Run by ``scripts/install-check`` twice, with the same simulator and Elasticsearch node: with the
fresh venv's Python (the installed wheels; ``python -P`` from a folder outside the repository,
so nothing of the checkout is importable) and with the checkout's ``.venv``. Each run:

1. imports ``threatq_provider`` and says from where (the installed run must not see the checkout);
2. parses ``TQ_CHECK_DAGS`` with a DagBag and fails on any import error;
3. empties the ``logs-ti_threatq*`` indices, runs ``threatq_indicators_to_elasticsearch`` with
   ``dag.test()`` in ``full_resync`` mode and fails unless every task succeeded;
4. prints one line ``install-check-result: <JSON>``: where the provider came from, the DAG ids,
   the counts of every task's XCom and what the active index holds. install-check compares the
   counts of the two runs.

Connections and variables come from ``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*`` (set by install-check).
Imports nothing from the repository.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

DAG_ID = "threatq_indicators_to_elasticsearch"
TASKS = ("poll", "transform", "load", "report")
THREATQ_INDICES = "logs-ti_threatq*"
ACTIVE_ALIAS = "logs-ti_threatq_latest.threat"
# The result line among the task logs dag.test() prints.
RESULT_PREFIX = "install-check-result: "
# XCom entries that differ between two runs of the same data: file paths, clocks, durations, rates.
VOLATILE = ("path", "now", "second", "took", "elapsed", "duration", "per_s", "rate", "started", "finished",
            "templates", "run_id")


def fail(message: str) -> None:
    print(f"install-check: FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def counts(value: Any, key: str = "") -> Any:
    """The comparable part of an XCom value: integers, booleans and the engine name, nested."""
    if isinstance(value, dict):
        kept = {k: counts(v, k) for k, v in sorted(value.items())
                if not any(word in k.lower() for word in VOLATILE)}
        return {k: v for k, v in kept.items() if v is not None and v != {}}
    if isinstance(value, bool | int) or (key == "engine" and isinstance(value, str)):
        return value
    return None


def xcoms(dag_run: Any) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id,
                                                  key="return_value")).all()
        return {row.task_id: XComModel.deserialize_value(row) for row in rows}


def main() -> None:
    import threatq_provider

    dags_folder = os.environ["TQ_CHECK_DAGS"]
    from airflow.models import DagBag

    bag = DagBag(dag_folder=dags_folder)
    if bag.import_errors:
        fail(f"DAG import errors in {dags_folder}: {json.dumps(bag.import_errors, indent=2)}")
    if DAG_ID not in bag.dags:
        fail(f"{DAG_ID} not among the parsed DAGs {sorted(bag.dags)}")

    from elasticsearch import Elasticsearch

    es = Elasticsearch(os.environ["TQ_CHECK_ES_URL"], request_timeout=60)
    es.indices.delete(index=THREATQ_INDICES, expand_wildcards="all", ignore_unavailable=True,
                      allow_no_indices=True)

    dag_run = bag.dags[DAG_ID].test(run_conf={"mode": "full_resync"})
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    if str(dag_run.state) != "success" or any(states.get(t) != "success" for t in TASKS):
        fail(f"{DAG_ID} run ended {dag_run.state}: {states}")
    values = xcoms(dag_run)

    es.indices.refresh(index=THREATQ_INDICES, allow_no_indices=True, ignore_unavailable=True)
    by_type = es.search(index=ACTIVE_ALIAS, size=0, aggs={"t": {"terms": {"field": "threat.indicator.type",
                                                                           "size": 100}}})
    print(RESULT_PREFIX + json.dumps({
        "provider_from": threatq_provider.__file__,
        "sys_path": sys.path,  # after Airflow added its DAGs and plugins folders
        "dags": sorted(bag.dags),
        "xcom": {task: counts(values.get(task)) for task in TASKS},
        "active_index": {
            "total": by_type["hits"]["total"]["value"],
            "by_type": {b["key"]: b["doc_count"] for b in by_type["aggregations"]["t"]["buckets"]},
        },
    }, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
