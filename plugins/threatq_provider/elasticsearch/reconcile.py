"""Reconciliation of deletions: IOCs that ThreatQ no longer has leave the active index.

A window poll reads what changed; an indicator *deleted* in ThreatQ never changes again, so
without this it would stay in the active index (and keep matching events) until it expires, up to
90 days later. The reconciliation streams two id lists, both ascending, and merges them with
flat memory:

* ThreatQ: the ids of every indicator it has (``ThreatQClient.iter_indicator_ids``, keyset paging
  on ``id``, ids only);
* Elasticsearch (or OpenSearch): the active index's documents of that ThreatQ instance, sorted by
  ``threatq.id`` through a point in time with ``search_after`` (a consistent view however long the
  merge takes; each library opens and closes it its own way, :func:`_open_pit`).

An active document whose id ThreatQ does not list is gone from ThreatQ. What is found is spooled
to a temporary file (flat memory) and nothing is removed before **both** streams ended: a ThreatQ
read that fails half-way removes nothing. Then, unless it is a dry run or over the safety limit:
each gets a tombstone (reason ``deleted_in_threatq``, at the version seen; :mod:`.tombstones`)
and is deleted at the sequence number it was seen with, as the expiry sweep does, so a replayed
old load never brings it back and a concurrent newer load wins.

Two guards:

* **Safety limit.** More than ``max_delete_percent`` (default 10 %) of the instance's active
  documents missing at once is more likely a ThreatQ answering with less than it has (a user
  without access to some sources, a restore in progress, a proxy) than a real mass deletion: the
  run refuses, deletes nothing and says how many and why (``ReconcileLimitExceeded``), unless
  ``allow_mass_delete`` is set.
* **Recent documents are left alone.** A document whose ``updated_at`` lies within ``margin``
  (default 1 hour) of the moment ThreatQ's list was started may belong to an indicator created
  after the list passed its id; the next run decides.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from threatq_provider.coerce import format_iso_millis
from threatq_provider.elasticsearch.cluster import OPENSEARCH, Cluster, cluster
from threatq_provider.elasticsearch.errors import ReconcileLimitExceeded
from threatq_provider.elasticsearch.names import ACTIVE_ALIAS, TOMBSTONE_INDEX
from threatq_provider.elasticsearch.templates import ensure_tombstone_index
from threatq_provider.elasticsearch.tombstones import REASON_DELETED_IN_THREATQ, Tombstone, write_tombstones

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_MAX_DELETE_PERCENT",
    "ActiveDoc",
    "instance_filter",
    "iter_active_docs",
    "missing_from",
    "reconcile_deletions",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_DELETE_PERCENT = 10.0
DEFAULT_MARGIN = timedelta(hours=1)
_SAMPLE = 100
_ID_FIELD = "threatq.id"
_INSTANCE_FIELD = "threatq.instance"


@dataclass(frozen=True, slots=True)
class ActiveDoc:
    """One active-index document as the scan saw it (what its tombstone and delete need)."""

    threatq_id: int
    index: str
    doc_id: str
    version: int
    seq_no: int
    primary_term: int


def instance_filter(instance: str | None, *, explicit: bool) -> dict[str, Any] | None:
    """The query selecting one ThreatQ instance's documents (``None``: every document).

    A named instance's documents carry ``threatq.instance``; the default instance's may also be
    older documents without the field (loaded before instances existed).
    """
    if instance is None:
        return None
    if explicit:
        return {"term": {_INSTANCE_FIELD: instance}}
    return {"bool": {"should": [{"term": {_INSTANCE_FIELD: instance}},
                                {"bool": {"must_not": {"exists": {"field": _INSTANCE_FIELD}}}}],
                     "minimum_should_match": 1}}


def _open_pit(target: Cluster, index: str, keep_alive: str) -> str:
    if target.flavor == OPENSEARCH:
        return str(target.client.create_pit(index=index, params={"keep_alive": keep_alive})["pit_id"])
    return str(target.client.open_point_in_time(index=index, keep_alive=keep_alive)["id"])


def _close_pit(target: Cluster, pit: str) -> None:
    if target.flavor == OPENSEARCH:
        target.client.delete_pit(body={"pit_id": [pit]})
    else:
        target.client.close_point_in_time(body={"id": pit})


def iter_active_docs(client: Any, index: str, *, query: dict[str, Any], batch_size: int = 5000,
                     keep_alive: str = "5m") -> Iterator[ActiveDoc]:
    """The documents matching ``query``, ascending by ``threatq.id``, through a point in time.

    :param client: an Elasticsearch or OpenSearch client.
    :param index: the active index or alias.
    :param query: the selection (instance, age).
    :param batch_size: hits per page.
    :param keep_alive: how long the point in time lives between pages.
    :return: iterator of :class:`ActiveDoc`.
    """
    target = cluster(client)
    pit = _open_pit(target, index, keep_alive)
    try:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"pit": {"id": pit, "keep_alive": keep_alive}, "query": query, "size": batch_size,
                                    "sort": [{_ID_FIELD: {"order": "asc"}}], "_source": False,
                                    "seq_no_primary_term": True, "version": True, "track_total_hits": False}
            if after is not None:
                body["search_after"] = after
            resp = client.search(body=body)
            pit = resp.get("pit_id", pit)
            hits = resp["hits"]["hits"]
            if not hits:
                return
            for hit in hits:
                yield ActiveDoc(int(hit["sort"][0]), hit["_index"], hit["_id"], int(hit["_version"]),
                                int(hit["_seq_no"]), int(hit["_primary_term"]))
            after = hits[-1]["sort"]
    finally:
        try:
            _close_pit(target, pit)
        except Exception as exc:  # it expires by itself; never hide the scan's own error
            log.warning("reconcile: could not close the point in time: %s", exc)


def missing_from(docs: Iterable[ActiveDoc], threatq_id_pages: Iterable[Iterable[int]]) -> Iterator[ActiveDoc]:
    """The documents whose id is not among ThreatQ's (both streams ascending): a merge.

    :raises ValueError: an input out of order (the merge would remove the wrong documents).
    """
    ids = (i for page in threatq_id_pages for i in page)
    current = next(ids, None)
    previous_doc = -1
    for doc in docs:
        if doc.threatq_id < previous_doc:
            raise ValueError(f"active index ids out of order at {doc.threatq_id}")
        previous_doc = doc.threatq_id
        while current is not None and current < doc.threatq_id:
            last = current
            current = next(ids, None)
            if current is not None and current <= last:
                raise ValueError(f"ThreatQ ids out of order at {current}")
        if current != doc.threatq_id:
            yield doc


def _delete(client: Any, batch: list[ActiveDoc], tombstone_index: str | None,
            out: dict[str, Any]) -> None:
    """Tombstone, then delete, one batch (only what its tombstone covers)."""
    if tombstone_index is not None:
        stones = [Tombstone(d.doc_id, d.version, REASON_DELETED_IN_THREATQ) for d in batch]
        covered, failed = write_tombstones(client, tombstone_index, stones)
        out["tombstones"] += len(covered)
        out["tombstone_failures"] += failed
        batch = [d for d in batch if d.doc_id in covered]
    actions = [{"_op_type": "delete", "_index": d.index, "_id": d.doc_id, "if_seq_no": d.seq_no,
                "if_primary_term": d.primary_term} for d in batch]
    for ok, result in cluster(client).helpers.streaming_bulk(client, actions, chunk_size=max(len(actions), 1),
                                                             raise_on_error=False, max_retries=5,
                                                             initial_backoff=1.0):
        item = result["delete"]
        if ok:
            out["deleted"] += 1
        elif item.get("status") in (404, 409):
            out["conflicts"] += 1  # gone or rewritten meanwhile (a newer copy stays; the next run re-checks)
        else:
            out["failed"] += 1
            log.warning("reconcile: delete of %s failed: %s", item.get("_id"), item.get("error"))


def reconcile_deletions(
    client: Any,
    threatq_id_pages: Iterable[Iterable[int]],
    *,
    started_at: datetime,
    index: str = ACTIVE_ALIAS,
    tombstone_index: str | None = TOMBSTONE_INDEX,
    instance: str | None = None,
    explicit_instance: bool = False,
    dry_run: bool = False,
    max_delete_percent: float = DEFAULT_MAX_DELETE_PERCENT,
    allow_mass_delete: bool = False,
    margin: timedelta = DEFAULT_MARGIN,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Remove from the active index the IOCs whose ids ThreatQ no longer lists.

    :param client: an Elasticsearch or OpenSearch client.
    :param threatq_id_pages: ThreatQ's ids, ascending (pages of ints); read to the end before
        anything is removed.
    :param started_at: when ThreatQ's list was started (before its first request).
    :param index: the active index or alias.
    :param tombstone_index: where each removal's tombstone goes; ``None`` writes none.
    :param instance: the ThreatQ instance whose documents are checked (``None``: all documents).
    :param explicit_instance: the instance is named on its connection (see :func:`instance_filter`).
    :param dry_run: find and count, remove nothing.
    :param max_delete_percent: refuse to remove more than this share of the instance's active
        documents in one run.
    :param allow_mass_delete: remove even above ``max_delete_percent``.
    :param margin: documents updated later than ``started_at - margin`` are left for the next run.
    :param batch_size: documents per tombstone/delete bulk.
    :return: ``{"active", "checked", "threatq_ids", "missing", "deleted", "conflicts", "failed",
        "tombstones", "tombstone_failures", "by_reason", "sample_ids", "limit", "dry_run",
        "refused", "started_at"}``.
    :raises ReconcileLimitExceeded: over the safety limit (nothing was removed).
    """
    selection = instance_filter(instance, explicit=explicit_instance)
    out: dict[str, Any] = {"active": 0, "checked": 0, "threatq_ids": 0, "missing": 0, "deleted": 0, "conflicts": 0,
                           "failed": 0, "tombstones": 0, "tombstone_failures": 0, "by_reason": {},
                           "sample_ids": [], "limit": 0, "dry_run": dry_run, "refused": False,
                           "started_at": format_iso_millis(started_at), "max_delete_percent": max_delete_percent}
    try:
        client.indices.refresh(index=index)
    except Exception as exc:
        if not cluster(client).is_not_found(exc):
            raise
        log.info("reconcile: %s does not exist yet (nothing loaded); nothing to check", index)
        return out
    out["active"] = client.count(index=index, body={"query": selection or {"match_all": {}}})["count"]
    out["limit"] = int(out["active"] * max_delete_percent / 100)
    old_enough = {"range": {"@timestamp": {"lt": format_iso_millis(started_at - margin)}}}
    query = {"bool": {"filter": [old_enough] + ([selection] if selection else [])}}

    def counted_docs() -> Iterator[ActiveDoc]:
        for doc in iter_active_docs(client, index, query=query, batch_size=max(batch_size, 1000)):
            out["checked"] += 1
            yield doc

    def counted_ids() -> Iterator[list[int]]:
        for page in threatq_id_pages:
            ids = list(page)
            out["threatq_ids"] += len(ids)
            yield ids

    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        for doc in missing_from(counted_docs(), counted_ids()):
            out["missing"] += 1
            if len(out["sample_ids"]) < _SAMPLE:
                out["sample_ids"].append(doc.threatq_id)
            spool.write(json.dumps([doc.threatq_id, doc.index, doc.doc_id, doc.version, doc.seq_no,
                                    doc.primary_term]) + "\n")
        # Drain ThreatQ's list even past the last active id: a failure anywhere in it removes nothing.
        for _ in counted_ids():
            pass
        if out["missing"]:
            out["by_reason"] = {REASON_DELETED_IN_THREATQ: out["missing"]}
        over = out["missing"] > out["limit"] and not allow_mass_delete
        if over:
            out["refused"] = True
            error = ReconcileLimitExceeded(out["missing"], out["active"], max_delete_percent)
            if not dry_run:
                log.error("reconcile: %s", error)
                raise error
            log.warning("reconcile (dry run): %s", error)
        if dry_run or over or not out["missing"]:
            log.info("reconcile: %s", out)
            return out
        if tombstone_index is not None:
            ensure_tombstone_index(client, tombstone_index)
        spool.seek(0)
        rows = (ActiveDoc(*json.loads(line)) for line in spool)
        while batch := list(islice(rows, batch_size)):
            _delete(client, batch, tombstone_index, out)
    client.indices.refresh(index=index)
    log.info("reconcile: %s", out)
    return out
