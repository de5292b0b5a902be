"""ThreatQ event → ``MISPEvent``: pure functions, no Airflow, no network, no clock.

The tables live in ``threatq_provider/data/mappings/threatq_to_misp.json`` (loaded once); categories and
``to_ids`` defaults come from MISP's ``describeTypes`` (PyMISP's bundled copy unless the caller
passes the live server's). UUIDs are ``uuid5``: the event's from the ThreatQ host and event id,
each attribute's from the event UUID and the ThreatQ object it came from, so sharing the same
ThreatQ event twice produces byte-identical payloads and MISP updates instead of duplicating.

Composition (one small function per section):
``event_to_misp`` → ``_event_header`` (info, date, levels, distribution) → ``_event_tags`` (TLP,
event type, ThreatQ tags) → ``_galaxies`` (adversaries, malware, attack patterns as galaxy tags,
or unmatched attributes) →
``_indicator_attribute`` per indicator (with a ``tlp:*`` tag when its sources are more
restrictive than the event, and galaxy tags from its own ``Malware Family``/``Malware`` attributes,
``indicator_galaxy_attributes``) → ``_event_attributes`` → ``_attachment_attribute`` →
``_description_report`` (the description as one event report, ``misp_event.event_reports``).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

from pymisp import MISPAttribute, MISPEvent
from pymisp.abstract import describe_types as _BUNDLED_DESCRIBE_TYPES
from pymisp.tools.attributevalidationtool import AttributeValidationTool

from threatq_provider._resources import data_file
from threatq_provider.misp.description import escape_text, html_to_markdown, truncate
from threatq_provider.misp.options import ANALYSIS_LEVELS, THREAT_LEVELS, ShareOptions, _canon

# Project namespace for every uuid5 we derive; never change it (it would re-key every event).
NAMESPACE = uuid.UUID("6f1c3b0e-9d7a-5b7e-8c41-3a2f0e7d5b90")

UNMAPPED_ADVERSARY = "Adversary"
MATCH_FIELDS: tuple[str, ...] = ("external_id", "value", "name", "synonyms")
# ATT&CK-style cluster values end with their id: "Command and Scripting Interpreter - T1059".
_VALUE_WITH_ID = re.compile(r"^(.*\S)\s+-\s+[A-Z]+\d+(?:\.\d+)?$")


@dataclass(frozen=True)
class MappingResult:
    """What ``event_to_misp`` built.

    :param misp_event: the event, with uuid, metadata, tags and every attribute.
    :param skipped_unmapped: ThreatQ types left out because MISP has no counterpart, with counts
        (``"Adversary"``, ``"Malware"``, ``"Attack Pattern"`` count objects without a galaxy match).
    :param duplicates: attributes dropped because an identical (type, category, value) was already
        in the event (MISP refuses those: "A similar attribute already exists").
    :param managed_tag_prefixes: tag prefixes this mapping owns; the exporter may remove such tags
        from MISP when ThreatQ no longer yields them.
    :param managed_attribute_tag_prefixes: the same for attribute tags (``tlp:``, and
        ``misp-galaxy:<galaxy>=`` for the galaxies ``indicator_galaxy_attributes`` feeds): on
        attributes this mapping made, such tags are kept in step with ThreatQ.
    :param threatq_id: the ThreatQ event (or investigation) id, for messages.
    """

    misp_event: MISPEvent
    skipped_unmapped: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    managed_tag_prefixes: tuple[str, ...] = ()
    managed_attribute_tag_prefixes: tuple[str, ...] = ()
    threatq_id: Any = None


@dataclass(frozen=True)
class TlpLevel:
    """One TLP level as the mapping table lists it.

    :param name: canonical name, e.g. ``AMBER+STRICT``.
    :param tag: MISP tlp taxonomy tag, e.g. ``tlp:amber+strict``.
    :param rank: restrictiveness; higher is more restrictive (WHITE and CLEAR share one rank).
    :param order: position in the table; on equal rank the lower order wins.
    """

    name: str
    tag: str
    rank: int
    order: int


@dataclass(frozen=True)
class GalaxyRule:
    """How one kind of ThreatQ object finds its galaxy clusters (a ``galaxy_matching`` row).

    :param kind: ThreatQ object kind, also the ``skipped_unmapped`` key, e.g. ``Malware``.
    :param relations: event relations holding such objects, e.g. ``("malware",)``.
    :param event_attributes: event attribute names whose values name such objects (tag only).
    :param name_fields: object fields holding the name, first present wins.
    :param id_pattern: regular expression finding an external id in a name (``T1059``), or None.
    :param uuid_key: prefix of the unmatched attribute's uuid key.
    :param galaxies: ``(galaxy, match fields, preferred kill-chain prefix)``, tried in order; every
        galaxy with a match tags.
    :param unmatched: the attribute (``type``, optional ``category``/``comment``) for an unmatched object.
    """

    kind: str
    relations: tuple[str, ...]
    event_attributes: frozenset[str]
    name_fields: tuple[str, ...]
    id_pattern: re.Pattern[str] | None
    uuid_key: str
    galaxies: tuple[tuple[str, tuple[str, ...], str | None], ...]
    unmatched: Mapping[str, str]


@dataclass(frozen=True)
class _Tables:
    types: Mapping[str, Mapping[str, str]]
    aliases: Mapping[str, str]
    unmapped_type: Mapping[str, str]
    malware_attachment_types: frozenset[str]
    malware_attachment: Mapping[str, str]
    other_attachment: Mapping[str, str]
    event_attribute: Mapping[str, str]
    galaxy_rules: tuple[GalaxyRule, ...]
    indicator_galaxy_rules: Mapping[str, tuple[GalaxyRule, ...]]
    event_type_tags: Mapping[str, tuple[str, ...]]
    event_type_machine_tag: str
    id_machine_tag: str
    tlp_by_id: Mapping[str, str]
    tlp_aliases: Mapping[str, str]
    tlp_levels: Mapping[str, TlpLevel]
    managed_attribute_tag_prefixes: tuple[str, ...]
    threat_level_attribute: str
    analysis_level_attribute: str
    managed_tag_prefixes: tuple[str, ...]
    description_report: Mapping[str, Any]


@lru_cache(maxsize=1)
def tables() -> _Tables:
    """The mapping tables from ``threatq_provider/data/mappings/threatq_to_misp.json``, loaded once."""
    raw = json.loads(data_file("mappings", "threatq_to_misp.json").read_text(encoding="utf-8"))
    rules = tuple(_galaxy_rule(row) for row in raw["galaxy_matching"]["kinds"])
    indicator_rules = _indicator_galaxy_rules(raw["indicator_galaxy_attributes"]["by_attribute"], rules)
    return _Tables(
        types={k.lower(): v for k, v in raw["indicator_types"].items()},
        aliases={k.lower(): v for k, v in raw["indicator_type_aliases"].items()},
        unmapped_type=raw["unmapped_type"],
        malware_attachment_types=frozenset(s.lower() for s in raw["attachments"]["malware_types"]),
        malware_attachment=raw["attachments"]["malware"],
        other_attachment=raw["attachments"]["other"],
        event_attribute=raw["event_attribute"],
        galaxy_rules=rules,
        indicator_galaxy_rules=indicator_rules,
        event_type_tags={k.lower(): tuple(v) for k, v in raw["event_type_tags"].items()},
        event_type_machine_tag=raw["event_type_machine_tag"],
        id_machine_tag=raw["id_machine_tag"],
        tlp_by_id=raw["tlp"]["by_id"],
        tlp_aliases=raw["tlp"]["aliases"],
        tlp_levels={row["name"]: TlpLevel(row["name"], row["tag"], int(row["rank"]), k)
                    for k, row in enumerate(raw["tlp"]["levels"])},
        managed_attribute_tag_prefixes=tuple(dict.fromkeys([
            *raw["managed_attribute_tag_prefixes"],
            *(f"misp-galaxy:{galaxy}=" for kinds in indicator_rules.values() for rule in kinds
              for galaxy, _, _ in rule.galaxies)])),
        threat_level_attribute=raw["threat_level_attribute"].lower(),
        analysis_level_attribute=raw["analysis_level_attribute"].lower(),
        managed_tag_prefixes=tuple(dict.fromkeys([
            *raw["managed_tag_prefixes"],
            *(f"misp-galaxy:{galaxy}=" for rule in rules for galaxy, _, _ in rule.galaxies)])),
        description_report=raw["description_report"],
    )


def _galaxy_rule(row: Mapping[str, Any]) -> GalaxyRule:
    galaxies = []
    for entry in row["galaxies"]:
        unknown = set(entry["match"]) - set(MATCH_FIELDS)
        if unknown:  # a typo in the table must fail loudly, not silently match nothing
            raise ValueError(f"galaxy_matching {row['kind']}/{entry['galaxy']}: "
                             f"unknown match fields {sorted(unknown)}")
        galaxies.append((entry["galaxy"], tuple(entry["match"]), entry.get("prefer_kill_chain")))
    return GalaxyRule(kind=row["kind"], relations=tuple(row["relations"]),
                      event_attributes=frozenset(n.lower() for n in row["event_attributes"]),
                      name_fields=tuple(row["name_fields"]),
                      id_pattern=re.compile(row["id_pattern"], re.IGNORECASE) if row.get("id_pattern") else None,
                      uuid_key=row["uuid_key"], galaxies=tuple(galaxies), unmatched=row["unmatched"])


def _indicator_galaxy_rules(by_attribute: Mapping[str, Any],
                            rules: tuple[GalaxyRule, ...]) -> dict[str, tuple[GalaxyRule, ...]]:
    """Indicator attribute name (lower case) → the galaxy rules its values are matched with."""
    by_kind = {rule.kind: rule for rule in rules}
    out: dict[str, tuple[GalaxyRule, ...]] = {}
    for name, kinds in by_attribute.items():
        unknown = [k for k in kinds if k not in by_kind]
        if unknown:  # a typo in the table must fail loudly, not silently match nothing
            raise ValueError(f"indicator_galaxy_attributes {name!r}: unknown galaxy_matching kinds {unknown}")
        out[name.strip().lower()] = tuple(by_kind[k] for k in kinds)
    return out


@lru_cache(maxsize=16)
def galaxy_index(galaxy: str, prefer_kill_chain: str | None = None) -> Mapping[str, Mapping[str, str | None]]:
    """Exact, case-insensitive keys of one galaxy's clusters, per match field → cluster value.

    Reads the cluster file pymispgalaxies ships (MISP's own misp-galaxy data, offline).
    pymispgalaxies' ``search`` is fuzzy ("Emotet" hits "Unidentified JS 003 (Emotet Downloader)"),
    so the index is built here. Revoked clusters answer to their external id only. A key several
    clusters share is ambiguous and maps to None (it matches nothing), unless exactly one of them
    has a kill chain starting with ``prefer_kill_chain`` (``attack-``: enterprise ATT&CK's
    "Phishing - T1566" over the mobile "Phishing - T1660").

    :param galaxy: cluster file name, e.g. ``threat-actor``, ``mitre-attack-pattern``.
    :param prefer_kill_chain: kill-chain prefix that settles a shared key, or None.
    :return: ``{field: {key: cluster value or None}}`` for every field in ``MATCH_FIELDS``.
    """
    from importlib.resources import files

    data = json.loads(
        files("pymispgalaxies").joinpath("data", "misp-galaxy", "clusters", f"{galaxy}.json").read_text("utf-8")
    )
    candidates: dict[str, dict[str, dict[str, bool]]] = {f: {} for f in MATCH_FIELDS}

    def claim(field_name: str, key: Any, value: str, preferred: bool) -> None:
        key = " ".join(str(key).split()).lower()
        if key:
            candidates[field_name].setdefault(key, {})[value] = preferred

    for entry in data["values"]:
        value = entry["value"]
        meta = entry.get("meta") or {}
        external = meta.get("external_id")
        for ident in external if isinstance(external, list) else [external] if external else []:
            claim("external_id", ident, value, True)
        if entry.get("revoked"):
            continue
        preferred = bool(prefer_kill_chain) and any(
            str(k).startswith(prefer_kill_chain) for k in meta.get("kill_chain") or [])
        claim("value", value, value, preferred)
        named = _VALUE_WITH_ID.match(value)
        if named:
            claim("name", named.group(1), value, preferred)
        for synonym in meta.get("synonyms") or []:
            claim("synonyms", synonym, value, preferred)
    index: dict[str, dict[str, str | None]] = {f: {} for f in MATCH_FIELDS}
    for field_name, keys in candidates.items():
        for key, values in keys.items():
            if len(values) == 1:
                index[field_name][key] = next(iter(values))
                continue
            preferred_values = [v for v, p in values.items() if p]
            index[field_name][key] = preferred_values[0] if len(preferred_values) == 1 else None
    return index


def match_cluster(name: str, galaxy: str, fields: Iterable[str] = ("value", "synonyms"),
                  id_pattern: re.Pattern[str] | None = None, prefer_kill_chain: str | None = None) -> str | None:
    """The cluster value an exact match of ``name`` finds in ``galaxy``, trying ``fields`` in order.

    ``"T1059 - Command and Scripting Interpreter"`` gives the id ``T1059`` (``external_id``) and the
    bare name ``Command and Scripting Interpreter`` (``name``, ``synonyms``, and ``value`` after the
    whole text).

    :param name: the ThreatQ name.
    :param galaxy: cluster file name.
    :param fields: match fields, in order (``MATCH_FIELDS``).
    :param id_pattern: finds an external id in ``name``.
    :param prefer_kill_chain: settles a key several clusters share (see ``galaxy_index``).
    :return: the cluster value, or None.
    """
    text = " ".join(str(name).split())
    ident = None
    bare = text
    if id_pattern is not None:
        found = id_pattern.search(text)
        if found:
            ident = found.group(0)
            bare = (text[:found.start()].rstrip(" -–:|") + " " + text[found.end():].lstrip(" -–:|")).strip()
    index = galaxy_index(galaxy, prefer_kill_chain)
    for field_name in fields:
        keys = [ident] if field_name == "external_id" else [text, bare] if field_name == "value" else [bare]
        for key in dict.fromkeys(k for k in keys if k):
            hit = index[field_name].get(key.lower())
            if hit is not None:
                return hit
    return None


def galaxy_tags(name: str, rule: GalaxyRule) -> list[str]:
    """``misp-galaxy:<galaxy>="<value>"`` for every galaxy of ``rule`` with an exact match."""
    tags = []
    for galaxy, fields, prefer in rule.galaxies:
        value = match_cluster(name, galaxy, fields, rule.id_pattern, prefer)
        if value is not None:
            tags.append(f'misp-galaxy:{galaxy}="{value}"')
    return tags


def galaxy_tag(name: str, galaxies: Iterable[str] = ("threat-actor",)) -> str | None:
    """``misp-galaxy:<galaxy>="<value>"`` for the first exact value/synonym match, else None."""
    for galaxy in galaxies:
        value = match_cluster(name, galaxy)
        if value is not None:
            return f'misp-galaxy:{galaxy}="{value}"'
    return None


def _host_key(threatq_host: str) -> str:
    """``https://TQ.example.com/`` and ``tq.example.com`` name the same ThreatQ instance."""
    text = threatq_host.strip()
    parts = urlsplit(text if "://" in text else f"//{text}")
    return (parts.netloc or parts.path).lower().rstrip("/")


def event_uuid(threatq_host: str, event_id: Any, kind: str = "event") -> str:
    """Deterministic MISP event UUID for a ThreatQ event (or ``kind="investigation"``).

    :param threatq_host: ThreatQ URL or host name, or ``instance:<name>`` for a ThreatQ instance named
        on its connection (the share operators' ``uuid_scope``).
    :param event_id: the ThreatQ object id.
    :param kind: ``event`` or ``investigation``.
    :return: a uuid5 string.
    """
    return str(uuid.uuid5(NAMESPACE, f"threatq:{_host_key(threatq_host)}:{kind}:{event_id}"))


def attribute_uuid(misp_event_uuid: str, key: str) -> str:
    """Deterministic attribute UUID, scoped by the event (MISP attribute UUIDs are instance-wide).

    :param misp_event_uuid: the event's UUID.
    :param key: what the attribute stands for, e.g. ``indicator:IP Address:203.0.113.5``.
    :return: a uuid5 string.
    """
    return str(uuid.uuid5(uuid.UUID(misp_event_uuid), key))


def _name(obj: Any, key: str) -> str | None:
    """ThreatQ embeds relations as ``{"name": …}`` objects, strings, or flat ``<key>_name`` fields."""
    if not isinstance(obj, Mapping):
        return None
    value = obj.get(key)
    if isinstance(value, Mapping):
        value = value.get("name")
    if value is None:
        value = obj.get(f"{key}_name")
    return str(value) if value not in (None, "") else None


def _items(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if isinstance(value, Mapping):  # a `{"data": [...]}` envelope left in place
        value = value.get("data")
    return list(value) if isinstance(value, list) else []


def _level(event: Mapping[str, Any], attribute_name: str, levels: Mapping[str, int], default: int) -> int:
    """A ThreatQ "Threat Level"/"Analysis Level" attribute overrides the option (case-insensitive)."""
    for attribute in _items(event, "attributes"):
        if str(attribute.get("name", "")).strip().lower() == attribute_name:
            choice = _canon(attribute.get("value", ""))
            if choice in levels:
                return levels[choice]
    return default


def tlp_level(holder: Mapping[str, Any]) -> TlpLevel | None:
    """The TLP one ThreatQ object carries (``tlp_id``, ``tlp: {name}``, ``tlp_name``), or None.

    Spellings such as ``TLP:AMBER``, ``amber``, ``TLP: Amber Strict`` are accepted; unknown
    names count as no TLP.
    """
    t = tables()
    if not isinstance(holder, Mapping):
        return None
    name = _name(holder, "tlp")
    if name is None and holder.get("tlp_id") is not None:
        name = t.tlp_by_id.get(str(holder["tlp_id"]))
    if not name:
        return None
    canon = re.sub(r"\s+", " ", name.upper()).strip()
    canon = re.sub(r"^TLP\s*[:-]?\s*", "", canon)
    canon = t.tlp_aliases.get(canon, canon)
    return t.tlp_levels.get(canon)


def most_restrictive_tlp(holders: Iterable[Any]) -> TlpLevel | None:
    """The most restrictive TLP over several ThreatQ objects (an event and its sources, an indicator's sources).

    :param holders: objects that may carry a TLP.
    :return: the level, or None when none carries one.
    """
    found = [level for level in map(tlp_level, holders) if level is not None]
    return max(found, key=lambda level: (level.rank, -level.order)) if found else None


def _attribute_tlp(indicator: Mapping[str, Any], event_tlp: TlpLevel | None) -> TlpLevel | None:
    """The TLP of an indicator whose own sources are more restrictive than the event, else None."""
    level = most_restrictive_tlp([indicator, *_items(indicator, "sources")])
    if level is None or (event_tlp is not None and level.rank <= event_tlp.rank):
        return None
    return level


def _event_header(misp: MISPEvent, event: Mapping[str, Any], options: ShareOptions, t: _Tables) -> None:
    title = str(event.get("title") or event.get("name") or f"ThreatQ event {event.get('id')}")
    misp.info = title
    happened = str(event.get("happened_at") or event.get("created_at") or "")[:10]
    if happened:
        misp.set_date(happened)
    misp.distribution = options.distribution_id
    misp.threat_level_id = _level(event, t.threat_level_attribute, THREAT_LEVELS, options.threat_level_id)
    misp.analysis = _level(event, t.analysis_level_attribute, ANALYSIS_LEVELS, options.analysis_id)
    misp.published = False  # the exporter publishes explicitly once the content is complete


def _event_tags(event: Mapping[str, Any], t: _Tables, kind: str, tlp: TlpLevel | None) -> list[str]:
    # The ThreatQ id as a machine tag finds the event in MISP even without our uuid (restSearch tags=).
    tags: list[str] = [t.id_machine_tag.format(kind=kind, id=event.get("id"))]
    if tlp:
        tags.append(tlp.tag)
    event_type = _name(event, "type")
    if event_type:
        tags.append(t.event_type_machine_tag.format(name=event_type))
        tags.extend(t.event_type_tags.get(event_type.lower(), ()))
    for tag in _items(event, "tags"):
        name = tag.get("name") if isinstance(tag, Mapping) else tag
        if name:
            tags.append(str(name))
    return tags


class _Builder:
    """Adds attributes to one MISPEvent, dropping (type, category, value) repeats.

    A repeat keeps the first attribute but the most restrictive TLP tag of the two and the union
    of their other tags (galaxies).
    """

    def __init__(self, misp: MISPEvent, describe_types: Mapping[str, Any]) -> None:
        self.misp = misp
        self.defaults: Mapping[str, Mapping[str, Any]] = describe_types["sane_defaults"]
        self.seen: dict[tuple[str, str, str], tuple[MISPAttribute, TlpLevel | None]] = {}
        self.duplicates = 0
        self.skipped: Counter[str] = Counter()
        # (kind, lower-cased name) of unmatched galaxy objects already counted or added once
        self.unmatched: set[tuple[str, str]] = set()

    def add(self, key: str, misp_type: str, value: str, *, category: str | None = None,
            to_ids: bool | None = None, comment: str = "", data: bytes | None = None,
            tlp: TlpLevel | None = None, tags: Iterable[str] = ()) -> bool:
        default = self.defaults.get(misp_type, {"default_category": "Other", "to_ids": 0})
        category = category or default["default_category"]
        if data is None:
            # Store what MISP would store (AS13335 → 13335, hashes lower-cased) so the exporter's
            # "unchanged" comparison with the server's copy holds.
            value = str(AttributeValidationTool.modifyBeforeValidation(misp_type, value))
        seen_key = (misp_type, category, value)
        if seen_key in self.seen:
            self.duplicates += 1
            first, first_tlp = self.seen[seen_key]
            if tlp is not None and (first_tlp is None or tlp.rank > first_tlp.rank):
                first.tags = [tag for tag in first.tags if first_tlp is None or tag.name != first_tlp.tag]
                first.add_tag(tlp.tag)
                self.seen[seen_key] = (first, tlp)
            have = {tag.name for tag in first.tags}
            for tag in tags:
                if tag not in have:
                    first.add_tag(tag)
                    have.add(tag)
            return False
        kwargs: dict[str, Any] = {
            "uuid": attribute_uuid(self.misp.uuid, key),
            "category": category,
            "to_ids": bool(default["to_ids"]) if to_ids is None else to_ids,
        }
        if comment:
            kwargs["comment"] = comment
        if data is not None:
            kwargs["data"] = BytesIO(data)  # bytes would be taken as base64 by PyMISP
        attribute = self.misp.add_attribute(misp_type, value, **kwargs)
        if tlp is not None:
            attribute.add_tag(tlp.tag)
        for tag in dict.fromkeys(tags):
            attribute.add_tag(tag)
        self.seen[seen_key] = (attribute, tlp)
        return True


def _indicator_type(indicator: Mapping[str, Any], t: _Tables) -> str:
    name = _name(indicator, "type") or "Unknown"
    return t.aliases.get(name.lower(), name)


def _indicator_attribute(b: _Builder, indicator: Mapping[str, Any], options: ShareOptions, t: _Tables,
                         event_tlp: TlpLevel | None = None) -> None:
    tq_type = _indicator_type(indicator, t)
    value = str(indicator.get("value", "")).strip()
    if not value:
        return
    key = f"indicator:{tq_type}:{value}"
    row = t.types.get(tq_type.lower())
    tlp = _attribute_tlp(indicator, event_tlp)
    if row is None:
        if options.include_unmapped_attribution:
            b.add(key, t.unmapped_type["type"], value, category=t.unmapped_type.get("category"),
                  to_ids=False, comment=f"ThreatQ {tq_type}", tlp=tlp,
                  tags=_indicator_galaxies(b, indicator, options, t))
        else:
            b.skipped[tq_type] += 1
        return
    misp_type = options.default_ip_type if row["type"] == "@ip" else row["type"]
    ids_default = bool(b.defaults.get(misp_type, {}).get("to_ids", 0))
    # The status policy shared with the Elasticsearch side (issue 12): only active statuses get IDS.
    to_ids = options.to_ids and ids_default and options.status_policy.allows(_name(indicator, "status") or None)
    b.add(key, misp_type, value, category=row.get("category"), to_ids=to_ids, tlp=tlp,
          tags=_indicator_galaxies(b, indicator, options, t))


def _indicator_galaxies(b: _Builder, indicator: Mapping[str, Any], options: ShareOptions,
                        t: _Tables) -> list[str]:
    """Galaxy tags from the indicator's own attributes that ``indicator_galaxy_attributes`` names."""
    tags: list[str] = []
    for attribute in _items(indicator, "attributes"):
        if not isinstance(attribute, Mapping):
            continue
        rules = t.indicator_galaxy_rules.get(str(attribute.get("name", "")).strip().lower(), ())
        name = _object_name(attribute, ("value",))
        for rule in rules if name else ():
            tags.extend(_galaxy_match(b, name, rule, options))
    return list(dict.fromkeys(tags))


def _object_name(obj: Any, fields: tuple[str, ...]) -> str:
    if isinstance(obj, str):
        return " ".join(obj.split())
    if not isinstance(obj, Mapping):
        return ""
    for key in fields:
        if obj.get(key):
            return " ".join(str(obj[key]).split())
    return ""


def _galaxy_match(b: _Builder, name: str, rule: GalaxyRule, options: ShareOptions) -> list[str]:
    """``galaxy_tags`` of one object name; without a match the rule's unmatched attribute is added
    when ``include_unmapped_attribution`` is on, else the name is counted under the rule's kind
    (either once per event and case-insensitive name)."""
    found = galaxy_tags(name, rule)
    if found or (rule.kind, name.lower()) in b.unmatched:
        return found
    b.unmatched.add((rule.kind, name.lower()))
    if options.include_unmapped_attribution:
        b.add(f"{rule.uuid_key}:{name.lower()}", rule.unmatched["type"], name,
              category=rule.unmatched.get("category"), comment=rule.unmatched.get("comment", ""),
              to_ids=False)
    else:
        b.skipped[rule.kind] += 1
    return []


def _galaxies(b: _Builder, event: Mapping[str, Any], options: ShareOptions, t: _Tables) -> list[str]:
    """Galaxy tags for the event's adversaries, malware and attack patterns (``galaxy_matching``).

    Related objects without a match become the rule's unmatched attribute when
    ``include_unmapped_attribution`` is on, else they are counted; event attributes naming such
    objects only add tags (they are sent as text attributes anyway).
    """
    tags: list[str] = []
    for rule in t.galaxy_rules:
        names = [_object_name(obj, rule.name_fields) for rel in rule.relations for obj in _items(event, rel)]
        for name in dict.fromkeys(n for n in names if n):
            tags.extend(_galaxy_match(b, name, rule, options))
        for attribute in _items(event, "attributes"):
            if str(attribute.get("name", "")).strip().lower() in rule.event_attributes:
                tags.extend(galaxy_tags(_object_name(attribute, ("value",)), rule))
    return tags


def _event_attributes(b: _Builder, event: Mapping[str, Any], t: _Tables) -> None:
    """ThreatQ key/value attributes other than the two levels → ``text`` attributes, name as comment."""
    for attribute in _items(event, "attributes"):
        name = str(attribute.get("name", "")).strip()
        value = str(attribute.get("value", "")).strip()
        if not name or not value or name.lower() in (t.threat_level_attribute, t.analysis_level_attribute):
            continue
        b.add(f"attribute:{name}:{value}", t.event_attribute["type"], value,
              category=t.event_attribute.get("category"), to_ids=False, comment=name)


def _attachment_attribute(b: _Builder, attachment: Mapping[str, Any], raw: bytes, options: ShareOptions,
                          t: _Tables) -> None:
    file_type = (_name(attachment, "type") or "").lower()
    malware = file_type in t.malware_attachment_types or str(attachment.get("malware_locked", 0)) in ("1", "True", "true")
    row = t.malware_attachment if malware else t.other_attachment
    name = str(attachment.get("name") or attachment.get("title") or f"attachment-{attachment.get('id')}")
    digest = hashlib.md5(raw).hexdigest()  # noqa: S324 - content identity, not security
    b.add(f"attachment:{name}:{digest}", row["type"], name, to_ids=options.attachments_to_ids, data=raw)


def report_uuid(misp_event_uuid: str) -> str:
    """Deterministic UUID of the description's event report (MISP report UUIDs are instance-wide too)."""
    return attribute_uuid(misp_event_uuid, tables().description_report["uuid_key"])


def _description_report(misp: MISPEvent, markdown: str, t: _Tables, kind: str, tq_id: Any) -> None:
    """The description as one event report; none when it holds no visible text."""
    if not markdown:
        return
    spec = t.description_report
    limit = int(spec["max_chars"])
    note = spec["truncated_note"].format(max_chars=limit, length=len(markdown), kind=kind,
                                         id=escape_text(str(tq_id)))
    misp.add_event_report(spec["name"], truncate(markdown, limit, note), uuid=report_uuid(misp.uuid),
                          distribution=int(spec["distribution"]))


def _build(event: Mapping[str, Any], indicators: Iterable[Mapping[str, Any]], *, misp_uuid: str,
           options: ShareOptions, attachments: Iterable[tuple[Mapping[str, Any], bytes]],
           describe_types: Mapping[str, Any] | None, extra_tags: Iterable[str] = (),
           kind: str = "event", description: str = "") -> MappingResult:
    t = tables()
    misp = MISPEvent()
    misp.uuid = misp_uuid
    _event_header(misp, event, options, t)
    b = _Builder(misp, describe_types or _BUNDLED_DESCRIBE_TYPES)
    event_tlp = most_restrictive_tlp([event, *_items(event, "sources")])
    tags = [*_event_tags(event, t, kind, event_tlp), *extra_tags, *_galaxies(b, event, options, t)]
    for tag in dict.fromkeys(tags):  # ordered, unique
        misp.add_tag(tag)
    for indicator in indicators:
        _indicator_attribute(b, indicator, options, t, event_tlp)
    _event_attributes(b, event, t)
    if options.send_attachments:
        for attachment, raw in attachments:
            _attachment_attribute(b, attachment, raw, options, t)
    if options.send_description:
        _description_report(misp, description, t, kind, event.get("id"))
    return MappingResult(misp_event=misp, skipped_unmapped=dict(b.skipped), duplicates=b.duplicates,
                         managed_tag_prefixes=t.managed_tag_prefixes,
                         managed_attribute_tag_prefixes=t.managed_attribute_tag_prefixes, threatq_id=event.get("id"))


def event_to_misp(event: Mapping[str, Any], indicators: Iterable[Mapping[str, Any]], *, threatq_host: str,
                  options: ShareOptions, attachments: Iterable[tuple[Mapping[str, Any], bytes]] = (),
                  describe_types: Mapping[str, Any] | None = None) -> MappingResult:
    """Map one ThreatQ event with its related objects to a ``MISPEvent``.

    :param event: the ThreatQ event (``with=type,attributes,sources,adversaries,tags``).
    :param indicators: the event's related indicators (``value``, ``type``, ``status``).
    :param threatq_host: ThreatQ URL or host; part of the deterministic event UUID.
    :param options: share options.
    :param attachments: ``(attachment, content)`` pairs; ignored unless ``options.send_attachments``.
    :param describe_types: the MISP server's describeTypes (``result`` object); PyMISP's bundled
        copy when None.
    :return: the event and what was left out.
    """
    description = html_to_markdown(event.get("description")) if options.send_description else ""
    return _build(event, indicators, misp_uuid=event_uuid(threatq_host, event.get("id")), options=options,
                  attachments=attachments, describe_types=describe_types, description=description)


def investigation_to_misp(investigation: Mapping[str, Any], events: Iterable[Mapping[str, Any]],
                          indicators: Iterable[Mapping[str, Any]], *, threatq_host: str, options: ShareOptions,
                          attachments: Iterable[tuple[Mapping[str, Any], bytes]] = (),
                          describe_types: Mapping[str, Any] | None = None) -> MappingResult:
    """Map a ThreatQ investigation (its events, indicators, attachments) to one ``MISPEvent``.

    The investigation is the event: its name is the info, the TLP is the most restrictive over
    all its events' sources, every event's type becomes tags and every event's adversaries and
    attributes are merged (and their malware and attack patterns). The event report holds the
    investigation's description, then each event's under a heading with the event title. The
    UUID derives from the investigation id (``kind="investigation"``).

    :param investigation: ``{id, name, description?, ...}``.
    :param events: the investigation's events (full, as for ``event_to_misp``).
    :param indicators: every indicator of the investigation and of its events (repeats are merged).
    :param threatq_host: ThreatQ URL or host.
    :param options: share options.
    :param attachments: ``(attachment, content)`` pairs.
    :param describe_types: the server's describeTypes, or None for PyMISP's copy.
    :return: the event and what was left out.
    """
    events = list(events)
    merged: dict[str, Any] = {
        "id": investigation.get("id"),
        "title": f"ThreatQ investigation: {investigation.get('name') or investigation.get('id')}",
        "happened_at": investigation.get("created_at") or min(
            (str(e.get("happened_at") or "") for e in events if e.get("happened_at")), default=""),
        "attributes": [a for e in events for a in _items(e, "attributes")],
        "sources": [s for e in events for s in _items(e, "sources")] + _items(investigation, "sources"),
        "tags": [tg for e in events for tg in _items(e, "tags")] + _items(investigation, "tags"),
    }
    t = tables()
    # adversaries, malware, attack patterns: every relation a galaxy rule reads
    for rel in dict.fromkeys(rel for rule in t.galaxy_rules for rel in rule.relations):
        merged[rel] = [o for e in events for o in _items(e, rel)] + _items(investigation, rel)
    type_tags: list[str] = []
    for e in events:
        name = _name(e, "type")
        if name:
            type_tags.append(t.event_type_machine_tag.format(name=name))
            type_tags.extend(t.event_type_tags.get(name.lower(), ()))
    description = _investigation_description(investigation, events) if options.send_description else ""
    return _build(merged, indicators, misp_uuid=event_uuid(threatq_host, investigation.get("id"), "investigation"),
                  options=options, attachments=attachments, describe_types=describe_types, extra_tags=type_tags,
                  kind="investigation", description=description)


def _investigation_description(investigation: Mapping[str, Any], events: list[Mapping[str, Any]]) -> str:
    """The investigation's description, then each event's under ``## <event title>``."""
    parts = [html_to_markdown(investigation.get("description"))]
    for e in events:
        text = html_to_markdown(e.get("description"))
        if text:
            title = " ".join(str(e.get("title") or f"ThreatQ event {e.get('id')}").split())
            parts.append(f"## {escape_text(title)}\n\n{text}")
    return "\n\n".join(p for p in parts if p)
