"""Staged lines the transform must survive (issue #18): lone UTF-16 surrogates and deep nesting.

Lone surrogates are repaired (U+FFFD) and the document is flagged with the field; in the value
itself they make the line a reject, since a repaired value is another IOC. Both engines must
agree byte for byte (the native mapper hands such lines to Python; see test_native.py).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import TransformCounts, transform_stream

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
BASE: dict[str, Any] = {
    "id": 17, "value": "evil.example.com", "type": {"name": "FQDN"}, "status": {"name": "Active"},
    "updated_at": "2026-11-20 10:00:00", "description": "DESC", "attributes": [{"name": "Note", "value": "VAL"}],
}


def _line(**replace: str) -> str:
    """BASE as a line, with placeholders replaced by raw JSON text (escapes kept as written)."""
    text = json.dumps(BASE)
    for placeholder, raw in replace.items():
        text = text.replace(f'"{placeholder}"', raw)
    return text


def _run(lines: list[str | bytes], engine: str = "python") -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                      TransformCounts]:
    out, rejects = io.StringIO(), io.StringIO()
    counts = transform_stream(lines, out, rejects, now=NOW, options=EcsOptions(), engine=engine)
    out.getvalue().encode("utf-8")  # both files must be writable as UTF-8
    rejects.getvalue().encode("utf-8")
    return ([json.loads(x) for x in out.getvalue().splitlines()], [json.loads(x) for x in rejects.getvalue().splitlines()],
            counts)


def test_a_lone_surrogate_in_the_description_is_repaired_and_the_document_flagged():
    docs, rejects, counts = _run([_line(DESC=r'"cut emoji \ud83d"').encode()])
    assert rejects == [] and counts.written == 1 and counts.flagged == 1
    doc = docs[0]
    assert doc["threatq"]["description"] == doc["threat"]["indicator"]["description"] == "cut emoji \ufffd"
    assert doc["error"]["message"] == ["threatq.description: lone UTF-16 surrogate replaced with U+FFFD"]
    assert doc["event"]["kind"] == "pipeline_error"
    assert "\\ud83d" in doc["event"]["original"], "event.original keeps the line as ThreatQ sent it"
    assert doc["threatq"]["id"] == 17 and doc["threat"]["indicator"]["url"]["domain"] == "evil.example.com"


@pytest.mark.parametrize(("replace", "field", "expected"), [
    ({"VAL": r'"low \udc00 half"'}, "threatq.attributes.value", "low \ufffd half"),
    ({"Note": r'"N\ud800"'}, "threatq.attributes.name", None),
    ({"DESC": r'"\ud83d\ud83d"'}, "threatq.description", "\ufffd\ufffd"),  # two highs are no pair
    ({"DESC": r'"\ude00\ud83d"'}, "threatq.description", "\ufffd\ufffd"),  # a pair in the wrong order
])
def test_lone_surrogates_anywhere_are_repaired_naming_the_field(replace, field, expected):
    docs, rejects, counts = _run([_line(**replace)])
    assert rejects == [] and counts.flagged == 1
    assert docs[0]["error"]["message"] == [f"{field}: lone UTF-16 surrogate replaced with U+FFFD"]
    if expected is not None and field == "threatq.description":
        assert docs[0]["threatq"]["description"] == expected
    elif expected is not None:
        assert docs[0]["threatq"]["attributes"][0]["value"] == expected


def test_a_surrogate_key_is_repaired_too():
    docs, _, counts = _run([_line(DESC='"d"').replace('"description"', '"descr\\udfff"')])
    assert counts.flagged == 1
    assert docs[0]["error"]["message"] == ["threatq.descr\ufffd: lone UTF-16 surrogate replaced with U+FFFD"]


def test_a_proper_surrogate_pair_is_just_an_emoji():
    docs, rejects, counts = _run([_line(DESC=r'"smile \ud83d\ude00"')])
    assert counts.flagged == 0 and rejects == []
    assert docs[0]["threatq"]["description"] == "smile 😀" and "error" not in docs[0]


def test_a_lone_surrogate_in_the_value_rejects_the_line_naming_the_indicator():
    docs, rejects, counts = _run([_line(), json.dumps({**BASE, "id": 18}).replace("evil.example.com", r"evil\ud83d.com")])
    assert [d["threatq"]["id"] for d in docs] == [17]
    assert counts.rejected == {"invalid_value": 1}
    assert rejects[0]["reason"] == "invalid_value" and rejects[0]["line_no"] == 2
    assert "indicator 18" in rejects[0]["message"] and "lone UTF-16 surrogate" in rejects[0]["message"]
    assert rejects[0]["raw"]["value"] == "evil\ud83d.com", "the reject keeps what ThreatQ sent"


def test_a_str_line_holding_a_surrogate_code_point_is_handled_the_same():
    docs, rejects, counts = _run([_line(DESC='"x ' + chr(0xD83D) + ' y"')])
    assert counts.flagged == 1 and rejects == []
    assert docs[0]["threatq"]["description"] == "x \ufffd y"


def test_other_broken_json_is_still_invalid_json():
    _, rejects, counts = _run([_line(DESC=r'"\ud83d" trailing garbage'), _line(DESC="NaN").replace("DESC", "x")
                               + r' "\ud800"'])
    assert counts.rejected == {"invalid_json": 2}
    assert all(r["reason"] == "invalid_json" for r in rejects)


# ---- deep nesting ------------------------------------------------------------------------------

def _deep(depth: int, **extra: Any) -> str:
    return _line(VAL="[" * depth + '"x"' + "]" * depth).replace('"id": 17', f'"id": {extra.get("id", 17)}')


@pytest.mark.parametrize("engine", ["python", "native"])
@pytest.mark.parametrize("depth", [1_000, 5_000, 200_000])
def test_a_line_nested_too_deep_is_a_reject_naming_the_indicator_not_a_recursion_error(depth, engine):
    from threatq_provider.ecs import native

    if engine == "native" and not native.available():
        pytest.skip("threatq_ecs_native not installed")
    docs, rejects, counts = _run([_line(), _deep(depth, id=18).encode(), _line().replace('"id": 17', '"id": 19')],
                                 engine)
    assert [d["threatq"]["id"] for d in docs] == [17, 19], "the lines around it are mapped"
    assert counts.rejected == {"too_deeply_nested": 1}
    reject = rejects[0]
    assert reject["reason"] == "too_deeply_nested" and reject["line_no"] == 2
    assert "indicator 18" in reject["message"] and "512 levels" in reject["message"]
    assert reject["raw"].startswith('{"id": 18'), "the reject keeps the line as staged"


def test_the_limit_is_a_fixed_depth():
    # attribute value depth + 3 (the object, attributes, the attribute) = the line's depth
    docs, rejects, _ = _run([_deep(509), _deep(510)])
    assert len(docs) == 1 and docs[0]["threatq"]["attributes"][0]["value"] is not None
    assert [r["reason"] for r in rejects] == ["too_deeply_nested"]


def test_a_deep_line_without_an_id_is_still_a_reject():
    _, rejects, counts = _run(["[" * 3000 + "]" * 3000])
    assert counts.rejected == {"too_deeply_nested": 1} and "indicator None" in rejects[0]["message"]


def test_a_recursion_error_below_the_limit_is_the_same_reject(monkeypatch):
    from threatq_provider.ecs import transform

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(transform, "indicator_to_ecs", explode)
    _, rejects, counts = _run([_line()])
    assert counts.rejected == {"too_deeply_nested": 1} and "indicator 17" in rejects[0]["message"]
