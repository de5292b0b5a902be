"""Pure helpers for ThreatQ paging: time formats, empty-page quirks, keyset filters.

How window polling avoids skips and duplicates
----------------------------------------------
Offset paging over a window breaks when rows change during the run: an indicator updated
mid-run leaves its place in the sort order, every later row shifts one offset down, and one row
is skipped. So the client pages by *position* in ``(updated_at, id)`` order, never by offset:
``cursorMark`` where the server offers it on ``/query`` (the cursor encodes the last sort
values, as Solr's does), else a keyset filter asking for rows strictly after the last
``(updated_at, id)`` already yielded::

    updated_at >= since AND updated_at < until
    AND (updated_at > last_ts OR (updated_at = last_ts AND id > last_id))

A row that is updated mid-run gets a new ``updated_at`` of "now"; when ``until`` is in the past
(a data interval that has ended) it simply leaves the window and belongs to a later window. When
``until`` is still in the future it may come back once more with its newer version, which the
loaders resolve by keeping the newest ``updated_at``. Adjacent windows ``[a, b)`` and ``[b, c)``
partition time: ``b`` is excluded from the first and included in the second.

How paging ends
---------------
A page shorter than the ``limit`` asked for is *not* taken as the end on its own: a server or a
proxy may cap ``limit`` silently (or ``page_size`` may be above the server's maximum), and every
page is then short. Paging ends on the server's own signals only: an empty page, a cursor that
no longer moves, or its ``total`` reached (on a keyset page ``total`` counts the rows after the
last one received, so a page holding ``total`` rows holds the rest; on a cursor page ``total``
counts the whole window, so a short page ends the paging only when the rows received reach it
and no page was capped before). When the server's end signal comes with fewer rows than its
``total`` announced, :class:`~threatq_provider.threatq.errors.ThreatQIncompleteError` is raised
(expected vs received) instead of a quiet, partial window.

Timestamps are formatted to whole seconds (ThreatQ stores ``YYYY-MM-DD HH:MM:SS`` in UTC). Both
ends are truncated the same way, so consecutive windows still partition the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from threatq_provider.coerce import CoercionError, parse_iso
from threatq_provider.threatq.errors import ThreatQValidationError

THREATQ_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class CollectionPage:
    """One page of a data collection.

    :ivar indicators: the page's indicators, in server order (``updated_at`` ascending).
    :ivar next_cursor: the ``nextCursorMark`` to resume after this page, or ``None`` if the
        server sent none. Persist it only after the page is safely staged.
    """

    indicators: list[dict[str, Any]]
    next_cursor: str | None


class UnparsedRow(dict[str, Any]):
    """A row of a page nested too deeply for the JSON parser (ThreatQ records are ~5 levels deep).

    The page was parsed row by row (``_jsonscan.split_member``); this row still was not. As a dict it
    holds only the row's top-level scalars the scanner read (``id``, ``updated_at``), so paging
    can move past it; ``text`` is the row as the server sent it, for a rejects file.

    :ivar text: the row's JSON text.
    """

    def __init__(self, scalars: dict[str, Any], text: str) -> None:
        super().__init__(scalars)
        self.text = text


def to_threatq_time(value: datetime | str, field: str = "time") -> str:
    """Format a datetime (aware → converted to UTC; naive → taken as UTC) or an ISO string.

    :param value: the instant.
    :param field: input name for the error message.
    :return: ``YYYY-MM-DD HH:MM:SS`` in UTC.
    :raises ThreatQValidationError: for anything that is not a datetime or an ISO 8601 string.
    """
    if not isinstance(value, datetime | str):
        raise ThreatQValidationError(field, value, reason="expected a datetime or an ISO 8601 string")
    try:
        moment = parse_iso(value, field)
    except CoercionError:
        raise ThreatQValidationError(
            field, value, reason="expected an ISO 8601 date/time, e.g. 2026-01-31T12:00:00Z"
        ) from None
    return moment.strftime(THREATQ_TIME_FORMAT)


def rows_of(payload: Any) -> list[dict[str, Any]]:
    """The list of rows of a list/query response, treating ``data: {}``/``[]``/missing as empty.

    :param payload: parsed JSON body.
    :return: the rows (possibly empty).
    """
    if not isinstance(payload, dict):
        return []
    data = payload.get("data")
    if isinstance(data, list):
        return data
    return []


def total_of(payload: Any) -> int | None:
    """The server's ``total`` of a list/query response, or ``None`` when it sent none (or junk).

    :param payload: parsed JSON body.
    :return: the count as an int >= 0, or ``None``.
    """
    total = payload.get("total") if isinstance(payload, dict) else None
    if isinstance(total, str) and total.strip().isdigit():
        total = int(total)
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    return None


def sort_key(row: dict[str, Any]) -> tuple[str, int]:
    """Keyset position of a row: ``(updated_at, id)``."""
    return (str(row.get("updated_at") or ""), int(row.get("id") or 0))


def after_clause(last: tuple[str, int]) -> dict[str, Any]:
    """Filter clause selecting rows strictly after ``last`` in ``(updated_at, id)`` order.

    The leading ``updated_at >= ts`` is implied by the ``+or`` but stated on its own so that the
    server can seek the range on its ``updated_at`` index instead of testing every row; without
    it each page costs a scan of the whole window (measured with bench/threatq_paging.py).
    """
    ts, ident = last
    return {
        "+and": [
            {"updated_at": {"+gte": ts}},
            {
                "+or": [
                    {"updated_at": {"+gt": ts}},
                    {"+and": [{"updated_at": ts}, {"id": {"+gt": ident}}]},
                ]
            },
        ]
    }


def window_clauses(since: str, until: str) -> list[dict[str, Any]]:
    """Filter clauses for ``since <= updated_at < until``."""
    return [{"updated_at": {"+gte": since}}, {"updated_at": {"+lt": until}}]


def any_of(key: str, values: list[str]) -> dict[str, Any]:
    """``key`` equal to any of ``values``."""
    return {"+or": [{key: v} for v in values]}
