"""The report task's run document (issue 12): written once per run for the Kibana chart of loads
and rejects; a write failure is logged and never fails a run whose IOCs are loaded; a dry run
writes nothing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from threatq_provider.operators.report import ThreatQRunReportOperator

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class _Indices:
    def __init__(self) -> None:
        self.created: list[str] = []

    def exists(self, index: str) -> bool:
        return bool(self.created)

    def create(self, index: str, **_: object) -> None:
        self.created.append(index)

    def put_mapping(self, index: str, properties: dict) -> None:
        """An index of an earlier release gets the fields it lacks (run_reports.index_run_report)."""
        self.mapped = (index, sorted(properties))


class _Client:
    def __init__(self, fail: bool = False) -> None:
        self.indices = _Indices()
        self.fail = fail
        self.docs: dict[str, dict] = {}

    def index(self, index: str, id: str, document: dict) -> None:
        if self.fail:
            raise ConnectionError("node down")
        self.docs[id] = document


class _Hook:
    def __init__(self, client: _Client) -> None:
        self.client = client
        self.closed = False

    def get_client(self) -> _Client:
        return self.client

    def close(self) -> None:
        self.closed = True


def _run(client: _Client, load: dict | None) -> tuple[dict, _Hook]:
    op = ThreatQRunReportOperator(task_id="report", poll_result={"mode": "window", "indicators": 3},
                                  transform_result={"written": 3, "rejected": {}}, load_result=load,
                                  elasticsearch_conn_id="elasticsearch_default")
    hook = _Hook(client)
    op.__dict__["hook"] = hook  # the cached_property, as execute() would build it
    return op.execute({"run_id": "scheduled__1", "data_interval_end": NOW}), hook


def test_each_run_writes_one_document_keyed_by_dag_and_run():
    client = _Client()
    summary, hook = _run(client, {"indexed": 2, "updated": 1, "rejected_documents": 0})
    assert summary["run_report_indexed"] is True and hook.closed
    assert client.indices.created == ["threatq-provider-runs"]
    (doc_id, doc), = client.docs.items()
    assert doc_id.endswith("/scheduled__1")
    assert (doc["loaded"], doc["polled"], doc["@timestamp"]) == (3, 3, "2026-12-01T12:00:00.000Z")


def test_a_failed_write_is_a_warning_not_a_failed_run(caplog, capsys):
    with caplog.at_level(logging.WARNING):
        summary, hook = _run(_Client(fail=True), {"indexed": 1})
    assert summary["run_report_indexed"] is False and summary["loaded"] == 1 and hook.closed
    # the task logger goes through Airflow's structlog (stdout) or stdlib logging, by version
    assert "run report not written" in caplog.text + capsys.readouterr().out


def test_a_dry_run_writes_nothing():
    client = _Client()
    summary, _ = _run(client, None)
    assert "run_report_indexed" not in summary and client.docs == {} and client.indices.created == []
