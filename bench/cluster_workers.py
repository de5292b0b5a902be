"""One Celery worker versus two, on the scale-out set-up (``scripts/cluster``), in one run.

    python bench/cluster_workers.py [--n 30000] [--intervals 6] [--json out.json]

A ThreatQ simulator holds ``--n`` indicators in each of two hours (a week ago). The indicators DAG
(production schedule, 10-minute intervals) is backfilled over the first hour with one worker
running (worker2 stopped), then over the second hour with both; each backfill runs all its
intervals at once (``max_active_runs`` = intervals). Per stage (poll, transform, load) it prints
the busy time (sum of the task durations), the span (first start to last end) and indicators/s
over the span, for each pass, and the ratio one-worker span / two-worker span (above 1: two
workers were faster). The whole backfill's span and ratio close the table.

Older versions never overwrite newer ones whichever slice loads first: the active index is
written with external versions (``updated_at`` seconds, then the poll's time; see
``threatq_provider.elasticsearch.versioning``), so the order in which parallel slices land does
not matter; the script checks every active document's version against ThreatQ's ``updated_at``.

Uses a running ``scripts/cluster`` (or starts it and stops it afterwards). The machine's other
load changes the figures: run it on a quiet machine and read the load average it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.cluster.conftest import Api, cluster_cmd  # noqa: E402
from tests.integration.dags import helpers  # noqa: E402

DAG = "threatq_indicators_to_elasticsearch"
SWEEP = "threatq_ioc_expiry_sweep"
STAGES = ("poll", "transform", "load")


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _wait_idle(api: Api, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(r["state"] in ("success", "failed") for d in (DAG, SWEEP) for r in api.runs(d)):
            return
        time.sleep(3)
    raise SystemExit(f"DAGs still busy after {timeout}s")


def backfill(api: Api, start: datetime, intervals: int) -> dict[str, dict]:
    """Backfill ``intervals`` 10-minute intervals from ``start`` at once; the finished runs."""
    end = start + timedelta(minutes=10 * intervals)
    resp = api.post("/backfills", {"dag_id": DAG, "from_date": start.isoformat(),
                                   "to_date": (end - timedelta(minutes=10)).isoformat(),
                                   "max_active_runs": intervals, "reprocess_behavior": "completed"})
    if resp.status_code != 200:
        raise SystemExit(f"backfill refused: {resp.text}")
    deadline = time.monotonic() + 120
    run_ids: set[str] = set()
    while len(run_ids) < intervals and time.monotonic() < deadline:
        run_ids = {r["dag_run_id"] for r in api.runs(DAG) if r["run_type"] == "backfill"
                   and start.isoformat()[:16] <= r["data_interval_start"][:16] < end.isoformat()[:16]}
        time.sleep(1)
    runs = api.wait_runs(DAG, run_ids, timeout=3600)
    failed = [r for r, v in runs.items() if v["state"] != "success"]
    if failed:
        raise SystemExit(f"backfill runs failed: {failed}")
    return runs


def stage_figures(api: Api, run_ids: set[str], indicators: int) -> dict[str, dict]:
    """Busy seconds, span seconds and indicators/s per stage, and for the whole backfill."""
    spans: dict[str, list[tuple[datetime, datetime]]] = {s: [] for s in (*STAGES, "all")}
    workers: set[str] = set()
    for run_id in run_ids:
        for task_id, ti in api.task_instances(DAG, run_id).items():
            if not ti.get("start_date") or not ti.get("end_date"):
                continue
            interval = (_time(ti["start_date"]), _time(ti["end_date"]))
            spans["all"].append(interval)
            workers.add(ti.get("hostname") or "?")
            if task_id in STAGES:
                spans[task_id].append(interval)
    out: dict[str, dict] = {}
    for stage, intervals in spans.items():
        span = (max(e for _, e in intervals) - min(s for s, _ in intervals)).total_seconds()
        busy = sum((e - s).total_seconds() for s, e in intervals)
        out[stage] = {"busy_s": round(busy, 1), "span_s": round(span, 1), "per_s": round(indicators / span, 1)}
    out["workers"] = sorted(workers)
    return out


def check_versions(es, corpus: list[dict]) -> int:
    """Every active document's version carries ThreatQ's ``updated_at`` (no older copy won)."""
    from elasticsearch import helpers as es_helpers

    from threatq_provider.elasticsearch.versioning import split_version

    updated = {str(raw["id"]): helpers._date(raw["updated_at"]) for raw in corpus}
    es.indices.refresh(index=helpers.ACTIVE_ALIAS)
    wrong = checked = 0
    for hit in es_helpers.scan(es, index=helpers.ACTIVE_ALIAS, query={"query": {"match_all": {}}}, version=True,
                               _source=["threatq.id"]):
        checked += 1
        wrong += split_version(hit["_version"])[0] != updated[str(hit["_source"]["threatq"]["id"])]
    if wrong:
        raise SystemExit(f"{wrong} of {checked} active documents carry an older version than ThreatQ's")
    return checked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30_000, help="indicators per pass (default 30000)")
    parser.add_argument("--intervals", type=int, default=6, help="10-minute intervals per backfill (default 6)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    from elasticsearch import Elasticsearch
    from threatq_simulators.corpus import Corpus
    from threatq_simulators.threatq_sim import ThreatQSimulator

    from tests.fixtures.threatq import threatq_conn_json

    started_here = cluster_cmd("status", check=False).returncode != 0
    if started_here:
        cluster_cmd("start", timeout=1800)
    info = json.loads(cluster_cmd("env", "--json").stdout)
    api = Api(info["api_url"])
    es = Elasticsearch(info["es_urls"], request_timeout=120, retry_on_timeout=True, max_retries=5)
    span = timedelta(minutes=10 * args.intervals)
    start = (datetime.now(timezone.utc) - timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
    sim = ThreatQSimulator(Corpus(seed=1616, indicators=2 * args.n, events=1, start=start, end=start + 2 * span),
                           client_secret="bench-secret")
    sim.start()
    results: dict[str, dict] = {}
    try:
        api.put_connection("threatq_default", json.loads(threatq_conn_json(sim, grant="client_credentials")))
        api.put_variable("threatq_initial_lookback", "0d")
        for dag_id in (DAG, SWEEP):
            api.wait_dag(dag_id)
            api.patch(f"/dags/{dag_id}", {"is_paused": False})
        for workers, first in ((1, start), (2, start + span)):
            _wait_idle(api)
            helpers.wipe_threatq_indices(es)
            if workers == 1:
                cluster_cmd("stop", "worker2")
            else:
                cluster_cmd("start", "worker2")
            corpus = list(sim.corpus.iter_indicators(first, first + span))
            load_before = os.getloadavg()[0]
            runs = backfill(api, first, args.intervals)
            figures = stage_figures(api, set(runs), len(corpus))
            figures["indicators"] = len(corpus)
            figures["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
            figures["active_checked"] = check_versions(es, corpus)
            results[f"{workers}_worker"] = figures
            print(f"{workers} worker(s): {len(corpus)} indicators, {args.intervals} runs on {figures['workers']}, "
                  f"load average {figures['load_average'][0]} -> {figures['load_average'][1]}", flush=True)
    finally:
        cluster_cmd("start", "worker2", check=False)
        for dag_id in (DAG, SWEEP):
            api.http.patch(f"{api.base}/api/v2/dags/{dag_id}", json={"is_paused": True}, timeout=60)
        sim.stop()
        es.close()
        if started_here:
            cluster_cmd("stop", timeout=600, check=False)

    one, two = results["1_worker"], results["2_worker"]
    print(f"\n{'stage':10} {'1w busy s':>10} {'1w span s':>10} {'1w ind/s':>9} {'2w busy s':>10} {'2w span s':>10} "
          f"{'2w ind/s':>9} {'ratio':>6}")
    for stage in (*STAGES, "all"):
        a, b = one[stage], two[stage]
        print(f"{stage:10} {a['busy_s']:>10} {a['span_s']:>10} {a['per_s']:>9} {b['busy_s']:>10} {b['span_s']:>10} "
              f"{b['per_s']:>9} {a['span_s'] / b['span_s']:>6.2f}")
    results["ratio"] = {s: round(one[s]["span_s"] / two[s]["span_s"], 2) for s in (*STAGES, "all")}
    results["cores"] = os.cpu_count()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
