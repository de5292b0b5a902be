"""Input/expected pairs under ``tests/data/ecs/pipeline/``, run through both transform engines.

The shape of Elastic's pipeline tests (``elastic-package test pipeline``): per case an input
``test-<name>.log`` (one raw ThreatQ indicator per line, read as bytes, as the operator reads the
poll stage's file), an optional ``test-<name>.log-config.json`` (``{"options": {...}}``: keyword
arguments of ``EcsOptions``; defaults when absent) and ``test-<name>.log-expected.json``
(``{"expected": [documents in output order], "rejected": [reject entries]}``).

Each case runs on the Python specification (``engine="python"``) and on the native engine
(``engine="native"``: the Rust mapper, which hands the lines it cannot map the same way back to
Python). Both must write exactly the expected documents: same keys in the same order, same values
and JSON types (``json.dumps`` of the parsed line equals that of the expected document), and the
same rejects.

To add a case, write its ``.log`` (and config), then run
``.venv/bin/python tests/unit/ecs/test_pipeline_cases.py``: the Python specification writes the
missing or changed expected files and names them. Review the diff (``git diff tests/data/ecs``)
as you would Elastic's: the expected file is what the transform is held to from then on.
"""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from threatq_provider.ecs import native
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import TransformCounts, transform_stream

CASES_DIR = Path(__file__).resolve().parents[2] / "data" / "ecs" / "pipeline"
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
CASES = sorted(CASES_DIR.glob("test-*.log"))
ENGINES = ("python", "native")


def _lines(log: Path) -> list[bytes]:
    """The file's lines as iterating it in binary mode gives them (split at newlines only)."""
    return list(io.BytesIO(log.read_bytes()))


def _options(log: Path) -> EcsOptions:
    config = log.with_name(log.name + "-config.json")
    if not config.exists():
        return EcsOptions()
    return EcsOptions(**json.loads(config.read_text(encoding="utf-8"))["options"])


def _run(log: Path, engine: str) -> tuple[list[Any], list[Any], TransformCounts]:
    out, rejects = io.StringIO(), io.StringIO()
    counts = transform_stream(_lines(log), out, rejects, now=NOW, options=_options(log), engine=engine)
    # split("\n"), not splitlines(): a document may hold a raw U+2028 or \x1c inside a string.
    documents = [json.loads(line) for line in out.getvalue().split("\n")[:-1]]
    rejected = [json.loads(line) for line in rejects.getvalue().split("\n")[:-1]]
    return documents, rejected, counts


def _expected_text(documents: list[Any], rejected: list[Any]) -> str:
    body: dict[str, Any] = {"expected": documents}
    if rejected:
        body["rejected"] = rejected
    text = json.dumps(body, indent=4, ensure_ascii=False) + "\n"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a reject's raw text keeps a lone surrogate: write \u escapes
        text = json.dumps(body, indent=4) + "\n"
    return text


def test_cases_are_there() -> None:
    """The folder holds cases, each with its expected file (a missing one is a failure, not a skip)."""
    assert len(CASES) >= 5, CASES_DIR
    for log in CASES:
        assert log.with_name(log.name + "-expected.json").exists(), f"{log.name}: run this file to write it"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("log", CASES, ids=lambda p: p.name)
def test_engine_writes_the_expected_documents(log: Path, engine: str) -> None:
    if engine == "native" and not native.available():
        if os.environ.get(native.REQUIRE_ENV) == "1":
            pytest.fail(f"threatq_ecs_native is not installed and {native.REQUIRE_ENV}=1: run scripts/bootstrap")
        pytest.skip(f"threatq_ecs_native not installed and {native.REQUIRE_ENV} is not 1 (pure-Python install)")
    body = json.loads(log.with_name(log.name + "-expected.json").read_text(encoding="utf-8"))
    documents, rejected, counts = _run(log, engine)
    want = body["expected"]
    assert len(documents) == len(want)
    for i, (got, expected) in enumerate(zip(documents, want, strict=True)):
        # Text comparison: key order and JSON types (1 vs 1.0 vs "1") count, as in the output file.
        assert json.dumps(got, ensure_ascii=False) == json.dumps(expected, ensure_ascii=False), f"document {i}"
    assert rejected == body.get("rejected", [])
    assert counts.written == len(want)
    assert counts.read == len(want) + len(rejected)
    assert counts.flagged == sum(1 for doc in want if "error" in doc)
    assert counts.engine == engine


def test_native_engine_maps_the_clean_lines_itself() -> None:
    """Not a vacuous pass: the native engine writes most unflagged documents itself. It hands back
    rejects, flagged documents and the shapes it does not carry (non-object list items, numbers
    Python prints differently…): 193 of the 226 clean documents are its own when this was written,
    every one of the simulator-corpus cases."""
    if not native.available():
        pytest.skip("threatq_ecs_native not installed")
    clean = native_lines = 0
    for log in CASES:
        body = json.loads(log.with_name(log.name + "-expected.json").read_text(encoding="utf-8"))
        clean += sum(1 for doc in body["expected"] if "error" not in doc)
        native_lines += _run(log, "native")[2].native_lines
    assert clean > 0
    assert native_lines >= 0.8 * clean, (native_lines, clean)


def generate() -> list[str]:
    """(Re)write the expected files from the Python specification; the names of those written."""
    written = []
    for log in CASES:
        documents, rejected, _ = _run(log, "python")
        target = log.with_name(log.name + "-expected.json")
        text = _expected_text(documents, rejected)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(target.name)
    return written


if __name__ == "__main__":
    names = generate()
    print(f"wrote {len(names)} expected file(s) from the Python specification: {names or 'none changed'}")
