"""Keep active IOCs inside the 30-day window of Elastic Security's prebuilt indicator-match rules.

Elastic's five threat-intel indicator-match rules (detection-rules ``rules/threat_intel/``) read
only indicators with ``@timestamp >= "now-30d/d"``. Our ``@timestamp`` is ThreatQ's
``updated_at``, as in Elastic's ``ti_threatq`` integration, so an IOC that ThreatQ still holds
Active but has not edited for 30 days sits in the active index (until it expires, 90 days by
default) while no prebuilt rule matches it. Elastic's integration behaves the same; the rules'
own guide says they match "threat intelligence data that's been ingested during the last 30
days", i.e. they take ``@timestamp`` as the time the feed last vouched for an indicator.

This refresh gives them that meaning without rewriting the index: only the documents about to
leave the window (``@timestamp`` older than ``window - margin``) and still active
(``threatq.ioc_expired_at`` after ``now``, or none) are touched, with one partial update each:

* ``@timestamp`` = ``now``;
* ``threatq.window_refreshed_at`` = ``now`` (so a reader can tell a refresh from an edit);
* ``threatq.updated_at`` = the old ``@timestamp``, when the document does not carry it already
  (``preserve_duplicate_custom_fields=False`` drops it), so ThreatQ's last-update time is never
  lost.

A document is touched at most once per ``window - margin`` (28 days by default): after a refresh
it is young again. Each update is conditional on the sequence number seen, so an IOC a load
rewrote meanwhile is left alone (counted as ``conflicts``; the new copy is fresh anyway).
Elasticsearch's update raises the stored external version by one, which the loader reads as "the
same ``updated_at``, observed a second later" (:mod:`.versioning`): a replay of the stage file
that loaded it is still skipped, and any newer ThreatQ edit still wins. The history is not
touched: it records ThreatQ's versions. Expiry is not changed either: ``threatq.ioc_expired_at``
keeps counting from ThreatQ's ``updated_at``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from threatq_provider.coerce import format_iso_millis
from threatq_provider.elasticsearch.cluster import cluster
from threatq_provider.elasticsearch.names import ACTIVE_ALIAS

__all__ = ["DEFAULT_MARGIN", "DEFAULT_WINDOW", "RefreshCounts", "due_query", "refresh_detection_window"]

log = logging.getLogger(__name__)

#: The prebuilt rules' ``@timestamp >= "now-30d/d"``.
DEFAULT_WINDOW = timedelta(days=30)
#: Refresh this long before a document would leave the window (covers a day of missed sweeps and
#: the rule's rounding down to the day).
DEFAULT_MARGIN = timedelta(days=2)
REFRESHED_FIELD = "threatq.window_refreshed_at"


@dataclass
class RefreshCounts:
    """What one refresh did: documents due (``matched``), touched (``refreshed``), left because a
    load rewrote or a sweep removed them meanwhile (``conflicts``), and refused by type (``failed``)."""

    now: str
    older_than: str
    matched: int = 0
    refreshed: int = 0
    conflicts: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"now": self.now, "older_than": self.older_than, "matched": self.matched,
                "refreshed": self.refreshed, "conflicts": self.conflicts, "failed": dict(self.failed),
                "dry_run": self.dry_run}


def due_query(now: datetime, *, window: timedelta = DEFAULT_WINDOW, margin: timedelta = DEFAULT_MARGIN) -> dict[str, Any]:
    """Active IOCs whose ``@timestamp`` is older than ``now - (window - margin)``.

    :raises ValueError: a margin that is negative or not shorter than the window.
    """
    if not timedelta(0) <= margin < window:
        raise ValueError(f"detection window margin {margin} must be >= 0 and shorter than the window {window}")
    return {"bool": {
        "filter": [{"range": {"@timestamp": {"lt": format_iso_millis(now - (window - margin))}}}],
        "must_not": [{"range": {"threatq.ioc_expired_at": {"lte": format_iso_millis(now)}}}],
    }}


def refresh_detection_window(client: Any, *, index: str = ACTIVE_ALIAS, now: datetime,
                             window: timedelta = DEFAULT_WINDOW, margin: timedelta = DEFAULT_MARGIN,
                             dry_run: bool = False, chunk_docs: int = 1000) -> RefreshCounts:
    """Bring the active IOCs about to leave the rules' window back to ``@timestamp`` = ``now``.

    :param client: a client of either library (:mod:`.cluster`).
    :param index: the active index or its alias.
    :param now: the refresh clock (the operator passes the run's ``data_interval_end``).
    :param window: the rules' look-back on ``@timestamp`` (30 days for Elastic's prebuilt rules).
    :param margin: refresh this long before a document would leave the window.
    :param dry_run: count what is due, change nothing.
    :param chunk_docs: partial updates per bulk request.
    :return: the counts.
    """
    query = due_query(now, window=window, margin=margin)
    counts = RefreshCounts(now=format_iso_millis(now), older_than=format_iso_millis(now - (window - margin)),
                           dry_run=dry_run)
    if not client.indices.exists(index=index):
        log.info("detection window: %s does not exist yet; nothing to refresh", index)
        return counts
    stamp = format_iso_millis(now)
    helpers = cluster(client).helpers
    hits = helpers.scan(client, index=index, query={"query": query}, seq_no_primary_term=True,
                        _source=["@timestamp", "threatq.updated_at"])

    def actions() -> Any:
        for hit in hits:
            counts.matched += 1
            if dry_run:
                continue
            source = hit.get("_source") or {}
            tq: dict[str, Any] = {"window_refreshed_at": stamp}
            if not (source.get("threatq") or {}).get("updated_at") and source.get("@timestamp"):
                tq["updated_at"] = source["@timestamp"]
            yield {"_op_type": "update", "_index": hit["_index"], "_id": hit["_id"],
                   "if_seq_no": hit["_seq_no"], "if_primary_term": hit["_primary_term"],
                   "doc": {"@timestamp": stamp, "threatq": tq}}

    for ok, result in helpers.streaming_bulk(client, actions(), chunk_size=chunk_docs, raise_on_error=False,
                                             raise_on_exception=True, max_retries=3):  # retries 429s
        item = result["update"]
        if ok:
            counts.refreshed += 1
        elif item.get("status") in (404, 409):  # rewritten (409) or swept (404) meanwhile
            counts.conflicts += 1
        else:
            error = item.get("error")
            counts.failed[str(error.get("type")) if isinstance(error, dict) else f"http_{item.get('status')}"] += 1
    log.info("detection window: %s", counts.as_dict())
    return counts
