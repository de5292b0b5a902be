"""The run report names the tasks that needed more than one try (``record_attempt`` + report).

The real Airflow run (worker killed, node stopped, store restarted) is
tests/integration/cluster/test_faults.py; here the pieces with a fake task instance.
"""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG

from threatq_provider.elasticsearch.run_reports import RUNS_MAPPING, run_document
from threatq_provider.operators.report import ATTEMPT_KEY, ThreatQRunReportOperator, record_attempt

pytestmark = pytest.mark.airflow


class FakeTI:
    """XComs per (task id, key), as the run's metadata database keeps them."""

    store: dict[tuple[str, str], Any] = {}

    def __init__(self, task_id: str, try_number: int) -> None:
        self.task_id = task_id
        self.try_number = try_number

    def xcom_push(self, key: str, value: Any) -> None:
        FakeTI.store[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return FakeTI.store.get((task_ids, key))


@pytest.fixture
def run_dag():
    FakeTI.store = {}
    with DAG("attempts", start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), schedule=None) as dag:
        report = ThreatQRunReportOperator(task_id="report", poll_result={"mode": "window", "indicators": 3},
                                          transform_result={"written": 3}, load_result={"indexed": 3})
        for name in ("poll", "transform", "load"):
            ThreatQRunReportOperator(task_id=name)  # stand-ins: only their ids and order matter here
        dag.get_task("poll") >> dag.get_task("transform") >> dag.get_task("load") >> report
    return dag


def test_the_report_names_each_retried_task_with_the_try_that_produced_its_result(run_dag, capsys):
    for task_id, tries in (("poll", 1), ("transform", 3), ("load", 2)):
        record_attempt({"ti": FakeTI(task_id, tries)})
    summary = run_dag.get_task("report").execute({"ti": FakeTI("report", 1)})
    assert summary["attempts"] == {"poll": 1, "transform": 3, "load": 2, "report": 1}
    assert summary["retried"] == ["load", "transform"]
    assert "Retried in this run: load (attempt 2), transform (attempt 3)" in capsys.readouterr().out

    doc = run_document(summary, dag_id="attempts", run_id="r1", when=pendulum.datetime(2024, 1, 2, tz="UTC"))
    assert doc["retried"] == ["load", "transform"]
    assert RUNS_MAPPING["properties"]["retried"] == {"type": "keyword"}


def test_a_run_without_retries_says_none_and_a_task_without_a_record_is_left_out(run_dag):
    record_attempt({"ti": FakeTI("poll", 1)})
    record_attempt({"ti": FakeTI("load", 1)})  # transform recorded nothing (e.g. an older DAG file)
    summary = run_dag.get_task("report").execute({"ti": FakeTI("report", 2)})
    assert summary["attempts"] == {"poll": 1, "load": 1, "report": 2}
    assert summary["retried"] == ["report"]
    assert FakeTI.store[("poll", ATTEMPT_KEY)] == 1
    assert "retried" not in run_document({**summary, "retried": []}, dag_id="d", run_id="r",
                                         when=pendulum.datetime(2024, 1, 2, tz="UTC"))


def test_without_a_task_instance_the_report_has_no_attempts():
    summary = ThreatQRunReportOperator(task_id="r", poll_result={"mode": "window"}).execute({})
    assert summary["attempts"] == {} and summary["retried"] == []
    record_attempt({})  # nothing to record: no error
