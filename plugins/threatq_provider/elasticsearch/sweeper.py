"""IOC expiry sweep of the active index, and the history retention sweep.

The expiry sweep does what the retention policy of Elastic's latest transform does
(``threatq.ioc_expired_at`` in the past → the IOC leaves the active index), as an explicit,
counted step: counts by ``threatq.ioc_expiration_reason`` first, then deletes. Deletes are
optimistic (``if_seq_no``/``if_primary_term`` of the version that was seen expired), so a
concurrent load that rewrote an IOC meanwhile wins: the delete answers 409, the document is
re-checked in the next pass, and it is deleted only if it is still expired. Passes repeat until
nothing matches or ``max_passes`` is reached. (This is ``delete_by_query`` with
``conflicts=proceed`` plus a re-check, done client-side so it also runs on clusters without
the reindex module, such as Elastic's minimal test distribution.)

Before a batch is deleted, each IOC gets a tombstone (:mod:`.tombstones`, reason ``expired``) at
the external version it was seen with; an IOC whose tombstone could not be written is not
deleted (it stays, is counted in ``remaining`` and retried by the next sweep), so nothing leaves
the active index without a tombstone, and no replay of an older stage file brings it back. A
tombstone written for a delete that then lost to a concurrent newer load is harmless: it blocks
only versions at or below the one that was swept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError, helpers

from threatq_provider.elasticsearch.names import ACTIVE_ALIAS, HISTORY_PREFIX, TOMBSTONE_INDEX
from threatq_provider.elasticsearch.templates import ensure_tombstone_index
from threatq_provider.elasticsearch.tombstones import REASON_EXPIRED, Tombstone, prune_tombstones, write_tombstones

log = logging.getLogger(__name__)

EXPIRED_FIELD = "threatq.ioc_expired_at"
REASON_FIELD = "threatq.ioc_expiration_reason"
NO_REASON = "(none)"
_DURATION = re.compile(r"^\s*(\d+)\s*([dhms])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """``"5d"``, ``"12h"``, ``"30m"``, ``"90s"`` → timedelta.

    :param text: a number and one unit letter.
    :return: the duration.
    :raises ValueError: any other form.
    """
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"duration {text!r}: use a number and one of d, h, m, s (e.g. 5d)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def expired_query(now: datetime) -> dict[str, Any]:
    """Query for IOCs whose ``threatq.ioc_expired_at`` is at or before ``now``."""
    return {"range": {EXPIRED_FIELD: {"lte": _iso(now)}}}


def count_by_reason(client: Elasticsearch, index: str, now: datetime) -> tuple[int, dict[str, int]]:
    """How many IOCs are expired at ``now``, and how many per expiration reason.

    :return: ``(matched, {reason: count})``; documents without a reason count under ``(none)``.
    """
    resp = client.search(
        index=index, size=0, track_total_hits=True, query=expired_query(now),
        aggs={"by_reason": {"terms": {"field": REASON_FIELD, "size": 100, "missing": NO_REASON}}},
    )
    buckets = resp["aggregations"]["by_reason"]["buckets"]
    return resp["hits"]["total"]["value"], {b["key"]: b["doc_count"] for b in buckets}


def _batches(hits: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while batch := list(islice(hits, size)):
        yield batch


def _tombstones_for(client: Elasticsearch, tombstone_index: str | None,
                    batch: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int, int]:
    """Tombstone a batch before it is deleted; return what may be deleted, written and failed counts."""
    if tombstone_index is None:
        return batch, 0, 0
    stones = [Tombstone(h["_id"], h["_version"], REASON_EXPIRED,
                        ((h.get("_source") or {}).get("threatq") or {}).get("ioc_expired_at")) for h in batch]
    covered, failed = write_tombstones(client, tombstone_index, stones)
    return [h for h in batch if h["_id"] in covered], len(covered), failed


def _delete_pass(client: Elasticsearch, index: str, now: datetime, batch_size: int,
                 tombstone_index: str | None) -> dict[str, int]:
    """Tombstone, then delete, what is expired now, each at the sequence number it was seen with."""
    hits = helpers.scan(client, index=index, query={"query": expired_query(now)}, size=batch_size,
                        _source=[EXPIRED_FIELD], seq_no_primary_term=True, version=True)
    out = {"deleted": 0, "conflicts": 0, "tombstones": 0, "tombstone_failures": 0}
    for batch in _batches(hits, batch_size):
        deletable, written, failed = _tombstones_for(client, tombstone_index, batch)
        out["tombstones"] += written
        out["tombstone_failures"] += failed
        actions = [{"_op_type": "delete", "_index": h["_index"], "_id": h["_id"],
                    "if_seq_no": h["_seq_no"], "if_primary_term": h["_primary_term"]} for h in deletable]
        for ok, result in helpers.streaming_bulk(client, actions, chunk_size=batch_size, raise_on_error=False,
                                                 max_retries=5, initial_backoff=1.0):
            item = result["delete"]
            if ok:
                out["deleted"] += 1
            elif item.get("status") in (404, 409):
                out["conflicts"] += 1  # gone or rewritten meanwhile; the next pass re-checks it
            else:
                log.warning("sweep: delete of %s failed: %s", item.get("_id"), item.get("error"))
    return out


def sweep_expired(client: Elasticsearch, *, now: datetime, index: str = ACTIVE_ALIAS, dry_run: bool = False,
                  max_passes: int = 5, batch_size: int = 1000,
                  tombstone_index: str | None = TOMBSTONE_INDEX) -> dict[str, Any]:
    """Remove from the active index every IOC whose ``threatq.ioc_expired_at`` is at or before ``now``.

    :param client: an Elasticsearch client.
    :param now: the sweep's clock (the DAG passes the data interval end).
    :param index: active index or alias.
    :param dry_run: count only, delete nothing.
    :param max_passes: bound on delete-and-re-check passes under concurrent writes.
    :param batch_size: documents per scroll page and per delete bulk.
    :param tombstone_index: where each removed IOC's tombstone goes (created if missing); ``None``
        writes none (replays could then bring swept IOCs back).
    :return: ``{"matched", "deleted", "by_reason", "conflicts", "remaining", "passes", "dry_run",
        "now", "tombstones", "tombstone_failures"}``.
    """
    result: dict[str, Any] = {"now": _iso(now), "matched": 0, "deleted": 0, "by_reason": {},
                              "conflicts": 0, "remaining": 0, "passes": 0, "dry_run": dry_run,
                              "tombstones": 0, "tombstone_failures": 0}
    try:
        client.indices.refresh(index=index)  # count what the last load wrote, not the last refresh
    except NotFoundError:
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
        result["remaining"] = client.count(index=index, query=expired_query(now))["count"]
        if result["remaining"] == 0:
            break
    if result["remaining"]:
        log.warning("sweep: %d expired IOCs remain after %d passes (concurrent writes, or %d tombstones "
                    "not written)", result["remaining"], result["passes"], result["tombstone_failures"])
    log.info("sweep: %s", result)
    return result


def sweep_history(client: Elasticsearch, *, now: datetime, retention: str = "5d", dry_run: bool = False,
                  prefix: str = HISTORY_PREFIX) -> dict[str, Any]:
    """Delete daily history indices whose whole day is older than ``retention``.

    :param client: an Elasticsearch client.
    :param now: the sweep's clock.
    :param retention: how long history is kept, e.g. ``"5d"`` (Elastic's ILM default).
    :param dry_run: list only, delete nothing.
    :param prefix: history index prefix (``<prefix>YYYY.MM.DD``).
    :return: ``{"cutoff", "retention", "deleted_indices", "kept_indices", "dry_run"}``.
    """
    cutoff = (now if now.tzinfo else now.replace(tzinfo=timezone.utc)) - parse_duration(retention)
    try:
        names = sorted(client.indices.get_alias(index=prefix + "*", expand_wildcards="open,closed"))
    except NotFoundError:
        names = []
    expired, kept = [], []
    for name in names:
        try:
            day = datetime.strptime(name[len(prefix):], "%Y.%m.%d").replace(tzinfo=timezone.utc)
        except ValueError:
            continue  # not one of ours
        (expired if day + timedelta(days=1) <= cutoff else kept).append(name)
    if expired and not dry_run:
        for start in range(0, len(expired), 50):  # keep the URL short
            client.indices.delete(index=",".join(expired[start:start + 50]))
    log.info("history sweep (cutoff %s): %d deleted, %d kept", _iso(cutoff), len(expired), len(kept))
    return {"cutoff": _iso(cutoff), "retention": retention, "deleted_indices": expired,
            "kept_indices": len(kept), "dry_run": dry_run}


def sweep_tombstones(client: Elasticsearch, *, now: datetime, retention: str = "30d", dry_run: bool = False,
                     index: str = TOMBSTONE_INDEX) -> dict[str, Any]:
    """Prune tombstones written more than ``retention`` before ``now``.

    A tombstone must outlive every stage file that could be replayed (``threatq_stage_retention``,
    7 days by default): keep ``retention`` longer than that.

    :param client: an Elasticsearch client.
    :param now: the clock (the operator passes the current time: tombstones age in real time).
    :param retention: how long tombstones are kept, e.g. ``"30d"``.
    :param dry_run: count only, delete nothing.
    :param index: the tombstone index (missing: nothing to prune).
    :return: ``{"cutoff", "retention", "pruned", "dry_run"}`` (``pruned`` counts what a dry run
        would delete).
    """
    cutoff = (now if now.tzinfo else now.replace(tzinfo=timezone.utc)) - parse_duration(retention)
    if dry_run:
        try:
            pruned = client.count(index=index, query={"range": {"deleted_at": {"lt": _iso(cutoff)}}})["count"]
        except NotFoundError:
            pruned = 0
    else:
        pruned = prune_tombstones(client, index, before=cutoff)
    log.info("tombstone prune (cutoff %s): %d %s", _iso(cutoff), pruned, "would go" if dry_run else "deleted")
    return {"cutoff": _iso(cutoff), "retention": retention, "pruned": pruned, "dry_run": dry_run}
