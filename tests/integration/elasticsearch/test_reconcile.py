"""Deletion reconciliation on the real nodes (Elasticsearch and OpenSearch) against the ThreatQ
simulator over HTTP (#13 item 2).

The active index is loaded from the simulator's corpus through the real transform and loader;
indicators are then deleted in the simulator (``DELETE /api/indicators/{id}``) and the
reconciliation must take exactly those out of the active index, tombstoned with reason
``deleted_in_threatq``, never more; the safety limit refuses a mass deletion and removes nothing;
a replay of the old load brings none back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import indicator_to_ecs
from threatq_provider.elasticsearch.errors import ReconcileLimitExceeded
from threatq_provider.elasticsearch.loader import load_ndjson
from threatq_provider.elasticsearch.reconcile import iter_active_docs, reconcile_deletions
from threatq_provider.elasticsearch.templates import IndexNames, install_templates
from threatq_provider.threatq.auth import PasswordGrant
from threatq_provider.threatq.client import ThreatQClient

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch, pytest.mark.component]

NOW = datetime.now(UTC).replace(microsecond=0)
START, END = NOW - timedelta(days=20), NOW - timedelta(days=1)
# Only Active indicators, and a 10-year life: every loaded indicator is in the active index.
OPTIONS = EcsOptions(ioc_expiration_duration="3650d")


@pytest.fixture
def names(search_client, search_index_prefix) -> IndexNames:
    install_templates(search_client, prefix=search_index_prefix)
    return IndexNames(search_index_prefix)


@pytest.fixture
def loaded(threatq_sim_factory, search_client, names):
    """A simulator of 3,000 indicators, and its Active ones loaded into the active index."""
    sim = threatq_sim_factory(seed=23, indicators=3_000, events=5, start=START, end=END)
    lines = [json.dumps(indicator_to_ecs(raw, now=NOW, options=OPTIONS)) for raw in sim.corpus.iter_indicators()
             if raw["status"]["name"] == "Active"]
    counts = load_ndjson(search_client, lines, active_index=names.active_alias, history_prefix=None,
                         tombstone_index=names.tombstone_index, observed_at=NOW)
    assert counts.indexed == len(lines) > 1000
    search_client.indices.refresh(index=names.active_alias)
    client = ThreatQClient(sim.url, auth=PasswordGrant(sim.client_id, sim.username, sim.password), verify=False)
    yield sim, client, lines
    client.close()


def _active_ids(es, names) -> set[int]:
    es.indices.refresh(index=names.active_alias)
    return {d.threatq_id for d in iter_active_docs(es, names.active_alias, query={"match_all": {}}, batch_size=500)}


def _reconcile(es, names, client, **kwargs):
    return reconcile_deletions(es, client.iter_indicator_ids(page_size=700), started_at=datetime.now(UTC),
                               index=names.active_alias, tombstone_index=names.tombstone_index, batch_size=200,
                               **kwargs)


def test_indicators_deleted_in_threatq_leave_the_active_index_with_a_tombstone(search_client, names, loaded):
    sim, client, lines = loaded
    before = _active_ids(search_client, names)
    assert len(before) == len(lines)
    gone = sorted(before)[::40][:50]  # 50 spread over the id range, first and low ids included
    for iid in gone:
        client.request_json("DELETE", f"/api/indicators/{iid}")
    assert _reconcile(search_client, names, client, dry_run=True)["missing"] == len(gone)
    assert _active_ids(search_client, names) == before, "a dry run removed something"

    result = _reconcile(search_client, names, client)

    assert (result["missing"], result["deleted"], result["tombstones"]) == (len(gone), len(gone), len(gone))
    assert result["by_reason"] == {"deleted_in_threatq": len(gone)}
    assert result["threatq_ids"] == 3_000 - len(gone) and result["checked"] == len(before)
    assert sorted(result["sample_ids"]) == gone
    assert _active_ids(search_client, names) == before - set(gone)
    stones = search_client.mget(index=names.tombstone_index, body={"ids": [str(i) for i in gone]})["docs"]
    assert all(s["found"] and s["_source"]["reason"] == "deleted_in_threatq" for s in stones)
    # Nothing left to do; and replaying the old load brings none of them back.
    assert _reconcile(search_client, names, client)["missing"] == 0
    search_client.indices.put_settings(index=names.active_alias, body={"index.gc_deletes": "0s"})
    replay = load_ndjson(search_client, lines, active_index=names.active_alias, history_prefix=None,
                         tombstone_index=names.tombstone_index, observed_at=NOW)
    assert (replay.skipped_deleted, replay.indexed) == (len(gone), 0)
    assert _active_ids(search_client, names) == before - set(gone)


def test_the_safety_limit_refuses_a_mass_deletion_and_removes_nothing(search_client, names, loaded):
    sim, client, lines = loaded
    before = _active_ids(search_client, names)
    gone = sorted(before)[: len(before) // 5]  # 20 % of the active index
    for iid in gone:
        sim.corpus.delete_indicator(iid)

    dry = _reconcile(search_client, names, client, dry_run=True)
    assert dry["refused"] is True and dry["missing"] == len(gone) and dry["limit"] == len(before) // 10
    with pytest.raises(ReconcileLimitExceeded, match=rf"{len(gone)} of {len(before)} active IOCs .* nothing was removed"):
        _reconcile(search_client, names, client)
    assert _active_ids(search_client, names) == before
    assert not search_client.indices.exists(index=names.tombstone_index) or search_client.count(
        index=names.tombstone_index)["count"] == 0

    # Told to: a higher limit, or allow_mass_delete.
    done = _reconcile(search_client, names, client, allow_mass_delete=True)
    assert done["deleted"] == len(gone) and _active_ids(search_client, names) == before - set(gone)


def test_recently_updated_documents_and_other_instances_are_left_alone(search_client, names, loaded):
    sim, client, lines = loaded
    before = _active_ids(search_client, names)
    newest = max(before, key=lambda i: sim.corpus.indicator(i)["updated_at"])
    sim.corpus.delete_indicator(newest)
    # Started within the margin (1 h) of the newest document's update: the next run decides.
    updated = datetime.fromisoformat(sim.corpus.indicator(newest)["updated_at"].replace(" ", "T") + "+00:00")
    recent = reconcile_deletions(search_client, client.iter_indicator_ids(), index=names.active_alias,
                                 tombstone_index=names.tombstone_index, started_at=updated + timedelta(minutes=30))
    assert recent["missing"] == 0 and newest in _active_ids(search_client, names)
    # Documents of another (named) instance are not this instance's to check.
    other = reconcile_deletions(search_client, client.iter_indicator_ids(), index=names.active_alias,
                                tombstone_index=names.tombstone_index, started_at=datetime.now(UTC),
                                instance="partner", explicit_instance=True)
    assert (other["active"], other["missing"]) == (0, 0)
    mine = reconcile_deletions(search_client, client.iter_indicator_ids(), index=names.active_alias,
                               tombstone_index=names.tombstone_index, started_at=datetime.now(UTC),
                               instance=sim.url.split("://")[1], explicit_instance=False)
    assert (mine["active"], mine["deleted"]) == (len(before), 1)
