"""The examples in include/ that a deployment passes to the tools are valid and do what include/README.md says."""

from __future__ import annotations

from pathlib import Path

from threatq_simulators.faults import MISP, THREATQ, FaultPlan

INCLUDE = Path(__file__).resolve().parents[2] / "include"


def test_example_fault_plan_gives_one_429_one_503_and_slow_event_pages() -> None:
    plan = FaultPlan.from_json(INCLUDE / "simulator" / "faults.example.json")
    fired = [plan.match("GET", "/api/indicators/query/hash/abc", "limit=500") for _ in range(8)]
    outcomes = [(r.status, r.headers) if r else None for r in fired]
    assert outcomes == [None, (429, {"Retry-After": "1"}), None, None, None, (503, {}), None, None]
    events = [plan.match("GET", "/api/events", "limit=100") for _ in range(3)]
    assert [r.delay_s if r else None for r in events] == [0.2, 0.2, 0.2]


def test_example_fault_plans_load_on_the_server_each_is_for() -> None:
    for name in ("faults.example.json", "faults.bad-data.example.json"):
        assert FaultPlan.from_json(INCLUDE / "simulator" / name).bind(THREATQ).rules
    assert FaultPlan.from_json(INCLUDE / "simulator" / "faults.misp.example.json").bind(MISP).rules


def test_example_misp_plan_rate_limits_one_search_fails_one_batch_and_loses_one_publish_answer() -> None:
    plan = FaultPlan.from_json(INCLUDE / "simulator" / "faults.misp.example.json").bind(MISP)
    searches = [plan.match("POST", "/events/restSearch") for _ in range(2)]
    assert [(r.status, r.headers) if r else None for r in searches] == [(429, {"Retry-After": "1"}), None]
    batches = [plan.match("POST", "/attributes/add/7") for _ in range(3)]
    assert [r.status if r else None for r in batches] == [None, 503, None]
    publishes = [plan.match("POST", "/events/publish/7") for _ in range(2)]
    assert [r.action if r else None for r in publishes] == ["commit_then_reset", None]


def test_include_readme_lists_every_file_in_include() -> None:
    readme = (INCLUDE / "README.md").read_text(encoding="utf-8")
    files = sorted(str(p.relative_to(INCLUDE)) for p in INCLUDE.rglob("*") if p.is_file() and p.name != "README.md")
    assert files, "include/ holds no example"
    undocumented = [f for f in files if f"`{f}`" not in readme]
    assert undocumented == [], f"add a row for each to the table in include/README.md: {undocumented}"
