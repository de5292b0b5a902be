"""Hook and operators against the real node, connections from AIRFLOW_CONN_* variables."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook
from threatq_provider.elasticsearch.templates import IndexNames
from threatq_provider.operators.load import ACTIVE_INDEX_ASSET_URI, ElasticsearchLoadOperator
from threatq_provider.operators.sweep import HistoryRetentionSweepOperator, IocExpirySweepOperator

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]
DATA = Path(__file__).resolve().parents[2] / "data" / "elasticsearch"
CANARY = "canary-S3CRET-es-op-19c2"


@pytest.fixture
def es_conn(monkeypatch, es_url):
    monkeypatch.setenv("AIRFLOW_CONN_ES_IT", json.dumps({"conn_type": "elasticsearch_ecs", "host": es_url,
                                                         "extra": {"request_timeout": 30}}))
    return "es_it"


def test_plain_connection_reaches_the_node(es_conn):
    ok, message = ElasticsearchEcsHook(elasticsearch_conn_id=es_conn).test_connection()

    assert ok is True and "status" in message


def test_airflow_elasticsearch_connection_type_is_accepted(monkeypatch, es_url):
    host, port = es_url.split("://")[1].split(":")
    monkeypatch.setenv("AIRFLOW_CONN_ES_AF", json.dumps({"conn_type": "elasticsearch", "host": host,
                                                         "port": int(port), "schema": "http"}))

    assert ElasticsearchEcsHook(elasticsearch_conn_id="es_af").test_connection()[0] is True


def test_load_operator_returns_counts_and_paths(es_conn, es_client, es_index_prefix, tmp_path):
    source = tmp_path / "ecs.ndjson"
    source.write_text((DATA / "documents.ndjson").read_text())
    op = ElasticsearchLoadOperator(task_id="load", source_path=f"file://{source}", elasticsearch_conn_id=es_conn,
                                   index_prefix=es_index_prefix)

    xcom = op.execute({})

    assert xcom["indexed"] == 8 and xcom["rejected_total"] == 0
    assert xcom["dead_letter_path"] == f"file://{tmp_path / 'ecs.dead-letter.ndjson'}"
    assert (tmp_path / "ecs.dead-letter.ndjson").read_text() == ""
    assert xcom["templates"]["active_index"] == "created"
    json.dumps(xcom)  # the XCom is JSON-able
    es_client.indices.refresh(index=IndexNames(es_index_prefix).active_alias)
    assert es_client.count(index=IndexNames(es_index_prefix).active_alias)["count"] == 8


def test_load_operator_reads_a_zstd_stage_file_and_writes_its_dead_letter_compressed(es_conn, es_client,
                                                                                   es_index_prefix, tmp_path):
    """Issue 17: the DAG's stage files are zstd; the dead letter beside one is zstd too."""
    from threatq_provider.stage_io import compression_of, open_writer, read_text

    source = tmp_path / "ecs.ndjson.zst"
    with open_writer(source) as out:
        out.write((DATA / "documents.ndjson").read_bytes())
        out.write(json.dumps(json.loads((DATA / "bad_ip.json").read_text())).encode() + b"\n")
    op = ElasticsearchLoadOperator(task_id="load", source_path=f"file://{source}", elasticsearch_conn_id=es_conn,
                                   index_prefix=es_index_prefix, max_reject_ratio=None, max_in_flight=3,
                                   chunk_docs=2)

    xcom = op.execute({})

    dead_path = tmp_path / "ecs.dead-letter.ndjson.zst"
    assert xcom["dead_letter_path"] == f"file://{dead_path}"
    assert compression_of(dead_path.read_bytes()[:4]) == "zstd"
    dead = [json.loads(x) for x in read_text(dead_path).splitlines()]
    assert {d["id"].split("-")[0] for d in dead} == {"1999"}  # the active and the history copy
    assert xcom["indexed"] == 8 and xcom["rejected_documents"] == 1


def test_load_operator_fails_over_the_threshold_after_keeping_accepted_documents(
        es_conn, es_client, es_index_prefix, tmp_path, caplog):
    source = tmp_path / "ecs.ndjson"
    source.write_text((DATA / "documents.ndjson").read_text()
                      + json.dumps(json.loads((DATA / "bad_ip.json").read_text())) + "\n")
    op = ElasticsearchLoadOperator(task_id="load", source_path=str(source), elasticsearch_conn_id=es_conn,
                                   index_prefix=es_index_prefix, max_rejects=0)

    from airflow.providers.common.compat.sdk import AirflowFailException

    from threatq_provider.elasticsearch.errors import RejectThresholdExceeded

    with pytest.raises(AirflowFailException, match="1 of 9 documents rejected") as info:
        op.execute({})

    assert isinstance(info.value.__cause__, RejectThresholdExceeded)

    dead = [json.loads(x) for x in (tmp_path / "ecs.dead-letter.ndjson").read_text().splitlines()]
    names = IndexNames(es_index_prefix)
    # The active index refuses the bad IP; the history maps it as a runtime field (Elasticsearch has
    # runtime fields) and keeps what ThreatQ sent, so only the active copy is dead-lettered.
    assert [(d["id"], d["index"]) for d in dead] == [("1999", names.first_active_index)]
    es_client.indices.refresh(index=f"{names.active_alias},{names.history_pattern}")
    assert es_client.count(index=names.active_alias)["count"] == 8
    assert es_client.count(index=names.history_pattern)["count"] == 9


def test_load_operator_fails_when_the_history_refuses_writes_and_names_both_numbers(
        es_conn, es_client, es_index_prefix, tmp_path):
    from airflow.providers.common.compat.sdk import AirflowFailException

    from threatq_provider.elasticsearch.templates import install_templates

    names = IndexNames(es_index_prefix)
    install_templates(es_client, prefix=es_index_prefix)
    history_index = names.history_prefix + "2026.11.21"
    es_client.indices.create(index=history_index)
    es_client.indices.put_settings(index=history_index, settings={"index.blocks.write": True})
    source = tmp_path / "ecs.ndjson"
    source.write_text((DATA / "documents.ndjson").read_text())
    context = {"data_interval_end": datetime(2026, 11, 21, 10, tzinfo=timezone.utc)}
    op = ElasticsearchLoadOperator(task_id="load", source_path=str(source), elasticsearch_conn_id=es_conn,
                                   index_prefix=es_index_prefix)

    with pytest.raises(AirflowFailException, match=r"8 of 8 documents rejected \(active index 0; history 8: "
                       r"cluster_block_exception=8\), over the limit max_reject_ratio=0.01"):
        op.execute(context)

    dead = [json.loads(x) for x in (tmp_path / "ecs.dead-letter.ndjson").read_text().splitlines()]
    assert len(dead) == 8 and {d["index"] for d in dead} == {history_index}
    # Without limits the same load succeeds and its XCom shows the history rejects apart.
    unlimited = ElasticsearchLoadOperator(task_id="load2", source_path=str(source), elasticsearch_conn_id=es_conn,
                                          index_prefix=es_index_prefix, max_rejects=None, max_reject_ratio=None)
    xcom = unlimited.execute(context)
    assert (xcom["rejected_total"], xcom["history_rejected"], xcom["rejected_documents"]) == (0, 8, 8)
    assert xcom["history_rejected_by_type"] == {"cluster_block_exception": 8} and xcom["skipped_stale"] == 8


def test_sweep_operators_use_the_data_interval_end_as_now(es_conn, es_client, es_index_prefix, tmp_path):
    source = tmp_path / "ecs.ndjson"
    source.write_text((DATA / "documents.ndjson").read_text())
    ElasticsearchLoadOperator(task_id="load", source_path=str(source), elasticsearch_conn_id=es_conn,
                              index_prefix=es_index_prefix).execute(
        {"data_interval_end": datetime(2026, 11, 21, 6, 0, tzinfo=timezone.utc)})
    context = {"data_interval_end": datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc)}

    dry = IocExpirySweepOperator(task_id="sweep", elasticsearch_conn_id=es_conn, index_prefix=es_index_prefix,
                                 dry_run=True).execute(context)
    real = IocExpirySweepOperator(task_id="sweep", elasticsearch_conn_id=es_conn,
                                  index_prefix=es_index_prefix).execute(context)
    history = HistoryRetentionSweepOperator(task_id="hist", elasticsearch_conn_id=es_conn,
                                            index_prefix=es_index_prefix, retention="1d",
                                            now="2026-11-23T12:00:00Z").execute({})

    # documents.ndjson: 1004 expired 2026-11-22T00:00Z and 1005 at 2026-11-22T08:00Z; 1006 only on the 23rd 09:00.
    assert (dry["matched"], dry["deleted"], real["deleted"]) == (2, 0, 2)
    assert real["now"] == "2026-11-23T00:00:00.000Z"
    # The load's history went to its data interval's day, 2026.11.21, which ends before the cutoff.
    assert history["deleted_indices"] == [IndexNames(es_index_prefix).history_prefix + "2026.11.21"]


def test_asset_uri_names_the_active_alias():
    assert ACTIVE_INDEX_ASSET_URI.endswith("/logs-ti_threatq_latest.threat")


def test_credentials_never_reach_logs_or_xcom(monkeypatch, es_url, es_index_prefix, tmp_path, caplog):
    # The test node runs without security, so it ignores the credentials; the client still sends them.
    monkeypatch.setenv("AIRFLOW_CONN_ES_CANARY", json.dumps({
        "conn_type": "elasticsearch_ecs", "host": es_url, "login": "elastic", "password": CANARY,
        "extra": {"allow_insecure_http": True}}))
    source = tmp_path / "ecs.ndjson"
    source.write_text((DATA / "documents.ndjson").read_text())
    caplog.set_level("DEBUG")

    xcom = ElasticsearchLoadOperator(task_id="load", source_path=str(source), elasticsearch_conn_id="es_canary",
                                     index_prefix=es_index_prefix).execute({})
    ok, message = ElasticsearchEcsHook(elasticsearch_conn_id="es_canary").test_connection()

    assert ok is True and xcom["indexed"] == 8
    assert CANARY not in json.dumps(xcom) and CANARY not in message and CANARY not in caplog.text
