"""Tombstones: the version at which an IOC left the active index, so no replay brings it back.

Elasticsearch remembers a deleted document's version only for ``index.gc_deletes`` (60 s), and
forgets it on a rollover to a new index: after that, any external version is accepted again. So
whatever removes an IOC from the active index (the expiry sweep; later a deletion reconciler)
first writes a tombstone here: ``_id`` = ``threatq.id``, ``_version`` = the removed document's
external version (``version_type=external``, so a tombstone only moves forward). The loader looks
up each bulk chunk's ids in one ``mget`` and does not write to the active index a copy whose
version is at or below its tombstone's (``skipped_deleted``). A genuinely newer copy (the IOC
edited or re-activated in ThreatQ, or read again by a later poll: see :mod:`.versioning`) has a
higher version and passes; the tombstone stays until it is pruned and blocks only what it covers.

The index is small (a few short fields per removed IOC, hidden, one shard) and tombstones older
than a retention (default 30 days, longer than the stage-file retention, which bounds what can be
replayed) are pruned by the expiry sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from threatq_provider.coerce import format_iso_millis
from threatq_provider.elasticsearch.cluster import cluster
from threatq_provider.elasticsearch.errors import TombstoneError
from threatq_provider.elasticsearch.versioning import split_version

__all__ = [
    "REASON_DELETED_IN_THREATQ",
    "REASON_DROPPED_FROM_COLLECTION",
    "REASON_EXPIRED",
    "REASON_STATUS_POLICY",
    "Tombstone",
    "TombstoneError",
    "prune_tombstones",
    "tombstone_versions",
    "write_tombstones",
]

log = logging.getLogger(__name__)

#: Why an IOC left the active index: the expiry sweep's reason, and those kept for removals to come
#: (an indicator deleted in ThreatQ or dropped from a data collection; a status policy).
REASON_EXPIRED = "expired"
REASON_DELETED_IN_THREATQ = "deleted_in_threatq"
REASON_DROPPED_FROM_COLLECTION = "dropped_from_collection"
REASON_STATUS_POLICY = "status_policy"


@dataclass(frozen=True, slots=True)
class Tombstone:
    """One removal: the id, the removed copy's external version, why, and its expiry if known."""

    id: str
    version: int
    reason: str
    ioc_expired_at: str | None = None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else format_iso_millis(moment)


def _body(stone: Tombstone, deleted_at: str) -> dict[str, Any]:
    updated_at, observed_at = split_version(stone.version)
    body: dict[str, Any] = {"threatq": {"id": stone.id}, "version": stone.version, "reason": stone.reason,
                            "deleted_at": deleted_at}
    for key, value in (("updated_at", _iso(updated_at)), ("observed_at", _iso(observed_at)),
                       ("ioc_expired_at", stone.ioc_expired_at)):
        if value is not None:
            body[key] = value
    return body


def write_tombstones(client: Any, index: str, stones: Iterable[Tombstone], *,
                     deleted_at: datetime | None = None) -> tuple[set[str], int]:
    """Write tombstones (one bulk request per call; give it a batch).

    :param client: a client of either library (:mod:`.cluster`).
    :param index: the tombstone index (see ``IndexNames.tombstone_index``).
    :param stones: what is about to be removed.
    :param deleted_at: when (default now, UTC); pruning counts from it.
    :return: ``(covered, failed)``: the ids now covered by a tombstone at or above the given
        version (written, or a newer one was already there), and how many writes failed. Remove
        only what is covered.
    """
    stamp = _iso(deleted_at or datetime.now(UTC)) or ""
    actions = [{"_op_type": "index", "_index": index, "_id": s.id, "version": s.version,
                "version_type": "external", "_source": _body(s, stamp)} for s in stones]
    covered: set[str] = set()
    failed = 0
    if not actions:
        return covered, failed
    helpers = cluster(client).helpers
    for ok, result in helpers.streaming_bulk(client, actions, chunk_size=len(actions), raise_on_error=False,
                                             max_retries=5, initial_backoff=1.0):
        item = result["index"]
        if ok or item.get("status") == 409:  # 409: a tombstone at this version or later exists
            covered.add(str(item["_id"]))
        else:
            failed += 1
            log.warning("tombstone for %s not written: %s", item.get("_id"), item.get("error"))
    return covered, failed


def tombstone_versions(client: Any, index: str, ids: Iterable[str]) -> dict[str, int]:
    """The tombstone version of each id that has one (one ``mget``, no ``_source``).

    :param client: a client of either library (:mod:`.cluster`).
    :param index: the tombstone index; a missing index means no tombstones.
    :param ids: document ids (``threatq.id``).
    :return: id → version of its tombstone.
    :raises TombstoneError: a lookup failed for another reason (the load must not go on blind).
    """
    unique = list(dict.fromkeys(ids))
    if not unique:
        return {}
    found: dict[str, int] = {}
    for doc in cluster(client).mget_versions(index, unique):
        if doc.get("found"):
            found[str(doc["_id"])] = int(doc["_version"])
        elif "error" in doc:
            error = doc["error"]
            kind = error.get("type") if isinstance(error, dict) else str(error)
            if kind == "index_not_found_exception":
                return {}  # nothing was ever removed (or the index was never created)
            raise TombstoneError(f"tombstone lookup in {index} failed for id {doc.get('_id')}: {kind}")
    return found


def _expired_tombstones(client: Any, index: str, cutoff: str, batch_size: int) -> Iterator[dict[str, Any]]:
    query = {"query": {"range": {"deleted_at": {"lt": cutoff}}}}
    return cluster(client).helpers.scan(client, index=index, query=query, size=batch_size, _source=False,
                                        version=True, ignore_unavailable=True)


def prune_tombstones(client: Any, index: str, *, before: datetime, batch_size: int = 1000) -> int:
    """Delete tombstones written before ``before``.

    Each delete carries the version it saw (``version_type=external`` keeps a tombstone that a
    newer removal rewrote meanwhile: the delete answers 409 and the tombstone stays). Where the
    cluster has ``_delete_by_query`` (:mod:`.cluster`), one request does it on the cluster with the
    same safety: a rewritten tombstone has a new ``deleted_at`` (past the cutoff), and one rewritten
    between the request's own read and its delete is a version conflict, skipped
    (``conflicts=proceed``).

    :param client: a client of either library (:mod:`.cluster`).
    :param index: the tombstone index (missing: nothing to prune).
    :param before: cutoff; the sweep passes now minus the tombstone retention.
    :param batch_size: documents per scroll page and per bulk.
    :return: how many were deleted.
    """
    cutoff = _iso(before) or ""
    target = cluster(client)
    if target.capabilities.delete_by_query:
        try:
            resp = client.delete_by_query(index=index, body={"query": {"range": {"deleted_at": {"lt": cutoff}}}},
                                          conflicts="proceed", refresh=True, scroll_size=batch_size)
        except target.api_error as exc:
            if target.status(exc) == 404:
                return 0  # no tombstone index: nothing was ever removed
            raise
        for failure in resp.get("failures") or []:
            log.warning("tombstone prune: %s", failure)
        return int(resp.get("deleted", 0))
    actions = ({"_op_type": "delete", "_index": h["_index"], "_id": h["_id"], "version": h["_version"],
                "version_type": "external_gte"} for h in _expired_tombstones(client, index, cutoff, batch_size))
    deleted = 0
    for ok, result in target.helpers.streaming_bulk(client, actions, chunk_size=batch_size, raise_on_error=False,
                                                    max_retries=5, initial_backoff=1.0):
        item = result["delete"]
        if ok:
            deleted += 1
        elif item.get("status") not in (404, 409):
            log.warning("tombstone prune: delete of %s failed: %s", item.get("_id"), item.get("error"))
    if deleted:
        client.indices.refresh(index=index)
    return deleted
