"""The examples in include/ that a deployment passes to the tools are valid and do what include/README.md says."""

from __future__ import annotations

from pathlib import Path

from threatq_simulators.faults import FaultPlan

INCLUDE = Path(__file__).resolve().parents[2] / "include"


def test_example_fault_plan_gives_one_429_one_503_and_slow_event_pages() -> None:
    plan = FaultPlan.from_json(INCLUDE / "simulator" / "faults.example.json")
    fired = [plan.match("GET", "/api/indicators/query/hash/abc", "limit=500") for _ in range(8)]
    outcomes = [(r.status, r.headers) if r else None for r in fired]
    assert outcomes == [None, (429, {"Retry-After": "1"}), None, None, None, (503, {}), None, None]
    events = [plan.match("GET", "/api/events", "limit=100") for _ in range(3)]
    assert [r.delay_s if r else None for r in events] == [0.2, 0.2, 0.2]


def test_include_readme_lists_every_file_in_include() -> None:
    readme = (INCLUDE / "README.md").read_text(encoding="utf-8")
    files = sorted(str(p.relative_to(INCLUDE)) for p in INCLUDE.rglob("*") if p.is_file() and p.name != "README.md")
    assert files, "include/ holds no example"
    undocumented = [f for f in files if f"`{f}`" not in readme]
    assert undocumented == [], f"add a row for each to the table in include/README.md: {undocumented}"
