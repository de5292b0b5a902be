"""The bulk loader against both real nodes: idempotent, newest version wins, bad documents dead-lettered.

One loader contract, two targets: each test runs on Elastic's test node (``es``; history in daily
indices) and on OpenSearch's (``os``; the ``opensearch-py`` client, history in a data stream).
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from threatq_provider.elasticsearch.cluster import cluster
from threatq_provider.elasticsearch.errors import RejectThresholdExceeded
from threatq_provider.elasticsearch.loader import check_reject_threshold, load_ndjson
from threatq_provider.elasticsearch.templates import IndexNames, history_target, install_templates

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]
DATA = Path(__file__).resolve().parents[2] / "data" / "elasticsearch"
CONFORMANCE = Path(__file__).resolve().parents[4] / "shared" / "conformance" / "elastic-ti_threatq"


def _lines() -> list[str]:
    return (DATA / "documents.ndjson").read_text().splitlines()


def _ids(client, index: str) -> list[str]:
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"size": 1000, "query": {"match_all": {}}})["hits"]["hits"]
    return sorted(h["_id"] for h in hits)


@pytest.fixture
def names(search_client, search_index_prefix) -> IndexNames:
    install_templates(search_client, prefix=search_index_prefix)
    return IndexNames(search_index_prefix)


def _load(client, names: IndexNames, lines, dead_letter=None):
    return load_ndjson(client, lines, active_index=names.active_alias,
                       tombstone_index=names.tombstone_index, history_prefix=names.history_prefix,
                       dead_letter=dead_letter, chunk_docs=3)


def test_first_load_indexes_every_document_once_in_active_and_history(search_client, names):
    counts = _load(search_client, names, _lines())

    assert counts.as_dict() | {"rejected": {}} == {
        "read": 8, "indexed": 8, "updated": 0, "skipped_stale": 0, "skipped_deleted": 0,
        "withheld_by_reason": {}, "removed_by_reason": {}, "rejected": {}, "rejected_total": 0,
        "history_written": 8, "history_existing": 0, "history_rejected": 0, "history_rejected_by_type": {},
        "rejected_documents": 0, "dead_lettered": 0,
    }
    assert _ids(search_client, names.active_alias) == sorted(str(json.loads(x)["threatq"]["id"]) for x in _lines())


def test_loading_twice_gives_the_same_documents_and_no_duplicates(search_client, names):
    _load(search_client, names, _lines())
    active_before, history_before = _ids(search_client, names.active_alias), _ids(search_client, names.history_pattern)

    again = _load(search_client, names, _lines())

    assert _ids(search_client, names.active_alias) == active_before
    assert _ids(search_client, names.history_pattern) == history_before
    assert (again.indexed, again.updated, again.skipped_stale) == (0, 0, 8)
    assert (again.history_written, again.history_existing, again.rejected_total) == (0, 8, 0)


def test_an_older_version_does_not_overwrite_a_newer_one(search_client, names):
    doc = json.loads(_lines()[0])
    newer = json.loads(json.dumps(doc))
    newer["@timestamp"] = "2026-11-24T10:00:00.000Z"
    newer["threat"]["indicator"]["confidence"] = "High"
    _load(search_client, names, [json.dumps(newer)])

    replay = _load(search_client, names, [json.dumps(doc)])

    stored = search_client.get(index=names.active_alias, id=str(doc["threatq"]["id"]))
    assert stored["_source"]["threat"]["indicator"]["confidence"] == "High"
    assert stored["_version"] == 1795514400 << 31  # 2026-11-24T10:00:00Z in seconds, no poll time given
    assert (replay.skipped_stale, replay.rejected_total) == (1, 0)
    # The history keeps both versions.
    assert replay.history_written == 1


def test_a_newer_version_replaces_the_stored_one_and_counts_as_updated(search_client, names):
    doc = json.loads(_lines()[0])
    _load(search_client, names, [json.dumps(doc)])
    doc["@timestamp"] = "2026-11-24T10:00:00.000Z"
    doc["threat"]["indicator"]["confidence"] = "High"

    counts = _load(search_client, names, [json.dumps(doc)])

    assert (counts.indexed, counts.updated) == (0, 1)
    assert search_client.get(index=names.active_alias, id=str(doc["threatq"]["id"]))["_source"]["threat"]["indicator"][
        "confidence"] == "High"


def test_a_bad_value_goes_to_the_dead_letter_while_the_rest_of_its_batch_is_indexed(search_client, names):
    bad = json.loads((DATA / "bad_ip.json").read_text())
    lines = _lines()
    lines.insert(3, json.dumps(bad))
    dead = io.StringIO()

    counts = load_ndjson(search_client, lines, active_index=names.active_alias,
                         tombstone_index=names.tombstone_index, history_prefix=names.history_prefix,
                         dead_letter=dead, chunk_docs=100)  # one batch

    records = [json.loads(x) for x in dead.getvalue().splitlines()]
    active_records = [r for r in records if r["index"].startswith(names.active_index_prefix)]
    assert [r["id"] for r in active_records] == ["1999"]
    assert active_records[0]["document"] == bad
    assert "threat.indicator.ip" in active_records[0]["reason"]
    assert counts.indexed == 8 and counts.rejected_total == 1
    if cluster(search_client).capabilities.runtime_fields:
        # The history maps threat.indicator.ip as a runtime field: it keeps what ThreatQ said, and
        # a query skips the value that is not an IP (as ignore_malformed would).
        assert counts.history_rejected == 0 and counts.history_written == 9
        assert counts.dead_lettered == 1
        search_client.indices.refresh(index=names.history_pattern)
        hits = search_client.search(index=names.history_pattern, body={"query": {"term": {"threatq.id": 1999}}})
        assert hits["hits"]["total"]["value"] == 1
    else:
        assert counts.history_rejected == 1
        assert counts.dead_lettered == 2  # the active and the history copy, each with its index
    assert counts.rejected_documents == 1  # one document, refused by one index or both
    assert "1999" not in _ids(search_client, names.active_alias)
    assert len(_ids(search_client, names.active_alias)) == 8


def test_invalid_lines_are_dead_lettered_without_reaching_elasticsearch(search_client, names):
    dead = io.StringIO()
    lines = ["{not json", json.dumps({"@timestamp": "2026-11-20T10:00:00.000Z"}),
             json.dumps({"threatq": {"id": 5}, "@timestamp": "yesterday"}), *_lines()[:2]]

    counts = _load(search_client, names, lines, dead_letter=dead)

    assert dict(counts.rejected) == {"invalid_json": 1, "missing_threatq_id": 1, "invalid_timestamp": 1}
    assert counts.indexed == 2 and len(dead.getvalue().splitlines()) == 3


def test_elastic_conformance_documents_load(search_client, names):
    expected = json.loads((CONFORMANCE / "test-threatq-sample-ndjson.log-expected.json").read_text())["expected"]
    # Elastic's fixtures keep the ThreatQ id as a string and carry no history duplicates.
    lines = [json.dumps(d) for d in expected]

    counts = _load(search_client, names, lines)

    assert counts.rejected_total == 0 and counts.indexed == len(expected)


LOAD_DAY = datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc)


def _block_history_writes(client, names: IndexNames) -> str:
    """Create the load's history target from its template (the load day's index, or the data stream)
    and refuse writes to it; the concrete index that will refuse them."""
    target = history_target(client, names, LOAD_DAY)
    if cluster(client).capabilities.data_streams:
        client.indices.create_data_stream(name=target)
        index = client.indices.get_data_stream(name=target)["data_streams"][0]["indices"][-1]["index_name"]
    else:
        index = target
        client.indices.create(index=index)
    client.indices.put_settings(index=index, body={"index.blocks.write": True})
    return index


def test_a_history_index_that_refuses_writes_is_counted_dead_lettered_and_trips_the_threshold(search_client, names):
    _block_history_writes(search_client, names)
    dead = io.StringIO()

    counts = load_ndjson(search_client, _lines(), active_index=names.active_alias,
                         tombstone_index=names.tombstone_index, history_prefix=names.history_prefix,
                         history_date=LOAD_DAY, dead_letter=dead, chunk_docs=3)

    # The active index took every document; the history took none, and says so.
    assert (counts.indexed, counts.rejected_total) == (8, 0)
    assert (counts.history_written, counts.history_rejected, counts.rejected_documents) == (0, 8, 8)
    assert dict(counts.history_rejected_by_type) == {"cluster_block_exception": 8}
    records = [json.loads(x) for x in dead.getvalue().splitlines()]
    # The record names the history the load wrote to: the day's index, or the data stream.
    assert len(records) == 8 and {r["index"] for r in records} == {history_target(search_client, names, LOAD_DAY)}
    assert {r["status"] for r in records} == {403}
    assert all(r["reason"].startswith("cluster_block_exception") for r in records)
    assert sorted(r["document"]["threatq"]["id"] for r in records) == sorted(
        json.loads(x)["threatq"]["id"] for x in _lines())
    with pytest.raises(RejectThresholdExceeded) as info:
        check_reject_threshold(counts, dead_letter_path="file:///stage/ecs.dead-letter.ndjson")
    assert str(info.value) == ("8 of 8 documents rejected (active index 0; history 8: cluster_block_exception=8), "
                               "over the limit max_reject_ratio=0.01; see file:///stage/ecs.dead-letter.ndjson")


def test_active_and_history_rejects_are_named_apart_and_each_document_counts_once(search_client, names):
    _block_history_writes(search_client, names)
    lines = _lines()
    lines.insert(2, json.dumps(json.loads((DATA / "bad_ip.json").read_text())))

    counts = load_ndjson(search_client, lines, active_index=names.active_alias,
                         tombstone_index=names.tombstone_index, history_prefix=names.history_prefix,
                         history_date=LOAD_DAY, chunk_docs=4)

    assert (counts.read, counts.rejected_total, counts.history_rejected, counts.rejected_documents) == (9, 1, 9, 9)
    # Each product names a value its mapping refuses in its own words.
    parse_error = {"elasticsearch": "document_parsing_exception",
                   "opensearch": "mapper_parsing_exception"}[cluster(search_client).flavor]
    with pytest.raises(RejectThresholdExceeded, match=rf"^9 of 9 documents rejected \(active index 1: "
                       rf"{parse_error}=1; history 9: cluster_block_exception=9\), "
                       r"over the limit max_rejects=5$"):
        check_reject_threshold(counts, max_rejects=5, max_reject_ratio=None)
