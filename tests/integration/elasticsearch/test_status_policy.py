"""The status policy on the real node (issue 12, item 4): an indicator whose ThreatQ status leaves
the detection statuses leaves the active index on the next load (tombstone reason
``status_policy``, counted by reason), comes back when its status returns, and the history keeps
every version. Real transform (both engines give the same bytes), real loader, real node."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest

from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import transform_stream
from threatq_provider.elasticsearch.loader import load_ndjson
from threatq_provider.elasticsearch.templates import IndexNames, install_templates

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _version(status: str, updated: datetime) -> str:
    import json

    return json.dumps({"id": 4242, "value": "198.51.100.42", "type": {"name": "IP Address"},
                       "status": {"id": 1, "name": status}, "updated_at": updated.strftime("%Y-%m-%d %H:%M:%S"),
                       "sources": [{"name": "Feed A"}]})


def _load(es, names: IndexNames, raw_line: str, *, observed: datetime, options: EcsOptions = EcsOptions()):
    out, rejects = io.StringIO(), io.StringIO()
    transform_stream([raw_line], out, rejects, now=observed, options=options)
    counts = load_ndjson(es, out.getvalue().splitlines(), active_index=names.active_alias,
                         history_prefix=names.history_prefix, history_date=observed, observed_at=observed,
                         tombstone_index=names.tombstone_index, now=observed)
    es.indices.refresh(index=f"{names.active_alias},{names.history_pattern}")
    return counts


def _active(es, names: IndexNames) -> dict:
    hits = es.search(index=names.active_alias, query={"term": {"threatq.id": 4242}})["hits"]["hits"]
    return {h["_id"]: h["_source"]["threatq"]["status"]["name"] for h in hits}


def test_status_leaving_the_policy_removes_the_ioc_on_the_next_load_and_returning_brings_it_back(
    es_client, es_index_prefix
):
    es = es_client
    names = IndexNames(es_index_prefix)
    install_templates(es, prefix=es_index_prefix)
    t0 = NOW - timedelta(hours=3)

    first = _load(es, names, _version("Active", t0), observed=t0 + timedelta(minutes=1))
    assert (first.indexed, dict(first.withheld_by_reason)) == (1, {})
    assert _active(es, names) == {"4242": "Active"}

    # An analyst whitelists it in ThreatQ: updated_at moves, the next load removes it.
    t1 = t0 + timedelta(hours=1)
    second = _load(es, names, _version("Whitelisted", t1), observed=t1 + timedelta(minutes=1))
    assert dict(second.withheld_by_reason) == {"status_policy": 1}
    assert dict(second.removed_by_reason) == {"status_policy": 1}
    assert (second.indexed, second.updated, second.rejected_documents) == (0, 0, 0)
    assert _active(es, names) == {}
    stone = es.get(index=names.tombstone_index, id="4242")["_source"]
    assert stone["reason"] == "status_policy"

    # Replaying the Active copy's stage (an old run) does not bring it back: the tombstone is newer.
    replay = _load(es, names, _version("Active", t0), observed=t0 + timedelta(minutes=1))
    assert replay.skipped_deleted == 1 and _active(es, names) == {}

    # Back to Active in ThreatQ: the newer version passes the tombstone and is active again.
    t2 = t1 + timedelta(hours=1)
    third = _load(es, names, _version("Active", t2), observed=t2 + timedelta(minutes=1))
    assert (third.indexed, dict(third.withheld_by_reason)) == (1, {})
    assert _active(es, names) == {"4242": "Active"}

    history = es.search(index=names.history_pattern, query={"term": {"threatq.id": 4242}}, size=10,
                        sort=[{"@timestamp": "asc"}])["hits"]["hits"]
    assert [h["_source"]["threatq"]["status"]["name"] for h in history] == ["Active", "Whitelisted", "Active"]
    assert {h["_source"]["labels"]["is_ioc_transform_source"] for h in history} == {"true"}


def test_a_status_outside_the_policy_is_never_written_and_a_wider_policy_lets_review_in(es_client, es_index_prefix):
    es = es_client
    names = IndexNames(es_index_prefix)
    install_templates(es, prefix=es_index_prefix)
    t0 = NOW - timedelta(hours=2)
    review = _load(es, names, _version("Review", t0), observed=t0 + timedelta(minutes=1))
    assert dict(review.withheld_by_reason) == {"status_policy": 1} and dict(review.removed_by_reason) == {}
    assert _active(es, names) == {}
    # The same ThreatQ version read again later under a policy that includes Review: a later poll's
    # copy has a higher version than the tombstone, so it is written.
    wider = EcsOptions(active_statuses=("Active", "Review"))
    later = _load(es, names, _version("Review", t0), observed=t0 + timedelta(minutes=30), options=wider)
    assert later.indexed == 1
    assert _active(es, names) == {"4242": "Review"}


def _copies(iid: int, status: str, updated: datetime) -> str:
    import json

    line = json.loads(_version(status, updated))
    return json.dumps({**line, "id": iid, "value": f"198.51.100.{iid % 250}"})


def _state(es, names: IndexNames) -> dict:
    es.indices.refresh(index=f"{names.active_alias},{names.tombstone_index}")
    active = es.search(index=names.active_alias, size=100, version=True)["hits"]["hits"]
    stones = es.search(index=names.tombstone_index, size=100, version=True)["hits"]["hits"]
    return {"active": sorted((h["_id"], h["_version"], h["_source"]["threatq"]["status"]["name"]) for h in active),
            "tombstones": sorted((h["_id"], h["_version"], h["_source"]["reason"]) for h in stones)}


def test_requests_in_flight_load_what_one_request_at_a_time_loads(es_client, es_index_prefix):
    """Issue 17: four bulk requests in flight, one line each, the same indicators several times in
    one file (Active, then Whitelisted: withheld with a tombstone, then an older Active copy the
    tombstone stops, then Active again, newer): counts, active index and tombstones are exactly
    those of a load one request at a time."""
    t0 = NOW - timedelta(hours=5)
    rounds = [("Active", t0), ("Whitelisted", t0 + timedelta(hours=1)), ("Active", t0 + timedelta(minutes=30)),
              ("Active", t0 + timedelta(hours=2))]
    # Round after round over three ids: each id's next copy is three requests later, while its
    # previous one can still be in flight.
    raw = [_copies(iid, status, updated) for status, updated in rounds for iid in (5001, 5002, 5003)]
    out, rejects = io.StringIO(), io.StringIO()
    transform_stream(raw, out, rejects, now=NOW, options=EcsOptions())
    lines = out.getvalue().splitlines()
    results = []
    for run, in_flight in (("serial", 1), ("parallel", 4)):
        names = IndexNames(f"{es_index_prefix}{run}-")
        install_templates(es_client, prefix=names.prefix)
        counts = load_ndjson(es_client, lines, active_index=names.active_alias, history_prefix=names.history_prefix,
                             history_date=NOW, observed_at=NOW, tombstone_index=names.tombstone_index, now=NOW,
                             chunk_docs=1, max_in_flight=in_flight)
        results.append((counts.as_dict(), _state(es_client, names)))

    (serial_counts, serial_state), (parallel_counts, parallel_state) = results
    assert parallel_counts == serial_counts and parallel_state == serial_state
    assert serial_counts["read"] == 12 and serial_counts["history_written"] == 12
    assert serial_counts["withheld_by_reason"] == {"status_policy": 3}
    assert serial_counts["removed_by_reason"] == {"status_policy": 3} and serial_counts["skipped_deleted"] == 3
    assert [status for _, _, status in serial_state["active"]] == ["Active"] * 3
    assert [reason for _, _, reason in serial_state["tombstones"]] == ["status_policy"] * 3
