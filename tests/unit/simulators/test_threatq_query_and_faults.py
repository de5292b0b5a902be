"""The simulator's filter grammar and fault plans, without HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from threatq_simulators.faults import FaultPlan, FaultRule
from threatq_simulators.query import QueryError, compile_expr, parse_sort, updated_at_bounds
from threatq_simulators.timefmt import to_epoch

ROW = {"value": "evil.example.com", "type_name": "FQDN", "status_name": "Active", "score": 7,
       "updated_at": "2026-01-03 10:00:00", "tags": ["c2", "apt"], "expires_at": None}


def _match(expr: object) -> bool:
    return compile_expr(expr)(lambda f: ROW.get(f))


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ({}, True),
        ({"value": "EVIL.example.com"}, True),
        ({"value": "%example.com"}, True),
        ({"value": {"+contains": "example"}}, True),
        ({"type": "FQDN", "status": "Active"}, True),
        ({"type_name": "URL"}, False),
        ({"score": {"+gte": 6, "+lte": 10}}, True),
        ({"score": {"+gt": 7}}, False),
        ({"score": {"+ne": 7}}, False),
        ({"updated_at": {"+gte": "2026-01-03", "+lt": "2026-01-04T00:00:00Z"}}, True),
        ({"updated_at": {"+lt": "2026-01-03 10:00:00"}}, False),
        ({"+or": [{"value": "a"}, {"value": "evil.example.com"}]}, True),
        ({"+and": [{"+or": [{"type_name": "IP Address"}]}, {"score": {"+gte": 0}}]}, False),
        ({"+not": {"type_name": "URL"}}, True),
        ({"tags": "apt"}, True),
        ({"expires_at": None}, True),
        ({"status_name": ["Expired", "Active"]}, True),
    ],
)
def test_grammar(expr: object, expected: bool) -> None:
    assert _match(expr) is expected


@pytest.mark.parametrize("expr", [{"score": {"+between": 1}}, {"+xor": []}, {"+and": {}}, "value", {"updated_at": {"+gt": "soon"}}])
def test_bad_expressions_raise(expr: object) -> None:
    with pytest.raises(QueryError):
        compile_expr(expr)


def test_updated_at_bounds_follow_conjunctions_only() -> None:
    lo, hi = updated_at_bounds({"+and": [{"updated_at": {"+gte": "2026-01-02"}}, {"updated_at": {"+lte": "2026-01-03"}}]})
    assert (lo, hi) == (to_epoch("2026-01-02"), to_epoch("2026-01-03") + 1)
    assert updated_at_bounds({"+or": [{"updated_at": {"+gte": "2026-01-02"}}]}) == (None, None)


def test_parse_sort() -> None:
    assert parse_sort("-created_at,id") == [("created_at", True), ("id", False)]
    assert parse_sort("-created") == [("created_at", True)]
    with pytest.raises(QueryError):
        parse_sort("bogus", frozenset({"id"}))


def test_rule_fires_from_nth_match_for_times() -> None:
    plan = FaultPlan([FaultRule(path_regex="^/api/indicators", nth=2, times=2, status=503)])
    fired = [plan.match("GET", "/api/indicators") is not None for _ in range(5)]
    assert fired == [False, True, True, False, False]
    assert plan.match("GET", "/api/events") is None


def test_times_none_is_always_and_method_filters() -> None:
    plan = FaultPlan()
    plan.add({"method": "post", "times": None, "delay_s": 0.01})
    assert all(plan.match("POST", "/api/x") for _ in range(3))
    assert plan.match("GET", "/api/x") is None
    plan.clear()
    assert plan.match("POST", "/api/x") is None


def test_regex_sees_the_query_string() -> None:
    plan = FaultPlan([{"path_regex": r"cursorMark=\*", "status": 500}])
    assert plan.match("GET", "/api/indicators/query/hash/h", "cursorMark=abc") is None
    assert plan.match("GET", "/api/indicators/query/hash/h", "cursorMark=*") is not None


def test_plan_loads_from_file_and_string(tmp_path: Path) -> None:
    rules = [{"path_regex": "/api/token", "status": 429, "headers": {"Retry-After": "1"}}, {"action": "reset"}]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"rules": rules}))
    for plan in (FaultPlan.from_json(path), FaultPlan.from_json(str(path)), FaultPlan.from_json(json.dumps(rules))):
        assert [r.status for r in plan.rules] == [429, None] and plan.rules[1].action == "reset"


@pytest.mark.parametrize("bad", [{"action": "explode"}, {"nth": 0}, {"status": 99}, {"pathregex": "x"}])
def test_bad_rules_are_rejected(bad: dict) -> None:
    with pytest.raises((ValueError, TypeError)):
        FaultRule.from_dict(bad)
