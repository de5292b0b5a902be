"""Loader logic with a fake bulk endpoint: counts, versions, tombstones, dead letter, 429 retries,
reject threshold.

The fake keeps external versions the way Elasticsearch does (a version not above the stored one
is a 409) and answers tombstone look-ups from a dict; the real behaviour is covered in
tests/integration/elasticsearch/.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from elasticsearch import Elasticsearch

from threatq_provider.elasticsearch.errors import RejectThresholdExceeded, TombstoneError
from threatq_provider.elasticsearch.loader import (
    UNDATED_MESSAGE,
    LoadCounts,
    check_reject_threshold,
    document_version,
    load_ndjson,
)
from threatq_provider.elasticsearch.versioning import OBSERVED_EPOCH, external_version, observed_part

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)  # the default @timestamp of doc()
T0_S = int(T0.timestamp())
POLL = datetime(2026, 11, 20, 10, 5, tzinfo=timezone.utc)


def fake_client(*, reject_ids=(), throttle_once=(), block_history=False, tombstones=None, mget_error=None):
    state = {"versions": {}, "created": set(), "throttled": set(), "requests": 0, "mgets": []}
    stones = dict(tombstones or {})

    class FakeBulk(Elasticsearch):
        def mget(self, *, index, ids, **kwargs):
            state["mgets"].append((index, list(ids)))
            if mget_error:
                return {"docs": [{"_index": index, "_id": i, "error": {"type": mget_error}} for i in ids]}
            return {"docs": [{"_index": index, "_id": i, "found": True, "_version": stones[i]} if i in stones
                             else {"_index": index, "_id": i, "found": False} for i in ids]}

        def bulk(self, *, operations, **kwargs):
            state["requests"] += 1
            items = []
            lines = operations.splitlines() if isinstance(operations, bytes) else list(operations)
            while lines:
                (op, meta), = json.loads(lines.pop(0)).items()
                if op != "delete":
                    lines.pop(0)  # the document
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


def _version(ts, observed=None, **kw):
    return document_version(json.loads(doc(1, ts)), observed=observed_part(observed), clock=POLL, **kw)


def test_version_is_updated_at_in_seconds_then_the_polls_time():
    assert _version("2020-11-15T00:00:02.000Z") == 1605398402 << 31
    assert _version("2020-11-15T01:00:02+01:00") == 1605398402 << 31
    assert _version("2020-11-15T00:00:02.000Z", POLL) == (1605398402 << 31) + int((POLL - OBSERVED_EPOCH).total_seconds())


def test_a_newer_updated_at_beats_any_poll_time_and_a_later_poll_breaks_a_tie():
    late_poll = datetime(2088, 1, 1, tzinfo=timezone.utc)
    assert _version("2026-11-20T10:00:01Z", OBSERVED_EPOCH) > _version("2026-11-20T10:00:00Z", late_poll)
    assert _version("2026-11-20T10:00:00Z", POLL + timedelta(seconds=1)) > _version("2026-11-20T10:00:00Z", POLL)


def test_the_largest_version_fits_elasticsearchs_signed_long():
    assert external_version((1 << 32) - 1, (1 << 31) - 1) == 2**63 - 1


@pytest.mark.parametrize(("ts", "kind"), [
    ("1960-01-01T00:00:00Z", "timestamp_before_1970"),
    ("1970-01-01T00:00:00Z", "timestamp_before_1970"),
    ("9999-12-31T23:59:59.000Z", "timestamp_in_future"),
    ("2026-11-21T10:05:01Z", "timestamp_in_future"),  # one day and a second after the clock
    ("yesterday", "invalid_timestamp"),
])
def test_impossible_timestamps_cannot_be_versions(ts, kind):
    from threatq_provider.elasticsearch.versioning import UndatedVersionError

    with pytest.raises(UndatedVersionError) as info:
        _version(ts, POLL)
    assert info.value.kind == kind


def test_the_future_check_tolerates_the_configured_skew():
    assert _version("2026-11-21T10:05:00Z", POLL) > 0  # exactly one day after the clock
    assert _version("2026-11-20T22:05:00Z", POLL, max_future_skew=timedelta(hours=12)) > 0


def test_an_undated_document_gets_a_version_every_dated_copy_beats():
    undated = {"@timestamp": "2026-11-25T00:00:00.000Z", "threatq": {"id": 1},
               "error": {"message": ["threatq.updated_at: unparsable date 'x'", UNDATED_MESSAGE]}}
    version = document_version(undated, observed=observed_part(POLL), clock=POLL)

    assert version == observed_part(POLL)
    assert version < _version("1970-01-01T00:00:01Z", None)


def test_the_undated_marker_is_what_the_transform_writes():
    from threatq_provider.ecs.options import EcsOptions
    from threatq_provider.ecs.transform import indicator_to_ecs

    raw = {"id": 7, "value": "1.2.3.4", "type": {"name": "IP Address"}, "status": {"name": "Active"}}
    out = indicator_to_ecs(raw, now=POLL, options=EcsOptions())

    assert UNDATED_MESSAGE in out["error"]["message"]
    assert document_version(out, observed=5, clock=POLL) == 5


def test_observed_at_outside_the_versions_range_is_refused():
    client, _ = fake_client()
    with pytest.raises(ValueError, match="observed_at .* outside 2020-01-01"):
        load_ndjson(client, [doc(1)], observed_at=datetime(2019, 12, 31, tzinfo=timezone.utc))


def test_impossible_timestamps_go_to_the_dead_letter_with_their_id_and_reason():
    client, state = fake_client()
    dead = io.StringIO()

    counts = load_ndjson(client, [doc(1, "9999-12-31T23:59:59.000Z"), doc(2, "1969-12-31T23:59:59Z"), doc(3)],
                         dead_letter=dead, observed_at=POLL, now=POLL, history_prefix=None)

    assert dict(counts.rejected) == {"timestamp_in_future": 1, "timestamp_before_1970": 1}
    assert (counts.indexed, counts.rejected_documents) == (1, 2)
    records = {r["id"]: r for r in map(json.loads, dead.getvalue().splitlines())}
    assert records["1"]["reason"].startswith("timestamp_in_future: @timestamp 9999-12-31T23:59:59+00:00 "
                                             "(ThreatQ updated_at) is more than 1d after 2026-11-20T10:05:00+00:00 "
                                             "(the load's clock)")
    assert records["2"]["reason"].startswith("timestamp_before_1970:")
    assert set(state["versions"]) == {"3"}, "an impossible version reached Elasticsearch"


def test_copies_at_or_below_their_tombstone_are_skipped_deleted_and_still_reach_the_history():
    swept = external_version(T0_S, observed_part(POLL))
    client, state = fake_client(tombstones={"1": swept, "2": swept - 1})

    counts = load_ndjson(client, [doc(1), doc(2)], observed_at=POLL, history_prefix="h-", chunk_docs=10)

    assert (counts.skipped_deleted, counts.indexed) == (1, 1)
    assert set(state["versions"]) == {"2"}  # 2's tombstone is older than this copy: it passes
    assert counts.history_written == 2 and counts.as_dict()["skipped_deleted"] == 1
    assert state["mgets"] == [("threatq-ioc-tombstones", ["1", "2"])]


def test_one_tombstone_lookup_per_chunk():
    client, state = fake_client()

    load_ndjson(client, [doc(i) for i in range(5)], chunk_docs=2, tombstone_index="t-stones")

    assert [ids for _, ids in state["mgets"]] == [["0", "1"], ["2", "3"], ["4"]]
    assert {index for index, _ in state["mgets"]} == {"t-stones"}


def test_no_tombstone_index_no_lookup():
    client, state = fake_client()
    load_ndjson(client, [doc(1)], tombstone_index=None)
    assert state["mgets"] == []


def test_a_missing_tombstone_index_means_no_tombstones():
    client, state = fake_client(mget_error="index_not_found_exception")
    assert load_ndjson(client, [doc(1)]).indexed == 1


def test_a_failing_tombstone_lookup_fails_the_load_instead_of_loading_blind():
    client, state = fake_client(mget_error="no_shard_available_action_exception")
    with pytest.raises(TombstoneError, match="no_shard_available_action_exception"):
        load_ndjson(client, [doc(1)])
    assert state["versions"] == {}


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
    version = T0_S << 31  # 2026-11-20T10:00Z, no poll time
    assert sorted(r["id"] for r in records) == [f"{i}-{version}" for i in (1, 2, 3)]
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


# ---- history label (issue 12): detection rules skip the history ------------------------------

def test_history_copy_is_labelled_as_a_transform_source_and_the_active_copy_is_not():
    import json as _json
    from datetime import UTC, datetime

    from threatq_provider.ecs.options import EcsOptions
    from threatq_provider.ecs.transform import indicator_to_ecs
    from threatq_provider.elasticsearch.loader import history_line

    doc = indicator_to_ecs({"id": 1, "value": "192.0.2.1", "type": {"name": "IP Address"},
                            "updated_at": "2026-11-01 00:00:00",
                            "description": 'a "is_ioc_transform_source":"false" lookalike'},
                           now=datetime(2026, 11, 2, tzinfo=UTC), options=EcsOptions())
    line = _json.dumps(doc, separators=(",", ":"))
    history = _json.loads(history_line(line))
    assert history["labels"] == {"is_ioc_transform_source": "true"}
    assert {k: v for k, v in history.items() if k != "labels"} == {k: v for k, v in doc.items() if k != "labels"}
    assert doc["labels"] == {"is_ioc_transform_source": "false"}


def test_history_label_is_set_on_lines_without_one_or_in_another_layout():
    import json as _json

    from threatq_provider.elasticsearch.loader import history_line

    assert _json.loads(history_line('{"threatq": {"id": 1}}'))["labels"] == {"is_ioc_transform_source": "true"}
    spaced = '{"threatq": {"id": 1}, "labels": {"is_ioc_transform_source": "false", "team": "soc"}}'
    assert _json.loads(history_line(spaced))["labels"] == {"is_ioc_transform_source": "true", "team": "soc"}


def test_history_label_works_on_bytes_as_on_text():
    from threatq_provider.elasticsearch.loader import history_line

    line = '{"threatq":{"id":1},"note":"é","labels":{"is_ioc_transform_source":"false"}}'
    assert history_line(line.encode()) == history_line(line).encode()
    assert json.loads(history_line(b'{"threatq": {"id": 1}}'))["labels"] == {"is_ioc_transform_source": "true"}


# ---- requests in flight (issue 17) ----------------------------------------------------------

def _ids_of(operations):
    return {json.loads(line)[next(iter(json.loads(line)))]["_id"].split("-")[0]
            for line in operations.splitlines() if line.startswith((b'{"index"', b'{"create"', b'{"delete"'))}


def test_requests_are_sent_concurrently_up_to_max_in_flight():
    import threading

    client, state = fake_client()
    inner = type(client).bulk
    lock = threading.Lock()
    live = {"now": 0, "peak": 0}
    both_in = threading.Barrier(2, timeout=10)

    def bulk(self, *, operations, **kwargs):
        with lock:
            live["now"] += 1
            live["peak"] = max(live["peak"], live["now"])
        try:
            if state["requests"] < 2:
                both_in.wait()  # the first two requests are answered only once both were sent
            return inner(self, operations=operations, **kwargs)
        finally:
            with lock:
                live["now"] -= 1

    type(client).bulk = bulk
    counts = load_ndjson(client, [doc(i) for i in range(12)], chunk_docs=2, max_in_flight=2, history_prefix=None)

    assert live["peak"] == 2 and state["requests"] == 6
    assert counts.indexed == 12 and counts.read == 12


def test_a_request_sharing_an_id_with_one_in_flight_waits_for_it():
    import threading
    import time

    client, state = fake_client()
    inner = type(client).bulk
    lock = threading.Lock()
    in_flight: list[set[str]] = []
    overlaps = []

    def bulk(self, *, operations, **kwargs):
        ids = _ids_of(operations)
        with lock:
            overlaps.extend(ids & other for other in in_flight if ids & other)
            in_flight.append(ids)
        time.sleep(0.02)
        try:
            return inner(self, operations=operations, **kwargs)
        finally:
            with lock:
                in_flight.remove(ids)

    type(client).bulk = bulk
    # id 1 in the first and the third request: the third waits; 2, 3 and 4 do not.
    lines = [doc(1), doc(2), doc(3), doc(1, "2026-11-20T11:00:00.000Z"), doc(4)]
    counts = load_ndjson(client, lines, chunk_docs=1, max_in_flight=3, history_prefix=None)

    assert overlaps == []
    assert (counts.indexed, counts.updated, counts.skipped_stale) == (4, 1, 0)  # as one request at a time
    assert state["versions"]["1"] == external_version(T0_S + 3600, 0)


def test_a_failed_request_fails_the_load_and_nothing_after_it_is_counted():
    from elastic_transport import ConnectionError as TransportConnectionError

    client, state = fake_client()
    inner = type(client).bulk

    def bulk(self, *, operations, **kwargs):
        if b'"_id":"3"' in operations:
            raise TransportConnectionError("connection refused")
        return inner(self, operations=operations, **kwargs)

    type(client).bulk = bulk
    with pytest.raises(TransportConnectionError):
        load_ndjson(client, [doc(i) for i in range(8)], chunk_docs=1, max_in_flight=2, history_prefix=None)


def test_a_whole_request_answered_429_is_sent_again():
    from elasticsearch import ApiError
    from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig

    client, state = fake_client()
    inner = type(client).bulk
    calls = []

    def bulk(self, *, operations, **kwargs):
        calls.append(operations)
        if len(calls) == 1:
            meta = ApiResponseMeta(status=429, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                                   node=NodeConfig("http", "fake.invalid", 9200))
            raise ApiError("es_rejected_execution_exception", meta=meta, body={})
        return inner(self, operations=operations, **kwargs)

    type(client).bulk = bulk
    counts = load_ndjson(client, [doc(1), doc(2)], history_prefix="h-", initial_backoff=0.01)

    assert calls[0] == calls[1] and counts.indexed == 2 and counts.history_written == 2


def test_item_429s_are_retried_alone_and_their_results_land_on_the_right_lines():
    client, state = fake_client(throttle_once={"2"}, reject_ids={"3"})
    sent = []
    inner = type(client).bulk

    def bulk(self, *, operations, **kwargs):
        sent.append(operations)
        return inner(self, operations=operations, **kwargs)

    type(client).bulk = bulk
    dead = io.StringIO()
    counts = load_ndjson(client, [doc(1), doc(2), doc(3)], history_prefix=None, dead_letter=dead,
                         initial_backoff=0.01)

    assert len(sent) == 2 and _ids_of(sent[1]) == {"2"}
    assert counts.indexed == 2 and dict(counts.rejected) == {"document_parsing_exception": 1}
    assert [json.loads(x)["id"] for x in dead.getvalue().splitlines()] == ["3"]


def test_max_in_flight_below_one_is_refused():
    client, _ = fake_client()
    with pytest.raises(ValueError, match="max_in_flight"):
        load_ndjson(client, [doc(1)], max_in_flight=0)


def test_a_line_that_is_not_utf8_is_an_invalid_json_reject_not_a_crash():
    client, _ = fake_client()
    dead = io.StringIO()

    counts = load_ndjson(client, [b'{"threatq":{"id":"\xff"}}', doc(2)], dead_letter=dead, history_prefix=None)

    assert dict(counts.rejected) == {"invalid_json": 1} and counts.indexed == 1
    assert json.loads(dead.getvalue())["document"] == '{"threatq":{"id":"\ufffd"}}'


def test_integers_beyond_64_bits_are_read_as_before():
    client, state = fake_client()
    counts = load_ndjson(client, ['{"@timestamp":"2026-11-20T10:00:00.000Z","threatq":{"id":1,"n":%d}}' % 2**70],
                         history_prefix=None)
    assert counts.indexed == 1


def test_a_timestamp_with_blanks_around_is_read_like_every_other_iso_time():
    # Decided drift (#11): @timestamp is read by coerce.parse_iso, which ignores blanks around.
    from threatq_provider.elasticsearch.versioning import parse_timestamp

    assert parse_timestamp(" 2026-11-20T10:00:00Z\n") == datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    assert parse_timestamp("2026-11-20T11:00:00+01:00") == datetime(2026, 11, 20, 10, tzinfo=timezone.utc)


# -- the partial parse of a line: judged exactly as a whole parse -------------------------------------

_DOC = ('{"@timestamp":"2026-11-20T10:00:00.000Z","threat":{"indicator":{"ip":"1.2.3.4"}},'
        '"threatq":{"id":7,"ioc_expiration_reason":"Status outside the detection policy"},'
        '"labels":{"is_ioc_transform_source":"false"}}')
_HEAD_LINES = {
    "usual": _DOC.encode(),
    "undated": json.dumps({"@timestamp": "x", "error": {"message": [UNDATED_MESSAGE]},
                           "threatq": {"id": 1}}).encode(),
    "error_message_text": b'{"error":{"message":"one"},"threatq":{"id":"a"}}',
    "error_not_object": b'{"error":"boom","threatq":{"id":1},"@timestamp":"2026-11-20T10:00:00Z"}',
    "threatq_missing": b'{"@timestamp":"2026-11-20T10:00:00Z"}',
    "threatq_null": b'{"threatq":null}',
    "threatq_not_object": b'{"threatq":[1,2]}',
    "id_missing": b'{"threatq":{"ioc_expiration_reason":null}}',
    "id_null": b'{"threatq":{"id":null}}',
    "id_beyond_64_bits": b'{"threatq":{"id":123456789012345678901234567890}}',
    "id_float": b'{"threatq":{"id":1.5e3}}',
    "duplicate_keys": b'{"threatq":{"id":1},"threatq":{"id":2},"@timestamp":"a","@timestamp":"b"}',
    "nan_elsewhere": b'{"threatq":{"id":1},"x":NaN}',
    "nan_timestamp": b'{"threatq":{"id":1},"@timestamp":NaN}',
    "not_utf8_elsewhere": b'{"threatq":{"id":1},"x":"a\xff\xfeb"}',
    "lone_surrogate_elsewhere": b'{"threatq":{"id":1},"x":"\\ud800"}',
    "lone_surrogate_in_reason": b'{"threatq":{"id":1,"ioc_expiration_reason":"\\udc00"}}',
    "malformed_elsewhere": b'{"threatq":{"id":1},"x":[1,}',
    "not_an_object": b'[1,2,3]',
    "a_string": b'"threatq"',
    "deep_elsewhere": b'{"threatq":{"id":1},"x":' + b'[' * 200 + b']' * 200 + b'}',
}


def _view(parse, line: bytes) -> object:
    """What the loader reads of a line (or the error class a whole parse raises)."""
    try:
        doc = parse(line)
    except ValueError as exc:
        return ("raises", ValueError, isinstance(exc, UnicodeDecodeError))
    if not isinstance(doc, dict):
        return ("not_a_dict",)
    tq = doc.get("threatq")
    error = doc.get("error")
    return (doc.get("@timestamp", "<missing>"),
            error.get("message") if isinstance(error, dict) else ("<not-a-dict>", error is None),
            ("<not-a-dict>", tq is None) if not isinstance(tq, dict) else
            (tq.get("id", "<missing>"), tq.get("ioc_expiration_reason")))


@pytest.mark.parametrize("name", sorted(_HEAD_LINES))
def test_the_partial_parse_reads_what_a_whole_parse_reads(name):
    from threatq_provider.elasticsearch.loader import _head, _loads

    line = _HEAD_LINES[name]
    whole = _view(_loads, line)
    partial = _view(_head, line)
    if isinstance(whole[0], float):  # NaN is not equal to itself
        assert isinstance(partial[0], float) and str(partial) == str(whole)
    else:
        assert partial == whole


def test_lines_of_every_shape_load_alike_through_the_partial_parse():
    """The loader's outcome (counts, dead letter) for the odd lines above is that of a whole parse."""
    from threatq_provider.elasticsearch import loader

    def run(parse):
        original = loader._head
        loader._head = parse
        try:
            (es, _state), dead = fake_client(), io.StringIO()
            counts = load_ndjson(es, list(_HEAD_LINES.values()), history_prefix=None, tombstone_index=None,
                                 dead_letter=dead, now=T0 + timedelta(hours=1))
            return counts.as_dict(), dead.getvalue()
        finally:
            loader._head = original

    assert run(loader._head) == run(loader._loads)
