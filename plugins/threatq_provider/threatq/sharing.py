"""What a MISP share reads from ThreatQ: an event with all it maps, or an investigation's contents.

:class:`ShareReader` gathers, over one :class:`~threatq_provider.threatq.client.ThreatQClient`,
the objects the MISP mapping (:mod:`threatq_provider.misp.mapping`) turns into a MISP event: the
event with its relations (:data:`~threatq_provider.threatq.listings.DEFAULT_EVENT_WITH`), its
malware and attack patterns for galaxy matching, its indicators, and its attachments downloaded
one at a time under a size cap. The share operators only orchestrate: read here, map, send to MISP.

One reader per task: it remembers the relations this ThreatQ does not serve (asked once) and the
attachments left out for their size, for the task's XCom. No Airflow import.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from threatq_provider.threatq.errors import (
    ThreatQBadRequest,
    ThreatQNotFound,
    ThreatQResponseError,
    ThreatQServerError,
    ThreatQTooLarge,
)
from threatq_provider.threatq.listings import DEFAULT_EVENT_WITH

if TYPE_CHECKING:
    from threatq_provider.threatq.client import ThreatQClient

__all__ = [
    "GALAXY_RELATIONS",
    "INDICATOR_WITH",
    "INVESTIGATION_WITH",
    "MAX_ATTACHMENT_BYTES",
    "RELATED_PAGE",
    "InvestigationContents",
    "ShareReader",
]

log = logging.getLogger(__name__)

#: Largest attachment shared (MISP's recommended PHP upload_max_filesize). A bigger file is
#: abandoned while downloading, logged and counted in the XCom, never held whole in memory.
MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024
#: Relations of each indicator: its own TLP (attributes), and Malware Family → attribute galaxies.
INDICATOR_WITH = ("type", "status", "sources", "attributes")
#: Event relations fetched one by one for galaxy matching (``GET /api/events/{id}/{relation}``):
#: ``with=attack_pattern`` answers 500 on some ThreatQ versions, so they are not in DEFAULT_EVENT_WITH.
GALAXY_RELATIONS = ("malware", "attack_pattern")
#: Most objects of one galaxy relation read per event (one request).
RELATED_PAGE = 1000
#: Relations of an investigation: what it holds.
INVESTIGATION_WITH = ("events", "indicators", "attachments")


@dataclass(frozen=True)
class InvestigationContents:
    """An investigation and everything a share sends with it.

    :ivar investigation: the investigation object.
    :ivar events: its events, each with its relations and galaxy relations.
    :ivar indicators: the indicators of its events and its own, each once (by id).
    :ivar attachments: the attachments of its events and its own, each once (by id); those known
        only by id are ``{"id": n}``.
    """

    investigation: dict[str, Any]
    events: list[dict[str, Any]]
    indicators: list[dict[str, Any]]
    attachments: list[Mapping[str, Any]]


def related_ids(investigation: Mapping[str, Any], key: str) -> list[int]:
    """Ids of an investigation's related objects, whether it embeds them (``events``) or lists ids
    (``event_ids``, as a list or a ``"1,2"`` string).

    :param investigation: the investigation object.
    :param key: the plural relation, ``events``, ``indicators`` or ``attachments``.
    :return: the ids in the given order, without repeats.
    :raises ThreatQResponseError: an id that is not a positive integer.
    """
    embedded = investigation.get(key)
    if isinstance(embedded, list):
        raw: list[Any] = [o["id"] for o in embedded if isinstance(o, Mapping) and o.get("id") is not None]
    else:
        listed = investigation.get(f"{key[:-1]}_ids")
        if listed is None or listed == "":
            raw = []
        elif isinstance(listed, str):
            raw = [p for p in listed.strip("[] ").split(",") if p.strip()]
        else:
            raw = list(listed) if isinstance(listed, list | tuple) else [listed]
    ids: list[int] = []
    for item in raw:
        if isinstance(item, str) and not item.strip():
            continue
        try:
            ident = int(str(item).strip())
        except ValueError:
            ident = 0
        if ident < 1:
            raise ThreatQResponseError(200, "GET", "/api/investigations", "",
                                       detail=f"investigation {key}: {item!r} is not a ThreatQ id")
        if ident not in ids:
            ids.append(ident)
    return ids


class ShareReader:
    """Reads what a share sends, over one client; see the module docstring.

    :param client: the ThreatQ client (the caller opens and closes it).
    :param log: where warnings go (the task's logger; default this module's).
    :param max_attachment_bytes: largest attachment downloaded.
    :ivar relations_unavailable: galaxy relations this ThreatQ answered with 404, 400 or 5xx.
    :ivar attachments_too_large: ids of the attachments left out for their size, in order.
    """

    def __init__(self, client: ThreatQClient, *, log: Any = log,
                 max_attachment_bytes: int = MAX_ATTACHMENT_BYTES) -> None:
        self.client = client
        self.log = log
        self.max_attachment_bytes = max_attachment_bytes
        self.relations_unavailable: set[str] = set()
        self.attachments_too_large: list[Any] = []

    def event(self, event_id: int) -> dict[str, Any]:
        """The event with :data:`DEFAULT_EVENT_WITH` and its galaxy relations filled in."""
        return self.with_galaxy_relations(self.client.get_event(event_id, with_=DEFAULT_EVENT_WITH)["data"])

    def event_indicators(self, event_id: int) -> Iterator[dict[str, Any]]:
        """The event's indicators with :data:`INDICATOR_WITH`, page by page."""
        return self.client.iter_event_indicators(event_id, with_=INDICATOR_WITH)

    def with_galaxy_relations(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event with its malware and attack patterns (:data:`GALAXY_RELATIONS`) filled in.

        A relation the ThreatQ instance does not serve (404, 400 or 5xx) is asked for once per
        reader, logged, and left empty: the event is still shared, with fewer galaxy tags.
        """
        for relation in GALAXY_RELATIONS:
            if relation in event or relation in self.relations_unavailable:
                continue
            try:
                rows, total = self.client.get_event_related(int(event["id"]), relation, limit=RELATED_PAGE)
            except (ThreatQNotFound, ThreatQBadRequest, ThreatQServerError) as exc:
                self.relations_unavailable.add(relation)
                self.log.warning("ThreatQ does not serve /api/events/%s/%s (%s): no %s galaxies this run",
                                 event["id"], relation, type(exc).__name__, relation)
                continue
            event[relation] = list(rows)
            if total is not None and total > len(rows):
                self.log.warning("ThreatQ event %s has %d %s objects; the first %d are matched", event["id"],
                                 total, relation, len(rows))
        return event

    def investigation(self, name_or_id: int | str) -> InvestigationContents:
        """An investigation with its events, their indicators and attachments, and its own.

        :param name_or_id: the investigation's id or exact name.
        :return: the contents, each object once.
        :raises ThreatQNotFound: no such investigation.
        """
        inv = self.client.get_investigation(name_or_id, with_=INVESTIGATION_WITH)
        events = [self.event(eid) for eid in related_ids(inv, "events")]
        indicators: dict[int, dict[str, Any]] = {}
        for event in events:
            for row in self.event_indicators(int(event["id"])):
                indicators.setdefault(int(row["id"]), row)
        for iid in related_ids(inv, "indicators"):
            if iid not in indicators:
                indicators[iid] = self.client.get_indicator(iid, with_=INDICATOR_WITH)["data"]
        attachments: list[Mapping[str, Any]] = [a for e in events for a in e.get("attachments") or []]
        known = {int(a["id"]) for a in attachments}
        attachments += [{"id": aid} for aid in related_ids(inv, "attachments") if aid not in known]
        return InvestigationContents(inv, events, list(indicators.values()), attachments)

    def attachments(self, attachments: Iterable[Mapping[str, Any]],
                    ) -> Iterator[tuple[Mapping[str, Any], bytes]]:
        """Download each attachment once, lazily; one over the size cap is logged, counted, skipped."""
        seen: set[Any] = set()
        for attachment in attachments:
            if attachment.get("id") in seen:
                continue
            seen.add(attachment.get("id"))
            try:
                content = self.client.download_attachment(int(attachment["id"]),
                                                          max_bytes=self.max_attachment_bytes)
            except ThreatQTooLarge as exc:
                self.attachments_too_large.append(attachment.get("id"))
                self.log.warning("ThreatQ attachment %s (%r) not shared: %s", attachment.get("id"),
                                 attachment.get("name"), exc)
                continue
            yield attachment, content
