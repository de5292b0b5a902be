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
    """Every task's return value of one DAG run, by task id; a mapped task gives a list."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    out: dict[str, Any] = {}
    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, key="return_value")).all()
        for row in rows:
            value = XComModel.deserialize_value(row)
            if row.map_index >= 0:
                out.setdefault(row.task_id, []).append(value)
            else:
                out[row.task_id] = value
    return out


def totals(values: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the integer counters of a mapped task's results (and the counters of nested name → int dicts)."""
    summed: Counter = Counter()
    nested: dict[str, Counter] = {}
    for value in values:
        for key, n in (value or {}).items():
            if isinstance(n, int) and not isinstance(n, bool):
                summed[key] += n
            elif isinstance(n, dict) and all(isinstance(v, int) for v in n.values()):
                nested.setdefault(key, Counter()).update(n)
    return {**summed, **{key: dict(sorted(c.items())) for key, c in nested.items()}}


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


#: ``elasticsearch`` or ``opensearch`` (scripts/demo --target); only the summary's words depend on it:
#: the DAGs choose the target by the type of the connection elasticsearch_default.
TARGET = os.environ.get("TQ_DEMO_TARGET", "elasticsearch")
TARGET_NAME = {"elasticsearch": "Elasticsearch", "opensearch": "OpenSearch"}.get(TARGET, TARGET)


def wipe_demo_indices(es: Any) -> None:
    """The demo starts from empty ThreatQ indices on its local node, so its counts are its own."""
    from threatq_provider.elasticsearch.cluster import cluster

    if cluster(es).capabilities.data_streams:  # the history is a data stream there
        cluster(es).delete_data_streams("logs-ti_threatq*")
    es.indices.delete(index="logs-ti_threatq*", expand_wildcards="all", ignore_unavailable=True, allow_no_indices=True)


def es_client() -> Any:
    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook

    hook = ElasticsearchEcsHook(elasticsearch_conn_id="elasticsearch_default")
    return hook.get_client() if hasattr(hook, "get_client") else hook.get_conn()


def active_by_type(es: Any) -> Counter:
    es.indices.refresh(index=ACTIVE_ALIAS)
    resp = es.search(index=ACTIVE_ALIAS, body={"size": 0, "aggs": {"t": {"terms": {"field": "threatq.type.name",
                                                                                  "size": 100}}}})
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
    wipe_demo_indices(es_client())

    ind, timings[INDICATORS] = run(dagbag, INDICATORS, {"mode": "full_resync"})
    # A fresh parse per run: dag.test() leaves a run's conf in the DAG object's params.
    sweep, timings[SWEEP] = run(DagBag(dag_folder=str(REPO / "dags")), SWEEP)
    by_type = active_by_type(es_client())
    misp: dict[str, Any] = {}
    if MISP in dagbag.dags:
        window = {"updated_since": os.environ["TQ_DEMO_SINCE"], "updated_until": os.environ["TQ_DEMO_UNTIL"]}
        misp_runs, timings[MISP] = run(DagBag(dag_folder=str(REPO / "dags")), MISP, window)
        shares = misp_runs.get("share_event", [])
        misp = totals(shares if isinstance(shares, list) else [shares])
    elif os.environ.get("TQ_DEMO_REQUIRE_MISP", "1") == "1":
        fail(f"DAG {MISP} is missing from dags/ (set TQ_DEMO_REQUIRE_MISP=0 to run without it)")

    poll, transform, load = ind.get("poll", {}), ind.get("transform", {}), ind.get("load", {})
    swept = sweep.get("sweep_expired_iocs", {})
    lines: list[str] = []
    print = lines.append  # noqa: A001 - the summary is collected, then shown and saved
    print("")
    print("=" * 72)
    print(f"ThreatQ → {TARGET_NAME} / MISP demo summary")
    print("=" * 72)
    print(f"polled from ThreatQ simulator : {poll.get('indicators')} indicators in {poll.get('pages')} pages")
    rejected = transform.get("rejected")
    n_rejected = sum(rejected.values()) if isinstance(rejected, dict) else rejected
    print(f"transformed to ECS            : {transform.get('written')} written, {n_rejected} rejected "
          f"(engine {transform.get('engine')}, {transform.get('native_lines')} lines native)")
    print(f"loaded into {TARGET_NAME:<18}: {load.get('read')} read, {load.get('indexed')} new, "
          f"{load.get('updated')} updated, {load.get('skipped_stale')} unchanged, {load.get('rejected_total')} rejected; "
          f"{load.get('history_written')} history documents")
    print(f"swept from the active index   : {swept.get('deleted')} expired IOCs deleted, by reason:")
    for reason, n in sorted(reasons(swept).items(), key=lambda kv: -kv[1]):
        print(f"    {n:7d}  {reason}")
    print(f"active IOCs now in {ACTIVE_ALIAS}: {sum(by_type.values())}")
    for name, n in by_type.most_common():
        print(f"    {n:7d}  {name}")
    if misp:
        print(f"shared to MISP                : {misp.get('events', 0)} events ({misp.get('created', 0)} created, "
              f"{misp.get('updated', 0)} updated, {misp.get('unchanged', 0)} unchanged, "
              f"{misp.get('published', 0)} published), {misp.get('added', 0)} attributes added, "
              f"{misp.get('rejected', 0)} rejected")
        galaxies = misp.get("galaxy_clusters") or {}
        print("    galaxy clusters attached   : "
              + (", ".join(f"{name} {n}" for name, n in galaxies.items()) or "none"))
    print("timings                       : " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    for line in lines:
        say(line)
    if args.summary:
        args.summary.write_text("\n".join(lines) + "\n")
        record = {"demo": "summary", "poll": poll, "transform": transform, "load": load, "sweep": swept,
                  "active_by_type": dict(by_type), "misp": misp, "timings_s": timings}
        args.summary.with_suffix(".json").write_text(json.dumps(record, default=str, indent=2) + "\n")


if __name__ == "__main__":
    main()
