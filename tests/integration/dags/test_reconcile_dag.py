"""The deletion reconciliation DAG in a real Airflow (``dag.test()``), the ThreatQ simulator over
HTTP and the real Elasticsearch node (#13 item 2).

The indicators DAG loads the simulator's corpus; indicators are deleted in the simulator
(``DELETE /api/indicators/{id}``); ``threatq_deletion_reconcile`` must then leave the active index
equal to the ground truth of what ThreatQ still has, refuse a mass deletion without removing
anything, and carry it out when told to.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.integration.dags import helpers
from tests.integration.dags.test_indicator_dag_runs import (  # noqa: F401 (fixtures)
    CORPUS_END,
    CORPUS_START,
    INDICATORS,
    FreshDags,
    _run,
    _window_conf,
    _xcoms,
    airflow_env,
    dagbag,
    es_clean,
)

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.elasticsearch]

RECONCILE = "threatq_deletion_reconcile"
LONG_LIFE = "3650d"


def _failed_run(dagbag, dag_id: str, conf: dict):
    dag = dagbag.dags[dag_id]
    for task in dag.tasks:
        task.retries = 0
    run = dag.test(run_conf=conf)
    return run, {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_deleted_indicators_leave_the_active_index_and_a_mass_deletion_is_refused(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn, caplog  # noqa: F811
):
    sim = tq_sim_factory(seed=19, indicators=2_000, events=5, start=CORPUS_START, end=CORPUS_END)
    tq_conn(sim)
    _run(dagbag, INDICATORS, conf=_window_conf(CORPUS_START, CORPUS_END, ioc_expiration_duration=LONG_LIFE))
    loaded = set(helpers.es_active_docs(es_clean))
    assert len(loaded) > 500

    # Deleted in ThreatQ through its API: 40 of the loaded ones, and 10 never loaded (not Active).
    client = sim_client(sim)
    gone = sorted(loaded, key=int)[::25][:40]
    never_loaded = [i for i in range(1, 2001) if str(i) not in loaded][:10]
    for iid in [*gone, *never_loaded]:
        client.request_json("DELETE", f"/api/indicators/{iid}")

    dry = _run(dagbag, RECONCILE, conf={"dry_run": True})["xcom"]["reconcile_deletions"]
    assert (dry["missing"], dry["deleted"]) == (40, 0) and set(helpers.es_active_docs(es_clean)) == loaded
    result = _run(dagbag, RECONCILE)["xcom"]["reconcile_deletions"]
    assert (result["missing"], result["deleted"], result["by_reason"]) == (40, 40, {"deleted_in_threatq": 40})
    assert result["threatq_ids"] == 2_000 - 50
    still_in_threatq = {str(r["id"]) for r in sim.corpus.iter_indicators()}
    assert set(helpers.es_active_docs(es_clean)) == loaded & still_in_threatq

    # 15 % more deleted at once: refused (over the 10 % default), nothing removed, the run fails.
    mass = sorted(loaded & still_in_threatq, key=int)[: int(len(loaded) * 0.15)]
    for iid in mass:
        sim.corpus.delete_indicator(int(iid))
    before = set(helpers.es_active_docs(es_clean))
    run, states = _failed_run(FreshDags(), RECONCILE, {})
    assert str(run.state) == "failed" and states == {"reconcile_deletions": "failed"}
    assert "over the safety limit of 10%: nothing was removed" in caplog.text
    assert set(helpers.es_active_docs(es_clean)) == before

    # Told to: allow_mass_delete.
    forced = _run(FreshDags(), RECONCILE, conf={"allow_mass_delete": True})["xcom"]["reconcile_deletions"]
    assert forced["deleted"] == len(mass)
    remaining = {str(r["id"]) for r in sim.corpus.iter_indicators()}
    assert set(helpers.es_active_docs(es_clean)) == loaded & remaining


def sim_client(sim):
    from threatq_provider.threatq.auth import PasswordGrant
    from threatq_provider.threatq.client import ThreatQClient

    return ThreatQClient(sim.url, auth=PasswordGrant(sim.client_id, sim.username, sim.password), verify=False)


def test_the_dag_runs_every_six_hours_without_overlap(dagbag):  # noqa: F811
    dag = dagbag.dags[RECONCILE]
    assert dag.timetable.summary == "0 */6 * * *"
    assert (dag.max_active_runs, dag.catchup) == (1, False)
    assert dag.params.validate() == {"dry_run": False, "max_delete_percent": 10, "allow_mass_delete": False,
                                     "collection": None}
    assert timedelta(0) < dag.default_args["retry_delay"]
