"""The expiry sweep against the real node deletes exactly what the source data says is expired."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

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
    hits = client.search(index=index, size=10000, _source=False, query={"match_all": {}})["hits"]["hits"]
    return {int(h["_id"]) for h in hits}


@pytest.fixture
def loaded(es_client, es_index_prefix):
    install_templates(es_client, prefix=es_index_prefix)
    names = IndexNames(es_index_prefix)
    docs = _source_documents()
    counts = load_ndjson(es_client, [json.dumps(d) for d in docs], active_index=names.active_alias,
                         tombstone_index=names.tombstone_index,
                         history_prefix=None)
    assert counts.indexed == len(docs)
    return names, docs


def test_sweep_deletes_exactly_the_expired_set_and_nothing_else(es_client, loaded):
    names, docs = loaded
    expected = _expected_expired(docs, NOW)
    all_ids = {d["threatq"]["id"] for d in docs}
    assert 0 < len(expected) < len(all_ids)  # the data exercises both sides

    result = sweep_expired(es_client, now=NOW, index=names.active_alias, tombstone_index=names.tombstone_index)

    assert _ids(es_client, names.active_alias) == all_ids - set(expected)
    assert (result["matched"], result["deleted"], result["remaining"]) == (len(expected), len(expected), 0)
    assert result["by_reason"] == dict(Counter(expected.values()))


def test_dry_run_counts_by_reason_and_deletes_nothing(es_client, loaded):
    names, docs = loaded
    expected = _expected_expired(docs, NOW)

    result = sweep_expired(es_client, now=NOW, index=names.active_alias, dry_run=True,
                           tombstone_index=names.tombstone_index)

    assert _ids(es_client, names.active_alias) == {d["threatq"]["id"] for d in docs}
    assert (result["matched"], result["deleted"], result["dry_run"]) == (len(expected), 0, True)
    assert result["by_reason"] == dict(Counter(expected.values()))


class _WritesDuringFirstDelete:
    """Client proxy: just before the sweep's first delete bulk, a loader writes newer versions."""

    def __init__(self, client, on_first_delete):
        self._client = client
        self._hook = on_first_delete

    def options(self, **kwargs):
        return _WritesDuringFirstDelete(self._client.options(**kwargs), self._hook)

    def bulk(self, *args, **kwargs):
        ops = kwargs.get("operations") or []
        if self._hook is not None and any(b'"delete"' in op if isinstance(op, bytes) else "delete" in str(op)
                                          for op in ops):
            hook, self._hook = self._hook, None
            hook()
        return self._client.bulk(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_concurrent_writes_during_the_sweep_win_over_the_delete(es_client, loaded):
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
        load_ndjson(es_client, revived, active_index=names.active_alias,
                    tombstone_index=names.tombstone_index, history_prefix=None)

    result = sweep_expired(_WritesDuringFirstDelete(es_client, concurrent_load), now=NOW,
                           index=names.active_alias, tombstone_index=names.tombstone_index)

    remaining = _ids(es_client, names.active_alias)
    all_ids = {d["threatq"]["id"] for d in docs}
    assert remaining == (all_ids - set(expected)) | set(revived_ids)
    assert result["conflicts"] >= len(revived_ids)
    assert result["deleted"] == len(expected) - len(revived_ids)
    assert result["remaining"] == 0
    stored = es_client.get(index=names.active_alias, id=str(revived_ids[0]))["_source"]
    assert stored["threatq"]["ioc_expired_at"] == _ms(NOW + timedelta(days=30))


def test_history_sweep_deletes_whole_days_older_than_the_retention(es_client, es_index_prefix):
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


def test_sweep_before_any_load_finds_nothing_and_does_not_fail(es_client, es_index_prefix):
    names = IndexNames(es_index_prefix)
    result = sweep_expired(es_client, now=NOW, index=names.active_alias, tombstone_index=names.tombstone_index)

    assert (result["matched"], result["deleted"], result["remaining"]) == (0, 0, 0)
