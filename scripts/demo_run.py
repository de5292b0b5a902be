"""The Airflow half of ``scripts/demo``: run the DAGs once with ``dag.test()`` and print a summary.

``scripts/demo`` starts the services and exports AIRFLOW_HOME, the ``AIRFLOW_CONN_*`` connections
and ``AIRFLOW_VAR_*`` variables; this script then, in one Python process on Airflow + SQLite:

1. loads the DAG folder and fails on any import error;
2. runs ``threatq_indicators_to_elasticsearch`` in ``full_resync`` mode (every indicator of the
   simulator) — the same as ``airflow dags test threatq_indicators_to_elasticsearch -c '{"mode": "full_resync"}'``;
3. runs ``threatq_ioc_expiry_sweep`` (removes the expired IOCs from the active index);
4. runs ``threatq_events_to_misp`` (events shared to the MISP double);
5. prints indicators loaded by type, swept by reason, events/attributes shared, timings, then a
   JSON line with the same numbers.

Any failed task or DAG run exits non-zero.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
INDICATORS = "threatq_indicators_to_elasticsearch"
SWEEP = "threatq_ioc_expiry_sweep"
MISP = "threatq_events_to_misp"
ACTIVE_ALIAS = "logs-ti_threatq_latest.threat"


def _out() -> Any:
    """Where progress and the summary go: fd ``TQ_DEMO_OUT_FD`` (scripts/demo sends task logs elsewhere)."""
    fd = os.environ.get("TQ_DEMO_OUT_FD")
    return os.fdopen(int(fd), "w", buffering=1, closefd=False) if fd else sys.stdout


OUT = _out()


def say(line: str = "") -> None:
    print(line, file=OUT, flush=True)


def fail(message: str) -> None:
    say(f"demo: FAILED: {message}")
    print(f"demo: FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def xcoms(dag_run: Any) -> dict[str, Any]:
    """Every task's return value of one DAG run, by task id."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, key="return_value")).all()
        return {row.task_id: XComModel.deserialize_value(row) for row in rows}


def run(dagbag: Any, dag_id: str, conf: dict[str, Any] | None = None) -> tuple[dict[str, Any], float]:
    """``dag.test()`` one DAG; fail loudly unless every task succeeded or was skipped on purpose."""
    dag = dagbag.dags[dag_id]
    say(f"demo: running {dag_id} {json.dumps(conf or {})}")
    started = time.perf_counter()
    dag_run = dag.test(run_conf=conf or {})
    took = time.perf_counter() - started
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    if str(dag_run.state) != "success" or any(s not in ("success", "skipped") for s in states.values()):
        fail(f"{dag_id} ended {dag_run.state}: {states} (task logs above)")
    return xcoms(dag_run), took


def es_client() -> Any:
    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook

    hook = ElasticsearchEcsHook(elasticsearch_conn_id="elasticsearch_default")
    return hook.get_client() if hasattr(hook, "get_client") else hook.get_conn()


def active_by_type(es: Any) -> Counter:
    es.indices.refresh(index=ACTIVE_ALIAS)
    resp = es.search(index=ACTIVE_ALIAS, size=0, aggs={"t": {"terms": {"field": "threatq.type.name", "size": 100}}})
    counts = Counter({b["key"]: b["doc_count"] for b in resp["aggregations"]["t"]["buckets"]})
    return counts


def reasons(sweep: dict[str, Any]) -> dict[str, int]:
    """Swept counts by reason, whatever the sweep operator calls the key."""
    for key in ("by_reason", "deleted_by_reason", "swept_by_reason", "reasons"):
        if isinstance(sweep.get(key), dict):
            return dict(sweep[key])
    return {}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Run the DAGs once and print a summary.")
    parser.add_argument("--summary", type=Path, default=None, help="also write the summary to this file")
    args = parser.parse_args()
    from airflow.models import DagBag

    dagbag = DagBag(dag_folder=str(REPO / "dags"))
    if dagbag.import_errors:
        fail(f"DAG import errors: {dagbag.import_errors}")
    timings: dict[str, float] = {}

    ind, timings[INDICATORS] = run(dagbag, INDICATORS, {"mode": "full_resync"})
    sweep, timings[SWEEP] = run(dagbag, SWEEP)
    es = es_client()
    by_type = active_by_type(es)
    misp: dict[str, Any] = {}
    if MISP in dagbag.dags:
        misp, timings[MISP] = run(dagbag, MISP)
    elif os.environ.get("TQ_DEMO_REQUIRE_MISP", "1") == "1":
        fail(f"DAG {MISP} is missing from dags/ (set TQ_DEMO_REQUIRE_MISP=0 to run without it)")

    poll, transform, load = ind.get("poll", {}), ind.get("transform", {}), ind.get("load", {})
    swept = sweep.get("sweep_expired_iocs", {})
    lines: list[str] = []
    print = lines.append  # noqa: A001 - the summary is collected, then shown and saved
    print("")
    print("=" * 72)
    print("ThreatQ → Elasticsearch / MISP demo summary")
    print("=" * 72)
    print(f"polled from ThreatQ simulator : {poll.get('indicators')} indicators in {poll.get('pages')} pages")
    print(f"transformed to ECS            : {transform.get('written')} written, {transform.get('rejected')} rejected")
    print(f"loaded into Elasticsearch     : {json.dumps(load)}")
    print(f"swept from the active index   : {json.dumps(swept)}")
    for reason, n in sorted(reasons(swept).items(), key=lambda kv: -kv[1]):
        print(f"    {n:7d}  {reason}")
    print(f"active IOCs now in {ACTIVE_ALIAS}: {sum(by_type.values())}")
    for name, n in by_type.most_common():
        print(f"    {n:7d}  {name}")
    if misp:
        print("shared to MISP                :")
        for task_id, value in sorted(misp.items()):
            print(f"    {task_id}: {json.dumps(value)}")
    print("timings                       : " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(json.dumps({"demo": "summary", "poll": poll, "transform": transform, "load": load, "sweep": swept,
                      "active_by_type": dict(by_type), "misp": misp, "timings_s": timings}, default=str))
    for line in lines:
        say(line)
    if args.summary:
        args.summary.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
