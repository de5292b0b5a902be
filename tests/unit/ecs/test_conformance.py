"""Elastic's own ti_threatq pipeline tests, replayed through our transform, field by field.

Each case pairs an input ``.log`` (one raw ThreatQ indicator per line) with Elastic's expected
output, as ``elastic-package test pipeline`` does. The fixtures are copied, with their
PROVENANCE.md, into ``tests/data/conformance/elastic-ti_threatq/`` so a clone without
``../shared`` still runs; ``test_repo_copy_matches_shared`` keeps the copy honest.

The expected files reflect Elastic 1.32.0 (one of them a PR iteration of it). Where the newest
package (1.41.1) or our documented improvements differ, the expected document is changed by a
named function below (one per delta, each saying why), never by loosening the comparison.
"""

from __future__ import annotations

import copy
import filecmp
import os
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from threatq_provider.ecs.expiry import REASON_EXPIRED_AT, REASON_EXPIRES_AT
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import indicator_to_ecs

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURES = REPO_ROOT / "tests" / "data" / "conformance" / "elastic-ti_threatq"
SHARED = REPO_ROOT.parent / "shared" / "conformance" / "elastic-ti_threatq"
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

Doc = dict[str, Any]


# ---- Deltas: newest Elastic package (PROVENANCE.md, "Known differences") -------------------


def delta_1_33_provider_from_source_name(expected: Doc, raw: Doc) -> None:
    """1.33.0 (PR #13137): ``threat.indicator.provider`` comes from ``sources[].name``, not
    ``sources[].provider``; AlienVault events gain ``["AlienVault OTX"]``, no-preserve event 4
    shows ``["Source Example"]`` instead of ``["Provider Example"]``."""
    names: list[str] = []
    for source in raw.get("sources") or []:
        if source.get("name") and source["name"] not in names:
            names.append(source["name"])
    indicator = expected["threat"]["indicator"]
    indicator.pop("provider", None)
    if names:
        indicator["provider"] = names


def delta_final_1_32_id_is_long(expected: Doc, raw: Doc) -> None:
    """Sample expected file @242012f7 is a PR iteration where ``threatq.id`` was a string; the
    final 1.32.0 pipeline (and every later one) keeps it a long: ``"336"`` → ``336``."""
    assert isinstance(expected["threatq"]["id"], str)
    expected["threatq"]["id"] = int(expected["threatq"]["id"])


def delta_pipeline_tests_have_no_duration(expected: Doc, raw: Doc) -> None:
    """Pipeline tests run without ``_conf.ioc_expiration_duration``, so Elastic's expiry script
    does not run and ``threatq.ioc_expiration_reason`` is absent; a configured integration (and
    our transform, where the duration is always set) writes the reason of the rule that fired.
    These fixtures all carry ``expired_at`` or ``expires_at``, so ``ioc_expired_at`` is unchanged."""
    tq = expected["threatq"]
    assert "ioc_expiration_reason" not in tq
    if raw.get("expired_at"):
        tq["ioc_expiration_reason"] = REASON_EXPIRED_AT
    else:
        assert raw.get("expires_at"), "fixture without expired_at/expires_at: expected expiry unknown"
        tq["ioc_expiration_reason"] = REASON_EXPIRES_AT


def delta_agent_fields(expected: Doc, raw: Doc) -> None:
    """``sample_event.json`` is a system-test document: Elastic Agent and Fleet add ``agent.*``,
    ``elastic_agent.*``, ``data_stream.*``, ``input.*``, ``event.{agent_id_status,created,dataset,
    ingested}`` and the input's user tags (``forwarded``, ``threatq-threat``). None come from the
    pipeline; the loader, not the transform, owns index-side fields."""
    for key in ("agent", "elastic_agent", "data_stream", "input"):
        expected.pop(key)
    for key in ("agent_id_status", "created", "dataset", "ingested"):
        expected["event"].pop(key)
    expected["tags"] = [t for t in expected["tags"] if t not in ("forwarded", "threatq-threat")]


def delta_latest_index_fields(expected: Doc, raw: Doc) -> None:
    """Elastic's pipeline writes none of ``event.module``, ``event.dataset``, ``threat.feed.*``,
    ``labels.is_ioc_transform_source`` or ``data_stream.*``: its index mappings hold the first four
    as ``constant_keyword`` values and Fleet adds ``data_stream.*``. The documents of its latest
    index, which Elastic Security's indicator-match rules read (``event.module:(threatintel or
    ti_*)``, ``not labels.is_ioc_transform_source:"true"``), carry those values; our transform
    writes them into every document (table ``document_constants`` in ``threatq_to_ecs.json``;
    issue 12), because a cluster without ``constant_keyword`` only matches values in the
    document. Values as Elastic's ``base-fields.yml`` (data stream and transform destination),
    ``labels`` ``"false"`` as in the destination since 1.28.3, namespace ``default``."""
    expected["event"]["module"] = "ti_threatq"
    expected["event"]["dataset"] = "ti_threatq.threat"
    expected.setdefault("threat", {})["feed"] = {
        "name": "ThreatQuotient", "dashboard_id": "ti_threatq-a05fd810-78f1-11ec-a97c-7db1518ab848"}
    expected["data_stream"] = {"type": "logs", "dataset": "ti_threatq.threat", "namespace": "default"}
    expected["labels"] = {"is_ioc_transform_source": "false"}


# ---- Our documented improvements (docs/ecs.md, type table) -------------------------------------


def ours_tlp_prefix_accepted(expected: Doc, raw: Doc) -> None:
    """ThreatQ spells TLP ``TLP:WHITE``; Elastic only accepts the bare colour and drops it. We
    strip the prefix (issue 3, item 3), so ``marking.tlp`` is ``["WHITE"]`` where Elastic has none."""
    marks: list[str] = []
    for source in raw.get("sources") or []:
        name = (source.get("tlp_name") or "").upper()
        if name.startswith("TLP:") and name[4:] not in marks:
            marks.append(name[4:])
    if marks:
        assert "marking" not in expected["threat"]["indicator"]
        expected["threat"]["indicator"]["marking"] = {"tlp": marks}


def ours_indicator_dates(expected: Doc, raw: Doc) -> None:
    """Elastic's mapping declares ``threat.indicator.first_seen``, ``last_seen`` and ``modified_at``
    but its pipeline fills none (issue 13 item 5). We fill them from ThreatQ's dates as Elastic
    converts them into ``threatq.*`` (so the values are Elastic's own): first_seen = created_at,
    last_seen = touched_at (else updated_at), modified_at = updated_at (= ``@timestamp``)."""
    tq, indicator = expected["threatq"], expected["threat"]["indicator"]
    for name in ("first_seen", "last_seen", "modified_at"):
        assert name not in indicator
    if tq.get("created_at"):
        indicator["first_seen"] = tq["created_at"]
    indicator["last_seen"] = tq.get("touched_at") or expected["@timestamp"]
    indicator["modified_at"] = expected["@timestamp"]


# ---- Cases ----------------------------------------------------------------------------------

# Elastic's pipeline-test config adds both preserve tags (PROVENANCE.md, "Test-runner settings").
PIPELINE_TEST_OPTIONS = EcsOptions(preserve_original_event=True, preserve_duplicate_custom_fields=True)
# sample_event.json: system test with a 5-day duration, preserve_original_event, no duplicates.
SYSTEM_TEST_OPTIONS = EcsOptions(
    ioc_expiration_duration="5d", preserve_original_event=True, preserve_duplicate_custom_fields=False
)
PIPELINE_DELTAS: tuple[Callable[[Doc, Doc], None], ...] = (
    delta_1_33_provider_from_source_name,
    delta_pipeline_tests_have_no_duration,
    delta_latest_index_fields,
    ours_tlp_prefix_accepted,
    ours_indicator_dates,
)


def _pipeline_case(log: str, expected: str, extra: tuple[Callable[[Doc, Doc], None], ...] = ()) -> list[Any]:
    lines = (FIXTURES / log).read_text(encoding="utf-8").splitlines()
    docs = json.loads((FIXTURES / expected).read_text(encoding="utf-8"))["expected"]
    assert len(lines) == len(docs)
    return [
        pytest.param(line, doc, PIPELINE_TEST_OPTIONS, extra + PIPELINE_DELTAS, id=f"{expected}#{i}")
        for i, (line, doc) in enumerate(zip(lines, docs))
    ]


def _system_case() -> list[Any]:
    doc = json.loads((FIXTURES / "sample_event.json").read_text(encoding="utf-8"))
    deltas = (delta_agent_fields, delta_latest_index_fields, delta_1_33_provider_from_source_name,
              ours_tlp_prefix_accepted, ours_indicator_dates)
    return [pytest.param(doc["event"]["original"], doc, SYSTEM_TEST_OPTIONS, deltas, id="sample_event.json")]


CASES = (
    _pipeline_case(
        "test-threatq-sample-ndjson.log",
        "test-threatq-sample-ndjson.log-expected.json",
        (delta_final_1_32_id_is_long,),
    )
    # The final 1.32.0 expected file pairs with the input rebuilt from its event.original values
    # (PROVENANCE.md: the copied .log is a PR iteration whose line 4 description differs).
    + _pipeline_case("derived-1.32.0/test-threatq-no-preserve-ndjson.log", "test-threatq-no-preserve-ndjson.log-expected.json")
    + _system_case()
)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, child in value.items():
            out.update(_flatten(child, f"{prefix}.{key}" if prefix else key))
        return out
    if isinstance(value, list):
        out = {}
        for i, child in enumerate(value):
            out.update(_flatten(child, f"{prefix}[{i}]"))
        return out if value else {prefix: []}
    return {prefix: value}


@pytest.mark.parametrize(("line", "expected", "options", "deltas"), CASES)
def test_transform_reproduces_elastic_pipeline_output(
    line: str, expected: Doc, options: EcsOptions, deltas: tuple[Callable[[Doc, Doc], None], ...]
) -> None:
    raw = json.loads(line)
    want = copy.deepcopy(expected)
    for delta in deltas:
        delta(want, raw)
    got = indicator_to_ecs(raw, now=NOW, options=options, original=line)
    got_flat, want_flat = _flatten(got), _flatten(want)
    missing = sorted(set(want_flat) - set(got_flat))
    extra = sorted(set(got_flat) - set(want_flat))
    changed = {k: (got_flat[k], want_flat[k]) for k in want_flat.keys() & got_flat.keys() if got_flat[k] != want_flat[k]}
    assert (missing, extra, changed) == ([], [], {})
    # Types matter to Elasticsearch (long vs keyword): compare them too, not only values.
    assert {k: type(v) for k, v in got_flat.items()} == {k: type(v) for k, v in want_flat.items()}


def test_every_input_line_is_the_expected_event_original() -> None:
    for param in CASES:
        line, expected = param.values[0], param.values[1]
        assert expected["event"]["original"] == line


def test_repo_copy_matches_shared() -> None:
    """The copy in tests/data equals ../shared/conformance when that folder is there."""
    if not SHARED.is_dir():
        # CI always lays shared/ beside the clone: there, a missing folder is a failure.
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED} is missing in CI; cannot check the repo copy against Elastic's fixtures")
        pytest.skip(f"{SHARED} not present in this checkout; the repo copy is used alone")
    shared = sorted(p.relative_to(SHARED) for p in SHARED.rglob("*") if p.is_file())
    ours = sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*") if p.is_file())
    assert ours == shared
    _, mismatch, errors = filecmp.cmpfiles(SHARED, FIXTURES, [str(p) for p in shared], shallow=False)
    assert (mismatch, errors) == ([], [])
