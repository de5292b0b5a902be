"""The seven actions of the InsightConnect ThreatQ plugin, and :meth:`Actions.find_event`.

Search Indicators, Search, List Events, Create Indicator, Create Event, Get Indicator and Get
Event, with the plugin's input and output fields; type and status names are resolved through
:class:`~threatq_provider.threatq.lookups.NameLookups`. No Airflow import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from threatq_provider.threatq._fields import int_id, join, project
from threatq_provider.threatq.errors import ThreatQValidationError
from threatq_provider.threatq.lookups import NameLookups
from threatq_provider.threatq.paging import rows_of, to_threatq_time

__all__ = ["EVENT_FIELDS", "INDICATOR_FIELDS", "Actions"]

#: Fields of the InsightConnect plugin's ``indicator`` type: the Search Indicators filter keys
#: and the fields of each result.
INDICATOR_FIELDS: tuple[str, ...] = (
    "id", "value", "class", "hash", "type_id", "status_id", "created_at", "updated_at", "last_detected_at",
)
#: Fields of the plugin's ``event`` type: the List Events filter keys and result fields.
EVENT_FIELDS: tuple[str, ...] = (
    "id", "title", "type_id", "description", "hash", "happened_at", "created_at", "updated_at",
)
_SEARCH_RESULT_FIELDS = ("id", "object", "value")
#: Rows :meth:`ThreatQClient.find_event` reads (newest first): same title, date and type.
_FIND_EVENT_LIMIT = 100


class Actions(NameLookups):
    """The plugin's actions over :meth:`~threatq_provider.threatq.transport.Transport.request_json`."""

    def _filters(self, field_name: str, given: Mapping[str, Any] | None, allowed: Sequence[str],
                 names: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
        """Query filters from a plugin-style search object; ``names`` maps a name key to (kind, id key)."""
        if given is None:
            return {}
        if not isinstance(given, Mapping):
            raise ThreatQValidationError(field_name, given, reason="a mapping of field → value is required")
        out: dict[str, Any] = {}
        for key, value in given.items():
            if value is None or value == "":
                continue  # the plugin drops empty inputs (komand.helper.clean_dict)
            if key in names:
                kind, id_key = names[key]
                canonical, ident = self._resolve(kind, value)
                out[id_key] = ident if ident is not None else canonical
            elif key in allowed:
                out[key] = value
            else:
                raise ThreatQValidationError(f"{field_name} key", key, [*allowed, *names])
        return out

    def search_indicators(self, indicator: Mapping[str, Any] | None = None, *,
                          limit: int | None = None) -> dict[str, Any]:
        """Search Indicators: ``GET /api/indicators`` filtered by indicator fields.

        :param indicator: filter fields of the plugin's ``indicator`` type (:data:`INDICATOR_FIELDS`);
            ``type``/``status`` names are also accepted and resolved to this instance's ids.
        :param limit: maximum rows (server default if ``None``).
        :return: ``{"total": int, "data": [indicator]}``, each indicator with the plugin's fields.
        """
        params = self._filters("indicator", indicator, INDICATOR_FIELDS,
                               {"type": ("indicator_types", "type_id"), "status": ("statuses", "status_id")})
        payload = self._get("/api/indicators", **params, limit=limit)
        rows = rows_of(payload)
        total = payload.get("total") if isinstance(payload, dict) else None
        return {"total": int(total) if isinstance(total, int) else len(rows),
                "data": [project(r, INDICATOR_FIELDS) for r in rows]}

    def search(self, query: str, limit: int = 10) -> dict[str, Any]:
        """Search: ThreatQ global search (``GET /api/search``).

        :param query: search text.
        :param limit: maximum results.
        :return: ``{"results": [{"id", "object", "value"}]}``.
        """
        if not isinstance(query, str) or not query.strip():
            raise ThreatQValidationError("query", query, reason="a non-empty search text is required")
        size = int_id("limit", limit)
        payload = self._get("/api/search", query=query, limit=size)
        return {"results": [project(r, _SEARCH_RESULT_FIELDS) for r in rows_of(payload)]}

    def list_events(self, event: Mapping[str, Any] | None = None, *, limit: int | None = None) -> dict[str, Any]:
        """List Events: ``GET /api/events`` filtered by event fields.

        :param event: filter fields of the plugin's ``event`` type (:data:`EVENT_FIELDS`); a
            ``type`` name is also accepted.
        :param limit: maximum rows (server default if ``None``).
        :return: ``{"total": int, "data": [event]}``, each event with the plugin's fields.
        """
        params = self._filters("event", event, EVENT_FIELDS, {"type": ("event_types", "type_id")})
        payload = self._get("/api/events", **params, limit=limit)
        rows = rows_of(payload)
        total = payload.get("total") if isinstance(payload, dict) else None
        return {"total": int(total) if isinstance(total, int) else len(rows),
                "data": [project(r, EVENT_FIELDS) for r in rows]}

    def create_indicator(self, status: str, source: str, type: str, value: str) -> dict[str, Any]:  # noqa: A002
        """Create Indicator: ``POST /api/indicators`` (ThreatQ de-duplicates by type and value).

        :param status: status name (Active, Expired, Indirect, Review, Whitelisted).
        :param source: source name.
        :param type: indicator type name (``"Eamil Attachment"`` accepted).
        :param value: the indicator's value.
        :return: ``{"id": int}`` of the created (or existing) indicator.
        """
        if not isinstance(value, str) or not value.strip():
            raise ThreatQValidationError("value", value, reason="a non-empty indicator value is required")
        if not isinstance(source, str) or not source.strip():
            raise ThreatQValidationError("source", source, reason="a non-empty source name is required")
        type_name, type_id = self._resolve("indicator_types", type)
        status_name, status_id = self._resolve("statuses", status)
        item: dict[str, Any] = {"value": value.strip(), "sources": [{"name": source.strip()}]}
        item.update({"type_id": type_id} if type_id is not None else {"type": type_name})
        item.update({"status_id": status_id} if status_id is not None else {"status": status_name})
        path = "/api/indicators"
        # Idempotent: the server answers an existing (type, value) with that indicator.
        payload = self.request_json("POST", path, json=[item], idempotent=True)
        created = self._data_object("POST", path, payload)
        return {"id": int_id("id", created.get("id"))}

    def create_event(self, title: str, type: str, date: datetime | str, source: str,  # noqa: A002
                     description: str | None = None) -> dict[str, Any]:
        """Create Event: ``POST /api/events`` (never re-sent once it may have reached the server).

        :param title: event title.
        :param type: event type name.
        :param date: when it happened (datetime or ISO string; naive = UTC).
        :param source: source name.
        :param description: optional description (HTML allowed).
        :return: ``{"id": int}`` of the created event.
        """
        if not isinstance(title, str) or not title.strip():
            raise ThreatQValidationError("title", title, reason="a non-empty title is required")
        if not isinstance(source, str) or not source.strip():
            raise ThreatQValidationError("source", source, reason="a non-empty source name is required")
        happened_at = to_threatq_time(date, "date")
        type_name, type_id = self._resolve("event_types", type)
        body: dict[str, Any] = {"title": title, "happened_at": happened_at, "sources": [{"name": source.strip()}]}
        body.update({"type_id": type_id} if type_id is not None else {"type": type_name})
        if description:
            body["description"] = description
        path = "/api/events"
        created = self._data_object("POST", path, self.request_json("POST", path, json=body, idempotent=False))
        return {"id": int_id("id", created.get("id"))}

    def find_event(self, title: str, type: str, date: datetime | str,  # noqa: A002
                   source: str | None = None) -> dict[str, Any] | None:
        """The event :meth:`create_event` would have made with these inputs, if ThreatQ has it.

        ``GET /api/events?title=…&happened_at=…&type_id=…&with=type,sources&sort=-id``, then an
        exact check of each row: ThreatQ's list filters ignore case and read ``%`` in a title as a
        wildcard, so the server's answer is only a shortlist. A row matches when its title
        (trimmed), ``happened_at`` (to the second, UTC) and type are the ones given and, when
        ``source`` is given and the row lists its sources, one of them has that name. Used to
        make a retried Create Event safe (ThreatQ has no idempotency key for ``POST /api/events``).

        :param title: event title.
        :param type: event type name.
        :param date: when it happened (datetime or ISO string; naive = UTC).
        :param source: source name the event was created with; ``None`` to ignore sources.
        :return: the newest matching event (the plugin's event fields), or ``None``.
        """
        if not isinstance(title, str) or not title.strip():
            raise ThreatQValidationError("title", title, reason="a non-empty title is required")
        wanted_title = title.strip()
        happened_at = to_threatq_time(date, "date")
        type_name, type_id = self._resolve("event_types", type)
        params: dict[str, Any] = {"title": wanted_title, "happened_at": happened_at, "with": "type,sources",
                                  "sort": "-id", "limit": _FIND_EVENT_LIMIT}
        if type_id is not None:
            params["type_id"] = type_id
        rows = rows_of(self._get("/api/events", **params))

        def same(row: Mapping[str, Any]) -> bool:
            if not isinstance(row.get("title"), str) or row["title"].strip() != wanted_title:
                return False
            try:
                if to_threatq_time(str(row.get("happened_at") or "").replace(" ", "T", 1)[:19]) != happened_at:
                    return False
            except ThreatQValidationError:
                return False
            row_type = row.get("type") if isinstance(row.get("type"), Mapping) else {}
            if type_id is not None and row.get("type_id") is not None:
                if str(row["type_id"]) != str(type_id):
                    return False
            elif str(row_type.get("name", "")).casefold() != type_name.casefold():
                return False
            sources = row.get("sources")
            if source and isinstance(sources, list) and sources:
                names = {str(s.get("name", "")).strip().casefold() for s in sources if isinstance(s, Mapping)}
                if source.strip().casefold() not in names:
                    return False
            return True

        matches = [r for r in rows if isinstance(r, Mapping) and same(r)]
        if not matches:
            return None
        newest = max(matches, key=lambda r: int_id("id", r.get("id")))
        return project(newest, EVENT_FIELDS)

    def get_indicator(self, indicator_id: int, with_: Iterable[str] | str | None = None) -> dict[str, Any]:
        """Get Indicator: ``GET /api/indicators/{id}``.

        :param indicator_id: ThreatQ indicator id.
        :param with_: related classes to embed, e.g. ``["adversaries", "attachments"]``.
        :return: ``{"data": {...}}``.
        """
        ident = int_id("indicator_id", indicator_id)
        path = f"/api/indicators/{ident}"
        return {"data": self._data_object("GET", path, self._get(path, **{"with": join(with_)}))}

    def get_event(self, event_id: int, with_: Iterable[str] | str | None = None) -> dict[str, Any]:
        """Get Event: ``GET /api/events/{id}``.

        :param event_id: ThreatQ event id.
        :param with_: related classes to embed, e.g. ``["adversaries", "attachments"]``.
        :return: ``{"data": {...}}``.
        """
        ident = int_id("event_id", event_id)
        path = f"/api/events/{ident}"
        return {"data": self._data_object("GET", path, self._get(path, **{"with": join(with_)}))}

