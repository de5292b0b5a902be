"""The deletion reconciliation DAG for an active index fed in collection mode (#13 item 2: "or the
collection's members"): real Airflow (``dag.test()``), the ThreatQ simulator over HTTP, the real
Elasticsearch node.

The indicators DAG loads the data collection "All active"; then an analyst re-rates some of its
IOCs (``PUT /api/indicators/{id}``: still in ThreatQ, no longer in the collection) and deletes others.
Reconciling against everything ThreatQ has removes only the deleted ones; against the collection
(the Variable ``threatq_reconcile_collection``, as a scheduled run reads it) both leave, each with
its reason, and the active index equals the collection's loaded members.
"""

from __future__ import annotations

import pytest

from tests.integration.dags import helpers
from tests.integration.dags.test_indicator_dag_runs import (  # noqa: F401 (fixtures)
    CORPUS_END,
    CORPUS_START,
    INDICATORS,
    FreshDags,
    _run,
    airflow_env,
    dagbag,
    es_clean,
)

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.elasticsearch]

RECONCILE = "threatq_deletion_reconcile"


def test_iocs_dropped_from_the_collection_leave_the_active_index_with_their_reason(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn, monkeypatch  # noqa: F811
):
    from threatq_provider.threatq.auth import PasswordGrant
    from threatq_provider.threatq.client import ThreatQClient

    sim = tq_sim_factory(seed=37, indicators=2_000, events=5, start=CORPUS_START, end=CORPUS_END)
    tq_conn(sim)
    collection = sim.corpus.collection("All active")["hash"]
    _run(dagbag, INDICATORS, logical_date=CORPUS_END,
         conf={"mode": "collection", "collection": collection, "ioc_expiration_duration": "3650d"})
    loaded = set(helpers.es_active_docs(es_clean))
    members = {str(r["id"]) for r in sim.corpus.iter_collection(collection)}
    assert loaded and loaded <= members and len(loaded) > 500

    ordered = sorted(loaded, key=int)
    dropped, deleted = ordered[::30][:25], ordered[11::40][:15]
    assert not set(dropped) & set(deleted)
    with ThreatQClient(sim.url, auth=PasswordGrant(sim.client_id, sim.username, sim.password), verify=False) as tq:
        for iid in dropped:
            tq.request_json("PUT", f"/api/indicators/{iid}", json={"status": "Review"})
        for iid in deleted:
            tq.request_json("DELETE", f"/api/indicators/{iid}")

    # Against everything ThreatQ has, the re-rated ones are still there: only the deleted ones are found.
    plain = _run(FreshDags(), RECONCILE, conf={"dry_run": True})["xcom"]["reconcile_deletions"]
    assert plain["collection"] is None and plain["by_reason"] == {"deleted_in_threatq": len(deleted)}

    monkeypatch.setenv("AIRFLOW_VAR_THREATQ_RECONCILE_COLLECTION", collection)
    result = _run(FreshDags(), RECONCILE)["xcom"]["reconcile_deletions"]
    assert result["collection"] == collection
    assert result["by_reason"] == {"deleted_in_threatq": len(deleted), "dropped_from_collection": len(dropped)}
    assert result["deleted"] == result["tombstones"] == len(dropped) + len(deleted)
    assert result["threatq_ids"] == len(members) - len(dropped) - len(deleted)
    assert result["existing_ids"] == 2_000 - len(deleted)
    now_members = {str(r["id"]) for r in sim.corpus.iter_collection(collection)}
    assert set(helpers.es_active_docs(es_clean)) == loaded & now_members == loaded - set(dropped) - set(deleted)

    # A mass drop (the collection's saved search narrowed, say) is refused; the run fails, nothing moves.
    for iid in sorted(loaded & now_members, key=int)[: len(loaded) // 5]:
        sim.corpus.update_indicator(int(iid), {"status": "Review"})
    before = set(helpers.es_active_docs(es_clean))
    dag = FreshDags().dags[RECONCILE]
    for task in dag.tasks:
        task.retries = 0
    run = dag.test()
    assert str(run.state) == "failed" and set(helpers.es_active_docs(es_clean)) == before
