"""Create or update one MISP event from a ``MappingResult``, never duplicating.

The event UUID is deterministic, so each share is an upsert keyed by it:

1. ``event_exists(uuid)`` (HEAD), then ``get_event(uuid)``: absent → create the event's metadata and tags (``add_event``,
   ``metadata=True``), then add the attributes in chunks (``add_attribute(event, [list])``);
2. present → compare attribute by attribute (MISP matches on UUID): unchanged ones are not sent,
   changed ones go through ``update_event`` in chunks, new ones through ``add_attribute`` in
   chunks; tags this mapping owns (``tlp:``, ``threatq:``, …) and attributes it created (uuid5)
   that ThreatQ no longer yields are removed (soft delete); attributes and tags people added in
   MISP are kept; on attributes already there, managed attribute tags (an indicator's own
   ``tlp:*``) are attached or removed one by one (``tags/attachTagToObject`` /
   ``removeTagFromObject``), since an attribute edit in MISP only ever adds tags; nothing is sent
   when nothing changed;
3. the description's event report (one, uuid5): added when MISP lacks it, edited when its name,
   content or distribution differ, hard-deleted when ThreatQ no longer yields it (a soft-deleted
   report keeps its UUID taken, so the description could never come back). A MISP that answers
   404 to ``eventReports`` (older than 2.4.137, or the route blocked) gets no reports: warned
   once per exporter (one task), counted in ``reports_unavailable``, the rest is shared;
4. publish when the option is on and the event was changed or is not yet published (every MISP
   edit unpublishes, so the publish comes last).

MISP refuses some attributes (value format, type/category pair, a similar attribute already in the
event): those land in ``ShareResult.rejected`` with MISP's reason while the rest is shared.
Chunks are bounded by count (``ShareOptions.chunk_size``) and by bytes (attachments).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymisp import MISPAttribute, MISPEvent, MISPEventReport

from threatq_provider.misp.errors import MispAttributeRejected, MispConfigError, MispNotFound, MispRejected, call
from threatq_provider.misp.mapping import MappingResult
from threatq_provider.misp.options import ShareOptions

log = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024  # below PHP's usual post_max_size / memory limits
REJECTED_IN_SUMMARY = 20
REPORT_LABEL = "event report"
GALAXY_TAG_PREFIX = "misp-galaxy:"


@dataclass
class ShareResult:
    """What one share did.

    :param event_uuid: the MISP event UUID.
    :param misp_event_id: MISP's numeric id of the event.
    :param created: True when the event did not exist before.
    :param added: attributes created.
    :param updated: attributes changed in place.
    :param unchanged: attributes already as ThreatQ has them (not sent).
    :param skipped_unmapped: ThreatQ types with no MISP counterpart, with counts.
    :param rejected: ``(attribute, reason)`` for each attribute MISP refused.
    :param published: whether the event is published after the share.
    :param tags_removed: managed tags removed because ThreatQ no longer yields them.
    :param removed: attributes this provider created that ThreatQ no longer yields (soft-deleted).
    :param reports_added: event reports created (the ThreatQ description).
    :param reports_updated: event reports edited because the description changed.
    :param reports_removed: event reports of ours deleted because ThreatQ no longer yields them.
    :param attribute_tags_added: managed tags (``tlp:*``) attached to attributes already in MISP.
    :param attribute_tags_removed: managed tags removed from attributes because ThreatQ no longer yields them.
    :param reports_unavailable: event reports not sent: this MISP does not serve ``eventReports`` (404).
    :param galaxy_clusters: galaxy type → clusters the shared event carries (``misp-galaxy:<type>=…`` tags).
    """

    event_uuid: str
    misp_event_id: str | None = None
    created: bool = False
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_unmapped: dict[str, int] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    published: bool = False
    tags_removed: int = 0
    removed: int = 0
    metadata_changed: bool = False
    reports_added: int = 0
    reports_updated: int = 0
    reports_removed: int = 0
    attribute_tags_added: int = 0
    attribute_tags_removed: int = 0
    galaxy_clusters: dict[str, int] = field(default_factory=dict)
    reports_unavailable: int = 0

    @property
    def changed(self) -> bool:
        """True when this share wrote anything to MISP."""
        return bool(self.created or self.added or self.updated or self.removed or self.tags_removed
                    or self.metadata_changed or self.reports_added or self.reports_updated or self.reports_removed
                    or self.attribute_tags_added or self.attribute_tags_removed)

    def errors(self) -> list[MispAttributeRejected]:
        """One ``MispAttributeRejected`` per refused attribute or report (names it and MISP's reason)."""
        return [MispAttributeRejected(f"MISP rejected {'' if label.startswith(REPORT_LABEL) else 'attribute '}"
                                      f"{label} of event {self.event_uuid}: {reason}")
                for label, reason in self.rejected]

    def summary(self) -> dict[str, Any]:
        """A small JSON-able dict (XCom): counts, and at most 20 rejection messages."""
        return {
            "event_uuid": self.event_uuid,
            "misp_event_id": self.misp_event_id,
            "created": self.created,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped_unmapped": dict(self.skipped_unmapped),
            "rejected": len(self.rejected),
            "rejected_reasons": [f"{label}: {reason}" for label, reason in self.rejected[:REJECTED_IN_SUMMARY]],
            "published": self.published,
            "removed": self.removed,
            "tags_removed": self.tags_removed,
            "reports_added": self.reports_added,
            "reports_updated": self.reports_updated,
            "reports_removed": self.reports_removed,
            "attribute_tags_added": self.attribute_tags_added,
            "attribute_tags_removed": self.attribute_tags_removed,
            "galaxy_clusters": dict(self.galaxy_clusters),
            "reports_unavailable": self.reports_unavailable,
        }


def galaxy_clusters(tags: Iterable[Any]) -> dict[str, int]:
    """Galaxy type → number of clusters among an event's tags (``misp-galaxy:mitre-malware="Emotet"``)."""
    counts: Counter[str] = Counter()
    for tag in tags:
        name = str(getattr(tag, "name", tag))
        if name.startswith(GALAXY_TAG_PREFIX) and "=" in name:
            counts[name[len(GALAXY_TAG_PREFIX):].partition("=")[0]] += 1
    return dict(sorted(counts.items()))


def attribute_label(attribute: MISPAttribute | dict[str, Any]) -> str:
    """``ip-dst '203.0.113.5/33' (uuid …)``: how messages name an attribute."""
    get = attribute.get if isinstance(attribute, dict) else lambda k, d=None: getattr(attribute, k, d)
    value = str(get("value", ""))
    if len(value) > 120:
        value = value[:120] + "…"
    return f"{get('type', '?')} {value!r} (uuid {get('uuid', '?')})"


def report_label(report: MISPEventReport | dict[str, Any]) -> str:
    """``event report 'ThreatQ description' (uuid …)``: how messages name a report."""
    get = report.get if isinstance(report, dict) else lambda k, d=None: getattr(report, k, d)
    return f"{REPORT_LABEL} {get('name', '?')!r} (uuid {get('uuid', '?')})"


def _is_derived(value: str) -> bool:
    """True for the uuid5 attribute UUIDs the mapping derives (MISP and people create uuid4)."""
    try:
        return uuid.UUID(value).version == 5
    except ValueError:
        return False


def _reason(errors: Any) -> str:
    """MISP's field errors ``{"value": ["…"]}`` → ``value: …``."""
    if isinstance(errors, dict):
        parts = []
        for key, messages in errors.items():
            msgs = messages if isinstance(messages, list) else [messages]
            parts.append(f"{key}: {'; '.join(str(m) for m in msgs)}")
        return ", ".join(parts) or "refused"
    return str(errors)


def _error_index(key: str) -> int | None:
    match = re.search(r"(\d+)$", str(key))
    return int(match.group(1)) if match else None


def _per_attribute_errors(errors: Any) -> dict[int, Any]:
    """MISP's ``{"attribute_3": {...}}`` or ``{"Attribute": {"attribute_3": {...}}}`` → ``{3: {...}}``."""
    if isinstance(errors, dict) and isinstance(errors.get("Attribute"), dict):
        errors = errors["Attribute"]
    out: dict[int, Any] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            index = _error_index(key)
            if index is not None:
                out[index] = value
    return out


class MispExporter:
    """Upsert ``MappingResult`` events into MISP.

    :param misp: a PyMISP client (or anything with the same methods).
    :param options: share options (publish, distribution/sharing group, chunk size).
    :param max_request_bytes: cap on the attachment bytes in one request.
    """

    def __init__(self, misp: Any, *, options: ShareOptions,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        self.misp = misp
        self.options = options
        self.max_request_bytes = max_request_bytes
        self._sharing_group_id: str | None = None
        #: Set on the first 404 from ``eventReports``: later events skip reports without asking.
        self.reports_unavailable = False

    # -------------------------------------------------------------- plumbing
    def _call(self, action: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return call(action, getattr(self.misp, method), *args, secret=getattr(self.misp, "key", None), **kwargs)

    def _chunks(self, attributes: Sequence[MISPAttribute]) -> Iterator[list[MISPAttribute]]:
        chunk: list[MISPAttribute] = []
        size = 0
        for attribute in attributes:
            data = getattr(attribute, "data", None)
            weight = len(data.getbuffer()) * 4 // 3 if data is not None else 0  # base64 on the wire
            if chunk and (len(chunk) >= self.options.chunk_size or size + weight > self.max_request_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(attribute)
            size += weight
        if chunk:
            yield chunk

    def sharing_group_id(self) -> str:
        """Id of the sharing group named in the options (looked up once). :raise MispConfigError: unknown name."""
        if self._sharing_group_id is None:
            wanted = str(self.options.sharing_group).strip().lower()
            groups = self._call("list sharing groups", "sharing_groups") or []
            names = []
            for group in groups:
                sg = group.get("SharingGroup", group) if isinstance(group, dict) else {}
                names.append(str(sg.get("name")))
                if str(sg.get("name", "")).strip().lower() == wanted:
                    self._sharing_group_id = str(sg["id"])
                    break
            else:
                raise MispConfigError(f"sharing group {self.options.sharing_group!r} is not available to this MISP "
                                      f"user; available: {', '.join(names) or 'none'}")
        return self._sharing_group_id

    def _header(self, event: MISPEvent) -> MISPEvent:
        """The event without attributes: metadata and tags, as sent on create and update."""
        header = MISPEvent()
        header.uuid = event.uuid
        header.info = event.info
        if getattr(event, "date", None):
            header.set_date(event.date)
        header.distribution = event.distribution
        header.threat_level_id = event.threat_level_id
        header.analysis = event.analysis
        header.published = False
        if int(event.distribution) == 4:
            header.sharing_group_id = int(self.sharing_group_id())
        for tag in event.tags:
            header.add_tag(tag.name)
        return header

    # -------------------------------------------------------------- public
    def share(self, mapping: MappingResult) -> ShareResult:
        """Create or update the event in MISP, then publish when the options say so.

        :param mapping: the output of ``event_to_misp`` / ``investigation_to_misp``.
        :return: counts and rejections.
        """
        event = mapping.misp_event
        result = ShareResult(event_uuid=event.uuid, skipped_unmapped=dict(mapping.skipped_unmapped),
                             galaxy_clusters=galaxy_clusters(event.tags))
        header = self._header(event)
        existing = self._fetch(event.uuid)
        if existing is None:
            existing = self._create(header, result)
        published_before = False
        if existing is not None:
            published_before = bool(existing.get("published"))
            self._update(header, event, existing, mapping.managed_tag_prefixes, result,
                         mapping.managed_attribute_tag_prefixes)
        else:
            self._add_attributes(event.uuid, list(event.attributes), result)
        self._sync_reports(event, existing, result)
        self._publish_if_needed(result, published_before)
        for error in result.errors():
            log.warning("%s", error)
        return result

    # -------------------------------------------------------------- steps
    def _fetch(self, event_uuid: str) -> dict[str, Any] | None:
        # HEAD first: PyMISP logs every 404 of get_event at ERROR, and "not there yet" is routine.
        if not self._call(f"check event {event_uuid}", "event_exists", event_uuid):
            return None
        try:
            found = self._call(f"get event {event_uuid}", "get_event", event_uuid)
        except MispNotFound:
            return None
        return found.get("Event", found) if isinstance(found, dict) else None

    def _create(self, header: MISPEvent, result: ShareResult) -> dict[str, Any] | None:
        """Create the event (metadata and tags). :return: the stored event when it already existed (a race)."""
        try:
            created = self._call(f"add event {header.uuid} ({header.info!r})", "add_event", header, metadata=True)
        except MispRejected as exc:
            if exc.status == 404 and "already exists" in str(exc):  # created by a concurrent run meanwhile
                return self._fetch(header.uuid)
            raise
        stored = created.get("Event", created)
        result.created = True
        result.misp_event_id = str(stored.get("id")) if stored.get("id") is not None else None
        return None

    def _add_attributes(self, event_uuid: str, attributes: list[MISPAttribute], result: ShareResult) -> None:
        for chunk in self._chunks(attributes):
            action = f"add {len(chunk)} attribute(s) to event {event_uuid}"
            try:
                answer = self._call(action, "add_attribute", event_uuid, chunk)
            except MispRejected as exc:
                per = _per_attribute_errors(exc.errors)
                if not per and len(chunk) == 1 and exc.errors:
                    per = {0: exc.errors}
                if not per:
                    raise
                for index, errs in per.items():
                    result.rejected.append((attribute_label(chunk[index]), _reason(errs)))
                continue
            per = _per_attribute_errors(answer.get("errors")) if isinstance(answer, dict) else {}
            for index, errs in per.items():
                result.rejected.append((attribute_label(chunk[index]), _reason(errs)))
            result.added += len(chunk) - len(per)

    def _update(self, header: MISPEvent, event: MISPEvent, stored: dict[str, Any], managed: Sequence[str],
                result: ShareResult, managed_attribute_tags: Sequence[str] = ()) -> None:
        result.misp_event_id = str(stored.get("id")) if stored.get("id") is not None else None
        by_uuid = {str(a.get("uuid")): a for a in stored.get("Attribute") or [] if not a.get("deleted")}
        new: list[MISPAttribute] = []
        changed: list[MISPAttribute] = []
        for attribute in event.attributes:
            old = by_uuid.get(str(attribute.uuid))
            if old is None:
                new.append(attribute)
            elif self._same(attribute, old):
                result.unchanged += 1
            else:
                changed.append(attribute)
        stored_tags = {str(t.get("name")) for t in stored.get("Tag") or []}
        wanted_tags = {t.name for t in header.tags}
        stale = sorted(t for t in stored_tags - wanted_tags if t.startswith(tuple(managed)))
        result.metadata_changed = self._header_differs(header, stored, stored_tags)
        if changed or result.metadata_changed:
            self._edit(header, changed, result)
        for tag in stale:
            self._call(f"remove tag {tag!r} from event {header.uuid}", "untag", header.uuid, tag)
            result.tags_removed += 1
        wanted = {str(a.uuid) for a in event.attributes}
        for old_uuid, old in by_uuid.items():
            # Ours are uuid5 (derived); attributes people added in MISP are uuid4 and stay.
            if old_uuid not in wanted and _is_derived(old_uuid):
                self._call(f"remove attribute {attribute_label(old)} from event {header.uuid}", "delete_attribute",
                           old_uuid)
                result.removed += 1
        self._add_attributes(header.uuid, new, result)
        if managed_attribute_tags:
            self._sync_attribute_tags(event, by_uuid, tuple(managed_attribute_tags), result)

    def _sync_attribute_tags(self, event: MISPEvent, stored: dict[str, dict[str, Any]], prefixes: tuple[str, ...],
                             result: ShareResult) -> None:
        """Attach/remove managed tags on attributes MISP already had; people's own tags stay."""
        for attribute in event.attributes:
            old = stored.get(str(attribute.uuid))
            if old is None:
                continue  # added just now, with its tags in the payload
            wanted = {t.name for t in attribute.tags if t.name.startswith(prefixes)}
            have = {str(t.get("name")) for t in old.get("Tag") or [] if str(t.get("name")).startswith(prefixes)}
            for name in sorted(wanted - have):
                self._call(f"tag attribute {attribute_label(attribute)} with {name!r}", "tag", attribute.uuid, name)
                result.attribute_tags_added += 1
            for name in sorted(have - wanted):
                self._call(f"remove tag {name!r} from attribute {attribute_label(attribute)}", "untag",
                           attribute.uuid, name)
                result.attribute_tags_removed += 1

    def _edit(self, header: MISPEvent, changed: list[MISPAttribute], result: ShareResult) -> None:
        for chunk in self._chunks(changed) if changed else iter([[]]):
            payload = self._header(header) if chunk else header
            payload.Attribute = list(chunk)  # matched by uuid server-side: updated in place
            answer = self._call(f"update event {header.uuid} ({len(chunk)} attribute(s))", "update_event",
                                payload, metadata=True)
            per = _per_attribute_errors(answer.get("errors")) if isinstance(answer, dict) else {}
            for index, errs in per.items():
                result.rejected.append((attribute_label(chunk[index]), _reason(errs)))
            result.updated += len(chunk) - len(per)

    def _sync_reports(self, event: MISPEvent, stored: dict[str, Any] | None, result: ShareResult) -> None:
        """Add, edit or remove our event reports; MISP's copy comes with the event (``EventReport``)."""
        have = {str(r.get("uuid")): r for r in (stored or {}).get("EventReport") or []
                if str(r.get("deleted", False)).lower() not in ("true", "1")}
        wanted = {str(r.uuid): r for r in event.event_reports}
        pending = [(report_id, report) for report_id, report in wanted.items()
                   if have.get(report_id) is None or not self._same_report(report, have[report_id])]
        for done, (report_id, report) in enumerate(pending):
            if self.reports_unavailable:
                result.reports_unavailable += len(pending) - done
                return
            label = report_label(report)
            try:
                if report_id not in have:
                    self._call(f"add {label} to event {event.uuid}", "add_event_report", event.uuid, report)
                    result.reports_added += 1
                else:
                    self._call(f"update {label} of event {event.uuid}", "update_event_report", report, report_id)
                    result.reports_updated += 1
            except MispNotFound as exc:  # no eventReports on this MISP: the rest of the event is shared
                self._no_reports(exc)
                result.reports_unavailable += 1
            except MispRejected as exc:  # the attributes are shared; the report is named with MISP's reason
                result.rejected.append((label, _reason(exc.errors) if exc.errors else str(exc)))
        for report_id, old in have.items():
            if report_id not in wanted and _is_derived(report_id):
                # Hard: a soft-deleted report keeps its UUID, and ours is fixed (uuid5).
                try:
                    self._call(f"remove {report_label(old)} from event {event.uuid}", "delete_event_report",
                               report_id, hard=True)
                except MispNotFound:
                    # This MISP listed the report, so it serves reports: someone removed it meanwhile.
                    log.info("%s of event %s was already gone", report_label(old), event.uuid)
                    continue
                result.reports_removed += 1

    def _no_reports(self, exc: MispNotFound) -> None:
        """Remember that this MISP serves no event reports and say so once."""
        if not self.reports_unavailable:
            self.reports_unavailable = True
            log.warning("MISP does not serve event reports (%s): descriptions are not shared by this task; "
                        "the events are shared and published without them", exc)

    @staticmethod
    def _same_report(report: MISPEventReport, old: dict[str, Any]) -> bool:
        return (str(report.name) == str(old.get("name")) and str(report.content) == str(old.get("content"))
                and str(report.distribution) == str(old.get("distribution")))

    @staticmethod
    def _header_differs(header: MISPEvent, stored: dict[str, Any], stored_tags: set[str]) -> bool:
        wanted = {
            "info": str(header.info),
            "date": str(header.date) if getattr(header, "date", None) else str(stored.get("date")),
            "distribution": str(header.distribution),
            "threat_level_id": str(header.threat_level_id),
            "analysis": str(header.analysis),
            "sharing_group_id": str(getattr(header, "sharing_group_id", 0) or 0),
        }
        have = {k: str(stored.get(k) if stored.get(k) is not None else "0") for k in wanted}
        return wanted != have or not {t.name for t in header.tags} <= stored_tags

    @staticmethod
    def _same(attribute: MISPAttribute, old: dict[str, Any]) -> bool:
        value = str(attribute.value)
        stored_value = str(old.get("value"))
        if attribute.type == "malware-sample":  # MISP stores filename|md5
            same_value = stored_value == value or stored_value.startswith(value + "|")
        else:
            same_value = stored_value == value
        return (same_value and attribute.type == old.get("type") and attribute.category == old.get("category")
                and bool(attribute.to_ids) == (str(old.get("to_ids")).lower() in ("true", "1"))
                and str(getattr(attribute, "comment", "") or "") == str(old.get("comment") or ""))

    def _publish_if_needed(self, result: ShareResult, published_before: bool) -> None:
        # Every MISP write unpublishes the event, so publishing comes last.
        if self.options.publish and (result.changed or not published_before):
            self._call(f"publish event {result.event_uuid}", "publish", result.event_uuid, alert=False)
            result.published = True
        else:
            result.published = published_before and not result.changed
