"""Loader logic with a fake bulk endpoint: counts, dead letter, 429 retries, reject threshold.

The fake keeps external versions the way Elasticsearch does (a version not above the stored one
is a 409); the real behaviour is covered in tests/integration/elasticsearch/.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from elasticsearch import Elasticsearch

from threatq_provider.elasticsearch.errors import RejectThresholdExceeded
from threatq_provider.elasticsearch.loader import LoadCounts, check_reject_threshold, load_ndjson, version_ms


def fake_client(*, reject_ids=(), throttle_once=(), block_history=False):
    state = {"versions": {}, "created": set(), "throttled": set(), "requests": 0}

    class FakeBulk(Elasticsearch):
        def bulk(self, *, operations, **kwargs):
            state["requests"] += 1
            items = []
            for header, body in zip(operations[::2], operations[1::2]):
                (op, meta), = json.loads(header).items()
                doc_id = meta["_id"]
                base = {"_index": meta["_index"], "_id": doc_id}
                if doc_id in throttle_once and doc_id not in state["throttled"]:
                    state["throttled"].add(doc_id)
                    items.append({op: {**base, "status": 429, "error": {"type": "es_rejected_execution_exception"}}})
                elif block_history and op == "create":
                    items.append({op: {**base, "status": 403, "error": {
                        "type": "cluster_block_exception",
                        "reason": f"index [{meta['_index']}] blocked by: [FORBIDDEN/8/index write (api)];"}}})
                elif doc_id.split("-")[0] in reject_ids:
                    items.append({op: {**base, "status": 400, "error": {
                        "type": "document_parsing_exception", "reason": "failed to parse field [threat.indicator.ip]"}}})
                elif op == "create":
                    if doc_id in state["created"]:
                        items.append({op: {**base, "status": 409, "error": {"type": "version_conflict_engine_exception"}}})
                    else:
                        state["created"].add(doc_id)
                        items.append({op: {**base, "status": 201, "result": "created"}})
                else:
                    old = state["versions"].get(doc_id)
                    if old is not None and old >= meta["version"]:
                        items.append({op: {**base, "status": 409, "error": {"type": "version_conflict_engine_exception"}}})
                    else:
                        state["versions"][doc_id] = meta["version"]
                        items.append({op: {**base, "status": 201 if old is None else 200,
                                           "result": "created" if old is None else "updated"}})
            body = {"errors": any(next(iter(i.values()))["status"] >= 300 for i in items), "items": items}
            return SimpleNamespace(body=body)

    return FakeBulk("http://fake.invalid:9200"), state


def doc(iid, ts="2026-11-20T10:00:00.000Z"):
    return json.dumps({"@timestamp": ts, "threatq": {"id": iid}})


def test_version_is_the_timestamp_in_milliseconds():
    assert version_ms("2020-11-15T00:00:02.000Z") == 1605398402000
    assert version_ms("2020-11-15T01:00:02+01:00") == 1605398402000
    with pytest.raises(ValueError):
        version_ms("1960-01-01T00:00:00Z")


def test_counts_new_updated_stale_and_history():
    client, _ = fake_client()
    load_ndjson(client, [doc(1), doc(2)], chunk_docs=1)

    counts = load_ndjson(client, [doc(1, "2026-11-21T10:00:00.000Z"), doc(2), doc(3).encode()], chunk_docs=2)

    assert (counts.read, counts.indexed, counts.updated, counts.skipped_stale) == (3, 1, 1, 1)
    assert (counts.history_written, counts.history_existing) == (2, 1)


def test_rejected_document_goes_to_the_dead_letter_with_reason_and_document():
    client, _ = fake_client(reject_ids={"2"})
    dead = io.StringIO()

    counts = load_ndjson(client, [doc(1), doc(2), doc(3)], dead_letter=dead, history_prefix=None)

    (record,) = [json.loads(x) for x in dead.getvalue().splitlines()]
    assert record["id"] == "2" and record["status"] == 400
    assert record["reason"].startswith("document_parsing_exception")
    assert record["document"] == json.loads(doc(2))
    assert counts.indexed == 2 and dict(counts.rejected) == {"document_parsing_exception": 1}


def test_429_is_retried_and_then_indexed():
    client, state = fake_client(throttle_once={"1", "2"})

    counts = load_ndjson(client, [doc(1), doc(2), doc(3)], history_prefix=None, initial_backoff=0.01)

    assert counts.indexed == 3 and counts.rejected_total == 0
    assert state["requests"] == 2


def test_chunks_respect_the_document_count():
    client, state = fake_client()

    load_ndjson(client, [doc(i) for i in range(10)], chunk_docs=3)

    assert state["requests"] == 4


@pytest.mark.parametrize(
    ("rejected", "read", "kwargs", "raises"),
    [
        (0, 100, {}, False),
        (1, 100, {}, False),  # 1% is allowed by the default ratio
        (2, 100, {}, True),
        (5, 100, {"max_rejects": 10, "max_reject_ratio": None}, False),
        (11, 10000, {"max_rejects": 10}, True),
        (50, 100, {"max_reject_ratio": None}, False),
    ],
)
def test_reject_threshold(rejected, read, kwargs, raises):
    counts = LoadCounts(read=read)
    counts.rejected["document_parsing_exception"] = rejected
    if raises:
        with pytest.raises(RejectThresholdExceeded, match="document_parsing_exception") as info:
            check_reject_threshold(counts, dead_letter_path="file:///stage/x.dead-letter.ndjson", **kwargs)
        assert "x.dead-letter.ndjson" in str(info.value)
    else:
        check_reject_threshold(counts, **kwargs)


def test_history_rejects_are_counted_apart_and_dead_lettered_with_the_history_index():
    client, _ = fake_client(block_history=True)
    dead = io.StringIO()

    counts = load_ndjson(client, [doc(1), doc(2), doc(3)], dead_letter=dead, history_prefix="h-",
                         history_date=datetime(2026, 11, 21, tzinfo=timezone.utc))

    assert (counts.indexed, counts.rejected_total) == (3, 0)
    assert counts.history_rejected == 3 and dict(counts.history_rejected_by_type) == {"cluster_block_exception": 3}
    assert counts.rejected_documents == 3 and counts.dead_lettered == 3
    records = [json.loads(x) for x in dead.getvalue().splitlines()]
    assert {r["index"] for r in records} == {"h-2026.11.21"}
    assert sorted(r["id"] for r in records) == [f"{i}-1795168800000" for i in (1, 2, 3)]  # 2026-11-20T10:00Z
    assert all(r["status"] == 403 and r["reason"].startswith("cluster_block_exception") for r in records)
    xcom = counts.as_dict()
    assert xcom["history_rejected"] == 3 and xcom["rejected_documents"] == 3
    assert xcom["history_rejected_by_type"] == {"cluster_block_exception": 3}


def test_history_rejects_alone_trip_the_threshold_and_the_message_names_both_numbers():
    client, _ = fake_client(block_history=True)
    counts = load_ndjson(client, [doc(i) for i in range(1, 11)])

    with pytest.raises(RejectThresholdExceeded) as info:
        check_reject_threshold(counts, max_rejects=0, dead_letter_path="file:///stage/x.dead-letter.ndjson")

    assert str(info.value) == (
        "10 of 10 documents rejected (active index 0; history 10: cluster_block_exception=10), "
        "over the limit max_rejects=0; see file:///stage/x.dead-letter.ndjson")
    assert (info.value.rejected, info.value.active_rejected, info.value.history_rejected) == (10, 0, 10)


def test_a_document_refused_by_both_indices_counts_once():
    client, _ = fake_client(reject_ids={"2"})
    dead = io.StringIO()

    counts = load_ndjson(client, [doc(1), doc(2), doc(3)], dead_letter=dead)

    assert (counts.rejected_total, counts.history_rejected, counts.rejected_documents) == (1, 1, 1)
    assert counts.dead_lettered == 2  # one record per refusing index
    with pytest.raises(RejectThresholdExceeded, match=r"^1 of 3 documents rejected \(active index 1: "
                       r"document_parsing_exception=1; history 1: document_parsing_exception=1\)"):
        check_reject_threshold(counts, max_rejects=0)
    check_reject_threshold(counts, max_rejects=1, max_reject_ratio=None)  # one document, not two


def test_ratio_counts_history_only_rejects():
    counts = LoadCounts(read=100, history_rejected=2, rejected_documents=2)
    counts.history_rejected_by_type["mapper_parsing_exception"] = 2

    with pytest.raises(RejectThresholdExceeded, match="over the limit max_reject_ratio=0.01"):
        check_reject_threshold(counts)
