"""The compiled per-shape copies give exactly what the generic copy loop gives.

``ObjectKinds.copy`` generates one straight-line function per key sequence (see
``threatq_provider.ecs.conversions``); ``copy_generic`` is the reference. Same output, same key
order, same error messages in the same order, for ordinary and broken values of every kind.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from threatq_provider.ecs import conversions
from threatq_provider.ecs.conversions import DATE, LONG, NESTED, STR, ObjectKinds, copy_generic

KINDS = {"when": DATE, "count": LONG, "ref": STR, "rel": NESTED}

# Values each kind meets: usual ones first, then what a broken or older API may send.
VALUES: list[Any] = [
    "2020-11-15 00:00:02", "2020-11-15T00:00:02Z", "2020-02-30 00:00:00", "not a date", "", None,
    7, -3, "42", " 8 ", "x", 1.5, 0, 0.0, True, False,
    [], {}, [None, ""], {"a": None, "b": [{}, 1]}, ["a"], {"a": 1}, "v" * 200,
]  # fmt: skip


def _both(kinds: ObjectKinds, obj: dict[str, Any]) -> tuple[Any, Any]:
    generic_errors: list[str] = []
    compiled_errors: list[str] = []
    generic = copy_generic(obj, kinds.kinds, "threatq.things", generic_errors, 3)
    compiled = kinds.copy(obj, "threatq.things", compiled_errors, 3)
    # json.dumps keeps insertion order: equal text means equal keys, values and order.
    return (json.dumps(generic), generic_errors), (json.dumps(compiled), compiled_errors)


@pytest.mark.parametrize("key", ["when", "count", "ref", "rel", "other"])
def test_every_kind_and_value_matches_the_generic_loop(key: str) -> None:
    kinds = ObjectKinds("test", KINDS)
    for value in VALUES:
        obj = {"id": 1, key: value, "name": "n"}
        expected, got = _both(kinds, obj)
        assert got == expected, value


def test_key_order_and_error_order_follow_the_input() -> None:
    kinds = ObjectKinds("test", KINDS)
    keys = ["when", "count", "ref", "rel", "other"]
    for order in itertools.permutations(keys):
        obj = {k: "bad" if k in ("when", "count") else "x" for k in order}
        expected, got = _both(kinds, obj)
        assert got == expected
        assert [m.split(":")[0] for m in got[1]] == [f"threatq.things.3.{k}" for k in order if k in ("when", "count")]


def test_one_function_per_shape_and_generic_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conversions, "MAX_SHAPES", 2)
    kinds = ObjectKinds("test", KINDS)
    for n in range(1, 5):
        obj = {f"k{i}": i for i in range(n)} | {"when": "2020-11-15 00:00:02"}
        expected, got = _both(kinds, obj)
        assert got == expected
    assert len(kinds._plans) == 2


def test_non_string_keys_and_dict_subclasses_take_the_generic_loop() -> None:
    kinds = ObjectKinds("test", KINDS)

    class Raw(dict[Any, Any]):
        pass

    for obj in ({1: "a", "when": "2020-11-15 00:00:02"}, Raw(when="2020-11-15 00:00:02", ref=5)):
        expected, got = _both(kinds, obj)
        assert got == expected
    assert kinds._plans == {}


def test_generated_source_is_readable_straight_line_code() -> None:
    source = ObjectKinds("source", {"created_at": DATE, "id": STR}).source(("id", "created_at", "name"))
    assert source.startswith("def copy(obj, where, errors, index):\n    # source: 3 keys\n")
    assert "for " not in source  # one block per key, no loop
    assert source.index("obj['id']") < source.index("obj['created_at']") < source.index("obj['name']")


def test_copy_list_matches_copying_each_item() -> None:
    kinds = ObjectKinds("test", KINDS)
    items: list[Any] = [{"when": v, "ref": 1} for v in VALUES] + [None, "", "text", 0, {}, {"rel": None}, {2: "x"}]
    errors: list[str] = []
    got = kinds.copy_list(items, "threatq.things", errors)
    expected_errors: list[str] = []
    expected = [
        c
        for i, item in enumerate(items)
        for c in [copy_generic(item, KINDS, "threatq.things", expected_errors, i) if type(item) is dict else item]
        if (c if type(item) is dict else item is not None and item != "")
    ]
    assert json.dumps(got) == json.dumps(expected)
    assert errors == expected_errors
    assert kinds.copy_list([], "x", errors) is None
    assert kinds.copy_list([None, {"rel": ""}], "x", errors) is None
    assert kinds.copy_list("not a list", "x", errors) is None


def test_compiled_copies_match_the_generic_loop_on_the_simulator_corpus() -> None:
    from threatq_provider.ecs import transform
    from threatq_simulators.corpus import Corpus

    tables = {
        "sources": transform._SOURCE_KINDS,
        "attributes": transform._ATTRIBUTE_KINDS,
        "adversaries": transform._ADVERSARY_KINDS,
        "comments": transform._COMMENT_KINDS,
    }
    checked = 0
    for raw in Corpus(42, indicators=300).iter_indicators():
        pairs = [(transform._TOP_KINDS, raw)]
        pairs += [(tables[key], item) for key in tables for item in raw.get(key) or []]
        pairs += [(transform._ID_OBJ_KINDS, raw[key]) for key in ("type", "status") if isinstance(raw.get(key), dict)]
        for kinds, obj in pairs:
            expected, got = _both(kinds, obj)
            assert got == expected
            checked += 1
    assert checked > 300 * 4
