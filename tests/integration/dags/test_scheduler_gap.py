"""First load and a scheduler outage on a REAL scheduler (#13, "Done when"): scheduler +
api-server + dag-processor + triggerer (``airflow_services``), the ThreatQ simulator over HTTP, the
real Elasticsearch node.

* A fresh deployment: the indicators DAG unpaused for the first time; the run the scheduler creates
  reads the initial look-back (90 days) and the active index equals the simulator's ground truth
  for it (ids, and each document at the simulator's version).
* The scheduler stopped for more than six intervals while an analyst keeps editing ThreatQ (status
  changes, new indicators, through the simulator's API), then started again: the next scheduled run
  reads from the watermark, its report (XCom and run-report document) names the gap, and the active
  index equals the ground truth again, edits included.

Schedule: the production DAG file, its interval shortened through ``THREATQ_INDICATORS_CRON``, the
variable it already reads at parse time, set to ``* * * * * */10``: croniter's sixth field is
seconds, and Airflow's cron timetables accept it (they only skip the human description). Every
10 seconds, so six missed intervals take a minute, not an hour; nothing test-only runs in Airflow.

To stop the scheduler between tasks (a task killed mid-run would wait out the heartbeat timeout,
minutes), the test pauses both DAGs, waits until no task is queued or running, stops the scheduler,
then unpauses them while it is down: for the rest of the outage the DAG is active and nothing runs.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import requests

from tests.integration.dags import airflow_services, helpers

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.elasticsearch]

INDICATORS = "threatq_indicators_to_elasticsearch"
SWEEP = "threatq_ioc_expiry_sweep"
STEP = timedelta(seconds=10)
CRON = "* * * * * */10"  # every 10 s (sixth field: seconds)
LOOKBACK = timedelta(days=90)  # the DAG's default initial look-back
# The scheduler stays down at least this many intervals, and until the run it will create on restart
# starts six intervals or more after the stop (see the test): at least 6 missed, whatever the timing.
OUTAGE_STEPS = 8

NOW = datetime.now(timezone.utc).replace(microsecond=0)
# The corpus ends before the test starts: until the analyst's edits, nothing new appears, so the
# ground truth of every window is fixed; it starts before the look-back, so the look-back matters.
CORPUS_START, CORPUS_END = NOW - timedelta(days=120), NOW - timedelta(minutes=5)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _wait(what: str, check, timeout: float, every: float = 2.0):
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, es_url, es_client):
    """A fresh deployment: empty indices, no Variable, both DAGs unpaused once parsed."""
    from tests.integration.dags.conftest import start_simulator

    helpers.wipe_threatq_indices(es_client)
    sim = start_simulator(seed=47, indicators=2_000, events=5, start=CORPUS_START, end=CORPUS_END)
    try:
        with airflow_services.running(tmp_path_factory.mktemp("airflow-gap"), sim=sim, es_url=es_url,
                                      extra_env={"THREATQ_INDICATORS_CRON": CRON}) as services:
            api = services.api
            for dag_id in (SWEEP, INDICATORS):
                api.wait_dag(dag_id)
            assert api.get(f"/dags/{INDICATORS}")["timetable_summary"] == CRON
            api.patch(f"/dags/{SWEEP}", {"is_paused": False})
            unpaused_at = helpers.utcnow()
            api.patch(f"/dags/{INDICATORS}", {"is_paused": False})
            host = sim.url.split("://", 1)[1].rstrip("/")
            yield SimpleNamespace(api=api, services=services, sim=sim, unpaused_at=unpaused_at, first_load_at=None,
                                  watermark_key=f"threatq_watermark__{INDICATORS}__{host}__window")
    finally:
        sim.stop()


def _runs(api, dag_id: str) -> list[dict]:
    return sorted(api.runs(dag_id), key=lambda r: r["data_interval_start"] or "")


def _watermark(dep) -> datetime | None:
    text = dep.api.variable(dep.watermark_key)
    return _t(json.loads(text)["watermark"]) if text else None


def _finished(dep, run_id: str, timeout: float) -> dict:
    run = dep.api.wait_runs(INDICATORS, {run_id}, timeout=timeout)[run_id]
    assert run["state"] == "success", (dep.api.task_states(INDICATORS, run_id), dep.services.log("scheduler"))
    if dep.first_load_at is None:
        dep.first_load_at = _t(run["end_date"])
    return run


def _quiesce(dep, timeout: float = 240) -> None:
    """Pause both DAGs and wait until no task is queued or running anywhere.

    A paused DAG's running run keeps its finished tasks and waits, unscheduled, until the DAG is
    unpaused; the tasks already handed to the executor finish first.
    """
    for dag_id in (INDICATORS, SWEEP):
        dep.api.patch(f"/dags/{dag_id}", {"is_paused": True})
    _wait("no queued or running task", lambda: not dep.api.busy_task_instances(), timeout)


def _sweep_and_compare(dep, es, truth: list[dict]) -> dict[str, dict]:
    """Trigger the expiry sweep, then compare the active index with the ground truth.

    Asset-triggered sweeps may run too (each load triggers one). ``before`` is taken before this
    sweep starts, ``after`` once the index has been read: an indicator expired before ``before``
    must be gone (this sweep removed it), one still active at ``after`` must be there (no sweep
    removes it), and only one expiring in between may be on either side.
    """
    dep.api.patch(f"/dags/{SWEEP}", {"is_paused": False})  # (the indicators DAG may stay paused)
    before = helpers.utcnow()
    resp = dep.api.post(f"/dags/{SWEEP}/dagRuns", {"logical_date": None, "conf": {}})
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["dag_run_id"]
    run = dep.api.wait_runs(SWEEP, {run_id}, timeout=300)[run_id]
    assert run["state"] == "success", dep.api.task_states(SWEEP, run_id)
    docs = helpers.es_active_docs(es)
    after = helpers.utcnow()
    # The DAGs write fixed index names: a DAG test of another session on this node wipes them.
    created = _active_index_created(es)
    assert created <= dep.first_load_at, (
        f"the active index was re-created at {created}, after this deployment's first load "
        f"({dep.first_load_at}): another test session wiped logs-ti_threatq* on this node")
    must, may = helpers.active_ids(truth, now=after), helpers.active_ids(truth, now=before)
    missing, extra = must - set(docs), set(docs) - may
    assert not missing, f"{len(missing)} active indicators missing from the active index, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} expired or unknown indicators in the active index, e.g. {sorted(extra)[:5]}"
    # Each document is the simulator's current version of its indicator (an edit reached it).
    by_id = {str(raw["id"]): raw for raw in truth}
    stale = {i: (hit["_source"]["threatq"]["updated_at"], by_id[i]["updated_at"]) for i, hit in docs.items()
             if hit["_source"]["threatq"]["updated_at"] != by_id[i]["updated_at"].replace(" ", "T") + ".000Z"}
    assert not stale, f"{len(stale)} documents are not the simulator's version, e.g. {list(stale.items())[:3]}"
    return docs


def _active_index_created(es) -> datetime:
    settings = es.indices.get_settings(index=helpers.ACTIVE_ALIAS, name="index.creation_date")
    (index,) = settings.values()
    return datetime.fromtimestamp(int(index["settings"]["index"]["creation_date"]) / 1000, tz=timezone.utc)


def _run_report(es, run_id: str) -> dict:
    es.indices.refresh(index="threatq-provider-runs")
    return es.get(index="threatq-provider-runs", id=f"{INDICATORS}/{run_id}")["_source"]


def test_a_fresh_deployment_first_scheduled_run_loads_the_initial_lookback(deployment, es_client):
    dep = deployment
    first = _wait("the run created on unpausing", lambda: _runs(dep.api, INDICATORS), timeout=120)[0]
    assert first["run_type"] == "scheduled" and _t(first["data_interval_end"]) >= dep.unpaused_at - 2 * STEP
    _finished(dep, first["dag_run_id"], timeout=300)
    end = _t(first["data_interval_end"])
    assert _t(first["data_interval_start"]) == end - STEP

    truth = list(dep.sim.corpus.iter_indicators(end - LOOKBACK, end))
    older = dep.sim.corpus.indicator_ids(None, end - LOOKBACK)
    assert len(truth) > 1_000 and older, "the corpus must reach both inside and before the look-back"
    poll = dep.api.xcom(INDICATORS, first["dag_run_id"], "poll")
    report = dep.api.xcom(INDICATORS, first["dag_run_id"], "report")
    assert (_t(poll["window_start"]), _t(poll["window_end"])) == (end - LOOKBACK, end)
    assert poll["indicators"] == report["polled"] == len(truth)
    assert sorted(helpers.read_ndjson_ids(poll["path"])) == sorted(helpers.all_ids(truth))
    assert report["window_kind"] == "initial_lookback" and report["gap_closed"] is None
    assert report["watermark_saved"] is True and _t(report["watermark"]) >= end
    doc = _run_report(es_client, first["dag_run_id"])
    assert doc["window_kind"] == "initial_lookback" and doc["polled"] == len(truth)

    # Later runs (every 10 s) find nothing new; the index stays the look-back's ground truth.
    _quiesce(dep)
    docs = _sweep_and_compare(dep, es_client, truth)
    assert not set(docs) & {str(i) for i in older}, "an indicator older than the look-back was loaded"


class Analyst:
    """Edits ThreatQ through its API (the simulator's ``PUT``/``POST /api/indicators``)."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.http = requests.Session()
        token = self.http.post(f"{sim.url}/api/token", timeout=10, json={
            "email": sim.username, "password": sim.password, "grant_type": "password", "client_id": sim.client_id})
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        self.touched: set[int] = set()

    def edit(self, iid: int, **changes) -> None:
        resp = self.http.put(f"{self.sim.url}/api/indicators/{iid}", json=changes, timeout=10)
        assert resp.status_code == 200, resp.text
        self.touched.add(iid)

    def create(self, value: str) -> None:
        resp = self.http.post(f"{self.sim.url}/api/indicators", timeout=10, json={
            "value": value, "type": "IP Address", "status": "Active", "sources": [{"name": "Outage drill"}]})
        assert resp.status_code == 201 and resp.json()["data"][0]["existing"] == "N", resp.text
        self.touched.add(int(resp.json()["data"][0]["id"]))


def _edit_plan(corpus, lookback_start: datetime, rounds: int) -> list[list[tuple]]:
    """Per round: a loaded active IOC withdrawn (Review), one re-described, an old one (before the
    look-back, never loaded) and a loaded inactive one made Active, and a new IOC."""
    loaded = corpus.indicator_ids(lookback_start, None)
    old = corpus.indicator_ids(None, lookback_start)
    status = {i: corpus.indicator(i)["status"]["name"] for i in loaded + old}
    active = [i for i in loaded if status[i] == "Active"]
    inactive = [i for i in loaded if status[i] in ("Review", "Indirect")]
    old_inactive = [i for i in old if status[i] in ("Review", "Indirect")]
    assert len(active) >= 2 * rounds and len(inactive) >= rounds and len(old_inactive) >= rounds
    return [[("edit", active[2 * k], {"status": "Review"}),
             ("edit", active[2 * k + 1], {"description": f"re-rated during the outage ({k})"}),
             ("edit", old_inactive[k], {"status": "Active"}),
             ("edit", inactive[k], {"status": {"name": "Active"}}),
             ("create", f"203.0.113.{10 + k}", {})] for k in range(rounds)]


def test_a_scheduler_down_for_six_intervals_leaves_no_gap_and_the_report_names_it(deployment, es_client):
    dep = deployment
    first = _wait("the first run", lambda: _runs(dep.api, INDICATORS), timeout=120)[0]
    _finished(dep, first["dag_run_id"], timeout=300)
    lookback_start = _t(dep.api.xcom(INDICATORS, first["dag_run_id"], "poll")["window_start"])

    # Stop the scheduler between tasks, then let the DAGs be active while it is down.
    _quiesce(dep)
    dep.services.stop("scheduler")
    stopped_at = helpers.utcnow()
    mark_at_stop = _watermark(dep)
    assert mark_at_stop is not None and mark_at_stop <= stopped_at
    for dag_id in (SWEEP, INDICATORS):
        dep.api.patch(f"/dags/{dag_id}", {"is_paused": False})

    # The analyst works through the outage: a round of edits every ~STEP/2, until it is long enough.
    analyst = Analyst(dep.sim)
    plan = _edit_plan(dep.sim.corpus, lookback_start, rounds=8)
    first_edit_at = helpers.utcnow()
    for round_ in plan:
        for kind, target, changes in round_:
            if kind == "edit":
                analyst.edit(target, **changes)
            else:
                analyst.create(target)
        time.sleep(STEP.total_seconds() / 2)  # spread the edits over the missed intervals
    while helpers.utcnow() < stopped_at + OUTAGE_STEPS * STEP:
        time.sleep(1)
    # The dag-processor keeps computing the next run's interval while the scheduler is down (the
    # latest whole interval at its last parse, up to its refresh interval old); the scheduler creates
    # that run on restart. Restart once it starts six intervals or more after the stop.
    _wait("the next run planned six intervals after the stop", lambda: _t(
        dep.api.get(f"/dags/{INDICATORS}")["next_dagrun_data_interval_start"] or _iso(stopped_at))
        >= stopped_at + 6 * STEP, timeout=120)
    dep.services.start()

    # The first run created after the restart (a run left unfinished by the pause completes first).
    def gap_run():
        after = [r for r in _runs(dep.api, INDICATORS) if _t(r["data_interval_start"]) >= stopped_at]
        return after[0] if after else None

    run = _wait("the first scheduled run after the restart", gap_run, timeout=240)
    assert run["run_type"] == "scheduled"
    _finished(dep, run["dag_run_id"], timeout=300)
    start, end = _t(run["data_interval_start"]), _t(run["data_interval_end"])
    # catchup off: no run for the missed intervals; this one reads them.
    missed = [r for r in _runs(dep.api, INDICATORS) if stopped_at <= _t(r["data_interval_start"]) < start]
    assert not missed, missed

    poll = dep.api.xcom(INDICATORS, run["dag_run_id"], "poll")
    report = dep.api.xcom(INDICATORS, run["dag_run_id"], "report")
    window_start = _t(poll["window_start"])
    # It read from the watermark (where the last run before the outage left it), through the outage.
    assert mark_at_stop <= window_start <= stopped_at and _t(poll["window_end"]) == end
    assert report["window_kind"] == "catch_up"
    gap = report["gap_closed"]
    assert (_t(gap["start"]), _t(gap["end"])) == (window_start, start)
    assert gap["intervals"] == (start - window_start) // STEP >= 6
    doc = _run_report(es_client, run["dag_run_id"])
    assert (doc["gap_start"], doc["gap_end"], doc["gap_intervals"]) == (gap["start"], gap["end"], gap["intervals"])
    assert report["watermark_saved"] is True and _t(report["watermark"]) == end

    # What it read is exactly what ThreatQ has in its window: the 40 changes of the outage (the
    # corpus itself ends before the test began).
    window_truth = dep.sim.corpus.indicator_ids(window_start, end)
    assert window_start <= first_edit_at
    assert sorted(map(int, helpers.read_ndjson_ids(poll["path"]))) == sorted(window_truth)
    assert set(window_truth) == analyst.touched and len(analyst.touched) == 40

    # The active index equals the ground truth: the look-back as ThreatQ has it now.
    _quiesce(dep)
    truth = list(dep.sim.corpus.iter_indicators(lookback_start, None))
    docs = _sweep_and_compare(dep, es_client, truth)
    withdrawn = {str(target) for round_ in plan for kind, target, changes in round_
                 if kind == "edit" and changes.get("status") == "Review"}
    activated = [dep.sim.corpus.indicator(target) for round_ in plan for _, target, _ in round_[2:4]]
    still_active = helpers.active_ids(activated, now=helpers.utcnow())
    assert still_active and still_active <= set(docs), "indicators made Active during the outage are missing"
    assert not withdrawn & set(docs), "indicators withdrawn during the outage are still active"
