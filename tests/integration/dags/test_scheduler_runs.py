"""Backfills and REST-API triggers on a running Airflow: scheduler + api-server + dag-processor +
triggerer (``scripts/airflow-services``, started by ``airflow_services.running``) as subprocesses on
their own SQLite home, LocalExecutor with parallelism 4, connections from ``AIRFLOW_CONN_*`` in their
environment — as a user runs it.

One module-scoped set of services serves every test here (start-up costs ~20 s).
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from tests.integration.dags import airflow_services, helpers
from tests.integration.dags.airflow_services import AIRFLOW

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.elasticsearch]

INDICATORS = "threatq_indicators_to_elasticsearch"
SWEEP = "threatq_ioc_expiry_sweep"

# Three whole days, ending yesterday: the backfill's daily intervals cover them exactly. The run
# the scheduler creates on unpausing (catchup off: the latest interval) has no watermark yet, so it
# reads the 90-day initial look-back, these three days included (#13 item 1). They lie inside the
# sweep's 5-day history retention: on Elastic's test node (no data streams) the history is one index
# per run's day, and every load triggers the sweep, which trims the indices of older days.
TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
DAY0 = TODAY - timedelta(days=4)
DAY3 = DAY0 + timedelta(days=3)


@pytest.fixture(scope="module")
def services(tmp_path_factory, es_url, es_client):
    from tests.integration.dags.conftest import start_simulator

    helpers.wipe_threatq_indices(es_client)
    sim = start_simulator(seed=21, indicators=3_000, events=5, start=DAY0, end=DAY3)
    try:
        # Daily intervals, so "three days" is three runs (the default is every 10 minutes).
        with airflow_services.running(tmp_path_factory.mktemp("airflow-services"), sim=sim, es_url=es_url,
                                      extra_env={"THREATQ_INDICATORS_CRON": "0 0 * * *"}) as running:
            for dag_id in (INDICATORS, SWEEP):
                running.api.wait_dag(dag_id)
                running.api.patch(f"/dags/{dag_id}", {"is_paused": False})
            yield SimpleNamespace(api=running.api, env=running.env, sim=sim, home=running.home)
    finally:
        sim.stop()


def _backfill(services, *args: str, attempts: int = 3) -> subprocess.CompletedProcess:
    """`airflow backfill create`, run again when SQLite reported "database is locked".

    On SQLite a writer can still lose a lock race against the running scheduler and api-server
    (immediately, whatever the busy timeout). Airflow then deletes the partial backfill
    (`_cleanup_partial_backfill`), so running the command again is what a user would do; it is
    re-run only when no backfill of the DAG was left behind, so a retry can never double runs.
    """
    for attempt in range(1, attempts + 1):
        done = subprocess.run([AIRFLOW, "backfill", "create", "--dag-id", INDICATORS, *args], env=services.env,
                              capture_output=True, text=True, timeout=180)
        if done.returncode == 0 or "database is locked" not in done.stderr or attempt == attempts:
            return done
        left = services.api.get("/backfills", dag_id=INDICATORS)["backfills"]
        assert left == [], f"a failed backfill create left a backfill behind: {left}"
        time.sleep(2)
    return done


def _sweep_now(services) -> tuple[datetime, datetime]:
    """Trigger the sweep through the API and wait; return the clocks bracketing it."""
    before = helpers.utcnow()
    resp = services.api.post(f"/dags/{SWEEP}/dagRuns", {"logical_date": None, "conf": {}})
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["dag_run_id"]
    runs = services.api.wait_runs(SWEEP, {run_id})
    assert runs[run_id]["state"] == "success", services.api.task_states(SWEEP, run_id)
    return before, helpers.utcnow()


def test_backfill_over_three_days_gives_three_runs_whose_union_is_the_ground_truth(services, es_client):
    services.api.wait_idle(INDICATORS, at_least=1)  # the run unpausing creates: before any backfill
    services.api.wait_idle(SWEEP)  # the load of the unpause run triggers a sweep (asset schedule)
    done = _backfill(services, "--from-date", DAY0.date().isoformat(), "--to-date", (DAY3 - timedelta(days=1)).date().isoformat(),
                     "--max-active-runs", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    backfill_runs = lambda: {r["dag_run_id"] for r in services.api.runs(INDICATORS) if r["run_type"] == "backfill"}  # noqa: E731
    deadline = time.monotonic() + 60
    while len(backfill_runs()) < 3 and time.monotonic() < deadline:
        time.sleep(1)
    run_ids = backfill_runs()
    assert len(run_ids) == 3, services.api.runs(INDICATORS)
    runs = services.api.wait_runs(INDICATORS, run_ids)
    failed = {r: services.api.task_states(INDICATORS, r) for r, v in runs.items() if v["state"] != "success"}
    assert not failed, f"backfill runs failed: {failed}"

    windows = sorted((r["data_interval_start"], r["data_interval_end"]) for r in runs.values())
    assert [w[0][:10] for w in windows] == [(DAY0 + timedelta(days=i)).date().isoformat() for i in range(3)]

    staged: list[str] = []
    for run_id in run_ids:
        poll = services.api.xcom(INDICATORS, run_id, "poll")
        staged += helpers.read_ndjson_ids(poll["path"])
    corpus = list(services.sim.corpus.iter_indicators(DAY0, DAY3))
    assert len(staged) == len(set(staged)), "an indicator was polled by two backfill runs"
    assert set(staged) == set(helpers.all_ids(corpus)), "the three windows do not add up to the corpus"

    before, after = _sweep_now(services)
    helpers.assert_active_index_matches(es_client, corpus, before=before, after=after)

    # The backfill read its own intervals and left the watermark where the unpause run put it (the
    # end of its interval, today 00:00): older intervals never move it back.
    instance = services.sim.url.split("://", 1)[1].rstrip("/")
    key = f"threatq_watermark__{INDICATORS}__{instance}__window"
    assert json.loads(services.api.get(f"/variables/{key}")["value"])["watermark"] == \
        TODAY.isoformat().replace("+00:00", "Z")
    kinds = {services.api.xcom(INDICATORS, run_id, "report")["window_kind"] for run_id in run_ids}
    assert kinds == {"backfill"}


def test_manual_trigger_through_the_rest_api_honours_its_params(services):
    conf = {"since": DAY0.isoformat(), "until": DAY3.isoformat(), "indicator_types": ["IP Address"], "dry_run": True}
    resp = services.api.post(f"/dags/{INDICATORS}/dagRuns", {"logical_date": None, "conf": conf})
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["dag_run_id"]
    runs = services.api.wait_runs(INDICATORS, {run_id})
    states = services.api.task_states(INDICATORS, run_id)
    assert runs[run_id]["state"] == "success", states
    assert states["load"] == "skipped"  # dry_run
    poll = services.api.xcom(INDICATORS, run_id, "poll")
    truth = list(services.sim.corpus.iter_indicators(DAY0, DAY3, types=["IP Address"]))
    assert poll["types"] == ["IP Address"]
    assert sorted(helpers.read_ndjson_ids(poll["path"])) == sorted(helpers.all_ids(truth))


@pytest.mark.parametrize(
    ("conf", "named"),
    [({"mode": "everything"}, "mode"), ({"ioc_expiration_duration": "ninety days"}, "ioc_expiration_duration"),
     ({"indicator_types": ["IP Adress"]}, "indicator_types")],
)
def test_a_wrong_param_is_refused_at_trigger_time(services, conf, named):
    before = {r["dag_run_id"] for r in services.api.runs(INDICATORS)}
    resp = services.api.post(f"/dags/{INDICATORS}/dagRuns", {"logical_date": None, "conf": conf})
    assert resp.status_code == 400, resp.text
    assert named in resp.json()["detail"]
    assert {r["dag_run_id"] for r in services.api.runs(INDICATORS)} == before, "a refused trigger created a run"
