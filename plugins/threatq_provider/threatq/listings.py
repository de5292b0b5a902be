"""Paged reads of the ThreatQ client: indicator windows, id streams, data collections, events.

Each iterator drives :meth:`~threatq_provider.threatq.transport.Transport.request_json` page by
page with the pure helpers of :mod:`~threatq_provider.threatq.paging` (which explains how window
polling avoids skips and duplicates, and how paging ends). No Airflow import.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any
from urllib.parse import quote

import msgspec
import requests

from threatq_provider.threatq._fields import int_id, join
from threatq_provider.threatq.errors import ThreatQIncompleteError, ThreatQResponseError, ThreatQValidationError
from threatq_provider.threatq.lookups import NameLookups
from threatq_provider.threatq.paging import (
    CollectionPage,
    after_clause,
    any_of,
    sort_key,
    to_threatq_time,
    total_of,
    window_clauses,
)

__all__ = ["DEFAULT_COLLECTION_FIELDS", "DEFAULT_EVENT_WITH", "DEFAULT_WITH", "Listings"]

#: The client's one logger name (see :mod:`~threatq_provider.threatq.transport`).
log = logging.getLogger("threatq_provider.threatq.client")

#: Relations asked for when polling indicators. Since 2026 ThreatQ omits attributes and sources
#: unless asked (docs/reference/threatq-api.md §2), so they are always named.
DEFAULT_WITH: tuple[str, ...] = ("attributes", "sources", "type", "status", "adversaries")
#: ``fields`` of the data-collection feed: every column plus the relations (Elastic PR #20042).
DEFAULT_COLLECTION_FIELDS: tuple[str, ...] = ("*", "sources", "attributes", "adversaries")
#: Relations asked for when iterating events (the MISP exporter needs them).
DEFAULT_EVENT_WITH: tuple[str, ...] = ("type", "attributes", "sources", "adversaries", "attachments", "tags")
_SORT = "updated_at,id"


class Listings(NameLookups):
    """Paged listings; filters by type or status name go through :class:`NameLookups`."""

    def _page_size(self, page_size: int | None) -> int:
        size = self.page_size if page_size is None else page_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ThreatQValidationError("page_size", size, reason="an integer >= 1 is required")
        return size

    def _iter_keyset(
        self,
        collection: str,
        clauses: list[dict[str, Any]],
        *,
        page_size: int | None,
        with_: Iterable[str] | str | None,
        fields: Iterable[str] | None,
        keep_unparsed: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``POST /api/<collection>/query`` in ``(updated_at, id)`` order, each row once.

        The first request asks for ``cursorMark=*`` sorted by ``updated_at`` (Kibana's way; the
        server keeps the position, so the window's filter stays the same on every page and the
        server can reuse its result). If the server answers without ``nextCursorMark`` it does not
        do cursors on this collection, and the client continues by keyset filter instead
        (:func:`~threatq_provider.threatq.paging.after_clause`). Either way a page holds only rows
        after the last one yielded, so nothing repeats, and an unsorted page or a server that
        ignores both mechanisms raises :class:`ThreatQResponseError` instead of looping.

        Paging ends on the server's signals, never on a short page alone (see :mod:`.paging`,
        "How paging ends"), and raises :class:`ThreatQIncompleteError` when it ends short of the
        server's ``total``.
        """
        size = self._page_size(page_size)
        path = f"/api/{collection}/query"
        ahead = _CursorAhead(self, path)
        try:
            yield from self._keyset_pages(path, clauses, size, with_, fields, keep_unparsed, ahead)
        finally:
            ahead.drop()

    def _keyset_pages(self, path: str, clauses: list[dict[str, Any]], size: int,
                      with_: Iterable[str] | str | None, fields: Iterable[str] | None, keep_unparsed: bool,
                      ahead: _CursorAhead) -> Iterator[list[dict[str, Any]]]:
        cursor: str | None = "*"
        last: tuple[str, int] | None = None
        seen = 0  # rows received while following the cursor (a cursor page's total counts them all)
        capped = False
        while True:
            keyset = cursor is None and last is not None
            body: dict[str, Any] = {
                "criteria": {},
                "filters": {"+and": clauses + ([after_clause(last)] if keyset and last else [])},
            }
            if fields:
                body["fields"] = list(fields)
            params: dict[str, Any] = {"limit": size, "with": join(with_)}
            if cursor is not None:
                params.update(sort="updated_at", cursorMark=cursor)
            else:
                params["sort"] = _SORT
            page = (f"page cursorMark={cursor}" if cursor is not None
                    else f"page after id {last[1]} updated_at {last[0]}" if last else "first page")
            if cursor is not None:
                payload = ahead.page(params, body, page)
            else:
                ahead.drop()
                payload = self.request_json("POST", path, params=params, json=body, page=page)
            rows = self._parsed_rows("POST", path, self._page_rows("POST", path, payload), page, keep_unparsed)
            try:
                fresh = [r for r in rows if last is None or sort_key(r) > last]
                keys = [sort_key(r) for r in fresh]
            except (TypeError, ValueError):
                raise ThreatQResponseError(200, "POST", path, "", detail="a row has no integer id") from None
            if keys != sorted(keys):
                raise ThreatQResponseError(200, "POST", path, "", detail=f"rows not sorted by {_SORT}")
            if rows and not fresh:
                # The server ignored both cursor and keyset; paging on would loop for ever.
                raise ThreatQResponseError(200, "POST", path, "", detail="paging ignored by server")
            if fresh:
                yield fresh
                last = keys[-1]
                seen += len(fresh)
            total = total_of(payload)
            on_cursor = cursor is not None
            # Rows the server still counts beyond this page: a cursor page's total is the whole
            # window, a keyset page's total the rows after the last one received before it.
            remaining = None if total is None else (total - seen if on_cursor else total - len(rows))
            if not rows:
                self._check_complete(path, total if on_cursor else None, seen, remaining, last)
                return
            # The server's total is reached. On a cursor page that ends the paging only where no
            # row can have been counted twice: the first page, or a short page before any cap
            # (a row updated mid-run comes back at the end of the sort, so later pages may repeat
            # rows the total counts once, and unseen rows may still follow).
            if remaining is not None and remaining <= 0 and (
                not on_cursor or cursor == "*" or (len(rows) < size and not capped)
            ):
                return
            if len(rows) < size:
                # Short, yet the server counts more (or sent no total to tell): a capped page.
                if not capped:
                    log.warning("ThreatQ POST %s served %d rows for limit=%d and counts %s more: the server "
                                "(or a proxy) caps pages; paging on until it signals the end",
                                path, len(rows), size, remaining if remaining is not None else "maybe")
                capped = True
            if on_cursor:
                nxt = payload.get("nextCursorMark") if isinstance(payload, dict) else None
                if not isinstance(nxt, str) or not nxt:
                    log.debug("ThreatQ %s: no nextCursorMark, paging by keyset", path)
                    cursor = None
                elif nxt == cursor:
                    self._check_complete(path, total, seen, remaining, last)
                    return
                else:
                    cursor = nxt

    def _check_complete(self, path: str, total: int | None, seen: int, remaining: int | None,
                        last: tuple[str, int] | None) -> None:
        """At the server's end signal: raise when it still counts rows it never sent."""
        if remaining is None or remaining <= 0:
            return
        where = f"last row id {last[1]} updated_at {last[0]}" if last else "no row received"
        expected = total if total is not None else seen + remaining
        raise ThreatQIncompleteError("POST", path, expected=expected, received=seen, where=where)

    def iter_indicator_pages(
        self,
        updated_since: datetime | str,
        updated_until: datetime | str,
        *,
        types: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
        min_score: int | None = None,
        sources: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        page_size: int | None = None,
        with_: Iterable[str] | str | None = DEFAULT_WITH,
        fields: Iterable[str] | None = None,
        keep_unparsed: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of indicators with ``updated_since <= updated_at < updated_until``.

        Sorted by ``(updated_at, id)`` and paged by keyset, so each row of the window arrives
        exactly once even when rows change during the run (see :mod:`.paging`). Empty pages
        (``data: []`` or ``{}``) end the iteration.

        :param updated_since: window start, included (datetime or ISO string; naive = UTC).
        :param updated_until: window end, excluded.
        :param types: only these indicator type names (aliases accepted); ``None``/empty = all.
        :param statuses: only these status names; ``None``/empty = all.
        :param min_score: only indicators whose score is at least this (0-10); ``None`` = all.
        :param sources: only indicators from any of these sources (names); ``None``/empty = all.
        :param tags: only indicators carrying any of these tags (names); ``None``/empty = all.
        :param page_size: rows per request (default: the client's ``page_size``).
        :param with_: relations to embed (default :data:`DEFAULT_WITH`).
        :param fields: optional ``fields`` list sent in the query body.
        :param keep_unparsed: yield a row nested too deeply to parse as an
            :class:`~threatq_provider.threatq.paging.UnparsedRow` (its text, id and ``updated_at``)
            in its place, so the caller can set it aside and page on; ``False`` raises
            :class:`ThreatQResponseError` naming the row's id and page.
        :return: iterator of non-empty lists of indicator dicts.
        """
        since = to_threatq_time(updated_since, "updated_since")
        until = to_threatq_time(updated_until, "updated_until")
        if since > until:
            raise ThreatQValidationError("updated_until", until, reason=f"must not be before {since}")
        clauses = window_clauses(since, until)
        # None or an empty list both mean "every type" (a Param default of [] reads naturally).
        if types:
            names = [self._resolve("indicator_types", t)[0] for t in ([types] if isinstance(types, str) else types)]
            clauses.append(any_of("type_name", names))
        if statuses:
            names = [self._resolve("statuses", s)[0] for s in ([statuses] if isinstance(statuses, str) else statuses)]
            clauses.append(any_of("status_name", names))
        # The filters of a data collection (Threat Library search), as ThreatQ's query grammar
        # spells them; a collection's own criteria are the server's business.
        if min_score is not None:
            clauses.append({"score": {"+gte": int(min_score)}})
        for key, names in (("source_name", sources), ("tags", tags)):
            if names:
                clauses.append(any_of(key, [names] if isinstance(names, str) else list(names)))
        if since == until:
            return
        yield from self._iter_keyset("indicators", clauses, page_size=page_size, with_=with_, fields=fields,
                                     keep_unparsed=keep_unparsed)

    def iter_indicator_ids(self, *, page_size: int | None = None) -> Iterator[list[int]]:
        """Pages of the ids of every indicator ThreatQ has, ascending, ids only.

        ``POST /api/indicators/query?sort=id`` with ``fields=["id"]`` and the keyset filter
        ``id > <last id>``: each page costs the server an index seek, memory stays flat, and an
        indicator created or deleted meanwhile cannot make the paging skip or repeat one. It ends on
        an empty page only (a capped page is simply followed by the next), so a short page never
        passes for the end. For the deletion reconciliation, which merges this stream with the
        active index's ids.

        :param page_size: ids per request (default: the client's ``page_size``).
        :return: iterator of non-empty lists of ids, strictly ascending across pages.
        :raises ThreatQResponseError: a row without an integer id, or ids out of order (the merge
            would be wrong), or a server that ignores the filter.
        """
        size = self._page_size(page_size)
        path = "/api/indicators/query"
        last: int | None = None
        while True:
            clauses = [] if last is None else [{"id": {"+gt": last}}]
            body = {"criteria": {}, "filters": {"+and": clauses}, "fields": ["id"]}
            page = f"page after id {last}" if last is not None else "first page"
            payload = self.request_json("POST", path, params={"limit": size, "sort": "id"}, json=body, page=page)
            rows = self._page_rows("POST", path, payload)
            try:
                ids = [int(row["id"]) for row in rows]
            except (KeyError, TypeError, ValueError):
                raise ThreatQResponseError(200, "POST", path, "", detail=f"{page}: a row has no integer id") from None
            if not ids:
                return
            if any(b <= a for a, b in zip(ids, ids[1:])) or (last is not None and ids[0] <= last):
                raise ThreatQResponseError(200, "POST", path, "",
                                           detail=f"{page}: ids not strictly ascending (sort=id ignored?)")
            yield ids
            last = ids[-1]

    def iter_indicators(self, updated_since: datetime | str, updated_until: datetime | str,
                        **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Indicators of :meth:`iter_indicator_pages`, one by one (same arguments)."""
        for page in self.iter_indicator_pages(updated_since, updated_until, **kwargs):
            yield from page

    def iter_collection_pages(
        self,
        collection_hash: str,
        *,
        cursor: str = "*",
        page_size: int | None = None,
        fields: Iterable[str] | None = None,
        keep_unparsed: bool = False,
    ) -> Iterator[CollectionPage]:
        """Pages of a data collection (saved Threat Library search), by ``cursorMark``.

        ``GET /api/indicators/query/hash/{hash}?sort=updated_at&limit=&cursorMark=&fields=`` as the
        Elastic Agent calls it. Stops on an empty page (``data: []`` or ``{}``), a missing
        ``nextCursorMark``, or a cursor that no longer changes. Each page carries the cursor to
        resume *after* it; persist it once the page is staged, and pass it back as ``cursor``.

        :param collection_hash: the collection's hash id.
        :param cursor: ``"*"`` for the start, else a saved ``next_cursor``.
        :param page_size: rows per request.
        :param fields: ``fields`` list (default :data:`DEFAULT_COLLECTION_FIELDS`; ``()`` sends none).
        :param keep_unparsed: as for :meth:`iter_indicator_pages`.
        :return: iterator of :class:`CollectionPage`.
        """
        if not isinstance(collection_hash, str) or not collection_hash.strip():
            raise ThreatQValidationError("collection_hash", collection_hash, reason="a non-empty hash is required")
        if not isinstance(cursor, str) or not cursor:
            raise ThreatQValidationError("cursor", cursor, reason='"*" or a saved nextCursorMark is required')
        size = self._page_size(page_size)
        path = f"/api/indicators/query/hash/{quote(collection_hash.strip(), safe='')}"
        field_list = join(DEFAULT_COLLECTION_FIELDS if fields is None else fields)
        while True:
            page = f"page cursorMark={cursor}"
            payload = self.request_json("GET", path, params={"sort": "updated_at", "limit": size, "cursorMark": cursor,
                                                             "fields": field_list}, page=page)
            rows = self._parsed_rows("GET", path, self._page_rows("GET", path, payload), page, keep_unparsed)
            nxt = payload.get("nextCursorMark") if isinstance(payload, dict) else None
            nxt = nxt if isinstance(nxt, str) and nxt else None
            if not rows:
                return
            yield CollectionPage(indicators=rows, next_cursor=nxt)
            if nxt is None or nxt == cursor:
                return
            cursor = nxt

    def _iter_offset(self, path: str, params: Mapping[str, Any], page_size: int | None) -> Iterator[dict[str, Any]]:
        """Offset paging over a GET list (related lists, where rows do not move mid-run).

        Ends when the offset reaches the server's ``total`` or on an empty page, never on a short
        page alone (a capped ``limit``); an empty page short of ``total`` raises
        :class:`ThreatQIncompleteError`.
        """
        size = self._page_size(page_size)
        offset = 0
        while True:
            page = f"page offset={offset}"
            payload = self.request_json("GET", path, params={**params, "limit": size, "offset": offset}, page=page)
            rows = self._parsed_rows("GET", path, self._page_rows("GET", path, payload), page, False)
            yield from rows
            offset += len(rows)
            total = total_of(payload)
            if total is not None and offset >= total:
                return
            if not rows:
                if total is not None:
                    raise ThreatQIncompleteError("GET", path, expected=total, received=offset,
                                                 where=f"empty page at offset {offset}")
                return

    def iter_events(
        self,
        updated_since: datetime | str | None = None,
        updated_until: datetime | str | None = None,
        *,
        with_: Iterable[str] | str | None = DEFAULT_EVENT_WITH,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Events with ``updated_since <= updated_at < updated_until`` (open ends allowed), by keyset.

        :param updated_since: start, included; ``None`` for no lower bound.
        :param updated_until: end, excluded; ``None`` for no upper bound.
        :param with_: relations to embed (default :data:`DEFAULT_EVENT_WITH`).
        :param page_size: rows per request.
        :return: iterator of event dicts.
        """
        clauses: list[dict[str, Any]] = []
        if updated_since is not None:
            clauses.append({"updated_at": {"+gte": to_threatq_time(updated_since, "updated_since")}})
        if updated_until is not None:
            clauses.append({"updated_at": {"+lt": to_threatq_time(updated_until, "updated_until")}})
        for page in self._iter_keyset("events", clauses, page_size=page_size, with_=with_, fields=None):
            yield from page

    def iter_event_indicators(
        self, event_id: int, *, with_: Iterable[str] | str | None = ("type", "status"), page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Indicators related to an event (``GET /api/events/{id}/indicators``, offset paging).

        :param event_id: ThreatQ event id.
        :param with_: relations to embed in each indicator.
        :param page_size: rows per request.
        :return: iterator of indicator dicts (each may carry a ``pivot``).
        """
        ident = int_id("event_id", event_id)
        yield from self._iter_offset(f"/api/events/{ident}/indicators", {"with": join(with_)}, page_size)


class _CursorPeek(msgspec.Struct):
    nextCursorMark: Any = None  # noqa: N815 - ThreatQ's key
    data: list[msgspec.Raw] | dict[str, msgspec.Raw] | None = None


_PEEK = msgspec.json.Decoder(_CursorPeek)


def _peek_cursor(content: bytes, size: int) -> str | None:
    """``nextCursorMark`` of a full page (``size`` rows), read without building its rows; ``None``
    for a short page (the end, as a rule), a page without one, or one that is not a plain JSON
    object (the whole parse then judges it, as always)."""
    try:
        peek = _PEEK.decode(content)
    except (msgspec.DecodeError, RecursionError):
        return None
    found = peek.nextCursorMark
    if not isinstance(peek.data, list) or len(peek.data) < size:
        return None
    return found if isinstance(found, str) and found else None


class _CursorAhead:
    """The next cursor page, asked for while this one is parsed and staged.

    Paging by cursor is a chain: a page's ``nextCursorMark`` names the next. The whole parse of a
    page of 1,000 indicators takes tens of milliseconds, during which the server would sit idle;
    so as soon as a full page's bytes are in, its cursor is read without building its rows and
    the next page is requested in a worker thread (one request at a time on the session: the caller
    sends none meanwhile). The read-ahead answer is used only for exactly the request the paging
    logic then makes (same cursor, same body and parameters); anything else (the paging ends,
    falls back to keyset, or the server repeated the cursor) waits for it and drops it, error
    included, so what the caller sees is what paging one request at a time would have given.
    """

    def __init__(self, client: Listings, path: str) -> None:
        self.client = client
        self.path = path
        self._pool: ThreadPoolExecutor | None = None
        self._next: tuple[str, Future[requests.Response]] | None = None

    def page(self, params: dict[str, Any], body: Any, page: str) -> Any:
        """The page ``params["cursorMark"]`` names, parsed; the one after it is asked for meanwhile."""
        cursor = params["cursorMark"]
        if self._next is not None and self._next[0] == cursor:
            resp = self._next[1].result()
            self._next = None
        else:
            self.drop()
            resp = self.client._response("POST", self.path, params=params, json=body)
        if not resp.content:
            return None
        nxt = _peek_cursor(resp.content, int(params["limit"]))
        if nxt is not None and nxt != cursor:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tq-page-ahead")
            self._next = (nxt, self._pool.submit(self.client._response, "POST", self.path,
                                                 params={**params, "cursorMark": nxt}, json=body))
        return self.client._parse_json("POST", self.path, resp, page)

    def drop(self) -> None:
        """Wait for a read-ahead request still out and forget it (and its error); stop the thread."""
        if self._next is not None:
            future = self._next[1]
            self._next = None
            try:
                future.result()
            except Exception:  # noqa: BLE001 - never asked for: paging one at a time would not have seen it
                log.debug("ThreatQ %s: read-ahead page dropped", self.path, exc_info=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
