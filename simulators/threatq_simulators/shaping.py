"""Response shapes of the ThreatQ simulator, built from the recorded payloads.

Three indicator forms, as recorded (tests/data/threatq/samples/):

- **row** (lists, ``/query``, data-collection feed; Elastic and stix-shifter samples): base
  columns, ``null`` optional dates and ``description`` left out, ``type``/``status`` compact,
  ``adversaries`` always, ``tags`` as strings when present, ``score`` an int, ``sources`` in the
  flattened-pivot form (``source_id``, ``source_type``, ``indicator_id``… plus ``tlp_id``,
  ``tlp_name``) and ``attributes`` as plain rows;
- **detail** (``GET /api/indicators/{id}``; tip-marketplace GetIndicatorDetails sample): every
  base column including nulls, relations only when asked with ``with=``; ``type``/``status`` in
  full form, ``score`` an object with ``with=score``, ``sources`` as source objects with a
  ``pivot``, ``attributes`` with ``attribute{}`` and ``sources[]``;
- **create** (``POST /api/indicators``; tip-marketplace CreateIndicator and XSOAR mock):
  detail columns + full ``type`` + ``existing`` + ``sources``/``attributes`` in detail form.

In ``v6`` mode, ``attributes`` and ``sources`` appear only when ``with=`` or ``fields=`` names
them (ThreatQ 6.12+ behaviour, Elastic PR #20042); in ``legacy`` mode they are always there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Projection", "INDICATOR_RELATIONS", "EVENT_RELATIONS", "LIBRARY_RELATIONS", "parse_with",
           "parse_fields"]

_BASE_ORDER = (
    "class", "score", "value", "description", "expires_calculated_at", "touched_at", "id", "updated_at",
    "published_at", "created_at", "status_id", "hash", "type_id", "expires_at", "expired_at", "last_detected_at",
)
_ROW_OPTIONAL = frozenset({"description", "expires_at", "expired_at", "expires_calculated_at", "last_detected_at"})
_DETAIL_EXTRA = {"expires_needs_calc": "N"}

INDICATOR_RELATIONS = frozenset(
    {"attributes", "sources", "score", "type", "status", "adversaries", "events", "tags", "comments", "watchlist",
     "signatures", "attachments", "indicators", "tasks", "malware", "attack_pattern", "campaign", "ttp", "tool",
     "investigations", "course_of_action", "exploit_target", "identity", "incident", "intrusion_set", "report",
     "vulnerability"}
)
EVENT_RELATIONS = frozenset(
    {"indicators", "attributes", "adversaries", "attachments", "sources", "type", "tags", "comments", "spearphish",
     "watchlist", "events", "signatures", "malware", "attack_pattern"}
)
#: ``with=`` names accepted on Threat Library objects (``/api/malware``, ``/api/attack_pattern``):
#: the indicator relations (custom objects relate to everything); ``attributes``, ``sources`` and
#: ``events`` are filled, the others answer empty lists.
LIBRARY_RELATIONS = INDICATOR_RELATIONS


class ShapeError(ValueError):
    """A ``with=`` or ``fields=`` value names something unknown."""


def parse_with(raw: str | Iterable[str] | None, allowed: frozenset[str]) -> set[str]:
    """Parse ``with=a,b,c.d`` into top-level relation names; unknown names raise :class:`ShapeError`."""
    if raw is None:
        return set()
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    out: set[str] = set()
    for part in parts:
        part = str(part).strip()
        if not part:
            continue
        top = part.split(".", 1)[0]
        # Siemplify sends camelCase relation names; the API answers in snake_case
        snake = "".join("_" + c.lower() if c.isupper() else c for c in top)
        if snake not in allowed:
            raise ShapeError(f"The with relation {top} is not valid.")
        out.add(snake)
    return out


@dataclass
class FieldsSpec:
    """Parsed ``fields``: ``star`` (``*`` = default columns), top-level names, and sub-fields."""

    star: bool = True
    top: set[str] = field(default_factory=set)
    sub: dict[str, set[str]] = field(default_factory=dict)


def parse_fields(raw: str | Iterable[str] | None) -> FieldsSpec | None:
    """Parse ``fields`` (comma string on GET, JSON array in a ``/query`` body); None when absent."""
    if raw is None:
        return None
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    spec = FieldsSpec(star=False)
    for part in parts:
        if not isinstance(part, str):
            raise ShapeError("The fields must be strings.")
        part = part.strip()
        if not part:
            continue
        if part == "*":
            spec.star = True
        elif "." in part:
            top, rest = part.split(".", 1)
            spec.sub.setdefault(top, set()).add(rest.split(".", 1)[0])
        else:
            spec.top.add(part)
    if not spec.top and not spec.sub:
        spec.star = True
    return spec


@dataclass
class Projection:
    """What to put in each indicator object of one response.

    :param form: ``row``, ``detail`` or ``create``.
    :param legacy: legacy mode (attributes and sources always present).
    :param with_: relation names asked for with ``with=``.
    :param fields: parsed ``fields`` or None.
    """

    form: str = "row"
    legacy: bool = False
    with_: set[str] = field(default_factory=set)
    fields: FieldsSpec | None = None

    def wants(self, rel: str) -> bool:
        if rel in self.with_:
            return True
        f = self.fields
        return f is not None and (rel in f.top or rel in f.sub)

    def include_rel(self, rel: str, default: bool) -> bool:
        if self.wants(rel):
            return True
        if self.fields is not None and not self.fields.star:
            return False
        return default


def _source_detail(src: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": src["source_id"], "name": src["name"], "type": src["source_type"],
            "reference_id": src["reference_id"], "tlp_id": src.get("tlp_id"), "tlp_name": src.get("tlp_name"),
            "created_at": src["created_at"], "updated_at": src["updated_at"], "published_at": src["published_at"],
            "pivot": {"id": src["id"], "source_id": src["source_id"], "indicator_id": src["indicator_id"],
                      "creator_source_id": src["creator_source_id"]}}


def _attribute_detail(attr: Mapping[str, Any], sources: list[Mapping[str, Any]]) -> dict[str, Any]:
    out = dict(attr)
    first = sources[0] if sources else None
    out["sources"] = (
        [{"id": first["source_id"], "name": first["name"], "type": first["source_type"],
          "reference_id": first["reference_id"], "tlp_id": first.get("tlp_id"), "tlp_name": first.get("tlp_name"),
          "created_at": attr["created_at"], "updated_at": attr["updated_at"], "published_at": first["published_at"],
          "pivot": {"indicator_attribute_id": attr["id"], "source_id": first["source_id"], "id": attr["id"],
                    "creator_source_id": first["creator_source_id"]}}]
        if first else []
    )
    out["attribute"] = {"id": attr["attribute_id"], "name": attr["name"], "created_at": "2025-06-02 09:14:11",
                        "updated_at": "2025-06-02 09:14:11"}
    return out


def _restrict(items: list[Mapping[str, Any]], keys: set[str] | None) -> list[dict[str, Any]]:
    if not keys:
        return [dict(i) for i in items]
    return [{k: v for k, v in i.items() if k in keys} for i in items]


def shape_indicator(
    obj: Mapping[str, Any],
    proj: Projection,
    *,
    full_type: Mapping[str, Any] | None = None,
    full_status: Mapping[str, Any] | None = None,
    score_object: Any = None,
    events: list[dict[str, Any]] | None = None,
    tag_ids: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Build one indicator object of a response from the corpus's full object.

    :param obj: the full indicator (see ``Corpus.indicator``); not mutated.
    :param proj: what to include.
    :param full_type: the full type object (detail/create forms).
    :param full_status: the full status object (detail form with ``with=status``).
    :param score_object: the ``with=score`` object (callable or value), used when score is asked for.
    :param events: related events (``with=events``).
    :param tag_ids: tag name → id, for tag objects in the detail form.
    :return: a new dict ready to serialise.
    """
    form = proj.form
    fields = proj.fields
    restrict_top = fields is not None and not fields.star
    out: dict[str, Any] = {}
    for key in _BASE_ORDER:
        if restrict_top and key not in fields.top and key != "id":  # type: ignore[union-attr]
            continue
        val = obj.get(key)
        if val is None and form == "row" and key in _ROW_OPTIONAL:
            continue
        out[key] = val
    if form != "row":
        for k, v in _DETAIL_EXTRA.items():
            out.setdefault(k, v)
    # score as an object only when asked by name (with=score)
    if "score" in proj.with_ and score_object is not None:
        out["score"] = score_object() if callable(score_object) else score_object
    row_default = form == "row"
    if proj.include_rel("adversaries", row_default):
        out["adversaries"] = [dict(a) for a in obj.get("adversaries", [])]
    if proj.include_rel("type", row_default or form == "create"):
        out["type"] = dict(full_type) if (form != "row" and full_type is not None) else dict(obj["type"])
    if proj.include_rel("status", row_default):
        out["status"] = dict(full_status) if (form == "detail" and full_status is not None) else dict(obj["status"])
    rel_default = proj.legacy and form == "row" or form == "create"
    if proj.include_rel("attributes", rel_default or (proj.legacy and form == "detail")):
        attrs = obj.get("attributes", [])
        if form == "row":
            out["attributes"] = _restrict(attrs, None if (fields is None or "attributes" in fields.top)
                                          else fields.sub.get("attributes"))
        else:
            out["attributes"] = [_attribute_detail(a, obj.get("sources", [])) for a in attrs]
    if proj.include_rel("sources", rel_default or (proj.legacy and form == "detail")):
        srcs = obj.get("sources", [])
        if form == "row":
            out["sources"] = _restrict(srcs, None if (fields is None or "sources" in fields.top)
                                       else fields.sub.get("sources"))
        else:
            out["sources"] = [_source_detail(s) for s in srcs]
    tags = obj.get("tags") or []
    if proj.wants("tags"):
        if form == "row":
            out["tags"] = list(tags)
        else:
            out["tags"] = [{"id": (tag_ids or {}).get(t, 0), "name": t} for t in tags]
    elif tags and form == "row" and not restrict_top:
        out["tags"] = list(tags)
    if proj.wants("events"):
        out["events"] = events or []
    if proj.wants("comments"):
        out["comments"] = [dict(c) for c in obj.get("comments", [])]
    for rel in ("watchlist", "signatures", "attachments", "indicators", "tasks", "malware",
                "attack_pattern", "campaign", "ttp", "tool", "investigations", "course_of_action",
                "exploit_target", "identity", "incident", "intrusion_set", "report", "vulnerability"):
        if rel in proj.with_:
            out[rel] = []
    return out
