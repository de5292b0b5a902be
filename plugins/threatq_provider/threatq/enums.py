"""ThreatQ default enumerations (indicator types, statuses, event types) and name validation.

The names come from the package data ``threatq/enumerations.json``, loaded once. Ids in that file are those
of a default instance only; the client resolves ids by name at run time
(:meth:`ThreatQClient.indicator_type_id`), because ids differ between instances. This module is
about *names*: it accepts any case and the InsightConnect plugin's misspelling
``"Eamil Attachment"``, returns the canonical spelling, and raises
:class:`~threatq_provider.threatq.errors.ThreatQValidationError` listing the valid names otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Mapping

from threatq_provider._resources import data_file
from threatq_provider.threatq.errors import ThreatQValidationError


@dataclass(frozen=True)
class Enumerations:
    """Default ThreatQ names, in the file's id order.

    :ivar indicator_types: canonical indicator type names.
    :ivar indicator_type_aliases: alternative spelling → canonical name.
    :ivar statuses: indicator status names.
    :ivar event_types: event type names.
    :ivar default_ids: ``{"indicator_types"|"statuses"|"event_types": {name: id}}`` of a default instance.
    """

    indicator_types: tuple[str, ...]
    indicator_type_aliases: Mapping[str, str]
    statuses: tuple[str, ...]
    event_types: tuple[str, ...]
    default_ids: Mapping[str, Mapping[str, int]]


@lru_cache(maxsize=1)
def load() -> Enumerations:
    """Load ``threatq_provider/data/threatq/enumerations.json`` once.

    :return: the default enumerations.
    """
    raw: dict[str, Any] = json.loads(data_file("threatq", "enumerations.json").read_text("utf-8"))
    types = raw["indicator_types"]
    statuses = raw["indicator_statuses"]
    events = raw["event_types"]
    return Enumerations(
        indicator_types=tuple(t["name"] for t in types),
        indicator_type_aliases=MappingProxyType(dict(raw.get("indicator_type_aliases", {}))),
        statuses=tuple(s["name"] for s in statuses),
        event_types=tuple(e["name"] for e in events),
        default_ids=MappingProxyType(
            {
                "indicator_types": MappingProxyType({t["name"]: t["id"] for t in types}),
                "statuses": MappingProxyType({s["name"]: s["id"] for s in statuses}),
                "event_types": MappingProxyType({e["name"]: e["id"] for e in events}),
            }
        ),
    )


def _canonical(field: str, value: Any, names: tuple[str, ...], aliases: Mapping[str, str]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ThreatQValidationError(field, value, names)
    wanted = value.strip().casefold()
    for alias, target in aliases.items():
        if alias.casefold() == wanted:
            return target
    for name in names:
        if name.casefold() == wanted:
            return name
    raise ThreatQValidationError(field, value, names)


def validate_indicator_type(name: str) -> str:
    """Canonical indicator type name for ``name`` (any case; ``"Eamil Attachment"`` accepted).

    :param name: indicator type name as a user wrote it.
    :return: the canonical name, e.g. ``"Email Attachment"``.
    :raises ThreatQValidationError: listing the valid type names.
    """
    enums = load()
    return _canonical("indicator type", name, enums.indicator_types, enums.indicator_type_aliases)


def validate_status(name: str) -> str:
    """Canonical indicator status name (Active, Expired, Indirect, Review, Whitelisted).

    :param name: status name as a user wrote it.
    :return: the canonical name.
    :raises ThreatQValidationError: listing the valid statuses.
    """
    return _canonical("indicator status", name, load().statuses, {})


def validate_event_type(name: str) -> str:
    """Canonical event type name (Spearphish, Watering Hole, …, Sighting).

    :param name: event type name as a user wrote it.
    :return: the canonical name.
    :raises ThreatQValidationError: listing the valid event types.
    """
    return _canonical("event type", name, load().event_types, {})
