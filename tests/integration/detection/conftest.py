"""Fixtures of the detection tests: the DAG tests' simulator and connection fixtures, a clean set
of ``logs-ti_threatq*`` indices, and a source-events index the rules' ``logs-*`` pattern reads."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.dags import helpers
from tests.integration.dags.conftest import tq_conn, tq_sim_factory  # noqa: F401 - fixtures re-exported

REPO = Path(__file__).resolve().parents[3]
#: Name prefix of the planted source events' indices (matched by the rules' ``logs-*``).
EVENTS_PREFIX = "logs-tqdetect.events-"
# ECS types of the event fields the five rules map (wildcard fields as keyword: the test
# distribution has no wildcard type; terms queries compare them alike).
EVENT_MAPPING = {
    "dynamic": False,
    "properties": {
        "@timestamp": {"type": "date"},
        "event": {"properties": {"ingested": {"type": "date"}, "kind": {"type": "keyword"}}},
        "source": {"properties": {"ip": {"type": "ip"}}},
        "destination": {"properties": {"ip": {"type": "ip"}}},
        "related": {"properties": {"ip": {"type": "ip"}}},
        **{obj: {"properties": {"hash": {"properties": {
            algo: {"type": "keyword"} for algo in ("md5", "sha1", "sha256", "sha512")}}}}
           for obj in ("file", "process", "dll")},
        "url": {"properties": {"full": {"type": "keyword"}, "original": {"type": "keyword"}}},
        "email": {"properties": {part: {"properties": {"address": {"type": "keyword"}}}
                                 for part in ("from", "to", "sender", "reply_to")}},
        "registry": {"properties": {"path": {"type": "keyword"}}},
        "planted": {"type": "keyword"},
    },
}


class FreshDags:
    """A fresh DagBag per lookup: ``dag.test()`` merges a run's conf into the operators' params
    in place, so a DAG object must not serve two runs (see tests/integration/dags)."""

    @property
    def dags(self) -> dict[str, Any]:
        from airflow.models import DagBag

        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        return bag.dags


@pytest.fixture
def dagbag() -> FreshDags:
    return FreshDags()


@pytest.fixture
def es_clean(es_client):
    """No ``logs-ti_threatq*`` index and no planted-events index before or after the test."""
    def wipe() -> None:
        helpers.wipe_threatq_indices(es_client)
        es_client.indices.delete(index=EVENTS_PREFIX + "*", expand_wildcards="all", ignore_unavailable=True,
                                 allow_no_indices=True)

    wipe()
    yield es_client
    wipe()


@pytest.fixture
def airflow_env(monkeypatch, es_url, tmp_path, no_variables):
    """Connections and variables as a deployment gives them (``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*``)."""
    monkeypatch.setenv("AIRFLOW_CONN_ELASTICSEARCH_DEFAULT", json.dumps({"conn_type": "elasticsearch_ecs", "host": es_url}))
    monkeypatch.setenv("AIRFLOW_VAR_THREATQ_STAGE_ROOT", f"file://{tmp_path}/stage")
    return tmp_path


@pytest.fixture
def events_index(es_clean) -> str:
    """A fresh index for planted source events, under the rules' ``logs-*`` pattern."""
    name = EVENTS_PREFIX + uuid.uuid4().hex[:8]
    es_clean.indices.create(index=name, mappings=EVENT_MAPPING, settings={"number_of_shards": 1})
    return name


def run_dag(dagbag: FreshDags, dag_id: str, *, conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """``dag.test()`` one run; it must succeed. Returns the task states and the XComs."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag_run = dagbag.dags[dag_id].test(run_conf=conf or {})
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "success", f"{dag_id} run ended {dag_run.state}: {states}"
    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id,
                                                  key="return_value")).all()
        xcom = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return {"states": states, "xcom": xcom, "run_id": dag_run.run_id}
