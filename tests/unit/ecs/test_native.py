"""The native line mapper (``native/``, Rust) against the Python transform, byte for byte.

The Python transform is the specification (Elastic conformance and the type table are proven on
it in test_conformance.py and test_types.py). The native mapper must write exactly the same
NDJSON for every line it accepts and hand back (``None``) every line it cannot map the same way;
``transform_stream`` then gives those lines to the Python path. So every test here runs a set of
lines through both engines and compares the output files, the reject files and the counts, and
checks that the native side really did the work where it should (no vacuous pass by falling back
on everything).

Without the compiled module these tests fail when ``TQ_REQUIRE_NATIVE=1`` (scripts/test and CI set
it) and are skipped otherwise (a machine without a Rust toolchain, opted out explicitly).
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from threatq_provider.ecs import native
from threatq_provider.ecs.errors import EcsConfigError
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.tables import load_tables
from threatq_provider.ecs.transform import HIVES, OBJECT_KINDS, TransformCounts, transform_stream
from threatq_simulators.corpus import Corpus

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFORMANCE = REPO_ROOT / "tests" / "data" / "conformance" / "elastic-ti_threatq"
SAMPLES = json.loads((REPO_ROOT / "tests" / "data" / "ecs" / "type_samples.json").read_text(encoding="utf-8"))
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

OPTION_SETS = {
    "defaults": EcsOptions(),
    "original+url+12h": EcsOptions(
        preserve_original_event=True, threatq_url="https://threatq.example.com/", ioc_expiration_duration="12h"
    ),
    "no-duplicates+30m": EcsOptions(preserve_duplicate_custom_fields=False, ioc_expiration_duration="30m"),
    "instance": EcsOptions(instance="127.0.0.1:8480", threatq_url="https://threatq.example.com"),  # #13 item 4
    "elastic-pipeline-tests": EcsOptions(preserve_original_event=True, preserve_duplicate_custom_fields=True),
}


@pytest.fixture(scope="module", autouse=True)
def _native_module() -> None:
    if native.available():
        return
    if os.environ.get(native.REQUIRE_ENV) == "1":
        pytest.fail(f"threatq_ecs_native is not installed and {native.REQUIRE_ENV}=1: run scripts/bootstrap (needs cargo)")
    pytest.skip(f"threatq_ecs_native not installed and {native.REQUIRE_ENV} is not 1 (pure-Python install)")


def _run(lines: list[str | bytes], options: EcsOptions, engine: str) -> tuple[str, str, TransformCounts]:
    out, rejects = io.StringIO(), io.StringIO()
    counts = transform_stream(lines, out, rejects, now=NOW, options=options, engine=engine)
    return out.getvalue(), rejects.getvalue(), counts


def assert_same(lines: list[str | bytes], options: EcsOptions) -> TransformCounts:
    """Both engines write the same documents, rejects and counts; returns the native counts."""
    py_out, py_rejects, py_counts = _run(lines, options, "python")
    nat_out, nat_rejects, nat_counts = _run(lines, options, "native")
    assert py_counts.engine == "python" and py_counts.native_lines == 0
    assert nat_counts.engine == "native"
    py_docs, nat_docs = py_out.splitlines(), nat_out.splitlines()
    assert len(nat_docs) == len(py_docs)
    for i, (want, got) in enumerate(zip(py_docs, nat_docs, strict=True)):
        assert got == want, f"document {i} differs:\n native: {got}\n python: {want}"
    assert nat_rejects == py_rejects
    assert {k: v for k, v in nat_counts.as_dict().items() if k not in ("engine", "native_lines")} == {
        k: v for k, v in py_counts.as_dict().items() if k not in ("engine", "native_lines")
    }
    return nat_counts


def _corpus_lines(n: int, seed: int = 7) -> list[bytes]:
    return [json.dumps(r, separators=(",", ":")).encode() for r in Corpus(seed, indicators=n).iter_indicators()]


# ---- The corpus the DAG sees ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_simulator_corpus_is_identical_and_mapped_natively(name: str) -> None:
    lines = _corpus_lines(1500)
    counts = assert_same(lines, OPTION_SETS[name])
    assert counts.written == 1500
    # The corpus is clean ThreatQ output: the native path must carry it, not hand it all back.
    assert counts.native_lines >= 0.99 * len(lines), counts.as_dict()


def test_str_lines_and_surrounding_whitespace_are_identical() -> None:
    lines: list[str | bytes] = [f"  {line.decode()}\r\n" for line in _corpus_lines(50)]
    counts = assert_same(lines, EcsOptions(preserve_original_event=True))
    assert counts.native_lines == 50


def test_elastic_conformance_inputs_are_identical() -> None:
    for log in sorted(CONFORMANCE.rglob("*.log")):
        lines = log.read_bytes().splitlines()
        for options in OPTION_SETS.values():
            counts = assert_same(list(lines), options)
            assert counts.written == len([line for line in lines if line.strip()])


def _recorded_indicators() -> list[dict[str, Any]]:
    """Every indicator-like object in the recorded ThreatQ responses (tests/data/threatq/samples)."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "value" in node and ("type" in node or "type_id" in node):
                found.append(node)
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    for path in sorted((REPO_ROOT / "tests" / "data" / "threatq" / "samples").rglob("*.json")):
        walk(json.loads(path.read_text(encoding="utf-8")))
    return found


def test_recorded_threatq_responses_are_identical() -> None:
    """Real shapes from public clients (Elastic, XSOAR, stix-shifter): scheme-less URLs, records
    without type or dates, nested relation objects."""
    raws = _recorded_indicators()
    assert len(raws) >= 8
    lines = [json.dumps(raw) for raw in raws]
    for options in OPTION_SETS.values():
        counts = assert_same(lines, options)
        assert counts.native_lines >= 3, counts.as_dict()


def _indicator(type_name: str, value: Any, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": 4242,
        "type": {"id": 7, "name": type_name, "class": "network"},
        "type_id": 7,
        "value": value,
        "status": {"id": 1, "name": "Active", "description": "Poses a threat"},
        "status_id": 1,
        "class": "network",
        "hash": "0123456789abcdef0123456789abcdef",
        "score": 6,
        "description": "seen in phishing",
        "created_at": "2025-01-02 03:04:05",
        "updated_at": "2025-02-03 04:05:06",
        "touched_at": "2025-02-03 04:05:06",
        "expires_at": None,
        "sources": [
            {"id": 1, "source_id": 3, "name": "Internal SOC", "tlp_name": "TLP:AMBER", "source_score": 2,
             "created_at": "2025-01-02 03:04:05", "published_at": "2025-01-02 03:04:05"},
        ],
        "attributes": [{"id": 9, "attribute_id": 2, "name": "Malware Family", "value": "Emotet",
                        "created_at": "2025-01-02 03:04:05"}],
        "tags": ["phishing"],
    }
    for key, new in (changes or {}).items():
        if new is _DROP:
            raw.pop(key, None)
        else:
            raw[key] = new
    return raw


_DROP = object()


def test_every_type_sample_is_identical_and_mapped_natively() -> None:
    names = [name for name in SAMPLES if not name.startswith("_")]
    lines = [json.dumps(_indicator(name, SAMPLES[name]["value"])) for name in names]
    counts = assert_same(lines, EcsOptions())
    assert counts.native_lines == len(names)


# ---- Awkward values: each must be identical whichever path takes it -------------------------

# ~240 awkward lines (bad IPs, CIDRs, ASNs, URLs, registry keys, dates, ids, scores, tags, escapes,
# surrogates, duplicate keys, invalid JSON...), pinned with their expected documents under the
# default options in tests/data/ecs/pipeline (test_pipeline_cases.py runs them on both engines).
AWKWARD_LOG = REPO_ROOT / "tests" / "data" / "ecs" / "pipeline" / "test-awkward-lines.log"


def _awkward_pools() -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """The awkward values by indicator type, and the awkward values by field, of the awkward
    lines: each indicator line there is ``_indicator("FQDN", "evil.example")`` with its type and
    value, or one field, changed (a dropped field is ``_DROP``). The random tests draw from them."""
    base = _indicator("FQDN", "evil.example")
    values: dict[str, list[Any]] = {}
    fields: dict[str, list[Any]] = {}
    for line in io.BytesIO(AWKWARD_LOG.read_bytes()):
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        if not isinstance(raw, dict):
            continue
        # Compared as JSON text: True, 1 and 1.0 are different values here.
        changed = [k for k in [*base, *(k for k in raw if k not in base)]
                   if (k in raw, json.dumps(raw.get(k))) != (k in base, json.dumps(base.get(k)))]
        if changed in (["value"], ["type", "value"]) and isinstance(raw.get("type"), dict) and raw["type"].get("id") == 7:
            values.setdefault(raw["type"]["name"], []).append(raw["value"])
        elif len(changed) == 1:
            fields.setdefault(changed[0], []).append(raw.get(changed[0], _DROP))
    return values, fields


AWKWARD_VALUES, AWKWARD_FIELDS = _awkward_pools()


def _awkward_lines() -> list[str | bytes]:
    """The awkward lines, plus what a UTF-8 file cannot hold or would pin as a huge document: str
    lines with a raw lone surrogate, and nesting deeper than the native parser goes (64) within
    512 levels, and beyond."""
    lines: list[str | bytes] = list(io.BytesIO(AWKWARD_LOG.read_bytes()))
    lines += [
        "[" * 100 + "]" * 100,
        json.dumps(_indicator("FQDN", "evil.example")).replace(
            '"evil.example"', '"' + chr(0xD800) + ' lone surrogate in a str line"'),
        json.dumps(_indicator("FQDN", "evil.example", {"description": "raw " + chr(0xDBFF)}), ensure_ascii=False),
        json.dumps(_indicator("FQDN", "evil.example", {"extra": "D"})).replace('"D"', "[" * 300 + "1" + "]" * 300),
        json.dumps(_indicator("FQDN", "evil.example", {"extra": "D"})).replace('"D"', "[" * 600 + "1" + "]" * 600),
        json.dumps(_indicator("FQDN", "evil.example", {"extra": "D"})).replace('"D"', "{\"a\":" * 2000 + "1" + "}" * 2000),
    ]
    return lines


def test_awkward_pools_cover_every_kind_of_value() -> None:
    assert {"IP Address", "IPv6 Address", "CIDR Block", "ASN", "URL", "Registry Key", "FQDN", "Filename"} <= set(
        AWKWARD_VALUES)
    assert {"updated_at", "created_at", "score", "id", "status", "type", "tags", "attributes", "sources",
            "description", "extra"} <= set(AWKWARD_FIELDS)
    assert _DROP in AWKWARD_FIELDS["updated_at"]


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_awkward_lines_are_identical(name: str) -> None:
    lines = _awkward_lines()
    counts = assert_same(lines, OPTION_SETS[name])
    # Many of them are clean enough for the native path; the rest went to Python.
    assert 0 < counts.native_lines < counts.read


def test_random_mutations_of_the_corpus_are_identical() -> None:
    """Corpus records with fields swapped for awkward values, seeded: nothing may differ."""
    rng = random.Random(20261125)
    raws = [json.loads(line) for line in _corpus_lines(400, seed=11)]
    pools = list(AWKWARD_FIELDS.items())
    lines: list[str | bytes] = []
    for raw in raws:
        mutated = copy.deepcopy(raw)
        for _ in range(rng.randrange(0, 3)):
            key, values = rng.choice(pools)
            value = rng.choice(values)
            if value is _DROP:
                mutated.pop(key, None)
            else:
                mutated[key] = copy.deepcopy(value)
        if rng.random() < 0.2:
            type_name = rng.choice(list(AWKWARD_VALUES))
            mutated["type"] = {"id": 1, "name": type_name}
            mutated["value"] = rng.choice(AWKWARD_VALUES[type_name])
        lines.append(json.dumps(mutated, ensure_ascii=rng.random() < 0.5))
    for options in OPTION_SETS.values():
        counts = assert_same(lines, options)
        assert counts.native_lines > 0.3 * len(lines)


# ---- Engine choice -------------------------------------------------------------------------


def test_engine_names_are_checked() -> None:
    with pytest.raises(EcsConfigError, match="invalid transform engine 'fast'"):
        transform_stream([], io.StringIO(), io.StringIO(), now=NOW, options=EcsOptions(), engine="fast")


def test_missing_module_falls_back_or_fails_as_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_module", lambda: None)
    monkeypatch.delenv(native.REQUIRE_ENV, raising=False)
    assert native.resolve_engine("auto") == "python"
    with pytest.raises(EcsConfigError, match="engine='native' requires it"):
        native.resolve_engine("native")
    monkeypatch.setenv(native.REQUIRE_ENV, "1")
    with pytest.raises(EcsConfigError, match="TQ_REQUIRE_NATIVE=1 requires it"):
        native.resolve_engine("auto")
    assert native.resolve_engine("python") == "python"
    counts = transform_stream(_corpus_lines(3), io.StringIO(), io.StringIO(), now=NOW, options=EcsOptions(),
                              engine="python")
    assert counts.as_dict()["engine"] == "python" and counts.written == 3


def test_malformed_tables_are_refused_by_the_engine() -> None:
    module = native._module()
    with pytest.raises(ValueError, match="malformed tables"):
        module.Engine("{}", keep_duplicates=True, preserve_original=False, threatq_url=None, expiration_seconds=60)
    good = json.loads(native.tables_json(load_tables(), OBJECT_KINDS, HIVES))
    good["types"]["FQDN"]["kind"] = "telepathy"
    with pytest.raises(ValueError, match="malformed tables \\(kind\\)"):
        module.Engine(json.dumps(good), keep_duplicates=True, preserve_original=False, threatq_url=None,
                      expiration_seconds=60)
    good = json.loads(native.tables_json(load_tables(), OBJECT_KINDS, HIVES))
    del good["kinds"]["source"]
    with pytest.raises(ValueError, match="malformed tables \\(kinds.source\\)"):
        module.Engine(json.dumps(good), keep_duplicates=True, preserve_original=False, threatq_url=None,
                      expiration_seconds=60)


def test_key_kinds_reach_the_engine_from_the_python_tables() -> None:
    """The key lists (dates, longs, string ids, nested) are defined once, in transform.py: a key
    moved to another kind there changes what the native engine does."""
    kinds = json.loads(native.tables_json(load_tables(), OBJECT_KINDS, HIVES))["kinds"]
    assert set(kinds) == {"indicator", "source", "attribute", "adversary", "comment", "id_object"}
    assert kinds["indicator"]["updated_at"] == "nested" and kinds["source"]["source_score"] == "long"
    assert kinds["indicator"]["related_vulnerability_count"] == "long"
    line = json.dumps(_indicator("FQDN", "evil.example", {"custom_date": "2025-01-01 00:00:00"}))
    doc = json.loads(native.line_mapper(EcsOptions(), load_tables(), OBJECT_KINDS, HIVES)(line))
    assert doc["threatq"]["custom_date"] == "2025-01-01 00:00:00"  # not a date key: copied as is
    patched = {**OBJECT_KINDS, "indicator": _with_date(OBJECT_KINDS["indicator"], "custom_date")}
    doc = json.loads(native.line_mapper(EcsOptions(), load_tables(), patched, HIVES)(line))
    assert doc["threatq"]["custom_date"] == "2025-01-01T00:00:00.000Z"


def _with_date(kinds: Any, key: str) -> Any:
    from threatq_provider.ecs.key_kinds import DATE, ObjectKinds

    return ObjectKinds(kinds.name, {**kinds.kinds, key: DATE})


_ATOMS: list[Any] = [
    None, True, False, 0, 1, -1, 2**63, 2**64 + 1, -(2**63) - 1, 0.5, "", " ", "x", "é", "\u2028", "\x00", "\x1f",
    "\x7f", '"', "\\", "/", "\ud83d\ude00", "😀", "2025-01-01 00:00:00", "2025-01-01T00:00:00Z", "2025-1-01 00:00:00",
    "TLP:AMBER", "amber", "Expired", "AS1", "1.2.3.4", "http://h/p", "HKLM\\x", [], {}, [None], {"a": None},
    {"name": "n"}, {"id": 1, "name": "Active"}, ["a", ""], [{"name": "t"}], "  7 ", "+7", "-0", "٣",
]
_KEYS = ["id", "name", "value", "created_at", "updated_at", "touched_at", "tlp_name", "provider", "source_score",
         "attribute_id", "indicator_id", "score", "status", "type", "tags", "hash", "description", "x", "Ünï",
         "related_event_count", "status_id"]


def test_random_values_at_every_level_are_identical() -> None:
    """Seeded random values (atoms, small nested lists/objects, escapes, surrogates, big and
    negative ints, floats) dropped into random keys of the indicator, its sources, attributes
    and status; 3,000 lines under every option set. (A one-off run of 180,000 such lines found
    one crash, now fixed: a str line holding lone surrogates.)"""
    rng = random.Random(7_2026)

    def value(depth: int = 0) -> Any:
        r = rng.random()
        if depth < 3 and r < 0.1:
            return [value(depth + 1) for _ in range(rng.randrange(0, 4))]
        if depth < 3 and r < 0.2:
            return {rng.choice(_KEYS): value(depth + 1) for _ in range(rng.randrange(0, 4))}
        return copy.deepcopy(rng.choice(_ATOMS))

    raws = [json.loads(line) for line in _corpus_lines(500, seed=3)]
    lines: list[str | bytes] = []
    for _ in range(3000):
        raw = copy.deepcopy(rng.choice(raws))
        for _ in range(rng.randrange(0, 4)):
            target = raw
            where = rng.random()
            for key, share in (("sources", 0.3), ("attributes", 0.5)):
                items = raw.get(key)
                if where < share and isinstance(items, list) and items and isinstance(items[0], dict):
                    target = rng.choice(items)
                    break
            else:
                if where < 0.6 and isinstance(raw.get("status"), dict):
                    target = raw["status"]
            target[rng.choice(_KEYS)] = value()
        if rng.random() < 0.3:
            type_name = rng.choice(list(AWKWARD_VALUES))
            raw["type"] = {"id": 1, "name": type_name}
            raw["value"] = rng.choice(AWKWARD_VALUES[type_name])
        text = json.dumps(raw, ensure_ascii=rng.random() < 0.5)
        lines.append(text.encode("utf-8", "surrogatepass") if rng.random() < 0.5 else text)
    for options in OPTION_SETS.values():
        counts = assert_same(lines, options)
        assert counts.native_lines > 0.5 * len(lines)
