"""Every document carries the fields Elastic Security's prebuilt indicator-match rules and
Security views filter on, with the values of Elastic's ti_threatq latest index (issue 12):
``event.module``, ``event.dataset``, ``threat.feed.*``, ``data_stream.*`` and
``labels.is_ioc_transform_source``, from the table ``document_constants``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from threatq_provider.ecs.errors import EcsTableError
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.tables import build_tables, load_tables
from threatq_provider.ecs.transform import indicator_to_ecs

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
ELASTIC_LATEST_INDEX = {
    "event.module": "ti_threatq",
    "event.dataset": "ti_threatq.threat",
    "threat.feed.name": "ThreatQuotient",
    "threat.feed.dashboard_id": "ti_threatq-a05fd810-78f1-11ec-a97c-7db1518ab848",
    "data_stream.type": "logs",
    "data_stream.dataset": "ti_threatq.threat",
    "data_stream.namespace": "default",
    "labels.is_ioc_transform_source": "false",
}


def _get(doc: dict, path: str) -> object:
    for key in path.split("."):
        doc = doc[key]
    return doc


@pytest.mark.parametrize("raw", [
    {"id": 1, "value": "192.0.2.1", "type": {"name": "IP Address"}, "updated_at": "2026-11-01 00:00:00"},
    # no threat.indicator at all (unmapped type): threat.feed still lands under threat
    {"id": 2, "value": "x", "type": {"name": "Not A ThreatQ Type"}, "updated_at": "2026-11-01 00:00:00"},
    # flagged (pipeline_error): Elastic's constants are index-wide, so flagged documents have them too
    {"id": 3, "value": "999.1.1.1", "type": {"name": "IP Address"}, "updated_at": "2026-11-01 00:00:00"},
], ids=["ip", "unmapped", "flagged"])
def test_every_document_carries_the_latest_index_values(raw):
    doc = indicator_to_ecs(raw, now=NOW, options=EcsOptions())
    assert {path: _get(doc, path) for path in ELASTIC_LATEST_INDEX} == ELASTIC_LATEST_INDEX


def test_the_mapping_itself_is_unchanged_by_the_constants():
    doc = indicator_to_ecs({"id": 1, "value": "192.0.2.1", "type": {"name": "IP Address"},
                            "updated_at": "2026-11-01 00:00:00"}, now=NOW, options=EcsOptions())
    assert doc["event"]["kind"] == "enrichment" and doc["event"]["category"] == ["threat"]
    assert doc["threat"]["indicator"] == {"type": "ipv4-addr", "ip": "192.0.2.1",
                                          "last_seen": "2026-11-01T00:00:00.000Z",  # updated_at (no touched_at)
                                          "modified_at": "2026-11-01T00:00:00.000Z"}


def test_label_is_the_last_key_of_the_document():
    """The loader turns the history copy's label into "true" by looking from the line's end."""
    doc = indicator_to_ecs({"id": 1, "value": "192.0.2.1", "type": {"name": "IP Address"},
                            "updated_at": "2026-11-01 00:00:00"}, now=NOW, options=EcsOptions())
    assert list(doc)[-1] == "labels"
    assert json.dumps(doc, separators=(",", ":")).endswith('"labels":{"is_ioc_transform_source":"false"}}')


@pytest.mark.parametrize("path", ["threat.indicator.ip", "threatq.id", "event.kind", "related.ip", "@timestamp"])
def test_a_constant_that_would_overwrite_mapped_data_is_refused(path):
    data = json.loads(json.dumps(_raw_table()))
    data["document_constants"] = {path: "x"}
    with pytest.raises(EcsTableError, match="overwrite"):
        build_tables(data)


def test_a_constant_must_be_a_string():
    data = _raw_table()
    data["document_constants"] = {"event.module": 1}
    with pytest.raises(EcsTableError, match="non-empty string"):
        build_tables(data)


def test_the_loaded_table_has_the_latest_index_values_in_order():
    tables = load_tables()
    assert [(".".join(p), v) for p, v in tables.constants] == list(ELASTIC_LATEST_INDEX.items())


def _raw_table() -> dict:
    from threatq_provider._resources import data_file

    return json.loads(data_file("mappings", "threatq_to_ecs.json").read_text(encoding="utf-8"))
