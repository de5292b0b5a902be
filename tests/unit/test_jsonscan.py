"""The recursion-free JSON scanner behind the deep-nesting rejects (issue #18, item 7)."""

from __future__ import annotations

import json

import pytest

from threatq_provider._jsonscan import MAX_DEPTH, depth_exceeds, split_member, top_level_scalars


def nested(depth: int, leaf: str = '"x"') -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize("as_bytes", [False, True])
def test_depth_is_counted_exactly_at_the_limit(as_bytes):
    at = '{"id": 1, "v": ' + nested(MAX_DEPTH - 1) + "}"
    over = '{"id": 1, "v": ' + nested(MAX_DEPTH) + "}"
    encode = (lambda t: t.encode()) if as_bytes else (lambda t: t)
    assert not depth_exceeds(encode(at)) and depth_exceeds(encode(over))


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"v": "[" * 2000 + "{" * 2000, "w": ["\\\"]["]})
    assert not depth_exceeds(text)
    assert depth_exceeds('{"a": {"b": {"c": "]]]]"}}}', limit=2)


def test_a_million_levels_are_scanned_without_recursion():
    assert depth_exceeds(nested(1_000_000))


def test_top_level_scalars_skip_nested_members_and_strings_that_look_like_keys():
    text = ('{"attributes": [{"id": 99, "updated_at": "inner"}], "note": "\\"id\\": 5", '
            f'"deep": {nested(5000)}, "updated_at": "2026-01-01 00:00:00", "id": 17, "value": null}}')
    assert top_level_scalars(text) == {"updated_at": "2026-01-01 00:00:00", "id": 17}
    assert top_level_scalars(text, ("value",)) == {"value": None}
    assert top_level_scalars("[1, 2]") == {}


def test_a_page_splits_into_its_envelope_and_each_row_text():
    rows = ['{"id": 1, "s": "a,]}[{"}', "{\"id\": 2, \"v\": " + nested(3000) + "}", '{"id": 3}']
    page = '{"total": 3, "data": [' + ",\n ".join(rows) + '], "nextCursorMark": "AoJ=", "limit": 500}'
    split = split_member(page)
    assert split is not None and split.members == rows
    assert json.loads(split.envelope) == {"total": 3, "data": [], "nextCursorMark": "AoJ=", "limit": 500}


@pytest.mark.parametrize("text", ['{"data": {}}', '{"data": "x"}', "[1, 2]", '{"rows": [1]}', '"data"', ""])
def test_no_split_when_there_is_no_data_array(text):
    assert split_member(text) is None


def test_an_empty_data_array_splits_into_no_rows():
    split = split_member('{"total": 0, "data": []}')
    assert split is not None and split.members == [] and json.loads(split.envelope) == {"total": 0, "data": []}
