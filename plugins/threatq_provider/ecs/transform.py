"""ThreatQ indicator → ECS document, pure.

One document per ThreatQ indicator, as Elastic's ti_threatq ingest pipeline (1.33+) writes it,
plus our additions: every ThreatQ type has a home (``threatq_provider/data/mappings/threatq_to_ecs.json``),
``TLP:AMBER`` spellings are accepted, ``threat.indicator.reference`` links back to ThreatQ, a URL
keeps its raw value, and values that Elasticsearch would reject stay out of typed fields.

The sections follow the pipeline's order (envelope, dates and ids, score, type, sources,
attributes, expiry, clean-up), one small function each. No Airflow, no network, no logging of
values; the clock comes in as ``now``. Hot path: plain dicts, precomputed lookups, one copy loop per
ThreatQ object driven by its key → kind table (``key_kinds.py``). This module is the specification;
the native engine (``native.py``) writes the same bytes faster for the lines it can map.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from socket import AF_INET, AF_INET6, inet_pton
from typing import IO, Any, NamedTuple, TextIO
from urllib.parse import urlsplit

from threatq_provider._jsonscan import MAX_DEPTH, depth_exceeds, top_level_scalars
from threatq_provider.ecs.key_kinds import DATE, LONG, NESTED, STR, ObjectKinds, prune, short, to_long
from threatq_provider.ecs.dates import format_ecs_date, to_ecs_date
from threatq_provider.ecs.errors import IndicatorRejected
from threatq_provider.ecs.expiry import REASON_STATUS_POLICY, expiration_of, status_name
from threatq_provider.ecs.native import line_mapper, resolve_engine
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.tables import Tables, TypeRule, load_tables

__all__ = ["TransformCounts", "indicator_to_ecs", "transform_stream"]

_TOP_DATES = (
    "created_at",
    "expired_at",
    "expires_at",
    "expires_calculated_at",
    "published_at",
    "touched_at",
    "last_detected_at",
)
_SOURCE_IDS = (
    "indicator_type_id",
    "indicator_status_id",
    "reference_id",
    "creator_source_id",
    "id",
    "indicator_id",
    "source_id",
    "tlp_id",
)
_SOURCE_DATES = ("created_at", "published_at", "updated_at")
_ATTRIBUTE_IDS = ("attribute_id", "id", "indicator_id")
_ATTRIBUTE_DATES = ("created_at", "updated_at", "touched_at")
_SCORES = ("score", "generated_score", "manual_score")
_RELATED_OBJECTS = (
    "adversary", "asset", "attachment", "attack_pattern", "campaign", "course_of_action", "event",
    "exploit_target", "identity", "incident", "indicator", "infrastructure", "intrusion_set",
    "investigation", "malware", "note", "report", "signature", "task", "tool", "ttp", "vulnerability",
)  # fmt: skip
_COUNTS = tuple(f"related_{name}_count" for name in _RELATED_OBJECTS)
_DUPLICATES = ("description", "score", "updated_at")
_ADVERSARY_DATES = ("created_at", "updated_at", "touched_at")
HIVES = {
    "HKEY_LOCAL_MACHINE": "HKLM",
    "HKLM": "HKLM",
    "HKEY_CURRENT_USER": "HKCU",
    "HKCU": "HKCU",
    "HKEY_USERS": "HKU",
    "HKU": "HKU",
    "HKEY_CLASSES_ROOT": "HKCR",
    "HKCR": "HKCR",
    "HKEY_CURRENT_CONFIG": "HKCC",
    "HKCC": "HKCC",
}
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_ASN_RE = re.compile(r"(?:AS)?\s*([0-9]+)", re.IGNORECASE)
# --------------------------------------------------------------------------------------------
# Conversions (Elastic's ``convert``/``date`` processors): a value that does not convert is
# removed and the reason is appended to ``error.message``; the document is kept. Each ThreatQ
# object is copied in one pass driven by a key → kind table (``key_kinds.ObjectKinds``), which
# also drops the empty values Elastic's final clean-up removes (``None``, ``""``, ``[]``, ``{}``).
# --------------------------------------------------------------------------------------------


def _kinds(
    name: str,
    dates: tuple[str, ...],
    longs: tuple[str, ...],
    strs: tuple[str, ...],
    nested: tuple[str, ...] = (),
) -> ObjectKinds:
    kinds = dict.fromkeys(nested, NESTED)
    kinds.update(dict.fromkeys(strs, STR))
    kinds.update(dict.fromkeys(longs, LONG))
    kinds.update(dict.fromkeys(dates, DATE))
    return ObjectKinds(name, kinds)


_TOP_KINDS = _kinds(
    "indicator",
    _TOP_DATES,
    ("indicator_id",) + _SCORES + _COUNTS,
    ("status_id", "type_id"),
    ("status", "type", "sources", "attributes", "adversaries", "comments", "tags", "id", "value", "updated_at"),
)
_SOURCE_KINDS = _kinds("source", _SOURCE_DATES, ("source_score",), _SOURCE_IDS)
_ATTRIBUTE_KINDS = _kinds("attribute", _ATTRIBUTE_DATES, (), _ATTRIBUTE_IDS)
_ADVERSARY_KINDS = _kinds("adversary", _ADVERSARY_DATES, (), ("id",))
# Comments (``with=comments``) are not in Elastic's pipeline; converted like attributes.
_COMMENT_KINDS = _kinds("comment", ("created_at", "updated_at"), (), ("id", "indicator_id", "creator_source_id"))
_ID_OBJ_KINDS = _kinds("id_object", (), (), ("id",))
#: Every object kind by name, as the native engine receives them (native.tables_json).
OBJECT_KINDS: dict[str, ObjectKinds] = {
    kinds.name: kinds
    for kinds in (_TOP_KINDS, _SOURCE_KINDS, _ATTRIBUTE_KINDS, _ADVERSARY_KINDS, _COMMENT_KINDS, _ID_OBJ_KINDS)
}


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def _identity(raw: dict[str, Any], tables: Tables) -> tuple[str, TypeRule | None, str, int]:
    """Type name, its rule, the value as text, and the id; rejects what cannot be indexed."""
    type_obj = raw.get("type")
    if isinstance(type_obj, dict):
        type_name = type_obj.get("name")
    else:
        type_name = type_obj
    if not isinstance(type_name, str) or not type_name.strip():
        # type_id alone is not enough: type ids differ between ThreatQ instances. The poll asks
        # for the type relation (with=type / fields=*), so this is a malformed record.
        raise IndicatorRejected(
            "missing_type",
            f"indicator {short(raw.get('id'))} has no type.name (type_id={short(raw.get('type_id'))})",
        )
    value = raw.get("value")
    if value is None or value == "":
        raise IndicatorRejected("missing_value", f"indicator {short(raw.get('id'))} has no value")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise IndicatorRejected(
            "invalid_value", f"indicator {short(raw.get('id'))} has a non-scalar value {short(value)}"
        )
    indicator_id = to_long(raw.get("id"))
    if indicator_id is None:
        # The loader derives the document _id from threatq.id; without one, reruns would duplicate.
        raise IndicatorRejected("missing_id", f"indicator without a usable id (id={short(raw.get('id'))})")
    return type_name, tables.types.get(type_name), value if isinstance(value, str) else str(value), indicator_id


def _normalise_threatq(tq: dict[str, Any], errors: list[str]) -> None:
    """Nested objects of the ThreatQ object: status, type, attributes, adversaries, tags (steps 9, 16, 18)."""
    for key in ("status", "type"):
        obj = tq.get(key)
        if type(obj) is dict:
            obj_id = obj.get("id")
            if type(obj_id) is int and all(obj.values()):
                tq[key] = {**obj, "id": str(obj_id)}  # the usual {id, name, ...}: no empties, no nesting
            else:
                tq[key] = _ID_OBJ_KINDS.copy(obj, f"threatq.{key}", errors)
        elif type(obj) is str:
            # Older API shapes give a bare name; the index maps status/type as objects, and a
            # string there would make Elasticsearch reject the document.
            tq[key] = {"name": obj}
    for key, kinds in (("attributes", _ATTRIBUTE_KINDS), ("adversaries", _ADVERSARY_KINDS), ("comments", _COMMENT_KINDS)):
        if key in tq:
            converted = kinds.copy_list(tq[key], f"threatq.{key}", errors)
            if converted is None:
                del tq[key]
            else:
                tq[key] = converted
    attributes = tq.get("attributes")
    if attributes:
        for attr in attributes:
            name = attr.get("name") if type(attr) is dict else None
            if type(name) is str:
                attr["name"] = _ATTRIBUTE_NAMES.get(name) or _attribute_name(name)
    tags = tq.get("tags")
    if tags is not None and (type(tags) is not list or not all(type(t) is str and t for t in tags)):
        # ThreatQ returns tags as strings or as {id, name} objects; keep names so the keyword
        # mapping of threatq.tags never meets an object (Elasticsearch would reject the document).
        names = [t.get("name") if type(t) is dict else t for t in (tags if type(tags) is list else [tags])]
        kept = [n if type(n) is str else str(n) for n in names if n is not None and n != ""]
        if kept:
            tq["tags"] = kept
        else:
            del tq["tags"]


def _attribute_name(name: str) -> str:
    """``AlienVault Threat Level`` → ``alienvault_threat_level`` (Elastic's lowercase + gsub)."""
    normalised = name.lower().replace(" ", "_")
    if len(_ATTRIBUTE_NAMES) < 4096:
        _ATTRIBUTE_NAMES[name] = normalised
    return normalised


_ATTRIBUTE_NAMES: dict[str, str] = {}


def _tlp(name: object, tables: Tables) -> str:
    """ECS TLP value of a ThreatQ ``tlp_name`` (``TLP:AMBER`` → ``AMBER``), or ``""``."""
    if not isinstance(name, str):
        return ""
    text = name.strip().upper()
    for prefix in tables.tlp_prefixes:
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
            break
    result = tables.tlp_spellings.get(text, "")
    if len(_TLP_CACHE) < 1024:
        _TLP_CACHE[name] = result
    return result


_TLP_CACHE: dict[str, str] = {}


def _sources(tq: dict[str, Any], indicator: dict[str, Any], tables: Tables, errors: list[str], keep: bool) -> None:
    """Source ids, dates, provider (from ``name``, Elastic ≥1.33) and TLP (pipeline steps 14-15)."""
    sources = _SOURCE_KINDS.copy_list(tq.get("sources"), "threatq.sources", errors)
    if sources is None:
        tq.pop("sources", None)
        return
    providers: list[str] = []
    marking: list[str] = []
    for src in sources:
        if type(src) is not dict:
            continue
        name = src.get("name")
        if type(name) is str and name not in providers:
            providers.append(name)
        tlp_name = src.get("tlp_name")
        if tlp_name is not None:
            tlp = _TLP_CACHE.get(tlp_name) if type(tlp_name) is str else None
            if tlp is None:
                tlp = _tlp(tlp_name, tables)
            if tlp and tlp not in marking:
                marking.append(tlp)
        if not keep:
            src.pop("provider", None)
            src.pop("tlp_name", None)
    tq["sources"] = sources
    if providers:
        indicator["provider"] = providers
    if marking:
        indicator["marking"] = {"tlp": marking}


def _put(root: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    node = root
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def _put_field(
    path: tuple[str, ...], value: object, doc: dict[str, Any], indicator: dict[str, Any], tq: dict[str, Any]
) -> None:
    """Set a dotted field of the document under construction (``threat.indicator.*`` and
    ``threatq.*`` live in their own dicts until the document is assembled)."""
    if path[0] == "threatq":
        _put(tq, path[1:], value)
    elif path[0] == "threat" and path[1] == "indicator":
        _put(indicator, path[2:], value)
    else:
        _put(doc, path, value)


def _append_unique(related: dict[str, list[str]], key: str, value: str) -> None:
    values = related.get(key)
    if values is None:
        related[key] = [value]
    elif value not in values:
        values.append(value)


def _parse_url(value: str) -> dict[str, Any] | None:
    """``uri_parts`` equivalent: the URL's parts, or ``None`` when it is not an absolute URL with
    a host (e.g. the scheme-less ``89.160.20.156:8080/maf.html`` of Elastic's fixture)."""
    scheme, sep, _ = value.partition(":")
    if not sep or not _SCHEME_RE.fullmatch(scheme) or value[len(scheme) + 1 : len(scheme) + 3] != "//":
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if hostport.startswith("["):
        host, bracket, port_text = hostport[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            return None
        port_text = port_text[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        return None
    url: dict[str, Any] = {"original": value, "full": value, "scheme": parts.scheme, "domain": host}
    if port_text:
        if not (port_text.isdigit() and port_text.isascii() and int(port_text) <= 65535):
            return None
        url["port"] = int(port_text)
    path = parts.path
    if path:
        url["path"] = path
        last = path.rpartition("/")[2]
        extension = last.rpartition(".")[2] if "." in last else ""
        if extension:
            url["extension"] = extension
    if parts.query:
        url["query"] = parts.query
    if parts.fragment:
        url["fragment"] = parts.fragment
    if userinfo:
        username, colon, password = userinfo.partition(":")
        if username:
            url["username"] = username
        if colon and password:
            url["password"] = password
    return url


def _is_ip(value: str) -> bool:
    """An address Elasticsearch's ``ip`` type takes: IPv4 dotted quad or IPv6 (C ``inet_pton``;
    the ``ipaddress`` module is ~10x slower and accepts scoped ``fe80::1%eth0``, which ES refuses)."""
    try:
        inet_pton(AF_INET6 if ":" in value else AF_INET, value)
    except (OSError, ValueError):
        return False
    return True


def _place_value(
    rule: TypeRule,
    value: str,
    doc: dict[str, Any],
    indicator: dict[str, Any],
    tq: dict[str, Any],
    related: dict[str, list[str]],
    tables: Tables,
    errors: list[str],
) -> None:
    """Put the indicator value in its home (docs/reference/elastic-ti_threatq.md §2.4, plus our rows)."""
    if rule.ecs_type is not None:
        indicator["type"] = rule.ecs_type
    if len(value) > tables.keyword_max_chars:
        errors.append(
            f"threatq.indicator_value: {len(value)} characters exceed the {tables.keyword_max_chars}-character "
            f"limit of {rule.field}; kept only in threatq.indicator_value"
        )
        return
    kind = rule.kind
    typed: object = value
    if kind == "ip":
        if not _is_ip(value):
            errors.append(f"threatq.indicator_value: {short(value)} is not an IP address; not copied to {rule.field}")
            return
    elif kind == "cidr":
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            errors.append(f"threatq.indicator_value: {short(value)} is not a CIDR block; not copied to {rule.field}")
            return
        typed = str(network)
        if network.version == 6:
            indicator["type"] = "ipv6-addr"
    elif kind == "asn":
        match = _ASN_RE.fullmatch(value.strip())
        number = int(match.group(1)) if match else -1
        if not 0 <= number <= 4294967295:
            errors.append(f"threatq.indicator_value: {short(value)} is not an AS number; not copied to {rule.field}")
            return
        typed = number
    elif kind == "url":
        url = _parse_url(value)
        if url is None:
            # Elastic's uri_parts on_failure: the raw value goes to url.full, indicator_value stays.
            _put(indicator, ("url", "full"), value)
            return
        indicator["url"] = {**indicator.get("url", {}), **url}
        _append_unique(related, "hosts", url["domain"])
        tq.pop("indicator_value", None)  # remove_if_successful, as Elastic
        return
    elif kind == "registry":
        hive, sep, rest = value.partition("\\")
        abbreviation = HIVES.get(hive.upper())
        if abbreviation is not None and sep:
            _put(indicator, ("registry", "hive"), abbreviation)
            if rest:
                _put(indicator, ("registry", "key"), rest)
        else:
            _put(indicator, ("registry", "key"), value)
    _put_field(rule.path, typed, doc, indicator, tq)
    for path, constant in rule.extra:
        _put_field(path, constant, doc, indicator, tq)
    if rule.related is not None:
        _append_unique(related, rule.related, typed if isinstance(typed, str) else value)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def indicator_to_ecs(
    raw: dict[str, Any],
    *,
    now: datetime,
    options: EcsOptions,
    original: str | None = None,
    tables: Tables | None = None,
    notes: Iterable[str] = (),
) -> dict[str, Any]:
    """One ThreatQ indicator → one ECS document.

    :param raw: the indicator as ThreatQ's API returns it (not modified).
    :param now: the run's clock (used only when ``updated_at`` is missing).
    :param options: transform options.
    :param original: the raw JSON text, copied to ``event.original`` verbatim when it is written;
        defaults to a compact JSON dump of ``raw``.
    :param tables: mapping tables; defaults to ``threatq_provider/data/mappings/threatq_to_ecs.json``.
    :param notes: problems found before the mapping (e.g. text repaired while decoding the line);
        each becomes an ``error.message`` line first, and the document is flagged.
    :return: the ECS document (``threatq.id`` is the document identity, ``@timestamp`` is
        ``updated_at``).
    :raises IndicatorRejected: no type, no value, a non-scalar value, or no usable id.
    """
    if not isinstance(raw, dict):
        raise IndicatorRejected("not_an_object", f"expected a JSON object, got {type(raw).__name__}")
    tables = tables or _tables()
    _type_name, rule, value, indicator_id = _identity(raw, tables)
    errors: list[str] = list(notes)

    # Dates, ids, numbers (steps 6-10), sources, attributes, adversaries (14-18).
    raw_updated = raw.get("updated_at")
    updated = to_ecs_date(raw_updated) if raw_updated is not None and raw_updated != "" else None
    if updated is None:
        if raw_updated is not None and raw_updated != "":
            errors.append(f"threatq.updated_at: unparsable date {short(raw_updated)}")
        errors.append("@timestamp: threatq.updated_at missing or unparsable; set to the run's time")
    tq = _TOP_KINDS.copy(raw, "threatq", errors)
    tq["id"] = indicator_id
    if updated is not None:
        tq["updated_at"] = updated
    else:
        tq.pop("updated_at", None)
    del tq["value"]
    tq["indicator_value"] = raw["value"]
    if options.instance is not None:  # which ThreatQ instance (several can share one index)
        tq["instance"] = options.instance
    _normalise_threatq(tq, errors)

    # Threat fields (pipeline steps 11-13, docs/reference/elastic-ti_threatq.md §2.3).
    doc: dict[str, Any] = {}
    indicator: dict[str, Any] = {}
    related: dict[str, list[str]] = {}
    tq_hash = tq.get("hash")
    if type(tq_hash) is str:
        related["hash"] = [tq_hash]
    description = tq.get("description")
    keep_description = False
    if type(description) is str:
        if len(description) > tables.keyword_max_chars:
            keep_description = True
            errors.append(
                f"threatq.description: {len(description)} characters exceed the {tables.keyword_max_chars}-character "
                "limit of threat.indicator.description; kept only in threatq.description"
            )
        else:
            indicator["description"] = description
    score = tq.get("score")
    if type(score) is int and 0 <= score <= 10:
        confidence = tables.confidence[score]
        if confidence is not None:
            indicator["confidence"] = confidence
    if rule is not None:
        _place_value(rule, value, doc, indicator, tq, related, tables, errors)
    if options.threatq_url is not None:
        indicator["reference"] = f"{options.threatq_url}/indicators/{indicator_id}/details"
    # first_seen, last_seen, modified_at: from ThreatQ's dates, as the table says (converted above).
    for name, keys in tables.indicator_dates:
        for key in keys:
            date = tq.get(key)
            if type(date) is str:
                indicator[name] = date
                break
    keep = options.preserve_duplicate_custom_fields
    _sources(tq, indicator, tables, errors, keep)

    # Expiry (steps 19-21).
    expired_at, reason = expiration_of(
        expired_at=tq.get("expired_at"),
        expires_at=tq.get("expires_at"),
        updated_at=updated,
        status=status_name(raw),
        now=now,
        duration=options.expiration,
    )
    # Status policy (ours, issue 12): a status outside it ends the IOC at its last update, unless
    # one of Elastic's rules already ended it earlier (an Expired indicator keeps Elastic's reason).
    if updated is not None and not options.status_policy.allows(status_name(raw)):
        if expired_at is None or expired_at > updated:
            expired_at, reason = updated, REASON_STATUS_POLICY
    if expired_at is not None:
        tq["ioc_expired_at"] = expired_at
        tq["ioc_expiration_reason"] = reason

    # Clean-up (steps 22-26): empty values were dropped while copying.
    if not keep:
        for key in _DUPLICATES:
            if key == "description" and keep_description:
                continue
            tq.pop(key, None)
    return _finish(updated or format_ecs_date(now), doc, indicator, tq, related, errors, raw, original, options, tables)


def _finish(
    timestamp: str,
    doc: dict[str, Any],
    indicator: dict[str, Any],
    tq: dict[str, Any],
    related: dict[str, list[str]],
    errors: list[str],
    raw: dict[str, Any],
    original: str | None,
    options: EcsOptions,
    tables: Tables,
) -> dict[str, Any]:
    """Envelope, tags and error marking (steps 1-3, 26)."""
    flagged = bool(errors)
    event: dict[str, Any] = {
        "kind": "pipeline_error" if flagged else "enrichment",
        "category": ["threat"],
        "type": ["indicator"],
    }
    if options.preserve_original_event or flagged:
        event["original"] = (
            original if original is not None else json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
        )
    out: dict[str, Any] = {"@timestamp": timestamp, "ecs": {"version": tables.ecs_version}, "event": event}
    out.update(doc)  # other top-level fields a type row may name (none today)
    if indicator:
        out["threat"] = {"indicator": indicator}
    out["threatq"] = tq
    if related:
        out["related"] = related
    if options.preserve_original_event or flagged:
        out["tags"] = (
            ["preserve_original_event", "preserve_duplicate_custom_fields"]
            if options.preserve_duplicate_custom_fields
            else ["preserve_original_event"]
        )
    elif options.preserve_duplicate_custom_fields:
        out["tags"] = ["preserve_duplicate_custom_fields"]
    if flagged:
        out["error"] = {"message": errors}
    # The fields Elastic's rules and Security views filter on (event.module, labels, feed…),
    # as the table says; last, so a flagged document carries them too.
    for path, value in tables.constants:
        _put(out, path, value)
    return out


_TABLES: list[Tables] = []


def _tables() -> Tables:
    if not _TABLES:
        _TABLES.append(load_tables())
    return _TABLES[0]


# --------------------------------------------------------------------------------------------
# Streaming form
# --------------------------------------------------------------------------------------------


@dataclass
class TransformCounts:
    """What one :func:`transform_stream` call did.

    :param read: non-blank input lines.
    :param written: ECS documents written.
    :param rejected: reason → number of rejected lines.
    :param flagged: documents written with an ``error.message`` (kept, marked ``pipeline_error``).
    :param engine: ``native`` or ``python`` (see ``ecs/native.py``).
    :param native_lines: documents the native mapper wrote; the rest of ``read`` went through
        :func:`indicator_to_ecs` (rejects, flagged documents, unusual shapes).
    """

    read: int = 0
    written: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    flagged: int = 0
    engine: str = "python"
    native_lines: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary (for XCom and logs)."""
        return {
            "read": self.read,
            "written": self.written,
            "rejected": dict(self.rejected),
            "flagged": self.flagged,
            "engine": self.engine,
            "native_lines": self.native_lines,
        }


def _codec() -> tuple[Callable[[str], Any], Callable[[Any], str]]:
    """JSON decode/encode for the stream: msgspec (C, ~4x faster both ways; Airflow itself
    depends on it) when importable, else the standard library. Both write compact UTF-8 JSON."""
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec ships with Airflow 3
        encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
        return json.loads, encoder
    decoder = msgspec.json.Decoder()
    msgspec_encode = msgspec.json.Encoder().encode

    def encode(doc: Any) -> str:
        return msgspec_encode(doc).decode("utf-8")

    return decoder.decode, encode


def _reject(rejects: IO[str], counts: TransformCounts, reason: str, message: str, line_no: int, raw: object) -> None:
    counts.rejected[reason] = counts.rejected.get(reason, 0) + 1
    entry = json.dumps({"reason": reason, "message": message, "line_no": line_no, "raw": raw}, ensure_ascii=False)
    if _LONE_SURROGATE.search(entry):
        # A UTF-8 file cannot hold a lone surrogate: the entry keeps it as a \u escape instead.
        entry = json.dumps({"reason": reason, "message": message, "line_no": line_no, "raw": raw}, ensure_ascii=True)
    rejects.write(entry + "\n")


# Lone UTF-16 surrogates: as a JSON escape in the line, or as a code point once decoded (a pair
# decodes to one astral character, so any surrogate left in a decoded string is unpaired).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}|[\ud800-\udfff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_with_surrogates(text: str) -> tuple[Any, list[str]] | None:
    """Decode a line the fast decoder refused because of lone surrogates, repairing them.

    Lone surrogates are *repaired*, not rejected: each becomes U+FFFD and the document is flagged
    with the field it was in. A lone surrogate is half of a character (typically an emoji cut in
    two by a UTF-16 truncation upstream); its other half is gone whatever we do, and UTF-8 (the
    stage files, Elasticsearch, MISP) cannot carry it, so U+FFFD (Unicode's replacement
    character, what Lucene itself stores for one) loses nothing more, while rejecting would drop
    a usable IOC from detection for a blemish in its free text. The value itself is the
    exception (see :func:`transform_stream`): a repaired value is a different IOC.

    :return: ``(record, repaired field paths)``, or ``None`` when the line holds no lone
        surrogate (then the decoder's own error stands).
    """
    if not _SURROGATE_ESCAPE.search(text):
        return None
    try:
        raw = json.loads(text, parse_constant=_no_constant)  # the standard decoder keeps lone surrogates
    except (ValueError, RecursionError):
        return None
    paths: list[str] = []
    raw = _repair_surrogates(raw, "", paths)
    return (raw, paths) if paths else None


def _repair_surrogates(value: Any, path: str, paths: list[str]) -> Any:
    """``value`` with lone surrogates in every string (keys too) replaced by U+FFFD; the dotted
    paths repaired (list positions left out, as Elasticsearch names fields) go to ``paths``."""
    if isinstance(value, str):
        if _LONE_SURROGATE.search(value):
            if path not in paths:
                paths.append(path)
            return _LONE_SURROGATE.sub(_REPLACEMENT, value)
        return value
    if isinstance(value, list):
        items = []
        for item in value:  # a loop, not a comprehension: one stack frame per nesting level
            items.append(_repair_surrogates(item, path, paths))
        return items
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _LONE_SURROGATE.search(key):
                key = _LONE_SURROGATE.sub(_REPLACEMENT, key)
                where = f"{path}.{key}" if path else key
                if where not in paths:
                    paths.append(where)
            out[key] = _repair_surrogates(item, where, paths)
        return out
    return value


def _escaped(text: str) -> str:
    """``text`` with surrogate code points written as JSON ``\\u`` escapes (a ``str`` line may hold
    them raw; ``event.original`` must be writable as UTF-8 and read the same as a ``bytes`` line)."""
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class _Reject(NamedTuple):
    reason: str
    message: str
    raw: object


def _too_deep(text: str, line_no: int) -> _Reject:
    ident = top_level_scalars(text, ("id",)).get("id")
    return _Reject("too_deeply_nested", f"line {line_no}: indicator {ident}: nested more than {MAX_DEPTH} levels deep "
                   "(ThreatQ records are about 5); not mapped", text)


def _map_line(
    text: str,
    line_no: int,
    *,
    now: datetime,
    options: EcsOptions,
    tables: Tables,
    decode: Callable[[str], Any],
    encode: Callable[[Any], str],
) -> _Reject | tuple[str, bool]:
    """The Python path of one non-blank line: ``(document JSON, flagged)`` or why it is rejected."""
    # Deeper than MAX_DEPTH is refused at that fixed depth, not wherever a parser's recursion
    # happens to give out (it depends on the caller's stack); both engines (native hands deep
    # lines to Python) and the poll apply the same limit.
    if depth_exceeds(text):
        return _too_deep(text, line_no)
    notes: list[str] = []
    try:
        raw = decode(text)
    except ValueError as exc:
        repaired = _decode_with_surrogates(text)
        if repaired is None:
            return _Reject("invalid_json", f"line {line_no}: {exc}", text)
        raw, paths = repaired
        if "value" in paths:
            # The IOC itself: a repaired value would be another indicator, never seen in traffic.
            ident = raw.get("id") if isinstance(raw, dict) else None
            return _Reject("invalid_value", f"line {line_no}: indicator {ident}: the value holds a lone UTF-16 "
                           "surrogate; not a usable IOC", json.loads(text))
        notes = [f"threatq.{path}: lone UTF-16 surrogate replaced with U+FFFD" for path in paths]
        text = _escaped(text)
    try:
        doc = indicator_to_ecs(raw, now=now, options=options, original=text, tables=tables, notes=notes)
    except IndicatorRejected as exc:
        return _Reject(exc.reason, f"line {line_no}: {exc}", raw)
    return encode(doc), "error" in doc


def transform_stream(
    lines: Iterable[str | bytes],
    out: TextIO,
    rejects: TextIO,
    *,
    now: datetime,
    options: EcsOptions,
    engine: str = "auto",
) -> TransformCounts:
    """NDJSON of raw ThreatQ indicators → NDJSON of ECS documents, streaming.

    With the compiled module installed (``engine="auto"``), each line goes to the native mapper
    first, and only the lines it hands back (rejects, flagged documents, unusual shapes) take
    :func:`indicator_to_ecs`; the output is the same bytes either way (see ``ecs/native.py``).

    :param lines: one raw indicator JSON per line (as the poll stage writes them); blank lines are
        skipped.
    :param out: receives one ECS document per line.
    :param rejects: receives ``{"reason", "message", "line_no", "raw"}`` per rejected line; ``raw``
        is the parsed object, or the original text when it did not parse. A line nested deeper
        than ``_jsonscan.MAX_DEPTH`` (512) levels is rejected as ``too_deeply_nested`` (never a
        ``RecursionError``), naming the indicator id where the line has one at its top level.
    :param now: the run's clock.
    :param options: transform options.
    :param engine: ``auto`` (native when installed), ``native`` (required) or ``python``.
    :return: counts read / written / rejected by reason / flagged.
    :raises EcsConfigError: an unknown engine, or ``native`` required but not installed.
    """
    tables = _tables()
    counts = TransformCounts()
    decode, encode = _codec()
    write = out.write
    native = line_mapper(options, tables, OBJECT_KINDS, HIVES) if resolve_engine(engine) == "native" else None
    counts.engine = "python" if native is None else "native"
    for line_no, line in enumerate(lines, start=1):
        if native is not None:
            document = native(line)
            if document is not None:
                counts.native_lines += 1
                write(document)
                write("\n")
                continue
        if type(line) is bytes:
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                counts.read += 1
                _reject(rejects, counts, "invalid_json", f"line {line_no}: not UTF-8 ({exc.reason})", line_no,
                        line.decode("utf-8", "replace"))
                continue
        else:
            text = line  # type: ignore[assignment]
        text = text.strip()
        if not text:
            continue
        counts.read += 1
        try:
            outcome = _map_line(text, line_no, now=now, options=options, tables=tables, decode=decode, encode=encode)
        except RecursionError:  # nested deeper than this stack allows, below MAX_DEPTH: same reject
            outcome = _too_deep(text, line_no)
        if isinstance(outcome, _Reject):
            _reject(rejects, counts, outcome.reason, outcome.message, line_no, outcome.raw)
            continue
        document, flagged = outcome
        if flagged:
            counts.flagged += 1
        write(document)
        write("\n")
        counts.written += 1
    # Lines the native mapper wrote were read and written; counted once here, off the hot loop.
    counts.read += counts.native_lines
    counts.written += counts.native_lines
    return counts
