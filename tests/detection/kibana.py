"""The searches Kibana runs for the panels of ``include/kibana/threatq_overview.ndjson``.

Kibana cannot run here, so each aggregation-based visualization is translated into the request
Kibana's search source sends for it: the data view's ``title`` as the index, the panel's KQL query
(:mod:`tests.detection.kql`), the dashboard's stored time range on the data view's time field
(when it has one), and the ``visState`` aggregations (bucket aggregations nested in order, metric
aggregations inside the innermost bucket). Covered: ``count``, ``sum``, ``terms`` (ordered by a
metric or the count), ``date_histogram`` (``d`` → 1 day; ``auto`` → 3 hours, what Kibana picks
for a 7-day range at its default of ~50 buckets).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.detection.kql import to_dsl

NDJSON = Path(__file__).resolve().parents[2] / "include" / "kibana" / "threatq_overview.ndjson"
_BUCKET_SCHEMAS = ("segment", "bucket", "group", "split")
_INTERVALS = {"d": {"calendar_interval": "1d"}, "h": {"calendar_interval": "1h"}, "w": {"calendar_interval": "1w"},
              "auto": {"fixed_interval": "3h"}}


def load_objects(path: Path = NDJSON) -> dict[tuple[str, str], dict[str, Any]]:
    """Every saved object of the export, keyed by (type, id)."""
    objects = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            objects[(obj["type"], obj["id"])] = obj
    return objects


def _metric(agg: dict[str, Any]) -> dict[str, Any] | None:
    if agg["type"] == "count":
        return None
    if agg["type"] == "sum":
        return {"sum": {"field": agg["params"]["field"]}}
    raise ValueError(f"metric aggregation {agg['type']!r} is not supported")


def _bucket(agg: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    params = agg["params"]
    if agg["type"] == "terms":
        order_by = params.get("orderBy", "1")
        key = "_count" if order_by not in metrics else order_by
        return {"terms": {"field": params["field"], "size": int(params["size"]),
                          "order": {key: params.get("order", "desc")}}}
    if agg["type"] == "date_histogram":
        return {"date_histogram": {"field": params["field"], "min_doc_count": int(params.get("min_doc_count", 1)),
                                   **_INTERVALS[params["interval"]]}}
    raise ValueError(f"bucket aggregation {agg['type']!r} is not supported")


def panel_search(vis: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]],
                 dashboard: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(index, search body) Kibana sends for one visualization on the dashboard."""
    state = json.loads(vis["attributes"]["visState"])
    source = json.loads(vis["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    ref = next(r for r in vis["references"] if r["name"] == source["indexRefName"])
    view = objects[("index-pattern", ref["id"])]["attributes"]
    filters: list[dict[str, Any]] = []
    if source["query"]["query"].strip():
        assert source["query"]["language"] == "kuery"
        filters.append(to_dsl(source["query"]["query"]))
    if view.get("timeFieldName"):
        attrs = dashboard["attributes"]
        assert attrs.get("timeRestore"), "a time-based panel needs the dashboard's stored time range"
        filters.append({"range": {view["timeFieldName"]: {"gte": attrs["timeFrom"], "lte": attrs["timeTo"]}}})
    enabled = [a for a in state["aggs"] if a.get("enabled", True)]
    metrics = {a["id"]: m for a in enabled if a["schema"] == "metric" and (m := _metric(a)) is not None}
    buckets = [a for a in enabled if a["schema"] in _BUCKET_SCHEMAS]
    aggs: dict[str, Any] = dict(metrics)
    for agg in reversed(buckets):
        aggs = {agg["id"]: {**_bucket(agg, metrics), **({"aggs": aggs} if aggs else {})}}
    body = {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": filters}}, "aggs": aggs}
    return view["title"], body
