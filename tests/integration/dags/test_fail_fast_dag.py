"""Errors no retry can heal fail the task on its first try; transient ones still use the retries.

One DAG in a real Airflow (SQLite, ``dag.test()``), every task with ``retries=2`` and no delay, run
against the ThreatQ simulator, the MISP double and HTTPS servers whose certificate no client
trusts. Airflow's own task instances say how many tries each task took, and the servers say how
many requests (or TLS connections) reached them.
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures.misp import misp_connection_json
from tests.fixtures.threatq import threatq_conn_json
from tests.fixtures.tls import UntrustedTLSServer
from threatq_simulators.faults import FaultRule

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.component, pytest.mark.usefixtures("no_variables")]

DAG_ID = "test_fail_fast"
WINDOW = 'window_start="2026-01-01T00:00:00Z", window_end="2026-01-08T00:00:00Z"'
DAG_FILE = f"""
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from threatq_provider.operators.actions import ThreatQSearchOperator
from threatq_provider.operators.poll import ThreatQPollIndicatorsOperator
from threatq_provider.operators.share import MispShareEventOperator

STAGE = "{{stage}}"

with DAG(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         default_args={{"retries": 2, "retry_delay": timedelta(0)}}):
    # Cannot heal: each must fail on try 1.
    ThreatQPollIndicatorsOperator(task_id="missing_collection", mode="collection", collection="no-such-hash",
                                  stage_uri=STAGE + "/1")
    ThreatQPollIndicatorsOperator(task_id="reversed_window", window_start="2026-01-08T00:00:00Z",
                                  window_end="2026-01-01T00:00:00Z", stage_uri=STAGE + "/2")
    ThreatQPollIndicatorsOperator(task_id="invalid_window", window_start="last tuesday",
                                  window_end="2026-01-01T00:00:00Z", stage_uri=STAGE + "/3")
    ThreatQPollIndicatorsOperator(task_id="page_size_zero", {WINDOW}, page_size=0, stage_uri=STAGE + "/4")
    ThreatQSearchOperator(task_id="threatq_untrusted_tls", query="emotet", threatq_conn_id="threatq_tls")
    MispShareEventOperator(task_id="misp_wrong_key", event_ids=[1], misp_conn_id="misp_wrong_key")
    MispShareEventOperator(task_id="misp_untrusted_tls", event_ids=[1], misp_conn_id="misp_tls")
    # Transient: each fails once, then succeeds on try 2.
    ThreatQPollIndicatorsOperator(task_id="threatq_500_once", threatq_conn_id="threatq_flaky", {WINDOW},
                                  stage_uri=STAGE + "/5")
    MispShareEventOperator(task_id="misp_500_once", event_ids=[1], misp_conn_id="misp_flaky")
"""
PERMANENT = ("missing_collection", "reversed_window", "invalid_window", "page_size_zero",
             "threatq_untrusted_tls", "misp_wrong_key", "misp_untrusted_tls")
TRANSIENT = ("threatq_500_once", "misp_500_once")
#: What PyMISP's constructor asks before it gives up on a refused key.
REFUSED_PATHS = ("servers/getPyMISPVersion.json", "servers/getVersion", "users/view/me")


@pytest.fixture
def fail_fast_dag(airflow_db, tmp_path):
    """The DAG, parsed from a file and serialized (``dag.test()`` runs serialized DAGs only)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "fail_fast_dag.py").write_text(DAG_FILE.replace("{stage}", f"file://{tmp_path}/stage"))
    bag = BundleDagBag(dag_folder=str(folder), bundle_path=folder, bundle_name="dags-folder")
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.dags[DAG_ID]


def test_permanent_errors_fail_on_the_first_try_and_transient_ones_are_retried(
        fail_fast_dag, threatq_sim_factory, misp_double_factory, monkeypatch):
    sim = threatq_sim_factory(indicators=60, events=3)
    flaky_sim = threatq_sim_factory(indicators=60, events=3)
    flaky_sim.faults.add(FaultRule(method="POST", path_regex="^/api/indicators/query", times=1, status=500))
    double = misp_double_factory()
    flaky_double = misp_double_factory(faults=[FaultRule(method="POST", path_regex="^/events/add", status=500,
                                                         times=1)])
    with UntrustedTLSServer() as tq_tls, UntrustedTLSServer() as misp_tls:
        for conn_id, conn in {
            "THREATQ_DEFAULT": threatq_conn_json(sim),
            "THREATQ_FLAKY": threatq_conn_json(flaky_sim),
            "THREATQ_TLS": json.dumps({"conn_type": "threatq", "host": tq_tls.url, "login": "a@b.c",
                                       "password": "pw", "extra": {"client_id": "cid"}}),
            "MISP_WRONG_KEY": misp_connection_json(double.url, key="not-the-key"),
            "MISP_TLS": misp_connection_json(misp_tls.url, verify_tls=True),
            "MISP_FLAKY": misp_connection_json(flaky_double.url),
        }.items():
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id}", conn)

        run = fail_fast_dag.test()

        tries = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
        assert {t: tries[t] for t in PERMANENT} == {t: ("failed", 1) for t in PERMANENT}
        assert {t: tries[t] for t in TRANSIENT} == {t: ("success", 2) for t in TRANSIENT}
        # No client-level retries of a certificate that fails verification either.
        assert (tq_tls.attempts, misp_tls.attempts) == (1, 1)
    assert run.state == "failed"
    assert sim.stats["by_path"]["GET /api/indicators/query/hash/no-such-hash"] == 1
    refused = [(r.path, r.status) for r in double.requests()]
    # The wrong key met PyMISP's constructor calls once each: no client or task retry.
    assert sorted(refused) == sorted((path, 403) for path in REFUSED_PATHS)
    assert len(flaky_double.events()) == 1 and flaky_double.events()[0]["published"]
