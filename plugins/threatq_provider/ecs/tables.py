"""The ThreatQ → ECS mapping tables, loaded once from the package data ``mappings/threatq_to_ecs.json``.

The transform only reads the frozen lookups built here; adding a ThreatQ type is a one-line change
in the JSON plus a sample in ``tests/data/ecs/type_samples.json``. ``render_type_table_markdown()``
prints the table for the docs (between the ecs_type_table markers of docs/ecs.md, checked by a test).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Any

from threatq_provider._resources import data_file
from threatq_provider.ecs.errors import EcsTableError

__all__ = [
    "KINDS",
    "Tables",
    "TypeRule",
    "load_tables",
    "render_type_table_markdown",
]

#: Validations a row may ask for (see transform._place_value).
KINDS = frozenset({"keyword", "ip", "cidr", "asn", "url", "registry"})
_RELATED = frozenset({None, "ip", "hash", "hosts", "user"})


@dataclass(frozen=True)
class TypeRule:
    """Where one ThreatQ indicator type goes in ECS.

    :param threatq_type: ThreatQ ``type.name``, exactly.
    :param ecs_type: ``threat.indicator.type`` value (ECS expected value) or ``None``.
    :param field: dotted path of the value's home.
    :param path: ``field`` split on dots.
    :param kind: validation applied before the value enters the typed field.
    :param related: ``related.<x>`` list that also receives the value, or ``None``.
    :param extra: constant fields set alongside (dotted path → value).
    :param elastic: whether Elastic's ti_threatq maps this type the same way.
    :param note: one line for the documentation.
    """

    threatq_type: str
    ecs_type: str | None
    field: str
    path: tuple[str, ...]
    kind: str
    related: str | None
    extra: tuple[tuple[tuple[str, ...], str], ...]
    elastic: bool
    note: str


@dataclass(frozen=True)
class Tables:
    """All lookups of the transform.

    :param ecs_version: value written to ``ecs.version``.
    :param keyword_max_chars: longest string put into a typed ECS field.
    :param types: ThreatQ type name (and alias) → rule.
    :param rules: rows in table order, without aliases.
    :param aliases: misspelt ThreatQ type name → canonical name.
    :param confidence: score 0..10 → label (index = score).
    :param tlp_prefixes: upper-cased prefixes stripped from TLP names.
    :param tlp_spellings: upper-cased spelling → ECS TLP value.
    :param constants: (field path, value) written on every document, in order (the values of
        Elastic's latest index that its rules and views filter on).
    :param indicator_dates: (``threat.indicator`` field, ThreatQ date keys in order of preference),
        in order: the field takes the first of those dates the indicator has.
    """

    ecs_version: str
    keyword_max_chars: int
    types: Mapping[str, TypeRule]
    rules: tuple[TypeRule, ...]
    aliases: Mapping[str, str]
    confidence: tuple[str | None, ...]
    tlp_prefixes: tuple[str, ...]
    tlp_spellings: Mapping[str, str]
    constants: tuple[tuple[tuple[str, ...], str], ...] = ()
    indicator_dates: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _rule(row: Mapping[str, Any]) -> TypeRule:
    try:
        kind = row.get("kind", "keyword")
        related = row.get("related")
        if kind not in KINDS:
            raise EcsTableError(f"type {row['threatq_type']!r}: unknown kind {kind!r}")
        if related not in _RELATED:
            raise EcsTableError(f"type {row['threatq_type']!r}: unknown related list {related!r}")
        extra = tuple((tuple(k.split(".")), str(v)) for k, v in (row.get("extra") or {}).items())
        return TypeRule(
            threatq_type=str(row["threatq_type"]),
            ecs_type=row["ecs_type"],
            field=str(row["field"]),
            path=tuple(str(row["field"]).split(".")),
            kind=kind,
            related=related,
            extra=extra,
            elastic=bool(row.get("elastic", False)),
            note=str(row.get("note", "")),
        )
    except KeyError as exc:
        raise EcsTableError(f"type table row {row!r} lacks {exc.args[0]!r}") from None


def build_tables(data: Mapping[str, Any]) -> Tables:
    """Build the lookups from the parsed JSON document.

    :param data: the content of ``threatq_to_ecs.json``.
    :return: frozen lookups.
    :raises EcsTableError: on a malformed or inconsistent table.
    """
    rules = tuple(_rule(row) for row in data["types"])
    types: dict[str, TypeRule] = {}
    for rule in rules:
        if rule.threatq_type in types:
            raise EcsTableError(f"type {rule.threatq_type!r} appears twice in the type table")
        types[rule.threatq_type] = rule
    aliases = dict(data.get("type_aliases", {}))
    for alias, canonical in aliases.items():
        if canonical not in types:
            raise EcsTableError(f"alias {alias!r} points at unknown type {canonical!r}")
        types[alias] = types[canonical]
    confidence: list[str | None] = [None] * 11
    for band in data["confidence"]:
        for score in range(int(band["min"]), int(band["max"]) + 1):
            confidence[score] = str(band["label"])
    tlp = data["tlp"]
    allowed = set(tlp["allowed"])
    spellings = {str(k).upper(): str(v) for k, v in tlp["spellings"].items()}
    bad = sorted(v for v in spellings.values() if v not in allowed)
    if bad:
        raise EcsTableError(f"TLP spellings map to values outside ECS's list: {bad}")
    constants = _constants(data.get("document_constants") or {})
    indicator_dates = _indicator_dates(data.get("indicator_dates") or {})
    return Tables(
        ecs_version=str(data["ecs_version"]),
        keyword_max_chars=int(data["keyword_max_chars"]),
        types=MappingProxyType(types),
        rules=rules,
        aliases=MappingProxyType(aliases),
        confidence=tuple(confidence),
        tlp_prefixes=tuple(str(p).upper() for p in tlp["prefixes"]),
        tlp_spellings=MappingProxyType(spellings),
        constants=constants,
        indicator_dates=indicator_dates,
    )


#: ``threat.indicator`` date fields the ``indicator_dates`` table may fill (ECS 8.17).
_INDICATOR_DATE_FIELDS = ("first_seen", "last_seen", "modified_at")


def _indicator_dates(table: Mapping[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out = []
    for name, keys in table.items():
        if name.startswith("_"):
            continue
        if name not in _INDICATOR_DATE_FIELDS:
            raise EcsTableError(f"indicator_dates: {name!r} is not one of {', '.join(_INDICATOR_DATE_FIELDS)}")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
            raise EcsTableError(f"indicator_dates: {name!r} needs a non-empty list of ThreatQ date keys")
        out.append((name, tuple(keys)))
    return tuple(out)


# Keys the transform builds itself: a constant there would silently overwrite mapped data.
_OWN_ROOTS = ("threatq", "threat.indicator", "related", "error", "tags", "ecs", "@timestamp",
              "event.kind", "event.category", "event.type", "event.original")


def _constants(table: Mapping[str, Any]) -> tuple[tuple[tuple[str, ...], str], ...]:
    out = []
    for path, value in table.items():
        if path.startswith("_"):
            continue
        if not isinstance(value, str) or not value:
            raise EcsTableError(f"document constant {path!r} must be a non-empty string, got {value!r}")
        if any(path == root or path.startswith(root + ".") for root in _OWN_ROOTS):
            raise EcsTableError(f"document constant {path!r} would overwrite a field the transform writes")
        out.append((tuple(path.split(".")), value))
    return tuple(out)


def _table_file() -> Traversable:
    return data_file("mappings", "threatq_to_ecs.json")


@lru_cache(maxsize=1)
def load_tables() -> Tables:
    """Load ``threatq_provider/data/mappings/threatq_to_ecs.json`` once.

    :return: the frozen lookups.
    :raises EcsTableError: when the file is missing or malformed.
    """
    path = _table_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EcsTableError(f"cannot read the ECS type table {path}: {exc}") from None
    return build_tables(data)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_type_table_markdown(tables: Tables | None = None) -> str:
    """The type table as Markdown, for the docs (docs/ecs.md holds its output between the ecs_type_table markers).

    :param tables: lookups to render; defaults to :func:`load_tables`.
    :return: Markdown text ending with a newline.
    """
    tables = tables or load_tables()
    lines = [
        (
            "<!-- Generated by threatq_provider.ecs.tables.render_type_table_markdown() from "
            "threatq_provider/data/mappings/threatq_to_ecs.json; do not edit by hand. -->"
        ),
        "",
        "| ThreatQ type | `threat.indicator.type` | Value goes to | `related.*` | Same field as Elastic | Notes |",
        "|---|---|---|---|---|---|",
    ]
    for rule in rules_sorted(tables):
        lines.append(
            "| {t} | {e} | `{f}` | {r} | {el} | {n} |".format(
                t=_cell(rule.threatq_type),
                e=f"`{rule.ecs_type}`" if rule.ecs_type else "—",
                f=rule.field,
                r=f"`related.{rule.related}`" if rule.related else "—",
                el="yes" if rule.elastic else "no (ours)",
                n=_cell(rule.note),
            )
        )
    lines += [
        "",
        "Every document also keeps the raw value in `threatq.indicator_value` (removed only for a URL "
        "that parsed, as Elastic does). A value that would make Elasticsearch reject the document "
        f"(an invalid IP, ASN or CIDR; more than {tables.keyword_max_chars} characters) stays out of the typed "
        "field, and `error.message` says why. Aliases: "
        + ", ".join(f"`{a}` → `{c}`" for a, c in sorted(tables.aliases.items()))
        + ". Types not in this table keep only `threatq.indicator_value` and get no `threat.indicator.type`.",
        "",
        "Confidence from `threatq.score`: "
        + ", ".join(_bands(tables))
        + "; any other score sets no confidence.",
        "",
    ]
    return "\n".join(lines)


def rules_sorted(tables: Tables) -> list[TypeRule]:
    """Rows sorted by ThreatQ type name, case-insensitively (the documentation order)."""
    return sorted(tables.rules, key=lambda r: r.threatq_type.lower())


def _bands(tables: Tables) -> list[str]:
    bands: list[str] = []
    start = 0
    for score in range(1, 12):
        if score == 11 or tables.confidence[score] != tables.confidence[start]:
            label = tables.confidence[start]
            if label is not None:
                bands.append(f"{start}–{score - 1} → `{label}`")
            start = score
    return bands
