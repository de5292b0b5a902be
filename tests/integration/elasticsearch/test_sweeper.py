"""The expiry sweep against both real nodes deletes exactly what the source data says is expired.

Parametrized over Elastic's minimal test node (``es``: optimistic bulk deletes, daily history
indices) and OpenSearch's full-module node (``os``: pinned ``_delete_by_query``, the history a
data stream with rollover); the concurrent-write and tombstone guarantees are the same on both.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from threatq_provider.elasticsearch.cluster import cluster
from threatq_provider.elasticsearch.loader import load_ndjson
from threatq_provider.elasticsearch.sweeper import sweep_expired, sweep_history
from threatq_provider.elasticsearch.templates import IndexNames, install_templates

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)
REASONS = [
    "Expiration set by ThreatQ from expires_at field",
    "Expiration set by ThreatQ from expired_at field",
    "Expiration set by Elastic when threatq.status is 'Expired'",
    "Expiration set by Elastic from the integration's parameter `IOC Expiration Duration`",
]


def _ms(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _source_documents(n: int = 600, seed: int = 7) -> list[dict]:
    """Documents with ioc_expired_at spread around NOW: past, exactly NOW, future, or absent."""
    rng = random.Random(seed)
    docs = []
    for iid in range(1, n + 1):
        updated = NOW - timedelta(minutes=rng.randint(1, 60 * 24 * 30))
        doc = {"@timestamp": _ms(updated), "threat": {"indicator": {"type": "ipv4-addr",
                                                                   "ip": f"10.{iid // 256}.{iid % 256}.1"}},
               "threatq": {"id": iid}}
        roll = rng.random()
        if roll < 0.1:
            pass  # no expiry at all: never swept
        else:
            if roll < 0.15:
                expired_at = NOW  # the boundary: expired (lte)
            else:
                expired_at = NOW + timedelta(seconds=rng.randint(-90 * 86400, 90 * 86400))
            doc["threatq"]["ioc_expired_at"] = _ms(expired_at)
            doc["threatq"]["ioc_expiration_reason"] = rng.choice(REASONS)
        docs.append(doc)
    return docs


def _expected_expired(docs: list[dict], now: datetime) -> dict[int, str]:
    """Independent of the sweeper: parse each source document's expiry and compare in Python."""
    out = {}
    for doc in docs:
        text = doc["threatq"].get("ioc_expired_at")
        if text is not None and datetime.fromisoformat(text.replace("Z", "+00:00")) <= now:
            out[doc["threatq"]["id"]] = doc["threatq"]["ioc_expiration_reason"]
    return out


def _ids(client, index: str) -> set[int]:
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"size": 10000, "query": {"match_all": {}}}, _source=False)["hits"]["hits"]
    return {int(h["_id"]) for h in hits}


@pytest.fixture
def loaded(search_client, search_index_prefix):
    install_templates(search_client, prefix=search_index_prefix)
    names = IndexNames(search_index_prefix)
    docs = _source_documents()
    counts = load_ndjson(search_client, [json.dumps(d) for d in docs], active_index=names.active_alias,
                         tombstone_index=names.tombstone_index,
                         history_prefix=None)
    assert counts.indexed == len(docs)
    return names, docs


def test_sweep_deletes_exactly_the_expired_set_and_nothing_else(search_client, loaded):
    names, docs = loaded
    expected = _expected_expired(docs, NOW)
    all_ids = {d["threatq"]["id"] for d in docs}
    assert 0 < len(expected) < len(all_ids)  # the data exercises both sides

    result = sweep_expired(search_client, now=NOW, index=names.active_alias, tombstone_index=names.tombstone_index)

    assert _ids(search_client, names.active_alias) == all_ids - set(expected)
    assert (result["matched"], result["deleted"], result["remaining"]) == (len(expected), len(expected), 0)
    assert result["by_reason"] == dict(Counter(expected.values()))
    by_query = cluster(search_client).capabilities.delete_by_query
    assert result["delete_path"] == ("delete_by_query" if by_query else "bulk")
    # Every deleted IOC left a tombstone, at the version it was deleted with.
    assert _ids(search_client, names.tombstone_index) == set(expected)
    assert result["tombstones"] == len(expected)


def test_dry_run_counts_by_reason_and_deletes_nothing(search_client, loaded):
    names, docs = loaded
    expected = _expected_expired(docs, NOW)

    result = sweep_expired(search_client, now=NOW, index=names.active_alias, dry_run=True,
                           tombstone_index=names.tombstone_index)

    assert _ids(search_client, names.active_alias) == {d["threatq"]["id"] for d in docs}
    assert (result["matched"], result["deleted"], result["dry_run"]) == (len(expected), 0, True)
    assert result["by_reason"] == dict(Counter(expected.values()))


class _WritesDuringFirstDelete:
    """Client proxy: just before the sweep's first delete (a bulk of deletes, or a delete by query),
    after the batch was read and tombstoned, a loader writes newer versions."""

    def __init__(self, client, on_first_delete):
        self._client = client
        self._hook = [on_first_delete]

    def options(self, **kwargs):
        proxy = _WritesDuringFirstDelete(self._client.options(**kwargs), None)
        proxy._hook = self._hook  # shared: fires once whichever copy deletes first
        return proxy

    def _fire(self):
        if self._hook and self._hook[0] is not None:
            hook, self._hook[0] = self._hook[0], None
            hook()

    def bulk(self, *args, **kwargs):
        ops = [*args, *kwargs.values()]
        flat = [x for op in ops for x in (op if isinstance(op, list) else [op])]
        if any(b'"delete"' in op if isinstance(op, bytes) else '"delete"' in str(op) for op in flat):
            self._fire()
        return self._client.bulk(*args, **kwargs)

    def delete_by_query(self, *args, **kwargs):
        self._fire()
        return self._client.delete_by_query(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_concurrent_writes_during_the_sweep_win_over_the_delete(search_client, loaded):
    names, docs = loaded
    expected = _expected_expired(docs, NOW)
    revived_ids = sorted(expected)[:20]
    by_id = {d["threatq"]["id"]: d for d in docs}
    revived = []
    for iid in revived_ids:
        doc = json.loads(json.dumps(by_id[iid]))
        doc["@timestamp"] = _ms(NOW + timedelta(seconds=1))  # a newer version from ThreatQ ...
        doc["threatq"]["ioc_expired_at"] = _ms(NOW + timedelta(days=30))  # ... no longer expired
        revived.append(json.dumps(doc))

    def concurrent_load():
        counts = load_ndjson(search_client, revived, active_index=names.active_alias,
                             tombstone_index=names.tombstone_index, history_prefix=None)
        assert counts.updated == len(revived)  # newer than their tombstones: written

    result = sweep_expired(_WritesDuringFirstDelete(search_client, concurrent_load), now=NOW,
                           index=names.active_alias, tombstone_index=names.tombstone_index)

    remaining = _ids(search_client, names.active_alias)
    all_ids = {d["threatq"]["id"] for d in docs}
    assert remaining == (all_ids - set(expected)) | set(revived_ids)
    assert result["conflicts"] >= len(revived_ids)
    assert result["deleted"] == len(expected) - len(revived_ids)
    assert result["remaining"] == 0
    stored = search_client.get(index=names.active_alias, id=str(revived_ids[0]))["_source"]
    assert stored["threatq"]["ioc_expired_at"] == _ms(NOW + timedelta(days=30))
    assert result["delete_path"] == ("delete_by_query" if cluster(search_client).capabilities.delete_by_query
                                     else "bulk")
    # Every IOC that left the active index has a tombstone (the revived ones have one at the old
    # version, which blocks only that version).
    assert set(expected) - set(revived_ids) <= _ids(search_client, names.tombstone_index)


def test_history_sweep_deletes_whole_days_older_than_the_retention(es_client, es_index_prefix):
    """The fallback (Elastic's test node, no data streams): one history index per load day."""
    install_templates(es_client, prefix=es_index_prefix)
    names = IndexNames(es_index_prefix)
    days = [NOW - timedelta(days=k) for k in range(9)]
    for day in days:  # one load per day, each into that day's history index
        load_ndjson(es_client, [json.dumps({"@timestamp": _ms(day), "threatq": {"id": 1}})],
                    active_index=names.active_alias, history_prefix=names.history_prefix, history_date=day,
                    tombstone_index=names.tombstone_index)
    cutoff = NOW - timedelta(days=5)
    expected_deleted = sorted(names.history_prefix + d.strftime("%Y.%m.%d") for d in days
                              if d.replace(hour=0, minute=0, second=0) + timedelta(days=1) <= cutoff)

    dry = sweep_history(es_client, now=NOW, retention="5d", dry_run=True, prefix=names.history_prefix)
    result = sweep_history(es_client, now=NOW, retention="5d", prefix=names.history_prefix)

    assert dry["deleted_indices"] == result["deleted_indices"] == expected_deleted
    left = sorted(es_client.indices.get_alias(index=names.history_pattern))
    assert left == sorted(set(names.history_prefix + d.strftime("%Y.%m.%d") for d in days) - set(expected_deleted))
    assert len(expected_deleted) == 3 and len(left) == 6
    assert result["data_stream"] is None


def test_history_data_stream_rolls_over_and_old_backing_indices_go(os_client, os_index_prefix):
    """The full path (OpenSearch's node): the history is a data stream, rolled over by the sweep when
    its write index is a day old, and backing indices whose content ended before the retention go."""
    install_templates(os_client, prefix=os_index_prefix)
    names = IndexNames(os_index_prefix)
    load_ndjson(os_client, [json.dumps({"@timestamp": _ms(NOW), "threatq": {"id": 1}})],
                active_index=names.active_alias, history_prefix=names.history_prefix,
                tombstone_index=names.tombstone_index)
    stream = names.history_data_stream
    first = [i["index_name"] for i in os_client.indices.get_data_stream(name=stream)["data_streams"][0]["indices"]]
    real_now = datetime.now(timezone.utc)

    young = sweep_history(os_client, now=real_now, retention="5d", prefix=names.history_prefix)
    dry = sweep_history(os_client, now=real_now + timedelta(days=10), retention="5d", dry_run=True,
                        prefix=names.history_prefix)
    result = sweep_history(os_client, now=real_now + timedelta(days=10), retention="5d",
                           prefix=names.history_prefix)

    assert (young["data_stream"], young["rolled_over"], young["deleted_indices"]) == (stream, False, [])
    assert (dry["rolled_over"], dry["deleted_indices"]) == (True, first)
    assert (result["rolled_over"], result["deleted_indices"]) == (True, first)
    after = [i["index_name"] for i in os_client.indices.get_data_stream(name=stream)["data_streams"][0]["indices"]]
    assert len(after) == 1 and after[0] not in first  # the new write index, empty, stays
    again = load_ndjson(os_client, [json.dumps({"@timestamp": _ms(NOW), "threatq": {"id": 2}})],
                        active_index=names.active_alias, history_prefix=names.history_prefix,
                        tombstone_index=names.tombstone_index)
    assert again.history_written == 1


def test_sweep_before_any_load_finds_nothing_and_does_not_fail(search_client, search_index_prefix):
    names = IndexNames(search_index_prefix)
    result = sweep_expired(search_client, now=NOW, index=names.active_alias, tombstone_index=names.tombstone_index)

    assert (result["matched"], result["deleted"], result["remaining"]) == (0, 0, 0)


def test_upgrading_to_a_data_stream_history_keeps_ageing_out_the_old_daily_indices(os_client, os_index_prefix):
    """A cluster that gained data streams (or an older release's history): the daily index stays
    until it ages out, new versions go to the data stream."""
    from threatq_provider.elasticsearch.templates import template_body

    names = IndexNames(os_index_prefix)
    older = template_body("history", names, cluster(os_client).capabilities.missing_field_types,
                          ignore_missing_custom=False)
    os_client.cluster.put_component_template(name=names.custom_component, body={"template": {}})
    os_client.indices.put_index_template(name=names.history_template, body=older)
    daily = names.history_prefix + "2026.11.01"
    os_client.indices.create(index=daily)

    installed = install_templates(os_client, prefix=os_index_prefix)
    counts = load_ndjson(os_client, [json.dumps({"@timestamp": _ms(NOW), "threatq": {"id": 1}})],
                         active_index=names.active_alias, history_prefix=names.history_prefix,
                         tombstone_index=names.tombstone_index)
    result = sweep_history(os_client, now=NOW, retention="5d", prefix=names.history_prefix)

    assert (installed["history_template"], installed["history"], counts.history_written) == (
        "installed", "data_stream", 1)
    assert result["deleted_indices"] == [daily] and result["data_stream"] == names.history_data_stream
    assert os_client.indices.get_data_stream(name=names.history_data_stream)["data_streams"][0]["name"] == (
        names.history_data_stream)
