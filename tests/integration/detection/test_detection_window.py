"""The 30-day window of Elastic's prebuilt indicator-match rules (issue 12, item 2), on the real
node with the real DAGs.

An IOC ThreatQ still holds Active but last updated ~40 days ago is in the active index (90-day
expiry) but outside the rules' ``@timestamp >= "now-30d/d"``: with the refresh off (Elastic's
behaviour) the IP rule does not match it; the sweep DAG's ``refresh_detection_window`` then moves
the ``@timestamp`` of exactly the active IOCs older than 28 days (computed here from the corpus)
and the rule matches. A second sweep touches nothing: documents are not rewritten every run.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from elasticsearch import helpers as es_helpers

from tests.detection.engine import load_rules, matches
from tests.integration.dags import helpers
from tests.integration.detection.conftest import run_dag

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.elasticsearch]

INDICATORS = "threatq_indicators_to_elasticsearch"
SWEEP = "threatq_ioc_expiry_sweep"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
DUE_AGE = timedelta(days=28)  # window 30d - margin 2d (the defaults)


def _updated(raw: dict) -> datetime:
    return datetime.fromisoformat(raw["updated_at"]).replace(tzinfo=timezone.utc)


def _due(corpus: list[dict], now: datetime) -> set[str]:
    """Active (by the independent expiry rules) and last updated before ``now - 28 days``."""
    active = helpers.active_ids(corpus, now=now, duration="90d")
    return {str(r["id"]) for r in corpus if str(r["id"]) in active and _updated(r) < now - DUE_AGE}


def _active_docs(es) -> dict[str, dict]:
    return {tq_id: hit["_source"] for tq_id, hit in helpers.es_active_docs(es).items()}


def test_an_active_ioc_last_updated_40_days_ago_stays_visible_and_only_due_documents_are_touched(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn, events_index, monkeypatch
):
    sim = tq_sim_factory(seed=7, indicators=300, events=5, start=NOW - timedelta(days=60), end=NOW - timedelta(hours=1))
    tq_conn(sim)
    corpus = list(sim.corpus.iter_indicators())
    old_ip = next(r for r in corpus if r["type"]["name"] == "IP Address" and r["status"]["name"] == "Active"
                  and timedelta(days=35) < NOW - _updated(r) < timedelta(days=50)
                  and helpers.expires(r, timedelta(days=90)) > NOW + timedelta(days=1))
    old_id = str(old_ip["id"])
    es_clean.index(index=events_index, id="old-ioc-event", refresh="wait_for", document={
        "@timestamp": NOW.isoformat(), "event": {"ingested": NOW.isoformat(), "kind": "event"},
        "source": {"ip": old_ip["value"]}, "planted": "old-ioc-event"})
    ip_rule = next(r for r in load_rules() if r["family"] == "ip")

    run_dag(dagbag, INDICATORS, conf={"mode": "full_resync"})
    monkeypatch.setenv("AIRFLOW_VAR_THREATQ_DETECTION_WINDOW", "off")
    off = run_dag(dagbag, SWEEP)["xcom"]["refresh_detection_window"]
    assert off == {"off": True}
    before = _active_docs(es_clean)
    assert old_id in before, "the 40-day-old Active IOC must be in the active index (90-day expiry)"
    assert before[old_id]["@timestamp"].startswith(old_ip["updated_at"][:10])
    assert not matches(es_clean, ip_rule), "outside the 30-day window the prebuilt rule cannot see it"

    monkeypatch.delenv("AIRFLOW_VAR_THREATQ_DETECTION_WINDOW")
    t0 = helpers.utcnow()
    first = run_dag(dagbag, SWEEP)["xcom"]["refresh_detection_window"]
    t1 = helpers.utcnow()
    must, may = _due(corpus, t0), _due(corpus, t1)
    assert old_id in must
    assert first["conflicts"] == 0 and first["failed"] == {}
    assert len(must) <= first["refreshed"] <= len(may) and first["matched"] == first["refreshed"]
    after = _active_docs(es_clean)
    refreshed = {tq_id for tq_id, doc in after.items() if "window_refreshed_at" in doc["threatq"]}
    assert must <= refreshed <= may, "exactly the active IOCs older than 28 days are refreshed"
    for tq_id, doc in after.items():
        if tq_id in refreshed:
            assert doc["@timestamp"] == doc["threatq"]["window_refreshed_at"] >= first["now"][:10]
            # ThreatQ's last update and the expiry are kept as they were
            assert doc["threatq"]["updated_at"] == before[tq_id]["@timestamp"]
            assert doc["threatq"]["ioc_expired_at"] == before[tq_id]["threatq"]["ioc_expired_at"]
        else:
            assert doc == before[tq_id], f"{tq_id} was not due and must not be rewritten"
    print(f"\ndetection window: {len(after)} active IOCs, {first['refreshed']} refreshed "
          f"({first['refreshed'] / len(after):.0%}) on the first sweep")

    es_clean.indices.refresh(index="logs-*")
    found = matches(es_clean, ip_rule)
    assert {(m.event_id, m.field, m.indicator_id) for m in found} == {("old-ioc-event", "source.ip", old_id)}

    second = run_dag(dagbag, SWEEP)["xcom"]["refresh_detection_window"]
    assert (second["matched"], second["refreshed"]) == (0, 0), "a second sweep rewrites nothing"
    assert _active_docs(es_clean) == after
