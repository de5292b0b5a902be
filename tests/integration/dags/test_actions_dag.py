"""The seven action operators in a real Airflow (SQLite, ``dag.test()``) against the simulator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.component, pytest.mark.usefixtures("no_variables")]

from threatq_provider.threatq.client import INDICATOR_FIELDS  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
DAG_ID = "example_threatq_actions"


@pytest.fixture(scope="module")
def actions_dag():
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{DAG_ID}.py"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def _xcoms(dag_run) -> dict[str, object]:
    return {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in dag_run.get_task_instances()}


def test_all_inputs_are_templated(actions_dag):
    from threatq_provider.operators import actions

    expected = {
        actions.ThreatQSearchIndicatorsOperator: {"indicator", "limit"},
        actions.ThreatQSearchOperator: {"query", "limit"},
        actions.ThreatQListEventsOperator: {"event", "limit"},
        actions.ThreatQCreateIndicatorOperator: {"status", "source", "type", "value"},
        actions.ThreatQCreateEventOperator: {"title", "type", "date", "source", "description"},
        actions.ThreatQGetIndicatorOperator: {"indicator_id", "with_"},
        actions.ThreatQGetEventOperator: {"event_id", "with_"},
    }
    for cls, fields in expected.items():
        assert set(cls.template_fields) == fields | {"threatq_conn_id"}, cls.__name__
    assert len({type(t) for t in actions_dag.tasks}) == 7


def test_dag_test_runs_the_seven_actions_and_xcoms_match_the_plugin(
    airflow_db, actions_dag, threatq_conn, threatq_sim
):
    value = "198.51.100.201"
    title = "Airflow integration beacon"
    run = actions_dag.test(run_conf={"value": value, "type": "IP Address", "status": "Review",
                                     "source": "Airflow CI", "event_title": title, "event_type": "Malware"})
    assert run.state == "success"
    xcom = _xcoms(run)

    indicator_id = xcom["create_indicator"]["id"]
    assert set(xcom["create_indicator"]) == {"id"} and isinstance(indicator_id, int)
    got = xcom["get_indicator"]
    assert set(got) == {"data"} and got["data"]["id"] == indicator_id and got["data"]["value"] == value
    assert any(s.get("name") == "Airflow CI" for s in got["data"].get("sources", []))

    found = xcom["search_indicators"]
    assert set(found) == {"total", "data"} and found["total"] >= 1
    assert any(row["id"] == indicator_id and row["value"] == value for row in found["data"])
    assert all(set(row) <= set(INDICATOR_FIELDS) for row in found["data"])

    results = xcom["search"]["results"]
    assert set(xcom["search"]) == {"results"}
    assert any(r == {"id": indicator_id, "object": "indicator", "value": value} for r in results)

    event_id = xcom["create_event"]["id"]
    assert set(xcom["create_event"]) == {"id"} and isinstance(event_id, int)
    assert xcom["get_event"]["data"]["id"] == event_id and xcom["get_event"]["data"]["title"] == title
    listed = xcom["list_events"]
    assert set(listed) == {"total", "data"}
    assert any(e["id"] == event_id for e in listed["data"])

    # The created objects are real on the server side, and no credential reached XCom.
    assert threatq_sim.corpus.indicator(indicator_id)["value"] == value
    blob = json.dumps(xcom)
    conn = json.loads(os.environ["AIRFLOW_CONN_THREATQ_DEFAULT"])
    for secret in (conn.get("password"), (conn.get("extra") or {}).get("client_secret")):
        if secret:
            assert secret not in blob


def test_a_wrong_param_is_refused_before_any_task_runs(airflow_db, actions_dag):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="param status"):
        actions_dag.test(run_conf={"status": "Bogus"})


def test_an_indicator_type_outside_threatqs_list_is_refused_before_any_task_runs(airflow_db, actions_dag):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="param type"):  # a drop-down of the 34 types
        actions_dag.test(run_conf={"type": "Domain"})


def test_unknown_event_type_fails_the_task_and_its_dependants(airflow_db, actions_dag, threatq_conn, threatq_sim):
    # Event types are free text (an admin can add some), so ThreatQ is the judge.
    run = actions_dag.test(run_conf={"event_type": "No Such Event Type"})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["create_event"] == "failed"
    assert states["get_event"] == "upstream_failed"
    assert states["create_indicator"] == "success"
