"""Elastic Security's indicator-match ("threat_match") rule, evaluated as its detection engine
does, against a real Elasticsearch node.

For one rule (a dict of ``tests/data/detection/elastic_threat_intel_rules.json``):

1. **Indicators**: search ``threat_index`` with ``threat_query`` (KQL, :mod:`tests.detection.kql`)
   and every ``threat_filters`` query, all as ``bool.filter`` (the engine's ``getQueryFilter``).
2. **Events**: search ``index`` with the rule's ``query`` and its look-back (``from`` … now) on
   ``timestamp_override`` (``event.ingested``), falling back to ``@timestamp`` for events without
   it, as the engine does with a timestamp override.
3. **Threat mapping**: mapping groups are OR-ed, the entries of a group AND-ed; an entry matches
   when the event's ``field`` holds one of the indicator's ``value`` field values, asked with a
   ``terms`` query on the event field, named after the indicator (``_name``) so each hit says
   which indicators it matched (the engine's named-query enrichment). ``terms`` compares as the
   event field's type does: exact keyword terms, IP addresses by value.

The result is the set of (event ``_id``, event field, indicator index, indicator ``_id``) the rule
would turn into alerts with ``threat.enrichments``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.detection.kql import to_dsl

RULES_FILE = Path(__file__).resolve().parents[1] / "data" / "detection" / "elastic_threat_intel_rules.json"
_BATCH = 500  # indicators per events query (named clauses stay far below max_clause_count)


def load_rules() -> list[dict[str, Any]]:
    """The five prebuilt rules, as cited data."""
    return json.loads(RULES_FILE.read_text(encoding="utf-8"))["rules"]


@dataclass(frozen=True, order=True)
class Match:
    """One alert's enrichment: this event's ``field`` matched this indicator document."""

    event_id: str
    field: str
    indicator_index: str
    indicator_id: str


def threat_query(rule: dict[str, Any]) -> dict[str, Any]:
    """The indicator search of a rule: threat_query and threat_filters, all required."""
    return {"bool": {"filter": [to_dsl(rule["threat_query"]), *rule["threat_filters"]]}}


def source_query(rule: dict[str, Any]) -> dict[str, Any]:
    """The event search of a rule: its query within its look-back on the timestamp override."""
    window = {"gte": rule["from"], "lte": "now"}
    override = rule.get("timestamp_override")
    if override:
        when: dict[str, Any] = {"bool": {"should": [
            {"range": {override: window}},
            {"bool": {"filter": [{"range": {"@timestamp": window}}], "must_not": {"exists": {"field": override}}}},
        ], "minimum_should_match": 1}}
    else:
        when = {"range": {"@timestamp": window}}
    return {"bool": {"filter": [to_dsl(rule["query"]), when]}}


def _values(node: Any, path: str) -> list[Any]:
    """Values at a dotted path of a ``_source`` (nested objects or dotted keys; arrays flattened)."""
    return [v for v in _walk(node, path.split(".")) if v is not None and v != ""]


def _walk(node: Any, parts: list[str]) -> list[Any]:
    if isinstance(node, list):
        return [v for item in node for v in _walk(item, parts)]
    if not parts:
        return [node]
    if not isinstance(node, dict):
        return []
    for j in range(len(parts), 0, -1):  # a key may itself hold dots ("threat.indicator.ip")
        key = ".".join(parts[:j])
        if key in node:
            return _walk(node[key], parts[j:])
    return []


def indicators(es: Any, rule: dict[str, Any]) -> list[dict[str, Any]]:
    """Every indicator document the rule's threat search returns (hits with ``_index``/``_id``)."""
    from elasticsearch import helpers

    return list(helpers.scan(es, index=",".join(rule["threat_index"]), query={"query": threat_query(rule)},
                             ignore_unavailable=True, allow_no_indices=True))


def events(es: Any, rule: dict[str, Any]) -> list[dict[str, Any]]:
    """Every event the rule's source search returns."""
    from elasticsearch import helpers

    return list(helpers.scan(es, index=",".join(rule["index"]), query={"query": source_query(rule)},
                             ignore_unavailable=True, allow_no_indices=True))


def _group_clause(group: list[dict[str, Any]], hit: dict[str, Any], name: str) -> dict[str, Any] | None:
    """One indicator × one mapping group: every entry's event field must hold an indicator value."""
    entries = []
    for entry in group:
        if entry.get("type", "mapping") != "mapping":
            raise ValueError(f"mapping entry type {entry.get('type')!r} is not supported")
        values = _values(hit["_source"], entry["value"])
        if not values:
            return None  # the indicator has no value for this entry: the group cannot match
        entries.append({"terms": {entry["field"]: values}})
    return {"bool": {"filter": entries, "_name": name}}


def matches(es: Any, rule: dict[str, Any], threat_hits: Iterable[dict[str, Any]] | None = None) -> set[Match]:
    """The (event, field, indicator) pairs the rule alerts on, now.

    :param es: an Elasticsearch client.
    :param rule: one rule of the cited data.
    :param threat_hits: the indicator hits to use (default: the rule's threat search).
    :return: every match, as :class:`Match`.
    """
    hits = indicators(es, rule) if threat_hits is None else list(threat_hits)
    found: set[Match] = set()
    base = source_query(rule)
    for group in rule["threat_mapping"]:
        fields = [entry["field"] for entry in group]
        for start in range(0, len(hits), _BATCH):
            batch = hits[start:start + _BATCH]
            clauses = [c for i, hit in enumerate(batch) if (c := _group_clause(group, hit, str(start + i))) is not None]
            if not clauses:
                continue
            query = {"bool": {"filter": [base, {"bool": {"should": clauses, "minimum_should_match": 1}}]}}
            from elasticsearch import helpers

            for event in helpers.scan(es, index=",".join(rule["index"]), query={"query": query},
                                      ignore_unavailable=True, allow_no_indices=True):
                for name in event.get("matched_queries", []):
                    hit = hits[int(name)]
                    for field in fields:
                        found.add(Match(event["_id"], field, hit["_index"], hit["_id"]))
    return found
