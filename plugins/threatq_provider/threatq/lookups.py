"""Name look-ups of the ThreatQ client: indicator types, statuses and event types to ids.

Each list is read once per client and cached; an account that may not list them (ThreatQ answers
``{}``) falls back to the default names of :mod:`~threatq_provider.threatq.enums`. No Airflow import.
"""

from __future__ import annotations

from functools import cached_property

from threatq_provider.threatq import enums
from threatq_provider.threatq.errors import ThreatQValidationError
from threatq_provider.threatq.paging import rows_of
from threatq_provider.threatq.transport import Transport

__all__ = ["NameLookups"]


class NameLookups(Transport):
    """Type and status names of this instance, resolved to ids over :meth:`Transport.request_json`."""

    @cached_property
    def _names(self) -> dict[str, dict[str, tuple[str, int]]]:
        """Per kind, the instance's names (casefolded) → (name, id); filled on first use of a kind."""
        return {}

    def _name_map(self, kind: str) -> dict[str, tuple[str, int]]:
        cached = self._names.get(kind)
        if cached is not None:
            return cached
        path = {"indicator_types": "/api/indicator/types", "statuses": "/api/indicator/statuses",
                "event_types": "/api/event/types"}[kind]
        names: dict[str, tuple[str, int]] = {}
        offset = 0
        while True:
            payload = self._get(path, limit=self.page_size, offset=offset)
            rows = rows_of(payload)
            for row in rows:
                if isinstance(row, dict) and row.get("name") and row.get("id") is not None:
                    names[str(row["name"]).casefold()] = (str(row["name"]), int(row["id"]))
            total = payload.get("total") if isinstance(payload, dict) else None
            offset += len(rows)
            if not rows or not isinstance(total, int) or offset >= total:
                break
        self._names[kind] = names
        return names

    def _resolve(self, kind: str, name: str) -> tuple[str, int | None]:
        """Canonical name and instance id of a type/status name.

        Non-admin accounts get ``{}`` from the metadata endpoints; then the name is checked against
        the default enumerations and sent by name (the API accepts names), with id ``None``.
        """
        validators = {"indicator_types": enums.validate_indicator_type, "statuses": enums.validate_status,
                      "event_types": enums.validate_event_type}
        field_names = {"indicator_types": "indicator type", "statuses": "indicator status",
                       "event_types": "event type"}
        if not isinstance(name, str) or not name.strip():
            raise ThreatQValidationError(field_names[kind], name, reason="a non-empty name is required")
        wanted = name.strip()
        if kind == "indicator_types":
            aliases = enums.load().indicator_type_aliases
            wanted = next((t for a, t in aliases.items() if a.casefold() == wanted.casefold()), wanted)
        live = self._name_map(kind)
        if not live:
            return validators[kind](wanted), None
        hit = live.get(wanted.casefold())
        if hit is None:
            raise ThreatQValidationError(field_names[kind], name, sorted(n for n, _ in live.values()))
        return hit

    def indicator_type_id(self, name: str) -> int | None:
        """Id of an indicator type on this instance (cached per client).

        :param name: type name, any case; ``"Eamil Attachment"`` is read as ``"Email Attachment"``.
        :return: the id, or ``None`` when the account may not list types (then use the name).
        :raises ThreatQValidationError: unknown name, listing this instance's types.
        """
        return self._resolve("indicator_types", name)[1]

    def status_id(self, name: str) -> int | None:
        """Id of an indicator status on this instance (cached per client); see :meth:`indicator_type_id`."""
        return self._resolve("statuses", name)[1]

    def event_type_id(self, name: str) -> int | None:
        """Id of an event type on this instance (cached per client); see :meth:`indicator_type_id`."""
        return self._resolve("event_types", name)[1]
