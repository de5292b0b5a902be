"""The simulator's data faults over real HTTP: a silent page cap, a poisoned indicator, deep
nesting (issue #18), alone, together, behind a transport fault, and from a JSON plan."""

from __future__ import annotations

import json

import pytest
import requests

from threatq_simulators.faults import FaultPlan, FaultRule
from threatq_simulators.threatq_sim import ThreatQSimulator

from .conftest import api_session

pytestmark = pytest.mark.component


@pytest.fixture
def sim(threatq_sim_factory) -> ThreatQSimulator:
    return threatq_sim_factory(indicators=300, events=5)


def _flatten(text: str, depth: int) -> str:
    """The body with a ``depth``-deep array run collapsed, so the standard parser can read it."""
    assert "[" * depth in text
    return text.replace("[" * depth, "[").replace("]" * depth, "]")


def test_page_cap_serves_at_most_n_rows_with_a_correct_total_and_the_asked_limit_echoed(sim):
    api = api_session(sim)
    sim.faults.add({"path_regex": "^/api/indicators", "times": None, "page_cap": 40})
    listed = api.get(f"{sim.url}/api/indicators", params={"limit": 500, "offset": 80}, timeout=10).json()
    assert [r["id"] for r in listed["data"]] == list(range(81, 121))
    assert (listed["total"], listed["limit"], listed["offset"]) == (300, 500, 80)
    # the default limit (50) is capped too
    assert len(api.get(f"{sim.url}/api/indicators", timeout=10).json()["data"]) == 40
    # a cursor page moves by the rows actually sent
    url = f"{sim.url}/api/indicators/query"
    first = api.post(url, params={"limit": 1000, "cursorMark": "*", "sort": "updated_at"}, json={}, timeout=10).json()
    second = api.post(url, params={"limit": 1000, "cursorMark": first["nextCursorMark"], "sort": "updated_at"},
                      json={}, timeout=10).json()
    assert len(first["data"]) == len(second["data"]) == 40 and first["total"] == 300
    assert not {r["id"] for r in first["data"]} & {r["id"] for r in second["data"]}
    # other routes are not capped: the rule's path_regex scopes it
    assert len(api.get(f"{sim.url}/api/events", params={"limit": 5}, timeout=10).json()["data"]) == 5
    assert sim.stats["faults_by_kind"]["page_cap"] == 4


def test_a_bad_limit_is_still_refused_under_a_cap(sim):
    api = api_session(sim)
    sim.faults.add({"times": None, "page_cap": 10})
    assert api.get(f"{sim.url}/api/indicators", params={"limit": "x"}, timeout=10).status_code == 400
    assert api.get(f"{sim.url}/api/indicators", params={"limit": 0}, timeout=10).status_code == 400


def test_poisoned_indicator_carries_an_escaped_lone_surrogate_in_valid_utf8_json(sim):
    api = api_session(sim)
    clean = {r["id"]: r for r in api.get(f"{sim.url}/api/indicators", params={"limit": 10}, timeout=10).json()["data"]}
    sim.faults.add({"path_regex": "^/api/indicators", "times": None, "poison_indicator": 7})
    resp = api.get(f"{sim.url}/api/indicators", params={"limit": 10}, timeout=10)
    resp.content.decode("utf-8")  # the body is valid UTF-8: the surrogate travels escaped
    assert "\\ud83d" in resp.text
    rows = {r["id"]: r for r in resp.json()["data"]}
    assert rows[7]["description"] == (clean[7].get("description") or "") + " \ud83d"
    assert {i: r for i, r in rows.items() if i != 7} == {i: r for i, r in clean.items() if i != 7}, \
        "only the chosen indicator changes"
    single = api.get(f"{sim.url}/api/indicators/7", timeout=10).json()["data"]
    assert single["description"].endswith("\ud83d")
    # an event with the same id is not an indicator: untouched
    assert "\\ud83d" not in api.get(f"{sim.url}/api/events/5", timeout=10).text


def test_nested_indicator_attribute_is_wrapped_n_levels_deep(sim):
    api = api_session(sim)
    sim.faults.add({"path_regex": "^/api/indicators", "times": None, "nest_indicator": 3, "nest_depth": 1500})
    resp = api.get(f"{sim.url}/api/indicators", params={"limit": 5, "with": "attributes"}, timeout=10)
    with pytest.raises(RecursionError):
        json.loads(resp.text)
    row = next(r for r in json.loads(_flatten(resp.text, 1500))["data"] if r["id"] == 3)
    original = sim.corpus.indicator(3)["attributes"]
    if original:
        assert row["attributes"][0]["value"] == [original[0]["value"]]
    else:
        assert row["attributes"] == [{"name": "Nested", "value": ["nested"]}]


def test_data_faults_combine_with_each_other_and_with_a_transport_fault(sim):
    api = api_session(sim)
    sim.faults.extend([
        {"path_regex": r"^/api/indicators(\?|$)", "times": 1, "status": 429, "headers": {"Retry-After": "0"}},
        {"path_regex": r"^/api/indicators(\?|$)", "times": None, "page_cap": 4},
        {"path_regex": r"^/api/indicators(\?|$)", "times": None, "poison_indicator": 2},
    ])
    assert api.get(f"{sim.url}/api/indicators", timeout=10).status_code == 429
    body = api.get(f"{sim.url}/api/indicators", params={"limit": 9}, timeout=10).json()
    assert [r["id"] for r in body["data"]] == [1, 2, 3, 4]
    assert body["data"][1]["description"].endswith("\ud83d")
    assert sim.stats["faults_by_kind"] == {"429": 1, "page_cap": 1, "poison_indicator": 1}


def test_data_fault_rules_are_checked_when_built():
    with pytest.raises(ValueError, match="page_cap must be an integer >= 1"):
        FaultRule(page_cap=0)
    with pytest.raises(ValueError, match="cannot also set status"):
        FaultRule(poison_indicator=3, status=500)
    with pytest.raises(ValueError, match="nest_depth goes with nest_indicator"):
        FaultRule(nest_depth=10)
    with pytest.raises(ValueError, match="unknown fault rule keys"):
        FaultRule.from_dict({"page_caps": 3})


def test_data_faults_load_from_a_json_plan_and_the_control_endpoint(threatq_sim_factory):
    plan = FaultPlan.from_json('{"rules": [{"path_regex": "^/api/indicators", "times": null, "page_cap": 25}]}')
    sim = threatq_sim_factory(indicators=100, events=2, faults=plan)
    api = api_session(sim)
    assert len(api.get(f"{sim.url}/api/indicators", params={"limit": 100}, timeout=10).json()["data"]) == 25
    added = requests.post(f"{sim.url}/_sim/faults", json={"times": None, "nest_indicator": 1, "nest_depth": 5},
                          timeout=10)
    assert added.status_code == 201 and added.json()["data"][0]["nest_depth"] == 5
    listed = requests.get(f"{sim.url}/_sim/faults", timeout=10).json()["data"]
    assert [r["page_cap"] for r in listed] == [25, None] and listed[0]["triggered"] == 1


def test_nesting_is_1000_levels_unless_told(sim):
    api = api_session(sim)
    sim.faults.add({"path_regex": "^/api/indicators/4", "times": None, "nest_indicator": 4})
    text = api.get(f"{sim.url}/api/indicators/4", params={"with": "attributes"}, timeout=10).text
    assert "[" * 1000 + '"' in text and "[" * 1001 not in text


def test_the_bad_data_example_plan_reproduces_the_three_faults_for_a_client(threatq_sim_factory):
    """include/simulator/faults.bad-data.example.json, as a user would start the simulator with it."""
    from pathlib import Path

    from threatq_provider.threatq.client import PasswordGrant, ThreatQClient
    from threatq_provider.threatq.paging import UnparsedRow

    example = Path(__file__).resolve().parents[3] / "include" / "simulator" / "faults.bad-data.example.json"
    sim = threatq_sim_factory(indicators=400, events=2, faults=FaultPlan.from_json(example))
    window = ("2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z")
    truth = [i["id"] for i in sim.corpus.iter_indicators(*window)]
    with ThreatQClient(sim.url, auth=PasswordGrant(sim.client_id, sim.username, sim.password)) as client:
        pages = list(client.iter_indicator_pages(*window, page_size=500, keep_unparsed=True))
    rows = {r["id"]: r for p in pages for r in p}
    assert max(len(p) for p in pages) == 100 and sorted(rows) == sorted(truth)
    assert rows[17]["description"].endswith("\ud83d")
    assert isinstance(rows[42], UnparsedRow) and "[" * 1000 in rows[42].text


def test_every_data_fault_rule_in_the_docs_loads():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "docs" / "simulators.md").read_text(encoding="utf-8")
    section = readme.split("Data faults change what a correct answer contains", 1)[1].split("\n\n", 2)[1]
    rules = [FaultRule.from_dict(json.loads(m)) for m in re.findall(r"^\| `(\{.*?\})` \|", section, re.M)]
    assert sorted(k for r in rules for k in r.data_kinds) == ["nest_indicator", "page_cap", "poison_indicator"]
