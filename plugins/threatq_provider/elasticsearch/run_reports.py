"""One small document per indicator-DAG run, so loads and rejects can be charted over time.

The run's counts otherwise live only in XCom and the task log, which Kibana cannot read. The
report task writes its summary here: index :data:`RUNS_INDEX` (outside ``logs-*``, so no built-in
data-stream template and no detection rule reads it), ``_id`` = ``<dag_id>/<run_id>`` (a retried
report task overwrites its own document, never adds a second), ``@timestamp`` = the run's
``data_interval_end``. The index is created on first use with an explicit mapping.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from threatq_provider.coerce import format_iso_millis
from threatq_provider.elasticsearch.cluster import OPENSEARCH, cluster

__all__ = ["RUNS_INDEX", "RUNS_MAPPING", "index_run_report", "run_document"]

log = logging.getLogger(__name__)

#: Index of the run reports (the Kibana dashboard's "Loads and rejects over time" reads it).
RUNS_INDEX = "threatq-provider-runs"
_COUNTS = ("polled", "transformed", "transform_rejected", "loaded", "unchanged", "load_rejected")
RUNS_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "@timestamp": {"type": "date"},
        "dag_id": {"type": "keyword"},
        "run_id": {"type": "keyword"},
        "mode": {"type": "keyword"},
        "window_start": {"type": "date"},
        "window_end": {"type": "date"},
        # The run's own data interval, why the window read differs from it, and the gap it closed.
        "interval_start": {"type": "date"},
        "interval_end": {"type": "date"},
        "window_kind": {"type": "keyword"},
        "gap_start": {"type": "date"},
        "gap_end": {"type": "date"},
        "gap_intervals": {"type": "long"},
        "watermark": {"type": "date"},
        "transform_engine": {"type": "keyword"},
        "dry_run": {"type": "boolean"},
        "transform_rejected_by_reason": {"type": "flattened"},
        # Tasks of the run that needed more than one try (a worker died, a node or the store was away).
        "retried": {"type": "keyword"},
        **{name: {"type": "long"} for name in _COUNTS},
    },
}


def run_document(summary: dict[str, Any], *, dag_id: str, run_id: str, when: datetime) -> dict[str, Any]:
    """The document of one run from the report task's summary (its XCom).

    :param summary: ``ThreatQRunReportOperator``'s summary.
    :param dag_id: the DAG.
    :param run_id: the run.
    :param when: the run's ``data_interval_end`` (the document's ``@timestamp``).
    :return: the document.
    """
    rejected = summary.get("rejected") or {}
    by_reason = {str(k): int(v) for k, v in rejected.items()} if isinstance(rejected, dict) else {}
    doc: dict[str, Any] = {
        "@timestamp": format_iso_millis(when), "dag_id": dag_id, "run_id": run_id, "mode": summary.get("mode"),
        "transform_engine": summary.get("transform_engine"), "dry_run": bool(summary.get("dry_run")),
        "polled": int(summary.get("polled") or 0),
        "transformed": int(summary.get("transformed") or 0),
        "transform_rejected": sum(by_reason.values()) if by_reason else int(rejected or 0),
        "transform_rejected_by_reason": by_reason,
        "loaded": int(summary.get("loaded") or 0),
        "unchanged": int(summary.get("unchanged") or 0),
        "load_rejected": int(summary.get("load_rejected") or 0),
    }
    for key in ("window_start", "window_end", "interval_start", "interval_end", "window_kind", "watermark"):
        if summary.get(key):
            doc[key] = str(summary[key])
    if summary.get("retried"):
        doc["retried"] = [str(task) for task in summary["retried"]]
    gap = summary.get("gap_closed")
    if isinstance(gap, dict) and gap.get("start"):
        doc.update(gap_start=str(gap["start"]), gap_end=str(gap["end"]), gap_intervals=int(gap.get("intervals") or 0))
    return doc


def runs_mapping(flavor: str) -> dict[str, Any]:
    """:data:`RUNS_MAPPING` for ``flavor``: OpenSearch calls Elasticsearch's ``flattened`` type ``flat_object``."""
    if flavor != OPENSEARCH:
        return RUNS_MAPPING
    props = {k: ({"type": "flat_object"} if v.get("type") == "flattened" else v)
             for k, v in RUNS_MAPPING["properties"].items()}
    return {**RUNS_MAPPING, "properties": props}


def index_run_report(client: Any, document: dict[str, Any], *, index: str = RUNS_INDEX) -> str:
    """Write one run's document (creating the index with :data:`RUNS_MAPPING` on first use).

    :return: the document ``_id`` (``<dag_id>/<run_id>``).
    """
    flavor = cluster(client).flavor
    mapping = runs_mapping(flavor)
    settings = {"number_of_shards": 1, "auto_expand_replicas": "0-1"}
    # Each library's own keywords (opensearch-py takes bodies only as body=).
    opensearch = flavor == OPENSEARCH
    if not client.indices.exists(index=index):
        try:
            if opensearch:
                client.indices.create(index=index, body={"mappings": mapping, "settings": settings})
            else:
                client.indices.create(index=index, mappings=mapping, settings=settings)
        except Exception as exc:  # another run created it first
            if "resource_already_exists_exception" not in str(exc):
                raise
    elif opensearch:  # an index created by an earlier release: add the fields it lacks (additive, idempotent)
        client.indices.put_mapping(index=index, body={"properties": mapping["properties"]})
    else:
        client.indices.put_mapping(index=index, properties=mapping["properties"])
    doc_id = f"{document['dag_id']}/{document['run_id']}"
    if opensearch:
        client.index(index=index, id=doc_id, body=document)
    else:
        client.index(index=index, id=doc_id, document=document)
    log.info("run report %s written to %s", doc_id, index)
    return doc_id
