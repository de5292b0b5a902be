"""IOC expiry sweep of the active index, and the history retention sweep.

The expiry sweep does what the retention policy of Elastic's latest transform does
(``threatq.ioc_expired_at`` in the past → the IOC leaves the active index), as an explicit,
counted step: counts by ``threatq.ioc_expiration_reason`` first, then deletes. Deletes are
optimistic (``if_seq_no``/``if_primary_term`` of the version that was seen expired), so a
concurrent load that rewrote an IOC meanwhile wins: the delete answers 409, the document is
re-checked in the next pass, and it is deleted only if it is still expired. Passes repeat until
nothing matches or ``max_passes`` is reached.

Two ways to delete a batch, by what the cluster has (:mod:`.cluster`): where it has
``_delete_by_query``, one request per batch deletes on the cluster; elsewhere (Elastic's minimal
test distribution) one bulk request of optimistic deletes. A plain by-query delete of "everything
expired" would NOT be safe with tombstones: it deletes what *its own* read finds, which can be a
copy a concurrent load wrote after the batch was tombstoned (still expired, a newer version, so
its tombstone would be missing and a replay of that version would come back), or an IOC whose
tombstone failed. So the by-query delete is pinned to the batch: its query matches each id only
at the ``_seq_no`` that was tombstoned (``ids`` and ``term _seq_no`` per document, and the expired
range), and the delete itself is conditional on the sequence number its read saw
(``conflicts=proceed`` counts a copy rewritten in between as a conflict). Either way exactly the
copies that were tombstoned can go, and nothing else.

Before a batch is deleted, each IOC gets a tombstone (:mod:`.tombstones`, reason ``expired``) at
the external version it was seen with; an IOC whose tombstone could not be written is not
deleted (it stays, is counted in ``remaining`` and retried by the next sweep), so nothing leaves
the active index without a tombstone, and no replay of an older stage file brings it back. A
tombstone written for a delete that then lost to a concurrent newer load is harmless: it blocks
only versions at or below the one that was swept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any

from threatq_provider.coerce import format_iso_millis, parse_duration, to_utc
from threatq_provider.elasticsearch.cluster import Cluster, cluster
from threatq_provider.elasticsearch.names import (
    ACTIVE_ALIAS,
    HISTORY_DATA_STREAM_NAMESPACE,
    HISTORY_PREFIX,
    TOMBSTONE_INDEX,
)
from threatq_provider.elasticsearch.templates import ensure_tombstone_index
from threatq_provider.elasticsearch.tombstones import REASON_EXPIRED, Tombstone, prune_tombstones, write_tombstones

log = logging.getLogger(__name__)

EXPIRED_FIELD = "threatq.ioc_expired_at"
REASON_FIELD = "threatq.ioc_expiration_reason"
NO_REASON = "(none)"


def expired_query(now: datetime) -> dict[str, Any]:
    """Query for IOCs whose ``threatq.ioc_expired_at`` is at or before ``now``."""
    return {"range": {EXPIRED_FIELD: {"lte": format_iso_millis(now)}}}


def count_by_reason(client: Any, index: str, now: datetime) -> tuple[int, dict[str, int]]:
    """How many IOCs are expired at ``now``, and how many per expiration reason.

    :return: ``(matched, {reason: count})``; documents without a reason count under ``(none)``.
    """
    resp = client.search(index=index, body={
        "size": 0, "track_total_hits": True, "query": expired_query(now),
        "aggs": {"by_reason": {"terms": {"field": REASON_FIELD, "size": 100, "missing": NO_REASON}}},
    })
    buckets = resp["aggregations"]["by_reason"]["buckets"]
    return resp["hits"]["total"]["value"], {b["key"]: b["doc_count"] for b in buckets}


def _batches(hits: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while batch := list(islice(hits, size)):
        yield batch


def _tombstones_for(client: Any, tombstone_index: str | None,
                    batch: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int, int]:
    """Tombstone a batch before it is deleted; return what may be deleted, written and failed counts."""
    if tombstone_index is None:
        return batch, 0, 0
    stones = [Tombstone(h["_id"], h["_version"], REASON_EXPIRED,
                        ((h.get("_source") or {}).get("threatq") or {}).get("ioc_expired_at")) for h in batch]
    covered, failed = write_tombstones(client, tombstone_index, stones)
    return [h for h in batch if h["_id"] in covered], len(covered), failed


#: Most documents per pinned by-query delete: two clauses each stay under the default
#: ``indices.query.bool.max_clause_count`` (1,024 on OpenSearch).
BY_QUERY_BATCH = 500


def pinned_query(now: datetime, hits: list[dict[str, Any]]) -> dict[str, Any]:
    """Expired, and each document only at the sequence number it was read (and tombstoned) with."""
    return {"bool": {
        "filter": [expired_query(now)],
        "should": [{"bool": {"filter": [{"ids": {"values": [h["_id"]]}}, {"term": {"_seq_no": h["_seq_no"]}}]}}
                   for h in hits],
        "minimum_should_match": 1,
    }}


def _delete_by_bulk(target: Cluster, deletable: list[dict[str, Any]], out: dict[str, int]) -> None:
    actions = [{"_op_type": "delete", "_index": h["_index"], "_id": h["_id"],
                "if_seq_no": h["_seq_no"], "if_primary_term": h["_primary_term"]} for h in deletable]
    for ok, result in target.helpers.streaming_bulk(target.client, actions, chunk_size=max(1, len(actions)),
                                                    raise_on_error=False, max_retries=5, initial_backoff=1.0):
        item = result["delete"]
        if ok:
            out["deleted"] += 1
        elif item.get("status") in (404, 409):
            out["conflicts"] += 1  # gone or rewritten meanwhile; the next pass re-checks it
        else:
            log.warning("sweep: delete of %s failed: %s", item.get("_id"), item.get("error"))


def _delete_by_query(target: Cluster, now: datetime, deletable: list[dict[str, Any]], out: dict[str, int]) -> None:
    by_index: dict[str, list[dict[str, Any]]] = {}
    for hit in deletable:  # _seq_no is per shard of one index: pin within each concrete index
        by_index.setdefault(hit["_index"], []).append(hit)
    for index, hits in by_index.items():
        for start in range(0, len(hits), BY_QUERY_BATCH):
            part = hits[start:start + BY_QUERY_BATCH]
            resp = target.client.delete_by_query(index=index, body={"query": pinned_query(now, part)},
                                                 conflicts="proceed", scroll_size=len(part))
            out["deleted"] += int(resp.get("deleted", 0))
            # Rewritten between our read and the request's (no longer at that _seq_no: no match), or
            # between its read and its delete (a version conflict): the next pass re-checks it.
            out["conflicts"] += len(part) - int(resp.get("deleted", 0))
            for failure in resp.get("failures") or []:
                log.warning("sweep: delete by query in %s: %s", index, failure)


def _delete_pass(client: Any, index: str, now: datetime, batch_size: int,
                 tombstone_index: str | None) -> dict[str, int]:
    """Tombstone, then delete, what is expired now, each at the sequence number it was seen with."""
    target = cluster(client)
    hits = target.helpers.scan(client, index=index, query={"query": expired_query(now)}, size=batch_size,
                               _source=[EXPIRED_FIELD], seq_no_primary_term=True, version=True)
    out = {"deleted": 0, "conflicts": 0, "tombstones": 0, "tombstone_failures": 0}
    by_query = target.capabilities.delete_by_query
    for batch in _batches(hits, batch_size):
        deletable, written, failed = _tombstones_for(client, tombstone_index, batch)
        out["tombstones"] += written
        out["tombstone_failures"] += failed
        if deletable:
            (_delete_by_query(target, now, deletable, out) if by_query else _delete_by_bulk(target, deletable, out))
    return out


def sweep_expired(client: Any, *, now: datetime, index: str = ACTIVE_ALIAS, dry_run: bool = False,
                  max_passes: int = 5, batch_size: int = 1000,
                  tombstone_index: str | None = TOMBSTONE_INDEX) -> dict[str, Any]:
    """Remove from the active index every IOC whose ``threatq.ioc_expired_at`` is at or before ``now``.

    :param client: a client of either library (:mod:`.cluster`).
    :param now: the sweep's clock (the DAG passes the data interval end).
    :param index: active index or alias.
    :param dry_run: count only, delete nothing.
    :param max_passes: bound on delete-and-re-check passes under concurrent writes.
    :param batch_size: documents per scroll page and per delete bulk.
    :param tombstone_index: where each removed IOC's tombstone goes (created if missing); ``None``
        writes none (replays could then bring swept IOCs back).
    :return: ``{"matched", "deleted", "by_reason", "conflicts", "remaining", "passes", "dry_run",
        "now", "tombstones", "tombstone_failures", "delete_path"}`` (``delete_path``:
        ``"delete_by_query"`` or ``"bulk"``, by the cluster's capabilities).
    """
    target = cluster(client)
    client = target.client
    result: dict[str, Any] = {"now": format_iso_millis(now), "matched": 0, "deleted": 0, "by_reason": {},
                              "conflicts": 0, "remaining": 0, "passes": 0, "dry_run": dry_run,
                              "tombstones": 0, "tombstone_failures": 0,
                              "delete_path": "delete_by_query" if target.capabilities.delete_by_query else "bulk"}
    try:
        client.indices.refresh(index=index)  # count what the last load wrote, not the last refresh
    except target.api_error as exc:
        if target.status(exc) != 404:
            raise
        log.warning("sweep: index %s does not exist yet (nothing loaded); nothing to sweep", index)
        return result
    matched, by_reason = count_by_reason(client, index, now)
    result.update(matched=matched, by_reason=by_reason, remaining=matched)
    if dry_run or matched == 0:
        return result
    if tombstone_index is not None:
        ensure_tombstone_index(client, tombstone_index)
    for _ in range(max_passes):
        for key, value in _delete_pass(client, index, now, batch_size, tombstone_index).items():
            result[key] += value
        result["passes"] += 1
        client.indices.refresh(index=index)
        result["remaining"] = client.count(index=index, body={"query": expired_query(now)})["count"]
        if result["remaining"] == 0:
            break
    if result["remaining"]:
        log.warning("sweep: %d expired IOCs remain after %d passes (concurrent writes, or %d tombstones "
                    "not written)", result["remaining"], result["passes"], result["tombstone_failures"])
    log.info("sweep: %s", result)
    return result


def _creation_dates(client: Any, indices: list[str]) -> dict[str, datetime]:
    if not indices:
        return {}
    resp = client.indices.get_settings(index=",".join(indices), name="index.creation_date")
    return {name: datetime.fromtimestamp(int(body["settings"]["index"]["creation_date"]) / 1000, timezone.utc)
            for name, body in resp.items()}


def _sweep_history_stream(client: Any, stream: str, now: datetime, cutoff: datetime, rollover_every: timedelta,
                          dry_run: bool) -> dict[str, Any]:
    """Roll the history data stream over when its write index is ``rollover_every`` old, and delete
    the backing indices whose newest document is older than ``cutoff``.

    A backing index stops receiving documents when the next one is created, so that creation time
    bounds its content. The write index is never deleted.
    """
    target = cluster(client)
    try:
        streams = client.indices.get_data_stream(name=stream)["data_streams"]
    except target.api_error as exc:
        if target.status(exc) != 404:
            raise
        return {"data_stream": stream, "rolled_over": False, "deleted": [], "kept": 0}
    backing = [i["index_name"] for i in streams[0]["indices"]]
    created = _creation_dates(client, backing)
    backing.sort(key=lambda name: created[name])
    rolled_over = now - created[backing[-1]] >= rollover_every
    if rolled_over and not dry_run:
        client.indices.rollover(alias=stream)
        backing = [i["index_name"] for i in client.indices.get_data_stream(name=stream)["data_streams"][0]["indices"]]
        created = _creation_dates(client, backing)
        backing.sort(key=lambda name: created[name])
    # Content of backing[i] ends when backing[i + 1] was created; on a dry run, when the rollover
    # would create it: the cluster's clock, as for a real rollover, not the run's.
    ends = [created[nxt] for nxt in backing[1:]] + [datetime.now(timezone.utc) if rolled_over and dry_run else None]
    deleted = [name for name, end in zip(backing, ends, strict=True) if end is not None and end <= cutoff]
    if deleted and not dry_run:
        for start in range(0, len(deleted), 50):  # keep the URL short
            client.indices.delete(index=",".join(deleted[start:start + 50]))
    return {"data_stream": stream, "rolled_over": rolled_over, "deleted": deleted,
            "kept": len(backing) - len(deleted)}


def sweep_history(client: Any, *, now: datetime, retention: str = "5d", dry_run: bool = False,
                  prefix: str = HISTORY_PREFIX, rollover_every: str = "1d") -> dict[str, Any]:
    """Trim the history to ``retention``: daily indices whose whole day is older, and, where the
    cluster has data streams, the history data stream's old backing indices (after a rollover when
    its write index is ``rollover_every`` old).

    Without ILM or ISM (none on the test nodes) this sweep is the data stream's lifecycle: rollover
    by age, then delete by age, as Elastic's ``logs`` ILM policy does. A cluster that has ILM or ISM
    can take both over (docs/capabilities.md); the sweep then finds nothing to do.

    :param client: a client of either library (:mod:`.cluster`).
    :param now: the sweep's clock.
    :param retention: how long history is kept, e.g. ``"5d"`` (Elastic's ILM default).
    :param dry_run: list only, delete (and roll over) nothing.
    :param prefix: history prefix (daily indices ``<prefix>YYYY.MM.DD``, data stream ``<prefix>default``).
    :param rollover_every: age of the data stream's write index that triggers a rollover.
    :return: ``{"cutoff", "retention", "deleted_indices", "kept_indices", "dry_run", "data_stream",
        "rolled_over"}`` (``data_stream`` is ``None`` on clusters without data streams).
    """
    now = to_utc(now)
    # Zero would delete every history index, today's included: not a retention.
    cutoff = now - parse_duration(retention, "retention")
    target = cluster(client)
    client = target.client
    try:
        names = sorted(client.indices.get_alias(index=prefix + "*", expand_wildcards="open,closed"))
    except target.api_error as exc:
        if target.status(exc) != 404:
            raise
        names = []
    expired, kept = [], []
    for name in names:
        try:
            day = datetime.strptime(name[len(prefix):], "%Y.%m.%d").replace(tzinfo=timezone.utc)
        except ValueError:
            continue  # not one of ours (or a backing index of the data stream)
        (expired if day + timedelta(days=1) <= cutoff else kept).append(name)
    if expired and not dry_run:
        for start in range(0, len(expired), 50):  # keep the URL short
            client.indices.delete(index=",".join(expired[start:start + 50]))
    stream: dict[str, Any] = {"data_stream": None, "rolled_over": False, "deleted": [], "kept": 0}
    if target.capabilities.data_streams:
        stream = _sweep_history_stream(client, prefix + HISTORY_DATA_STREAM_NAMESPACE, now, cutoff,
                                       parse_duration(rollover_every, "rollover_every"), dry_run)
    log.info("history sweep (cutoff %s): %d deleted, %d kept; data stream %s%s", format_iso_millis(cutoff),
             len(expired) + len(stream["deleted"]), len(kept) + stream["kept"], stream["data_stream"],
             " rolled over" if stream["rolled_over"] else "")
    return {"cutoff": format_iso_millis(cutoff), "retention": retention, "deleted_indices": expired + stream["deleted"],
            "kept_indices": len(kept) + stream["kept"], "dry_run": dry_run, "data_stream": stream["data_stream"],
            "rolled_over": stream["rolled_over"]}


def sweep_tombstones(client: Any, *, now: datetime, retention: str = "30d", dry_run: bool = False,
                     index: str = TOMBSTONE_INDEX) -> dict[str, Any]:
    """Prune tombstones written more than ``retention`` before ``now``.

    A tombstone must outlive every stage file that could be replayed (``threatq_stage_retention``,
    7 days by default): keep ``retention`` longer than that.

    :param client: a client of either library (:mod:`.cluster`).
    :param now: the clock (the operator passes the current time: tombstones age in real time).
    :param retention: how long tombstones are kept, e.g. ``"30d"``.
    :param dry_run: count only, delete nothing.
    :param index: the tombstone index (missing: nothing to prune).
    :return: ``{"cutoff", "retention", "pruned", "dry_run"}`` (``pruned`` counts what a dry run
        would delete).
    """
    # Zero would drop every tombstone at once, and with them the guard against replays.
    cutoff = to_utc(now) - parse_duration(retention, "tombstone_retention")
    if dry_run:
        try:
            query = {"range": {"deleted_at": {"lt": format_iso_millis(cutoff)}}}
            pruned = client.count(index=index, body={"query": query})["count"]
        except cluster(client).api_error as exc:
            if cluster(client).status(exc) != 404:
                raise
            pruned = 0
    else:
        pruned = prune_tombstones(client, index, before=cutoff)
    log.info("tombstone prune (cutoff %s): %d %s", format_iso_millis(cutoff), pruned,
             "would go" if dry_run else "deleted")
    return {"cutoff": format_iso_millis(cutoff), "retention": retention, "pruned": pruned, "dry_run": dry_run}
