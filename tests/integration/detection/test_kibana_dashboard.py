"""Every panel of the Kibana overview dashboard (``include/kibana/threatq_overview.ndjson``)
returns data from our indices on the real node (issue 12, item 5).

Kibana itself cannot run here: each panel's search (data view, KQL query, stored time range,
aggregations) is rebuilt as Kibana sends it (:mod:`tests.detection.kibana`) and run against the
indices the real indicator DAG filled: the active IOCs, and the run reports the report task
writes. Not verified here: that Kibana renders the panels (import and rendering need a Kibana).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.detection.kibana import load_objects, panel_search
from tests.integration.detection.conftest import run_dag

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.elasticsearch]

NOW = datetime.now(timezone.utc).replace(microsecond=0)
RUNS_INDEX = "threatq-provider-runs"


@pytest.fixture
def runs_clean(es_clean):
    es_clean.indices.delete(index=RUNS_INDEX, ignore_unavailable=True)
    yield es_clean
    es_clean.indices.delete(index=RUNS_INDEX, ignore_unavailable=True)


def _first_buckets(response: dict) -> list[dict]:
    aggs = response.get("aggregations") or {}
    if not aggs:
        return []
    top = next(iter(aggs.values()))
    return top.get("buckets", [])


def test_every_dashboard_panel_returns_data_from_our_indices(
    airflow_db, dagbag, airflow_env, runs_clean, tq_sim_factory, tq_conn
):
    es = runs_clean
    sim = tq_sim_factory(seed=11, indicators=400, events=5, start=NOW - timedelta(days=60), end=NOW - timedelta(hours=1))
    tq_conn(sim)
    load = run_dag(dagbag, "threatq_indicators_to_elasticsearch", conf={"mode": "full_resync"})
    assert load["xcom"]["report"]["run_report_indexed"] is True
    run_dag(dagbag, "threatq_ioc_expiry_sweep")
    es.indices.refresh(index=f"logs-ti_threatq_latest.threat,{RUNS_INDEX}")

    run_doc = es.get(index=RUNS_INDEX, id=f"threatq_indicators_to_elasticsearch/{load['run_id']}")["_source"]
    report = load["xcom"]["report"]
    assert (run_doc["polled"], run_doc["loaded"], run_doc["load_rejected"]) == \
        (report["polled"], report["loaded"], report["load_rejected"])

    objects = load_objects()
    dashboard = objects[("dashboard", "threatq-provider-overview")]
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    refs = {r["name"]: r for r in dashboard["references"]}
    assert len(panels) == 7
    results = {}
    for panel in panels:
        ref = refs[f"{panel['panelIndex']}:{panel['panelRefName']}"]
        vis = objects[(ref["type"], ref["id"])]
        index, body = panel_search(vis, objects, dashboard)
        response = es.search(index=index, body=body)
        title = vis["attributes"]["title"]
        assert response["hits"]["total"]["value"] > 0, f"panel {title!r}: no documents"
        if body["aggs"]:
            buckets = _first_buckets(response)
            assert buckets and all(b["doc_count"] > 0 for b in buckets), f"panel {title!r}: no buckets"
        results[title] = response
    # The figures are the index's own: the type panel counts every active IOC once.
    total = es.count(index="logs-ti_threatq_latest.threat")["count"]
    assert results["Active IOCs"]["hits"]["total"]["value"] == total
    by_type = _first_buckets(results["IOCs by type"])
    other = results["IOCs by type"]["aggregations"]["2"].get("sum_other_doc_count", 0)
    without_type = es.count(index="logs-ti_threatq_latest.threat",
                            query={"bool": {"must_not": {"exists": {"field": "threat.indicator.type"}}}})["count"]
    assert sum(b["doc_count"] for b in by_type) + other + without_type == total
    soon = es.count(index="logs-ti_threatq_latest.threat", query={"range": {"threatq.ioc_expired_at": {
        "gte": "now", "lt": "now+7d"}}})["count"]
    assert results["IOCs expiring in the next 7 days"]["hits"]["total"]["value"] == soon > 0
    loads = _first_buckets(results["Loads and rejects over time"])
    assert sum(b["1"]["value"] for b in loads) == report["loaded"]
