"""Create Event with task retries in a real Airflow (SQLite, ``dag.test()``) against the simulator.

The first try's POST creates the event and its answer is lost (the simulator's
``commit_then_reset`` fault); Airflow retries the task, and the retry finds the event instead
of creating a second one. ``try_number`` comes from Airflow's own task instance here.
"""

from __future__ import annotations

import pytest

from tests.fixtures.threatq import threatq_conn_json
from threatq_simulators.faults import FaultRule

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.component, pytest.mark.usefixtures("no_variables")]

TITLE = "Airflow retried event"
DAG_ID = "test_create_event_retry"
DAG_FILE = f"""
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from threatq_provider.operators.actions import ThreatQCreateEventOperator

with DAG(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    ThreatQCreateEventOperator(task_id="create_event", title="{TITLE}", type="Malware",
                               date="2026-02-01T10:00:00Z", source="Airflow CI",
                               retries=2, retry_delay=timedelta(0))
"""


@pytest.fixture
def retry_dag(airflow_db, tmp_path):
    """The one-task DAG, parsed from a file and serialized (``dag.test()`` runs serialized DAGs only)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()  # the "dags-folder" bundle row the DAG refers to
    (tmp_path / "retry_dag.py").write_text(DAG_FILE)
    bag = BundleDagBag(dag_folder=str(tmp_path), bundle_path=tmp_path, bundle_name="dags-folder")
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.dags[DAG_ID]


def test_a_retried_create_event_task_leaves_exactly_one_event(retry_dag, threatq_sim_factory, monkeypatch):
    sim = threatq_sim_factory(indicators=50, events=5)
    monkeypatch.setenv("AIRFLOW_CONN_THREATQ_DEFAULT", threatq_conn_json(sim))
    sim.faults.add(FaultRule(method="POST", path_regex="^/api/events$", times=1, action="commit_then_reset"))

    run = retry_dag.test()

    (ti,) = run.get_task_instances()
    assert (run.state, ti.state, ti.try_number) == ("success", "success", 2)
    events = [e for e in sim.corpus.event_ids() if sim.corpus.event_base(e)["title"] == TITLE]
    assert len(events) == 1
    assert ti.xcom_pull(task_ids="create_event") == {"id": events[0]}
    assert sim.stats["by_path"].get("POST /api/events") == 1
    assert sim.stats["by_path"].get("GET /api/events") == 1  # only the retry looked up
