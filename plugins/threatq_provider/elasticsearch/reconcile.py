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

**A data collection** (collection mode): the ids to keep are the collection's members instead
(its feed, ids only, comes in ``updated_at`` order: :func:`sorted_id_pages` sorts them with an
external sort, flat memory). An active document outside the collection is removed with reason
``dropped_from_collection``, or ``deleted_in_threatq`` when a second stream, every id ThreatQ has,
no longer lists it either. Only for an active index fed by that collection alone: IOCs loaded by
window runs are not members.
"""

from __future__ import annotations

import heapq
import json
import logging
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import IO, Any

from threatq_provider.coerce import format_iso_millis
from threatq_provider.elasticsearch.cluster import OPENSEARCH, Cluster, cluster
from threatq_provider.elasticsearch.errors import ReconcileLimitExceeded
from threatq_provider.elasticsearch.names import ACTIVE_ALIAS, TOMBSTONE_INDEX
from threatq_provider.elasticsearch.templates import ensure_tombstone_index
from threatq_provider.elasticsearch.tombstones import (
    REASON_DELETED_IN_THREATQ,
    REASON_DROPPED_FROM_COLLECTION,
    Tombstone,
    write_tombstones,
)

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_MAX_DELETE_PERCENT",
    "ActiveDoc",
    "instance_filter",
    "iter_active_docs",
    "missing_from",
    "reconcile_deletions",
    "sorted_id_pages",
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
    # OpenSearch short-cuts search_after pages by shard and segment min/max only when
    # track_total_hits is false, and that short cut has dropped documents
    # (opensearch-project/OpenSearch#14824; seen here: a scan after deletions ended early). Counting
    # turns it off; Elasticsearch keeps the cheaper uncounted pages.
    count_hits = target.flavor == OPENSEARCH
    pit = _open_pit(target, index, keep_alive)
    try:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"pit": {"id": pit, "keep_alive": keep_alive}, "query": query, "size": batch_size,
                                    "sort": [{_ID_FIELD: {"order": "asc"}}], "_source": False,
                                    "seq_no_primary_term": True, "version": True, "track_total_hits": count_hits}
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


def _merge(docs: Iterable[ActiveDoc], threatq_id_pages: Iterable[Iterable[int]]) -> Iterator[tuple[ActiveDoc, bool]]:
    """Each document with whether its id is among ThreatQ's (both streams ascending): a merge.

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
        yield doc, current == doc.threatq_id


def missing_from(docs: Iterable[ActiveDoc], threatq_id_pages: Iterable[Iterable[int]]) -> Iterator[ActiveDoc]:
    """The documents whose id is not among ThreatQ's (both streams ascending): a merge.

    :raises ValueError: an input out of order (the merge would remove the wrong documents).
    """
    return (doc for doc, found in _merge(docs, threatq_id_pages) if not found)


def _spool_run(chunk: array) -> IO[bytes]:
    run = tempfile.TemporaryFile()
    array("q", sorted(chunk)).tofile(run)
    run.seek(0)
    return run


def _read_run(run: IO[bytes], block: int = 65536) -> Iterator[int]:
    while data := run.read(block * 8):
        yield from array("q", data)


def sorted_id_pages(ids: Iterable[int], *, chunk_size: int = 500_000, page_size: int = 10_000) -> Iterator[list[int]]:
    """``ids`` (any order, repeats allowed) as pages, strictly ascending, in bounded memory.

    A data collection's feed comes in ``updated_at`` order (and an indicator updated while it is read
    may come twice); the merge needs ids ascending. Up to ``chunk_size`` ids are sorted in memory;
    beyond, each sorted run goes to a temporary file (8 bytes an id) and the runs are merged: an
    external sort. Everything is read before the first page is yielded.

    :param ids: the ids.
    :param chunk_size: ids sorted in memory at once.
    :param page_size: ids per page yielded.
    :return: iterator of non-empty lists of ids.
    """
    runs: list[IO[bytes]] = []
    chunk = array("q")
    try:
        for i in ids:
            chunk.append(i)
            if len(chunk) >= chunk_size:
                runs.append(_spool_run(chunk))
                chunk = array("q")
        if runs:
            if chunk:
                runs.append(_spool_run(chunk))
            merged: Iterator[int] = heapq.merge(*(_read_run(run) for run in runs))
        else:
            merged = iter(sorted(chunk))
        page: list[int] = []
        last: int | None = None
        for i in merged:
            if i == last:
                continue
            last = i
            page.append(i)
            if len(page) >= page_size:
                yield page
                page = []
        if page:
            yield page
    finally:
        for run in runs:
            run.close()


def _delete(client: Any, rows: list[tuple[ActiveDoc, str]], tombstone_index: str | None,
            out: dict[str, Any]) -> None:
    """Tombstone (with each document's reason), then delete, one batch (only what its tombstone covers)."""
    batch = [doc for doc, _ in rows]
    if tombstone_index is not None:
        stones = [Tombstone(d.doc_id, d.version, reason) for d, reason in rows]
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
    existing_id_pages: Iterable[Iterable[int]] | None = None,
) -> dict[str, Any]:
    """Remove from the active index the IOCs whose ids ThreatQ no longer lists.

    :param client: an Elasticsearch or OpenSearch client.
    :param threatq_id_pages: ThreatQ's ids, ascending (pages of ints); read to the end before
        anything is removed. With ``existing_id_pages``: a data collection's members.
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
    :param existing_id_pages: for a data collection, every id ThreatQ has (ascending, read to the
        end before anything is removed): a document outside the collection whose id is still there
        was dropped from the collection (``dropped_from_collection``), else deleted.
    :return: ``{"active", "checked", "threatq_ids", "missing", "deleted", "conflicts", "failed",
        "tombstones", "tombstone_failures", "by_reason", "sample_ids", "limit", "dry_run",
        "refused", "started_at"}``, plus ``"existing_ids"`` with ``existing_id_pages``.
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

    def counted(pages: Iterable[Iterable[int]], key: str) -> Iterator[list[int]]:
        for page in pages:
            ids = list(page)
            out[key] += len(ids)
            yield ids

    def row(doc: ActiveDoc, reason: str) -> str:
        return json.dumps([doc.threatq_id, doc.index, doc.doc_id, doc.version, doc.seq_no, doc.primary_term,
                           reason]) + "\n"

    kept = counted(threatq_id_pages, "threatq_ids")
    first_reason = REASON_DELETED_IN_THREATQ if existing_id_pages is None else REASON_DROPPED_FROM_COLLECTION
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool, \
            tempfile.TemporaryFile("w+", encoding="utf-8") as classified:
        for doc in missing_from(counted_docs(), kept):
            out["missing"] += 1
            if len(out["sample_ids"]) < _SAMPLE:
                out["sample_ids"].append(doc.threatq_id)
            spool.write(row(doc, first_reason))
        # Drain ThreatQ's list even past the last active id: a failure anywhere in it removes nothing.
        for _ in kept:
            pass
        if existing_id_pages is not None:
            # Outside the collection: still in ThreatQ (dropped from it) or deleted? A second merge.
            out["existing_ids"] = 0
            existing = counted(existing_id_pages, "existing_ids")
            spool.seek(0)
            spooled = (ActiveDoc(*json.loads(line)[:6]) for line in spool)
            for doc, found in _merge(spooled, existing):
                classified.write(row(doc, REASON_DROPPED_FROM_COLLECTION if found else REASON_DELETED_IN_THREATQ))
            for _ in existing:
                pass
            spool = classified
        by_reason: dict[str, int] = {}
        spool.seek(0)
        for line in spool:
            reason = json.loads(line)[6]
            by_reason[reason] = by_reason.get(reason, 0) + 1
        out["by_reason"] = dict(sorted(by_reason.items()))
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
        rows = ((ActiveDoc(*fields[:6]), fields[6]) for fields in map(json.loads, spool))
        while batch := list(islice(rows, batch_size)):
            _delete(client, batch, tombstone_index, out)
    client.indices.refresh(index=index)
    log.info("reconcile: %s", out)
    return out
