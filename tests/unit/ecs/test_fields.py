"""threatq_provider/data/mappings/ecs_fields.json lists every field the transform emits, with a fitting type.

The Elasticsearch engineer maps the index from that file, so a field we emit but do not list
(or list with the wrong type) would be a dynamic-mapping surprise or a rejected document.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import indicator_to_ecs

REPO_ROOT = Path(__file__).resolve().parents[3]
DATA = REPO_ROOT / "plugins" / "threatq_provider" / "data"  # the provider's package data
FIELDS = json.loads((DATA / "mappings" / "ecs_fields.json").read_text(encoding="utf-8"))["fields"]
CONFORMANCE = REPO_ROOT / "tests" / "data" / "conformance" / "elastic-ti_threatq"
SAMPLES = json.loads((REPO_ROOT / "tests" / "data" / "ecs" / "type_samples.json").read_text(encoding="utf-8"))
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for child in value:
            yield from _leaves(child, prefix)
    else:
        yield prefix, value


def _raws() -> Iterator[dict[str, Any]]:
    for log in ("test-threatq-sample-ndjson.log", "test-threatq-no-preserve-ndjson.log"):
        for line in (CONFORMANCE / log).read_text(encoding="utf-8").splitlines():
            yield json.loads(line)
    for type_name, sample in SAMPLES.items():
        if type_name.startswith("_"):
            continue
        yield {"id": 1, "indicator_id": 1, "value": sample["value"], "type": {"id": 1, "name": type_name}, "score": 3,
               "updated_at": "2026-01-01 00:00:00", "expires_at": "garbage", "tags": [{"id": 1, "name": "t"}],
               "status": {"id": 2, "name": "Expired"},
               "attributes": [{"name": "A b", "value": "v", "sources": [{"name": "s"}], "created_at": "x"}],
               "sources": [{"name": "S", "tlp_name": "TLP:GREEN", "provider": "P", "tlp_id": 3}]}
    yield {"id": 2, "value": "x" * 9000, "type": {"name": "IP Address"}, "description": "d" * 9000}
    from threatq_simulators.corpus import Corpus

    yield from Corpus(11, indicators=2000).iter_indicators()


def _docs() -> Iterator[dict[str, Any]]:
    for options in (EcsOptions(preserve_original_event=True, threatq_url="https://tq.example.com"), EcsOptions()):
        for raw in _raws():
            yield indicator_to_ecs(raw, now=NOW, options=options)


def _fits(es_type: str, value: Any) -> bool:
    if es_type in ("keyword", "wildcard", "match_only_text"):
        return isinstance(value, str)
    if es_type == "long":
        return type(value) is int
    if es_type == "date":
        return isinstance(value, str) and ISO.fullmatch(value) is not None
    if es_type == "ip":
        ipaddress.ip_address(value)
        return True
    if es_type == "ip_range":
        ipaddress.ip_network(value)
        return True
    return False


def test_every_emitted_field_is_listed_with_a_fitting_type() -> None:
    unlisted: set[str] = set()
    misfit: set[tuple[str, str]] = set()
    for doc in _docs():
        for path, value in _leaves(doc):
            spec = FIELDS.get(path)
            if spec is None:
                unlisted.add(path)
            elif not _fits(spec["type"], value):
                misfit.add((path, repr(value)[:40]))
    assert (sorted(unlisted), sorted(misfit)) == ([], [])


def test_typed_fields_stay_under_the_keyword_limit() -> None:
    for doc in _docs():
        for path, value in _leaves(doc):
            spec = FIELDS[path]
            if isinstance(value, str) and spec["type"] == "keyword" and "ignore_above" not in spec:
                assert len(value.encode("utf-8")) <= 32766, path
