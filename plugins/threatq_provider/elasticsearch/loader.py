"""Idempotent bulk loader: ECS NDJSON → the active-IOC index and the append-only history.

Per document (one NDJSON line from the ECS transform) two bulk actions are sent, in requests
bounded by bytes and by count, a few requests in flight at once (``max_in_flight``), 429 retried
with exponential backoff:

- active index (alias): ``index`` with ``_id`` = ``threatq.id`` and ``version_type=external``.
  The version (:mod:`.versioning`) is ``updated_at`` in seconds (major) joined with the time the
  poll read ThreatQ (``observed_at``, minor). Elasticsearch keeps the highest version, so a copy
  with an older ``updated_at`` never overwrites a newer one; with the same ``updated_at`` the copy
  a later poll read wins (two edits in one second; the same rows re-read after a change of
  transform options or mapping: re-mapping takes effect). A copy not above the stored version
  answers 409, counted as ``skipped_stale`` (not an error): a replay of the same stage file, or an
  older copy.
- tombstones: before each chunk is sent, its ids are looked up in the tombstone index
  (:mod:`.tombstones`, one ``mget``). A copy at or below the version at which the sweep (or
  another removal) took that IOC out of the active index is not written there and counts as
  ``skipped_deleted``: replaying an old run's load never brings back a swept IOC, however long
  after the sweep (Elasticsearch itself forgets a delete after ``index.gc_deletes``, 60 s).
- status policy: a copy the transform ended by the status policy (its status is outside the
  detection statuses, ``threatq.ioc_expiration_reason`` = ``REASON_STATUS_POLICY``; issue 12) is
  not written to the active index. It gets a tombstone (reason ``status_policy``) at its version,
  and any older copy there is deleted at that version (``delete`` with the external version), so
  the IOC leaves the active index on this load, not at the next sweep. Counted in
  ``withheld_by_reason`` (every such copy) and ``removed_by_reason`` (those that were in the active
  index). When its status returns into the policy, ThreatQ's new ``updated_at`` (or a later poll)
  gives a higher version than the tombstone's, and the copy is written again.
- history: ``create`` with ``_id`` = ``"<id>-<version>"`` into the history data stream
  ``<history_prefix>default`` where the cluster has data streams (:mod:`.cluster`; the template
  makes it one), else into the daily index ``<history_prefix>YYYY.MM.DD`` of the load's day
  (``history_date``; the operator passes the run's ``data_interval_end``, so a retried task writes
  to the same index); 409 means that version is already there (``history_existing``). The
  history copy says ``labels.is_ioc_transform_source: "true"``
  (:func:`history_line`), so detection rules skip it. Every version read goes to the history, also the
  ``skipped_stale`` and ``skipped_deleted`` ones (it records what ThreatQ said, not what the
  active index kept). One index per load day, as Elastic's ILM deletes source data by ingest age;
  routing by the version's own day would create one index per day of a backfill.

Versions that cannot be true are rejected before Elasticsearch sees them: ``@timestamp`` that is
not a time (``invalid_timestamp``), at or before 1970-01-01T00:00:00Z (``timestamp_before_1970``),
or more than ``max_future_skew`` (default one day) after the load's clock (``timestamp_in_future``:
every row was read before the load, so only a wrong date or a clock far ahead lies there, and an
``updated_at`` of 9999-12-31 would otherwise win over every later edit of that indicator). A
document the transform flagged as undated (no usable ``updated_at``; its ``@timestamp`` is the
run's time) is versioned with ``updated_at`` 0, so any dated copy replaces it.

The raw line is sent as the document body (no re-serialisation): the loader parses each line
only to read the id, the timestamp and the transform's error marks. Any other per-document
failure goes to the dead-letter NDJSON (``{"index", "id", "status", "reason", "document"}``,
``index`` naming the active or the history index that refused it) and is counted by error type:
``rejected`` for the active index, ``history_rejected`` for the history. The reject threshold
counts *documents* (``rejected_documents``): a line refused by either index, or by both, counts
once, so a history index that refuses writes (a closed or write-blocked index, a mapping
conflict) fails the load like an active-index reject does instead of losing the history silently.

One contract for both targets: the client is an ``elasticsearch`` or an ``opensearch-py`` client,
called through :mod:`.cluster` (the bulk body, 429 status and helpers of either library).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any, TextIO, overload

import msgspec
import orjson

from threatq_provider.elasticsearch.cluster import Cluster, cluster
from threatq_provider.elasticsearch.errors import RejectThresholdExceeded
from threatq_provider.elasticsearch.names import (
    ACTIVE_ALIAS,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CHUNK_DOCS,
    DEFAULT_MAX_IN_FLIGHT,
    HISTORY_DATA_STREAM_NAMESPACE,
    HISTORY_PREFIX,
    TOMBSTONE_INDEX,
)
from threatq_provider.ecs.expiry import REASON_STATUS_POLICY
from threatq_provider.elasticsearch.tombstones import (
    REASON_STATUS_POLICY as TOMBSTONE_STATUS_POLICY,
)
from threatq_provider.elasticsearch.tombstones import (
    Tombstone,
    tombstone_versions,
    write_tombstones,
)
from threatq_provider.elasticsearch.versioning import (
    UndatedVersionError,
    external_version,
    observed_part,
    parse_timestamp,
    updated_part,
)

log = logging.getLogger(__name__)

_REASON_CHARS = 500
_ACTIVE_OP = "index"
_HISTORY_OP = "create"
_DELETE_OP = "delete"
#: How far a document's ``updated_at`` may lie after the load's clock (ThreatQ's clock ahead of the
#: worker's, a zone written wrong by hours) before it is rejected as ``timestamp_in_future``.
DEFAULT_MAX_FUTURE_SKEW = timedelta(days=1)
#: The line the ECS transform adds to ``error.message`` when an indicator has no usable
#: ``updated_at`` (its ``@timestamp`` is then the run's time, not a ThreatQ version). A unit test
#: transforms such an indicator and checks this text, so the two cannot drift apart.
UNDATED_MESSAGE = "@timestamp: threatq.updated_at missing or unparsable; set to the run's time"


@dataclass
class LoadCounts:
    """What one load did.

    ``skipped_stale`` counts copies the active index already held at the same or a newer version,
    ``skipped_deleted`` copies at or below the version of their tombstone (removed IOCs).
    ``rejected`` counts the active index's rejects by error type (lines that never reached
    Elasticsearch, such as invalid JSON or an impossible ``@timestamp``, included); ``history_rejected`` and
    ``history_rejected_by_type`` the history index's. ``rejected_documents`` counts each line
    refused anywhere once: it is what the reject threshold compares.
    """

    read: int = 0
    indexed: int = 0
    updated: int = 0
    skipped_stale: int = 0
    skipped_deleted: int = 0
    withheld_by_reason: Counter[str] = field(default_factory=Counter)
    removed_by_reason: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    history_written: int = 0
    history_existing: int = 0
    history_rejected: int = 0
    history_rejected_by_type: Counter[str] = field(default_factory=Counter)
    rejected_documents: int = 0
    dead_lettered: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-able counts (the operator's XCom).

        :return: every counter; ``rejected`` and ``history_rejected_by_type`` as plain dicts
            error type → count.
        """
        return {
            "read": self.read,
            "indexed": self.indexed,
            "updated": self.updated,
            "skipped_stale": self.skipped_stale,
            "skipped_deleted": self.skipped_deleted,
            "withheld_by_reason": dict(sorted(self.withheld_by_reason.items())),
            "removed_by_reason": dict(sorted(self.removed_by_reason.items())),
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": self.rejected_total,
            "history_written": self.history_written,
            "history_existing": self.history_existing,
            "history_rejected": self.history_rejected,
            "history_rejected_by_type": dict(sorted(self.history_rejected_by_type.items())),
            "rejected_documents": self.rejected_documents,
            "dead_lettered": self.dead_lettered,
        }


def document_version(doc: dict[str, Any], *, observed: int, clock: datetime,
                     max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW) -> int:
    """External version of one ECS document (see :mod:`.versioning`).

    :param doc: the parsed ECS document.
    :param observed: the minor part, :func:`~.versioning.observed_part` of the poll's time.
    :param clock: the load's clock (now): ``updated_at`` may not lie more than
        ``max_future_skew`` after it.
    :param max_future_skew: tolerated lead of ThreatQ's clock over ``clock``.
    :return: the version; ``updated_at`` part 0 for a document the transform flagged undated.
    :raises UndatedVersionError: ``invalid_timestamp``, ``timestamp_before_1970`` or
        ``timestamp_in_future`` (its ``kind``), with a message for the dead letter.
    """
    error = doc.get("error")
    messages = error.get("message") if isinstance(error, dict) else None
    if isinstance(messages, list) and UNDATED_MESSAGE in messages:
        return external_version(0, observed)
    updated = updated_part(parse_timestamp(doc.get("@timestamp")), clock=clock, max_skew=max_future_skew)
    return external_version(updated, observed)


def history_suffix(day: datetime | None = None) -> str:
    """``YYYY.MM.DD`` of ``day`` in UTC (default today): the daily history index suffix."""
    day = day or datetime.now(timezone.utc)
    if day.tzinfo is not None:
        day = day.astimezone(timezone.utc)
    return day.strftime("%Y.%m.%d")


class _DeadLetter:
    """Writes rejected documents as NDJSON and counts them.

    A record of a cluster's refusal names the index that refused the document: the history index
    or data stream the action named, and for the active alias its write index, looked up once on
    the first refusal (bulk answers leave the index out: see :data:`_FILTER_PATH`)."""

    def __init__(self, sink: TextIO | None, counts: LoadCounts, client: Any = None,
                 alias: str | None = None) -> None:
        self.sink = sink
        self.counts = counts
        self._client = client
        self._alias = alias
        self._write_index: str | None = None

    def _concrete(self, index: str | None) -> str | None:
        if index is None or index != self._alias or self._client is None:
            return index
        if self._write_index is None:
            self._write_index = index
            try:
                found = self._client.indices.get_alias(name=index)
            except Exception:  # noqa: BLE001 - a concrete index, or no answer: the name as sent
                return index
            owners = [name for name, spec in dict(found).items()
                      if len(found) == 1 or (spec.get("aliases", {}).get(index) or {}).get("is_write_index")]
            if len(owners) == 1:
                self._write_index = owners[0]
        return self._write_index

    def write(self, index: str | None, doc_id: str | None, status: int | None, reason: str,
              line: str | bytes) -> None:
        self.counts.dead_lettered += 1
        if self.sink is None:
            return
        if status is not None:  # refused by the cluster (a line refused before names what it was for)
            index = self._concrete(index)
        try:
            document: Any = json.loads(line)
        except ValueError:  # not JSON, or not UTF-8: kept as text, undecodable bytes replaced
            document = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        record = {"index": index, "id": doc_id, "status": status, "reason": reason[:_REASON_CHARS],
                  "document": document}
        self.sink.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


@dataclass(slots=True)
class _Pending:
    """One line in flight, shared by its active and history actions until both results are back."""

    line: bytes
    doc_id: str = ""
    version: int = 0
    refused: bool = False
    #: why this copy must not be in the active index (a tombstone reason), or None
    withhold: str | None = None


@dataclass(frozen=True, slots=True)
class _Versioning:
    """How this load versions documents: the poll's time as the minor part, the load's clock and
    the skew for the future check."""

    observed: int
    clock: datetime
    max_future_skew: timedelta


def _loads(line: bytes) -> Any:
    """orjson where it can; the standard library for what orjson refuses but Python's JSON allows
    (NaN, a lone surrogate escape), so a line is judged exactly as before the fast path."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


class _ThreatQHead(msgspec.Struct):
    id: Any = msgspec.UNSET
    ioc_expiration_reason: Any = None


class _ErrorHead(msgspec.Struct):
    message: Any = None


class _Head(msgspec.Struct):
    """The only keys the loader reads of an ECS line; the decoder skips the rest unbuilt."""

    threatq: _ThreatQHead | msgspec.UnsetType = msgspec.UNSET
    error: _ErrorHead | msgspec.UnsetType = msgspec.UNSET
    timestamp: Any = msgspec.field(default=msgspec.UNSET, name="@timestamp")


_HEAD = msgspec.json.Decoder(_Head)


def _head(line: bytes) -> Any:
    """What :func:`_parse` reads of a line (``@timestamp``, ``error.message``, ``threatq.id`` and
    ``threatq.ioc_expiration_reason``), as a dict shaped like the document.

    A line of the usual shape is decoded into those keys alone, several times faster than the
    whole document (the line is sent on as it is, so nothing else of it is needed). Any other shape
    (not an object, ``threatq`` or ``error`` not an object, NaN, a lone surrogate in those keys)
    and any line that is not valid JSON or not UTF-8 is parsed whole by :func:`_loads`, so every
    line is judged exactly as a whole parse judges it.
    """
    try:
        line.decode("utf-8")  # the decoder does not check the UTF-8 of the strings it skips
        head = _HEAD.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _loads(line)
    if any(type(v) is int and not -(2**63) <= v < 2**64 for v in (head.timestamp, head.threatq and head.threatq.id)):
        return _loads(line)  # an integer beyond 64 bits: an int here, a float in orjson (the whole parse)
    doc: dict[str, Any] = {}
    if head.timestamp is not msgspec.UNSET:
        doc["@timestamp"] = head.timestamp
    if head.error is not msgspec.UNSET:
        doc["error"] = {"message": head.error.message}
    if head.threatq is not msgspec.UNSET:
        tq = doc["threatq"] = {"ioc_expiration_reason": head.threatq.ioc_expiration_reason}
        if head.threatq.id is not msgspec.UNSET:
            tq["id"] = head.threatq.id
    return doc


def _parse(lines: Iterable[str | bytes], *, active_index: str, versioning: _Versioning, counts: LoadCounts,
           dead: _DeadLetter, id_prefix: str = "") -> Iterator[_Pending]:
    """NDJSON lines → entries with id and version; lines that cannot be versioned go to the dead letter.

    The ``_id`` is ``id_prefix`` + ``threatq.id`` (the prefix names a ThreatQ instance: ``partner:``)."""
    for raw in lines:
        line = (raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw).strip()
        if not line:
            continue
        counts.read += 1
        try:
            doc = _head(line)
            doc_id = id_prefix + str(doc["threatq"]["id"])
        except ValueError:  # UnicodeDecodeError (not UTF-8) is a ValueError too
            counts.rejected["invalid_json"] += 1
            counts.rejected_documents += 1
            dead.write(active_index, None, None, "invalid_json: line is not a JSON object", line)
            continue
        except (KeyError, TypeError):
            counts.rejected["missing_threatq_id"] += 1
            counts.rejected_documents += 1
            dead.write(active_index, None, None, "missing_threatq_id: no threatq.id to derive _id from", line)
            continue
        try:
            version = document_version(doc, observed=versioning.observed, clock=versioning.clock,
                                       max_future_skew=versioning.max_future_skew)
        except UndatedVersionError as exc:
            counts.rejected[exc.kind] += 1
            counts.rejected_documents += 1
            dead.write(active_index, doc_id, None, f"{exc.kind}: {exc}; @timestamp is the version", line)
            continue
        tq = doc.get("threatq") if isinstance(doc, dict) else None
        policy = isinstance(tq, dict) and tq.get("ioc_expiration_reason") == REASON_STATUS_POLICY
        yield _Pending(line, doc_id, version, withhold=TOMBSTONE_STATUS_POLICY if policy else None)


@dataclass(slots=True)
class _Request:
    """One bulk request: its NDJSON body, each action's place in it (for retries) and what the
    action was (op type, index, ``_id``, the line's entry), in body order: Elasticsearch answers
    items in that order, so results are matched by position."""

    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    body: bytes = b""
    spans: list[tuple[int, int]] = field(default_factory=list)
    actions: list[tuple[str, str, str, _Pending]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    future: Future[list[tuple[str, dict[str, Any]]]] | None = None

    def add(self, op: str, index: str, doc_id: str, entry: _Pending, meta: bytes, source: bytes | None) -> None:
        start = self.size
        self.parts.append(meta)
        self.size += len(meta)
        if source is not None:
            self.parts += (source, b"\n")
            self.size += len(source) + 1
        self.spans.append((start, self.size))
        self.actions.append((op, index, doc_id, entry))
        self.ids.add(entry.doc_id)

    def seal(self) -> _Request:
        """Join the body once (the client sends bytes as they are); the parts go."""
        self.body, self.parts = b"".join(self.parts), []
        return self


class _Meta:
    """Action lines of one load, with the index names encoded once."""

    def __init__(self, active_index: str, history_index: str | None) -> None:
        self.active = b'{"index":{"_index":' + orjson.dumps(active_index) + b',"_id":'
        self.delete = b'{"delete":{"_index":' + orjson.dumps(active_index) + b',"_id":'
        self.history = None if history_index is None else (
            b'{"create":{"_index":' + orjson.dumps(history_index) + b',"_id":')

    @staticmethod
    def versioned(prefix: bytes, doc_id: str, version: int) -> bytes:
        return b"%s%s,\"version\":%d,\"version_type\":\"external\"}}\n" % (prefix, orjson.dumps(doc_id), version)

    @staticmethod
    def plain(prefix: bytes, doc_id: str) -> bytes:
        return b"%s%s}}\n" % (prefix, orjson.dumps(doc_id))


def _requests(entries: Iterator[_Pending], *, client: Any, tombstone_index: str | None, batch: int,
              chunk_bytes: int, active_index: str, history_index: str | None,
              counts: LoadCounts) -> Iterator[_Request]:
    """Entries → bulk requests of at most ``batch`` lines and about ``chunk_bytes`` bytes.

    Each batch's ids are looked up in the tombstone index first (one ``mget``); a copy at or below
    its tombstone's version gets no active-index action. Runs in the caller's thread, so the
    lookups and the status-policy tombstones happen in the order of the file, whatever requests
    are in flight (no request writes tombstones). Both actions of a line share one
    :class:`_Pending`, so a line refused by the active index and by the history counts as one
    rejected document.
    """
    meta = _Meta(active_index, history_index)
    request = _Request()
    while chunk := list(islice(entries, batch)):
        removed = tombstone_versions(client, tombstone_index, (e.doc_id for e in chunk)) if tombstone_index else {}
        covered = _withhold(client, tombstone_index, [e for e in chunk if e.withhold and removed.get(e.doc_id, -1) < e.version])
        for entry in chunk:
            if request.actions and request.size + 2 * len(entry.line) + 512 > chunk_bytes:
                yield request.seal()
                request = _Request()
            doc_id, version = entry.doc_id, entry.version
            if removed.get(doc_id, -1) >= version:
                counts.skipped_deleted += 1
            elif entry.withhold and doc_id in covered:
                counts.withheld_by_reason[entry.withhold] += 1
                request.add(_DELETE_OP, active_index, doc_id, entry, meta.versioned(meta.delete, doc_id, version), None)
            else:
                request.add(_ACTIVE_OP, active_index, doc_id, entry, meta.versioned(meta.active, doc_id, version),
                            entry.line)
            if meta.history is not None and history_index is not None:
                hist_id = f"{doc_id}-{version}"
                request.add(_HISTORY_OP, history_index, hist_id, entry, meta.plain(meta.history, hist_id),
                            history_line(entry.line))
        if request.actions:  # a request never spans two tombstone batches
            yield request.seal()
            request = _Request()


#: Only what the results are read for: Elasticsearch then leaves out ``_index``, ``_id``,
#: ``_version``, ``_shards``, ``_seq_no`` and ``_primary_term`` of every item, most of a response's
#: bytes (decoding them was a third of the load's client time). The dead letter names the index
#: the action named (the active alias's write index is looked up once, on the first refusal).
_FILTER_PATH = "errors,items.*.status,items.*.result,items.*.error"


@dataclass(frozen=True, slots=True)
class _Retry:
    max_retries: int
    initial_backoff: float
    max_backoff: float


def _send(target: Cluster, request: _Request, retry: _Retry) -> list[tuple[str, dict[str, Any]]]:
    """POST one bulk request (in a worker thread); retry what Elasticsearch answered 429.

    As ``helpers.streaming_bulk`` does: items answered 429 are sent again, alone, after a backoff
    doubling from ``initial_backoff`` up to ``max_backoff``, at most ``max_retries`` times; a whole
    request answered 429 likewise; any other error of the request raises.

    :return: ``(op type, result)`` per action, in body order.
    """
    results: list[tuple[str, dict[str, Any]] | None] = [None] * len(request.spans)
    todo = list(range(len(request.spans)))
    payload = request.body
    for attempt in range(retry.max_retries + 1):
        if attempt:
            time.sleep(min(retry.max_backoff, retry.initial_backoff * 2 ** (attempt - 1)))
        try:
            items = target.bulk(payload, filter_path=_FILTER_PATH)
        except target.api_error as exc:
            if target.status(exc) != 429 or attempt == retry.max_retries:
                raise
            continue
        again = []
        for pos, item in zip(todo, items, strict=True):
            op_type, result = next(iter(item.items()))
            if result.get("status") == 429 and attempt < retry.max_retries:
                again.append(pos)
            else:
                results[pos] = (op_type, result)
        if not again:
            break
        todo = again
        payload = b"".join(request.body[a:b] for a, b in (request.spans[p] for p in todo))
    return [r for r in results if r is not None]


def _settle(request: _Request, counts: LoadCounts, dead: _DeadLetter) -> None:
    """Count one answered request and dead-letter its refusals (in the caller's thread)."""
    assert request.future is not None
    for (op, index, doc_id, entry), (_op_type, item) in zip(request.actions, request.future.result(), strict=True):
        status = item.get("status")
        ok = status is not None and 200 <= status < 300
        if op == _DELETE_OP:  # a copy withheld by the status policy: remove any older one
            if ok:
                counts.removed_by_reason[entry.withhold or TOMBSTONE_STATUS_POLICY] += 1
            elif status == 409:
                counts.skipped_stale += 1  # a newer copy is there; it stays
            elif status != 404:  # 404: it was not in the active index
                kind, text = _reason(item)
                counts.rejected[kind] += 1
                if not entry.refused:
                    entry.refused = True
                    counts.rejected_documents += 1
                dead.write(index, doc_id, status, text, entry.line)
            continue
        if not ok and status != 409 and not entry.refused:
            entry.refused = True
            counts.rejected_documents += 1
        if op == _ACTIVE_OP:
            if ok:
                if item.get("result") == "created":
                    counts.indexed += 1
                else:
                    counts.updated += 1
            elif status == 409:
                counts.skipped_stale += 1
            else:
                kind, text = _reason(item)
                counts.rejected[kind] += 1
                dead.write(index, doc_id, status, text, entry.line)
        elif ok:
            counts.history_written += 1
        elif status == 409:
            counts.history_existing += 1
        else:
            kind, text = _reason(item)
            counts.history_rejected += 1
            counts.history_rejected_by_type[kind] += 1
            dead.write(index, doc_id, status, text, entry.line)


def _withhold(client: Any, tombstone_index: str | None, entries: list[_Pending]) -> set[str]:
    """Tombstones for the copies withheld from the active index; the ids now covered.

    Without a tombstone index every id counts as covered (nothing then guards against a replay,
    as documented for ``tombstone_index=None``). An id whose tombstone could not be written is
    not covered: its copy is written as usual (it is expired, so the next sweep removes it)."""
    if not entries:
        return set()
    if tombstone_index is None:
        return {e.doc_id for e in entries}
    stones = [Tombstone(e.doc_id, e.version, e.withhold or TOMBSTONE_STATUS_POLICY) for e in entries]
    covered, _failed = write_tombstones(client, tombstone_index, stones)
    return covered


_ACTIVE_LABEL = '"is_ioc_transform_source":"false"'
_HISTORY_LABEL = '"is_ioc_transform_source":"true"'
_ACTIVE_LABEL_B = _ACTIVE_LABEL.encode()
_HISTORY_LABEL_B = _HISTORY_LABEL.encode()


@overload
def history_line(line: str) -> str: ...
@overload
def history_line(line: bytes) -> bytes: ...
def history_line(line: str | bytes) -> str | bytes:
    """The history copy of an ECS line (str or UTF-8 bytes, returned as given): ``labels.is_ioc_transform_source`` is ``"true"``.

    The transform writes ``"false"``, the value of Elastic's latest (destination) index, as the
    document's last key. The history, like Elastic's raw source data stream, keeps every version,
    expired and superseded ones too, under the ``logs-ti_*`` pattern that Elastic Security's
    indicator-match rules read; they skip it only through ``not
    labels.is_ioc_transform_source:"true"``, and a cluster without ``constant_keyword`` sees only
    the value in the document. The compact line is edited from its end (JSON escapes quotes inside
    strings, so the pattern can only be the key itself); any other shape is parsed and rewritten.
    """
    if isinstance(line, bytes):
        head, found, tail = line.rpartition(_ACTIVE_LABEL_B)
        if found:
            return head + _HISTORY_LABEL_B + tail
        return history_line(line.decode("utf-8", "surrogatepass")).encode("utf-8", "surrogatepass")
    head, found_s, tail_s = line.rpartition(_ACTIVE_LABEL)
    if found_s:
        return head + _HISTORY_LABEL + tail_s
    doc = json.loads(line)
    labels = doc.get("labels") if isinstance(doc.get("labels"), dict) else {}
    doc["labels"] = {**labels, "is_ioc_transform_source": "true"}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _reason(item: dict[str, Any]) -> tuple[str, str]:
    error = item.get("error")
    if isinstance(error, dict):
        kind = str(error.get("type") or "unknown_error")
        cause = error.get("caused_by") or {}
        text = f"{kind}: {error.get('reason', '')}"
        if isinstance(cause, dict) and cause.get("reason"):
            text += f" (caused by {cause.get('type')}: {cause['reason']})"
        return kind, text
    return ("unknown_error", str(error)) if error else (f"http_{item.get('status')}", f"HTTP {item.get('status')}")


def load_ndjson(
    client: Any,
    lines: Iterable[str | bytes],
    *,
    active_index: str = ACTIVE_ALIAS,
    history_prefix: str | None = HISTORY_PREFIX,
    history_date: datetime | None = None,
    observed_at: datetime | None = None,
    tombstone_index: str | None = TOMBSTONE_INDEX,
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
    now: datetime | None = None,
    dead_letter: TextIO | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    chunk_docs: int = DEFAULT_CHUNK_DOCS,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_retries: int = 5,
    initial_backoff: float = 1.0,
    max_backoff: float = 60.0,
    id_prefix: str = "",
) -> LoadCounts:
    """Load ECS NDJSON lines into the active index and the history, idempotently.

    Up to ``max_in_flight`` bulk requests are sent at once (worker threads) while the next one is
    built. Everything that decides what is written (parsing, versions, tombstone look-ups and
    writes) and everything that reads the answers (counts, dead letter) stays in the calling
    thread, in file order; a request that shares an id with one in flight waits for it, so two
    copies of one indicator are written in file order and the counts are those of a load one
    request at a time.

    :param client: an ``elasticsearch`` or ``opensearch-py`` client (or its :class:`~.cluster.Cluster`).
    :param lines: NDJSON lines (str or bytes), one ECS document each; blank lines are skipped.
    :param active_index: the active index or its alias (:data:`ACTIVE_ALIAS`).
    :param history_prefix: prefix of the history data stream (``<prefix>default``, clusters with
        data streams) or of the daily history indices; ``None`` writes no history.
    :param history_date: the day whose daily history index receives this load (default: today,
        UTC; not used with a data stream).
    :param observed_at: when the poll read these documents from ThreatQ (the poll task's start).
        It orders copies with the same ``updated_at`` (a later poll wins); without it they never
        replace one another (minor part 0).
    :param tombstone_index: index of tombstones (:mod:`.tombstones`) to check each chunk against;
        ``None`` checks none (a replay could then bring back a swept IOC).
    :param max_future_skew: how far ``updated_at`` may lie after the load's clock.
    :param now: the load's clock for that check (default the current time; tests pass one).
    :param dead_letter: text stream that receives rejected documents as NDJSON (optional).
    :param chunk_bytes: largest bulk request body in bytes (a single larger line is sent alone).
    :param chunk_docs: most documents (lines) per bulk request and per tombstone look-up.
    :param max_in_flight: most bulk requests awaiting their answer at once (at least 1).
    :param max_retries: retries of a document answered 429, with exponential backoff.
    :param initial_backoff: first backoff in seconds (doubles per retry).
    :param max_backoff: longest backoff in seconds.
    :param id_prefix: put before ``threatq.id`` in every ``_id`` (active index, history, tombstones):
        ``<instance>:`` for a ThreatQ instance named on its connection, so several instances, whose
        ids overlap, share one index; ``""`` (default) keeps ``_id`` = ``threatq.id``.
    :return: the counts; rejects do not raise here (see :func:`check_reject_threshold`).
    :raises ValueError: ``observed_at`` outside the range a version can hold (a wrong clock), or
        ``max_in_flight`` below 1.
    :raises TombstoneError: the tombstone index could not be read.
    """
    if int(max_in_flight) < 1:
        raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight!r}")
    counts = LoadCounts()
    dead = _DeadLetter(dead_letter, counts, cluster(client).client, active_index)
    versioning = _Versioning(observed_part(observed_at), now or datetime.now(timezone.utc), max_future_skew)
    target = cluster(client)
    client = target.client
    history_index = None
    if history_prefix is not None:
        stream = target.capabilities.data_streams
        history_index = history_prefix + (HISTORY_DATA_STREAM_NAMESPACE if stream else history_suffix(history_date))
    entries = _parse(lines, active_index=active_index, versioning=versioning, counts=counts, dead=dead,
                     id_prefix=id_prefix)
    requests = _requests(entries, client=client, tombstone_index=tombstone_index, batch=chunk_docs,
                         chunk_bytes=chunk_bytes, active_index=active_index, history_index=history_index,
                         counts=counts)
    retry = _Retry(max_retries, initial_backoff, max_backoff)
    in_flight: deque[_Request] = deque()
    with ThreadPoolExecutor(max_workers=int(max_in_flight), thread_name_prefix="tq-bulk") as pool:
        try:
            for request in requests:
                # Settle in order: the oldest first, and every request up to the last that shares an id.
                while in_flight and (len(in_flight) >= max_in_flight
                                     or any(not request.ids.isdisjoint(r.ids) for r in in_flight)):
                    _settle(in_flight.popleft(), counts, dead)
                request.future = pool.submit(_send, target, request, retry)
                in_flight.append(request)
            while in_flight:
                _settle(in_flight.popleft(), counts, dead)
        except BaseException:
            for request in in_flight:
                if request.future is not None:
                    request.future.cancel()
            raise
    log.info("load: %s", counts.as_dict())
    return counts


def check_reject_threshold(counts: LoadCounts, *, max_rejects: int | None = None,
                           max_reject_ratio: float | None = 0.01,
                           dead_letter_path: str | None = None) -> None:
    """Raise when the load rejected too many documents (after the dead letter is written).

    A document counts as rejected when the active index, the history, or both refused it
    (``rejected_documents``); the error names the active and the history numbers apart.

    :param counts: the load's counts.
    :param max_rejects: most rejected documents allowed; ``None`` for no absolute limit.
    :param max_reject_ratio: most rejected documents allowed as a share of those read;
        ``None`` for no ratio limit.
    :param dead_letter_path: named in the error message.
    :raises RejectThresholdExceeded: a limit was exceeded.
    """
    # Each per-index count is a lower bound of the distinct documents refused, so counts built by
    # hand (rejected_documents left at 0) are still judged by what they say.
    rejected = max(counts.rejected_documents, counts.rejected_total, counts.history_rejected)
    limit = None
    if max_rejects is not None and rejected > max_rejects:
        limit = f"max_rejects={max_rejects}"
    elif max_reject_ratio is not None and counts.read and rejected / counts.read > max_reject_ratio:
        limit = f"max_reject_ratio={max_reject_ratio}"
    if limit is not None:
        raise RejectThresholdExceeded(rejected, counts.read, limit, counts.rejected, dead_letter_path,
                                      history_rejected=counts.history_rejected,
                                      history_by_reason=counts.history_rejected_by_type)
