"""Faults on the scale-out set-up (``scripts/cluster``): CeleryExecutor on PostgreSQL with two
workers, the stage on an S3-compatible store (s3proxy), a three-node Elasticsearch cluster.

One ThreatQ simulator holds ``N`` indicators updated within one hour; the indicators DAG runs on
its production schedule (every 10 minutes), so the hour is six intervals.

(a) A backfill of the six intervals runs across both workers; once a load task has run for
    1.5 s (past its start-up), ``kill -9`` of every process of the worker running it
    (``scripts/cluster kill``: the worker and the tasks it forked, as when its host dies). The
    scheduler sees the task's heartbeats stop, fails that try and retries it, on the other worker.
(b) One run of the whole hour; mid-load, the Elasticsearch node holding the active index's
    primary shard is stopped, then started again.
(c) One run of the whole hour; the object store is stopped once the poll has staged its file and
    started again only after the transform has met it down.

Each ends with: every run succeeded; the active index equal to the simulator's ground truth (ids
by the expiry rules after a sweep, and each document's external version carrying the
indicator's ``updated_at``); one history copy per indicator (a retried load writes the same
versions, which the history refuses as existing); every task's result in XCom; and the report's
``retried`` equal to the tasks whose final try is above 1 (also in the run-report document).

Size: ``TQ_CLUSTER_TEST_INDICATORS`` indicators (default 50,000, as issue #16 asks: ~6 minutes for
the three tests on this 2-core machine when it is otherwise quiet, as CI's is, plus 1.5-3 minutes
to start the set-up; with other jobs sharing the cores the load rate drops about fivefold, so set
e.g. 12,000 there). ``bench/cluster_workers.py`` measures one worker against two.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from tests.integration.cluster.conftest import cluster_cmd
from tests.integration.dags import helpers

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.cluster, pytest.mark.timeout(1800)]

INDICATORS = "threatq_indicators_to_elasticsearch"
SWEEP = "threatq_ioc_expiry_sweep"
TASKS = ("poll", "transform", "load", "report", "stage_retention")
HISTORY = "logs-ti_threatq.threat_history-*"
RUNS_INDEX = "threatq-provider-runs"
N = int(os.environ.get("TQ_CLUSTER_TEST_INDICATORS", "50000"))
# One hour, six of the DAG's 10-minute intervals, two days ago: no scheduled run reads it, and its
# history index (named by the runs' data_interval_end) is within the sweep's 5-day history retention.
HOUR0 = (datetime.now(timezone.utc) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
HOUR1 = HOUR0 + timedelta(hours=1)


@pytest.fixture(scope="module")
def setup(cluster):
    from elasticsearch import Elasticsearch
    from threatq_simulators.corpus import Corpus
    from threatq_simulators.threatq_sim import ThreatQSimulator

    from tests.fixtures.threatq import threatq_conn_json

    sim = ThreatQSimulator(Corpus(seed=16, indicators=N, events=1, start=HOUR0, end=HOUR1),
                           client_secret="cluster-fault-secret")
    sim.start()
    es = Elasticsearch(cluster.es_urls, request_timeout=120, retry_on_timeout=True, max_retries=5)
    api = cluster.api
    try:
        import json

        api.put_connection("threatq_default", json.loads(threatq_conn_json(sim, grant="client_credentials")))
        # Scheduled runs (unpausing makes one) read only their own 10 minutes, never this hour.
        api.put_variable("threatq_initial_lookback", "0d")
        for dag_id in (INDICATORS, SWEEP):
            api.wait_dag(dag_id)
            api.patch(f"/dags/{dag_id}", {"is_paused": False})
        corpus = list(sim.corpus.iter_indicators(HOUR0, HOUR1))
        assert len(corpus) == N
        yield SimpleNamespace(cluster=cluster, api=api, es=es, sim=sim, corpus=corpus)
    finally:
        for dag_id in (INDICATORS, SWEEP):
            api.http.patch(f"{api.base}/api/v2/dags/{dag_id}", json={"is_paused": True}, timeout=60)
        sim.stop()
        es.close()


# -- helpers ------------------------------------------------------------------------------------


def _wait_idle(s, timeout: float = 600) -> None:
    """No run of either DAG queued or running (scheduled runs, sweeps the loads triggered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(r["state"] in ("success", "failed") for d in (INDICATORS, SWEEP) for r in s.api.runs(d)):
            return
        time.sleep(3)
    raise AssertionError(f"DAGs still busy after {timeout}s")


def _wipe(s) -> None:
    _wait_idle(s)
    helpers.wipe_threatq_indices(s.es)


def _trigger_hour(s) -> str:
    conf = {"since": HOUR0.isoformat(), "until": HOUR1.isoformat()}
    resp = s.api.post(f"/dags/{INDICATORS}/dagRuns", {"logical_date": None, "conf": conf})
    assert resp.status_code == 200, resp.text
    return resp.json()["dag_run_id"]


def _wait_task_running(s, run_ids: set[str], task_id: str, timeout: float = 900) -> tuple[str, dict]:
    """The first run whose ``task_id`` is running (with a worker named), and its task instance."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run_id in sorted(run_ids):
            ti = s.api.task_instances(INDICATORS, run_id).get(task_id) or {}
            if ti.get("state") == "running" and ti.get("hostname"):
                return run_id, ti
        time.sleep(0.5)
    raise AssertionError(f"no {task_id} task started running within {timeout}s")


def _a_load_under_way(s, run_ids: set[str], timeout: float = 900) -> tuple[str, str]:
    """A run whose load has been running for a while (past its start-up, into its requests), and
    its worker; of several, the one that started last, so it has the most left to do."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = helpers.utcnow()
        running = []
        for run_id in run_ids:
            ti = s.api.task_instances(INDICATORS, run_id).get("load") or {}
            if ti.get("state") == "running" and ti.get("hostname") and ti.get("start_date"):
                running.append((_time(ti["start_date"]), run_id, ti["hostname"]))
        ripe = [r for r in running if (now - r[0]).total_seconds() >= 1.5]
        if ripe:
            _, run_id, worker = max(ripe)
            return run_id, worker
        time.sleep(0.3)
    raise AssertionError(f"no load task ran for 1.5 s within {timeout}s")


def _sweep(s) -> tuple[datetime, datetime]:
    _wait_idle(s)
    before = helpers.utcnow()
    resp = s.api.post(f"/dags/{SWEEP}/dagRuns", {"logical_date": None, "conf": {"history_retention": "30d"}})
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["dag_run_id"]
    runs = s.api.wait_runs(SWEEP, {run_id}, timeout=600)
    assert runs[run_id]["state"] == "success", s.api.task_instances(SWEEP, run_id)
    return before, helpers.utcnow()


def _assert_ground_truth(s) -> None:
    """Active index = the simulator's truth, ids and versions; one history copy per indicator."""
    from elasticsearch import helpers as es_helpers

    from threatq_provider.elasticsearch.versioning import split_version

    _assert_one_history_copy_each(s)
    before, after = _sweep(s)
    docs = helpers.assert_active_index_matches(s.es, s.corpus, before=before, after=after)
    updated = {str(raw["id"]): helpers._date(raw["updated_at"]) for raw in s.corpus}
    versions = {str(hit["_source"]["threatq"]["id"]): hit["_version"] for hit in es_helpers.scan(
        s.es, index=helpers.ACTIVE_ALIAS, query={"query": {"match_all": {}}}, version=True,
        _source=["threatq.id"])}
    assert set(versions) == set(docs)
    wrong = [(i, v) for i, v in versions.items() if split_version(v)[0] != updated[i]]
    assert not wrong, f"{len(wrong)} active documents carry another version than ThreatQ's updated_at, e.g. {wrong[:3]}"


def _assert_one_history_copy_each(s) -> None:
    """Every indicator read has exactly one history copy (a retried load meets its own copies as
    existing). Checked before the sweep, whose history retention could trim the index."""
    from elasticsearch import helpers as es_helpers

    _wait_idle(s)
    s.es.indices.refresh(index=HISTORY)
    copies: dict[str, int] = {}
    for hit in es_helpers.scan(s.es, index=HISTORY, query={"query": {"match_all": {}}}, _source=False):
        tq_id = hit["_id"].rsplit("-", 1)[0]  # history _id = "<threatq id>-<version>"
        copies[tq_id] = copies.get(tq_id, 0) + 1
    doubled = {i: n for i, n in copies.items() if n > 1}
    assert not doubled, f"{len(doubled)} indicators have more than one history copy, e.g. {list(doubled.items())[:3]}"
    missing = {str(raw["id"]) for raw in s.corpus} - set(copies)
    assert not missing, f"{len(missing)} indicators read have no history copy, e.g. {sorted(missing)[:5]}"


def _assert_results_and_report(s, run_ids: set[str]) -> dict[str, dict[str, list[dict]]]:
    """Every task's result is in XCom; the report's ``retried`` is what the tries say. Returns the
    tries of every task of every run."""
    s.es.indices.refresh(index=RUNS_INDEX)
    all_tries: dict[str, dict[str, list[dict]]] = {}
    for run_id in run_ids:
        tries = {t: s.api.tries(INDICATORS, run_id, t) for t in TASKS}
        all_tries[run_id] = tries
        for task_id in TASKS:
            assert tries[task_id][-1]["state"] == "success", (run_id, task_id, tries[task_id])
            assert s.api.xcom(INDICATORS, run_id, task_id) is not None, f"{run_id}: no XCom result of {task_id}"
        report = s.api.xcom(INDICATORS, run_id, "report")
        final = {t: tries[t][-1]["try_number"] for t in ("poll", "transform", "load", "report")}
        assert report["attempts"] == final, (run_id, report["attempts"], final)
        assert report["retried"] == sorted(t for t, n in final.items() if n > 1)
        doc = s.es.get(index=RUNS_INDEX, id=f"{INDICATORS}/{run_id}")["_source"]
        assert doc.get("retried", []) == report["retried"]
        assert report["load_rejected"] == 0, report
    return all_tries


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _workers_of(tries: list[dict]) -> list[str]:
    return [t["hostname"] for t in tries]


# -- the faults ---------------------------------------------------------------------------------


def test_a_worker_killed_mid_load_the_load_is_retried_on_the_other_worker(setup):
    s = setup
    _wipe(s)
    resp = s.api.post("/backfills", {"dag_id": INDICATORS, "from_date": HOUR0.isoformat(),
                                     "to_date": (HOUR1 - timedelta(minutes=10)).isoformat(),
                                     "max_active_runs": 6, "reprocess_behavior": "completed"})
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 120
    run_ids: set[str] = set()
    while len(run_ids) < 6 and time.monotonic() < deadline:
        run_ids = {r["dag_run_id"] for r in s.api.runs(INDICATORS) if r["run_type"] == "backfill"
                   and HOUR0.isoformat()[:16] <= r["data_interval_start"][:16] < HOUR1.isoformat()[:16]}
        time.sleep(1)
    assert len(run_ids) == 6, s.api.runs(INDICATORS)

    victim_run, worker = _a_load_under_way(s, run_ids)
    cluster_cmd("kill", worker)
    try:
        runs = s.api.wait_runs(INDICATORS, run_ids, timeout=1200)
    finally:
        cluster_cmd("start", worker)  # back to two workers for the next tests
    failed = {r: s.api.task_instances(INDICATORS, r) for r, v in runs.items() if v["state"] != "success"}
    assert not failed, f"backfill runs failed: {failed}"

    windows = sorted(r["data_interval_start"] for r in runs.values())
    assert [w[11:16] for w in windows] == [f"{HOUR0.hour:02d}:{m:02d}" for m in range(0, 60, 10)]
    tries = _assert_results_and_report(s, run_ids)
    load = tries[victim_run]["load"]
    # The killed try failed (the kill landed while it ran) and a later one finished the load.
    assert len(load) >= 2 and load[0]["hostname"] == worker and load[0]["state"] == "failed", load
    other = next(w for w in s.cluster.workers if w != worker)
    assert load[-1]["hostname"] == other, f"the retried load ran on {load[-1]['hostname']}, not on {other}"
    used = {h for run in tries.values() for task in run.values() for h in _workers_of(task)}
    assert set(s.cluster.workers) <= used, f"the backfill did not run on both workers: {used}"
    staged = [i for r in run_ids for i in helpers.read_ndjson_ids(s.api.xcom(INDICATORS, r, "poll")["path"])]
    assert sorted(staged) == sorted(helpers.all_ids(s.corpus)), "the six intervals do not add up to the hour"
    _assert_ground_truth(s)


def test_an_elasticsearch_node_stopped_mid_load_and_started_again(setup):
    s = setup
    _wipe(s)
    run_id = _trigger_hour(s)
    _wait_task_running(s, {run_id}, "load")
    # Wait for the active index to take writes, then stop the node holding its primary shard.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if s.es.indices.exists_alias(name=helpers.ACTIVE_ALIAS):
            shards = s.es.cat.shards(index=helpers.ACTIVE_ALIAS, format="json")
            if any(int(sh.get("docs") or 0) > 0 for sh in shards if sh["prirep"] == "p"):
                break
        time.sleep(0.5)
    primary = next(sh["node"] for sh in s.es.cat.shards(index=helpers.ACTIVE_ALIAS, format="json")
                   if sh["prirep"] == "p")
    node = primary.removeprefix("tq-")
    assert node in s.cluster.es_nodes, primary
    cluster_cmd("stop", node)
    stopped_at = helpers.utcnow()
    restarted = threading.Thread(target=cluster_cmd, args=("start", node), daemon=True)
    restarted.start()
    runs = s.api.wait_runs(INDICATORS, {run_id}, timeout=1200)
    restarted.join(timeout=600)
    assert runs[run_id]["state"] == "success", s.api.task_instances(INDICATORS, run_id)
    load = s.api.tries(INDICATORS, run_id, "load")
    assert _time(load[0]["start_date"]) < stopped_at < _time(load[-1]["end_date"]), "the node did not stop mid-load"
    deadline = time.monotonic() + 300
    while True:  # the restarted node is back and every replica assigned again
        health = s.es.cluster.health(wait_for_status="green", timeout="30s")
        if health["status"] == "green" and health["number_of_nodes"] == len(s.cluster.es_nodes):
            break
        assert time.monotonic() < deadline, health
    _assert_results_and_report(s, {run_id})
    _assert_ground_truth(s)


def test_the_object_store_restarted_between_poll_and_transform(setup):
    s = setup
    _wipe(s)
    run_id = _trigger_hour(s)
    _wait_task_running(s, {run_id}, "poll")
    # A gate between poll and transform: with no free slot in the pool, the running poll finishes
    # but the transform cannot start; the store is stopped in between, then the slots come back.
    slots = s.api.get("/pools/default_pool")["slots"]
    s.api.patch("/pools/default_pool?update_mask=slots", {"slots": 0})
    try:
        deadline = time.monotonic() + 900
        while s.api.task_instances(INDICATORS, run_id)["poll"]["state"] != "success":
            assert time.monotonic() < deadline, "the poll did not succeed in time"
            assert s.api.run(INDICATORS, run_id)["state"] not in ("failed", "success")
            time.sleep(0.5)
        assert s.api.task_instances(INDICATORS, run_id)["transform"]["state"] in (None, "scheduled")
        cluster_cmd("stop", "s3")
        down_at = helpers.utcnow()
    finally:
        s.api.patch("/pools/default_pool?update_mask=slots", {"slots": slots})
    try:
        # Keep the store down until the transform's first try has met it: ended (its S3 client's
        # own retries gave up), or two minutes of it waiting on the store.
        deadline = time.monotonic() + 600
        while True:
            tries = s.api.tries(INDICATORS, run_id, "transform")
            if tries and tries[0].get("start_date"):
                break
            assert time.monotonic() < deadline, "the transform never started"
            time.sleep(0.5)
        waited = time.monotonic() + 120
        while time.monotonic() < waited and not s.api.tries(INDICATORS, run_id, "transform")[0].get("end_date"):
            time.sleep(1)
    finally:
        cluster_cmd("start", "s3")
    up_at = helpers.utcnow()
    runs = s.api.wait_runs(INDICATORS, {run_id}, timeout=1200)
    assert runs[run_id]["state"] == "success", s.api.task_instances(INDICATORS, run_id)
    transform = s.api.tries(INDICATORS, run_id, "transform")
    assert down_at < _time(transform[0]["start_date"]) < up_at, "the transform did not meet the store down"
    if transform[0].get("end_date") and _time(transform[0]["end_date"]) < up_at:
        assert transform[0]["state"] == "failed" and len(transform) >= 2, transform  # retried once it was back
    _assert_results_and_report(s, {run_id})
    _assert_ground_truth(s)

