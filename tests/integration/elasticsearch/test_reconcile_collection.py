"""Reconciliation against a data collection on the real nodes (#13 item 2, collection mode): the
active index is fed by the simulator's collection "All active"; indicators then leave the
collection (an analyst re-rates them: ``PUT /api/indicators/{id}``, still in ThreatQ) or ThreatQ
altogether (``DELETE``). The reconciliation with the collection's members removes both, each with
its reason, and nothing else; the safety limit still refuses a mass drop.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from threatq_provider.elasticsearch.errors import ReconcileLimitExceeded
from threatq_provider.elasticsearch.reconcile import reconcile_deletions, sorted_id_pages
from tests.integration.elasticsearch.test_reconcile import _active_ids, loaded, names  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch, pytest.mark.component]


def _reconcile(es, names, sim, client, **kwargs):  # noqa: F811
    """As the operator does it: the collection's ids (feed order, sorted externally: small chunks
    so several runs are merged) against every id ThreatQ has."""
    collection = sim.corpus.collection("All active")["hash"]
    pages = client.iter_collection_pages(collection, page_size=250, fields=("id",))
    members = sorted_id_pages((int(row["id"]) for page in pages for row in page.indicators), chunk_size=300)
    return reconcile_deletions(es, members, existing_id_pages=client.iter_indicator_ids(page_size=700),
                               started_at=datetime.now(UTC), index=names.active_alias,
                               tombstone_index=names.tombstone_index, batch_size=200, **kwargs)


def test_indicators_dropped_from_the_collection_or_deleted_leave_with_their_reason(search_client, names, loaded):  # noqa: F811
    sim, client, lines = loaded
    before = _active_ids(search_client, names)
    members = {int(r["id"]) for r in sim.corpus.iter_collection("All active")}
    assert before == members, "the active index is the collection (Active indicators)"
    ordered = sorted(before)
    dropped, deleted = ordered[::45][:30], ordered[7::60][:20]
    assert not set(dropped) & set(deleted)
    for iid in dropped:  # re-rated: no longer Active, so out of "All active", still in ThreatQ
        client.request_json("PUT", f"/api/indicators/{iid}", json={"status": "Review"})
    for iid in deleted:
        client.request_json("DELETE", f"/api/indicators/{iid}")
    expected = {"deleted_in_threatq": len(deleted), "dropped_from_collection": len(dropped)}

    dry = _reconcile(search_client, names, sim, client, dry_run=True)
    assert (dry["missing"], dry["deleted"], dry["by_reason"]) == (50, 0, expected)
    assert _active_ids(search_client, names) == before, "a dry run removed something"

    result = _reconcile(search_client, names, sim, client)

    assert (result["missing"], result["deleted"], result["tombstones"], result["by_reason"]) == (50, 50, 50, expected)
    assert result["threatq_ids"] == len(members) - 50 and result["existing_ids"] == 3_000 - len(deleted)
    assert _active_ids(search_client, names) == before - set(dropped) - set(deleted)
    stones = search_client.mget(index=names.tombstone_index, body={"ids": [str(i) for i in dropped + deleted]})["docs"]
    reasons = {int(s["_id"]): s["_source"]["reason"] for s in stones if s["found"]}
    assert reasons == {**{i: "dropped_from_collection" for i in dropped}, **{i: "deleted_in_threatq" for i in deleted}}
    assert _reconcile(search_client, names, sim, client)["missing"] == 0


def test_a_mass_drop_from_the_collection_is_refused_and_removes_nothing(search_client, names, loaded):  # noqa: F811
    sim, client, _ = loaded
    before = _active_ids(search_client, names)
    for iid in sorted(before)[: len(before) // 5]:  # 20 % leave the collection at once (a saved search edited)
        sim.corpus.update_indicator(iid, {"status": "Review"})
    with pytest.raises(ReconcileLimitExceeded):
        _reconcile(search_client, names, sim, client)
    assert _active_ids(search_client, names) == before
    forced = _reconcile(search_client, names, sim, client, allow_mass_delete=True)
    assert forced["deleted"] == len(before) // 5
    assert forced["by_reason"] == {"dropped_from_collection": len(before) // 5}
