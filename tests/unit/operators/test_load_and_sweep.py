"""Operators store their arguments unchanged and do no I/O until execute."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from threatq_provider.operators.load import ElasticsearchLoadOperator, default_dead_letter_path
from threatq_provider.operators.sweep import HistoryRetentionSweepOperator, IocExpirySweepOperator


def test_load_operator_keeps_templated_arguments_unchanged(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False)
    op = ElasticsearchLoadOperator(task_id="load", source_path="{{ ti.xcom_pull('transform')['path'] }}",
                                   elasticsearch_conn_id="nowhere", max_reject_ratio="{{ params.ratio }}")

    assert op.source_path == "{{ ti.xcom_pull('transform')['path'] }}"
    assert op.max_reject_ratio == "{{ params.ratio }}"
    assert set(op.template_fields) >= {"source_path", "dead_letter_path", "max_rejects", "max_reject_ratio"}


@pytest.mark.parametrize(("source", "dead"), [("s3://b/run/ecs.ndjson", "s3://b/run/ecs.dead-letter.ndjson"),
                                              ("/stage/ecs", "/stage/ecs.dead-letter.ndjson")])
def test_dead_letter_sits_beside_the_stage_file(source, dead):
    assert default_dead_letter_path(source) == dead


def test_sweep_operators_default_to_elastics_alias_and_five_days():
    sweep = IocExpirySweepOperator(task_id="sweep")
    history = HistoryRetentionSweepOperator(task_id="history")

    assert sweep.index == "logs-ti_threatq_latest.threat" and sweep.dry_run is False and sweep.now is None
    assert history.retention == "5d"
    assert IocExpirySweepOperator(task_id="s2", index_prefix="t-").index == "t-logs-ti_threatq_latest.threat"
    assert (sweep.tombstone_index, sweep.tombstone_retention) == ("threatq-ioc-tombstones", "30d")
    assert IocExpirySweepOperator(task_id="s3", index_prefix="t-").tombstone_index == "t-threatq-ioc-tombstones"


class _ClosingHook:
    """Stands in for ElasticsearchEcsHook: hands out a dummy client and counts close()."""

    def __init__(self):
        self.closed = 0

    def get_client(self):
        return object()

    def close(self):
        self.closed += 1


def test_load_operator_closes_the_client_even_when_the_load_fails(monkeypatch, tmp_path):
    import threatq_provider.elasticsearch.loader as loader

    def failing_load(*args, **kwargs):
        raise ConnectionError("cluster went away")

    monkeypatch.setattr(loader, "load_ndjson", failing_load)
    source = tmp_path / "ecs.ndjson"
    source.write_text('{"threatq":{"id":1}}\n')
    op = ElasticsearchLoadOperator(task_id="load", source_path=f"file://{source}", install_templates=False)
    hook = op.__dict__["hook"] = _ClosingHook()
    with pytest.raises(ConnectionError):
        op.execute({})
    assert hook.closed == 1


def test_sweep_operators_close_the_client(monkeypatch):
    import threatq_provider.elasticsearch.sweeper as sweeper

    monkeypatch.setattr(sweeper, "sweep_expired", lambda client, **kw: {"matched": 0, "deleted": 0, "by_reason": {},
                                                                      "dry_run": True, "tombstones": 0})
    monkeypatch.setattr(sweeper, "sweep_tombstones", lambda client, **kw: {"pruned": 0})
    monkeypatch.setattr(sweeper, "sweep_history", lambda client, **kw: {"deleted_indices": [], "kept_indices": 0})
    for op in (IocExpirySweepOperator(task_id="sweep", now="2026-01-01T00:00:00Z"),
               HistoryRetentionSweepOperator(task_id="history", now="2026-01-01T00:00:00Z")):
        hook = op.__dict__["hook"] = _ClosingHook()
        op.execute({})
        assert hook.closed == 1


@pytest.mark.parametrize("make", [
    lambda: ElasticsearchLoadOperator(task_id="load", source_path="/x", elasticsearch_conn_id="es_http"),
    lambda: IocExpirySweepOperator(task_id="sweep", elasticsearch_conn_id="es_http"),
    lambda: HistoryRetentionSweepOperator(task_id="history", elasticsearch_conn_id="es_http"),
])
def test_a_refused_connection_fails_the_task_without_a_retry(monkeypatch, make):
    import json

    from airflow.providers.common.compat.sdk import AirflowFailException

    from threatq_provider.elasticsearch.errors import ConnectionConfigError

    monkeypatch.setenv("AIRFLOW_CONN_ES_HTTP", json.dumps({"conn_type": "elasticsearch_ecs",
                                                           "host": "http://es.lab:9200", "login": "elastic",
                                                           "password": "canary-es-pw-31"}))
    with pytest.raises(AirflowFailException, match="plain http") as info:
        make().execute({})
    assert isinstance(info.value.__cause__, ConnectionConfigError)
    assert "canary-es-pw-31" not in str(info.value)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"observed_at": "yesterday"}, "observed_at='yesterday' is not an ISO-8601 date-time"),
    ({"observed_at": "2019-06-01T00:00:00Z"}, "observed_at 2019-06-01T00:00:00+00:00 is outside 2020-01-01"),
    ({"max_future_skew": "1w"}, "max_future_skew='1w' is not a duration"),
    ({"max_in_flight": "0"}, "max_in_flight='0' is not a whole number of at least 1"),
    ({"max_in_flight": "two"}, "max_in_flight='two' is not a whole number of at least 1"),
])
def test_load_operator_fails_fast_on_a_bad_clock_or_skew_before_any_request(kwargs, message, tmp_path):
    from airflow.providers.common.compat.sdk import AirflowFailException

    op = ElasticsearchLoadOperator(task_id="load", source_path=f"file://{tmp_path}/ecs.ndjson", **kwargs)
    hook = op.__dict__["hook"] = _ClosingHook()

    with pytest.raises(AirflowFailException, match=message.replace("(", r"\(").replace("+", r"\+")):
        op.execute({})
    assert hook.closed == 0  # no client was built


def test_load_operator_passes_the_polls_time_and_the_prefixed_tombstone_index(monkeypatch, tmp_path):
    import threatq_provider.elasticsearch.loader as loader

    seen = {}

    def fake_load(client, lines, **kwargs):
        seen.update(kwargs)
        return loader.LoadCounts()

    monkeypatch.setattr(loader, "load_ndjson", fake_load)
    source = tmp_path / "ecs.ndjson"
    source.write_text("")
    op = ElasticsearchLoadOperator(task_id="load", source_path=f"file://{source}", install_templates=False,
                                   index_prefix="t-", observed_at="2026-11-20T10:05:00Z", max_future_skew="12h",
                                   max_in_flight="4")
    op.__dict__["hook"] = _ClosingHook()

    op.execute({})

    assert seen["max_in_flight"] == 4
    assert seen["observed_at"] == datetime(2026, 11, 20, 10, 5, tzinfo=timezone.utc)
    assert (seen["tombstone_index"], seen["max_future_skew"]) == ("t-threatq-ioc-tombstones", timedelta(hours=12))


def test_sweep_operator_refuses_a_bad_tombstone_retention():
    from airflow.providers.common.compat.sdk import AirflowFailException

    op = IocExpirySweepOperator(task_id="sweep", tombstone_retention="forever")
    op.__dict__["hook"] = _ClosingHook()
    with pytest.raises(AirflowFailException, match="tombstone_retention='forever' is not a duration"):
        op.execute({})
