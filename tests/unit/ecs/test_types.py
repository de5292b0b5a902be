"""Every ThreatQ indicator type has a documented home in the ECS document.

Walks the 34 default types of ``threatq_provider/data/threatq/enumerations.json`` with our sample values, and,
once the simulator's corpus exists, every type the simulator generates.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.tables import load_tables, render_type_table_markdown
from threatq_provider.ecs.transform import indicator_to_ecs

REPO_ROOT = Path(__file__).resolve().parents[3]
DATA = REPO_ROOT / "plugins" / "threatq_provider" / "data"  # the provider's package data
ENUMS = json.loads((DATA / "threatq" / "enumerations.json").read_text(encoding="utf-8"))
SAMPLES = json.loads((REPO_ROOT / "tests" / "data" / "ecs" / "type_samples.json").read_text(encoding="utf-8"))
TYPES = [t["name"] for t in ENUMS["indicator_types"]]
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
ECS_TYPES = {
    "autonomous-system", "artifact", "directory", "domain-name", "email-addr", "file", "ipv4-addr",
    "ipv6-addr", "mac-addr", "mutex", "port", "process", "software", "url", "user-account",
    "windows-registry-key", "x509-certificate",
}


def _get(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _raw(type_name: str, value: Any, type_id: int = 1) -> dict[str, Any]:
    return {
        "id": 4242,
        "value": value,
        "type": {"id": type_id, "name": type_name, "class": "network"},
        "type_id": type_id,
        "status": {"id": 1, "name": "Active"},
        "status_id": 1,
        "score": 7,
        "hash": "0123456789abcdef0123456789abcdef",
        "created_at": "2026-11-01 10:00:00",
        "updated_at": "2026-11-20 10:00:00",
        "sources": [{"id": 1, "source_id": 3, "name": "Feed A", "tlp_name": "TLP:AMBER"}],
        "attributes": [{"id": 9, "attribute_id": 2, "name": "Malware Family", "value": "Emotet"}],
    }


def test_type_table_covers_every_default_threatq_type() -> None:
    tables = load_tables()
    assert sorted(TYPES) == sorted(r.threatq_type for r in tables.rules)
    for alias in ENUMS["indicator_type_aliases"]:
        assert alias in tables.types


def test_every_ecs_type_in_the_table_is_an_ecs_expected_value() -> None:
    for rule in load_tables().rules:
        assert rule.ecs_type is None or rule.ecs_type in ECS_TYPES, rule


def test_samples_exist_for_every_type() -> None:
    assert sorted(k for k in SAMPLES if not k.startswith("_")) == sorted(TYPES)


@pytest.mark.parametrize("type_name", TYPES + list(ENUMS["indicator_type_aliases"]))
def test_each_type_lands_in_its_documented_home(type_name: str) -> None:
    tables = load_tables()
    rule = tables.types[type_name]
    sample = SAMPLES[tables.aliases.get(type_name, type_name)]
    doc = indicator_to_ecs(_raw(type_name, sample["value"]), now=NOW, options=EcsOptions())
    assert "error" not in doc, doc.get("error")
    assert doc["event"]["kind"] == "enrichment"
    assert _get(doc, rule.field) == sample.get("typed", sample["value"])
    assert _get(doc, "threat.indicator.type") == (rule.ecs_type if type_name != "CIDR Block" else "ipv4-addr")
    if rule.related:
        assert _get(doc, rule.field) in doc["related"][rule.related] or sample["value"] in doc["related"][rule.related]
    assert doc["threatq"]["type"]["name"] == type_name
    assert doc["threat"]["indicator"]["marking"] == {"tlp": ["AMBER"]}
    assert doc["threat"]["indicator"]["provider"] == ["Feed A"]
    assert doc["threat"]["indicator"]["confidence"] == "Medium"


def test_registry_key_is_split_into_hive_and_key() -> None:
    doc = indicator_to_ecs(_raw("Registry Key", SAMPLES["Registry Key"]["value"]), now=NOW, options=EcsOptions())
    registry = doc["threat"]["indicator"]["registry"]
    assert registry == {
        "path": SAMPLES["Registry Key"]["value"],
        "hive": "HKLM",
        "key": "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run",
    }


def test_ipv6_cidr_block_is_typed_ipv6() -> None:
    doc = indicator_to_ecs(_raw("CIDR Block", "2001:db8::/32"), now=NOW, options=EcsOptions())
    assert doc["threat"]["indicator"]["type"] == "ipv6-addr"
    assert doc["threatq"]["cidr_block"] == "2001:db8::/32"


def test_url_is_parsed_and_raw_kept_in_full_and_original() -> None:
    value = SAMPLES["URL"]["value"]
    doc = indicator_to_ecs(_raw("URL", value), now=NOW, options=EcsOptions())
    assert doc["threat"]["indicator"]["url"] == {
        "original": value,
        "full": value,
        "scheme": "https",
        "domain": "evil.example.com",
        "port": 8443,
        "path": "/dl/payload.exe",
        "extension": "exe",
        "query": "x=1",
        "fragment": "frag",
        "username": "user",
        "password": "pw",
    }
    assert "indicator_value" not in doc["threatq"]  # Elastic's remove_if_successful
    assert doc["related"]["hosts"] == ["evil.example.com"]


def test_unknown_type_keeps_only_the_raw_value() -> None:
    doc = indicator_to_ecs(_raw("Bitcoin Address", "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"), now=NOW, options=EcsOptions())
    assert "type" not in doc["threat"]["indicator"]
    assert doc["threatq"]["indicator_value"] == "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"
    assert "error" not in doc


def test_docs_type_table_matches_generator() -> None:
    readme = (REPO_ROOT / "docs" / "ecs.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- \[START ecs_type_table\] -->\n(.*?)<!-- \[END ecs_type_table\] -->", readme, re.S)
    assert match, "docs/ecs.md lacks the ecs_type_table markers"
    assert match.group(1) == render_type_table_markdown()


def test_every_type_the_simulator_generates_has_a_home() -> None:
    from threatq_simulators.corpus import Corpus

    tables = load_tables()
    seen: set[str] = set()
    for raw in Corpus(7, indicators=3000).iter_indicators():
        type_name = raw["type"]["name"]
        seen.add(type_name)
        rule = tables.types[type_name]
        doc = indicator_to_ecs(raw, now=NOW, options=EcsOptions())
        assert doc["threatq"]["type"]["name"] == type_name
        if "error" not in doc:
            assert _get(doc, rule.field) is not None, (type_name, raw["value"])
    assert seen == set(TYPES)
