"""Every fault kind over real HTTP, the control endpoints, and fault plans given at start-up."""

from __future__ import annotations

import json

import pytest
import requests

from threatq_simulators.faults import FaultPlan, FaultRule
from threatq_simulators.threatq_sim import ThreatQSimulator

from .conftest import api_session, token_for

pytestmark = pytest.mark.component


@pytest.fixture
def sim(threatq_sim_factory) -> ThreatQSimulator:
    return threatq_sim_factory(indicators=300, events=5)


def test_429_with_retry_after_then_recovers(sim: ThreatQSimulator) -> None:
    api = api_session(sim)
    sim.faults.add(FaultRule(path_regex="^/api/indicators$", status=429, headers={"Retry-After": "2"}))
    first = api.get(f"{sim.url}/api/indicators", timeout=10)
    assert first.status_code == 429 and first.headers["Retry-After"] == "2"
    assert first.json()["errors"]
    second = api.get(f"{sim.url}/api/indicators", timeout=10)
    assert second.status_code == 200 and second.json()["total"] == 300
    assert sim.stats["faults_by_kind"] == {"429": 1}


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors(sim: ThreatQSimulator, status: int) -> None:
    api = api_session(sim)
    sim.faults.add({"method": "POST", "path_regex": "/query", "times": 2, "status": status})
    url = f"{sim.url}/api/indicators/query"
    codes = [api.post(url, json={}, timeout=10).status_code for _ in range(3)]
    assert codes == [status, status, 200]


def test_custom_html_body_for_a_gateway_error(sim: ThreatQSimulator) -> None:
    api = api_session(sim)
    sim.faults.add({"status": 502, "body": "<html><body>Bad Gateway</body></html>"})
    resp = api.get(f"{sim.url}/api/events", timeout=10)
    assert resp.status_code == 502 and resp.headers["Content-Type"].startswith("text/html")


def test_slow_page_still_answers_correctly(sim: ThreatQSimulator) -> None:
    api = api_session(sim)
    sim.faults.add({"path_regex": "offset=100", "delay_s": 0.3})
    resp = api.get(f"{sim.url}/api/indicators", params={"limit": 100, "offset": 100}, timeout=10)
    assert resp.status_code == 200 and [r["id"] for r in resp.json()["data"]] == list(range(101, 201))
    assert sim.faults.rules[0].triggered == 1
    with pytest.raises(requests.exceptions.ReadTimeout):
        sim.faults.add({"delay_s": 1.0})
        api.get(f"{sim.url}/api/indicators", timeout=0.2)


def test_token_expiry_mid_run(sim: ThreatQSimulator) -> None:
    api = api_session(sim)
    coll = sim.corpus.collection("All indicators")
    url = f"{sim.url}/api/indicators/query/hash/{coll['hash']}"
    sim.faults.add({"path_regex": "/query/hash/", "nth": 2, "action": "expire_token"})
    page1 = api.get(url, params={"cursorMark": "*", "limit": 100}, timeout=10)
    assert page1.status_code == 200
    mark = page1.json()["nextCursorMark"]
    page2 = api.get(url, params={"cursorMark": mark, "limit": 100}, timeout=10)
    assert page2.status_code == 401
    api.headers["Authorization"] = f"Bearer {token_for(sim)}"
    retry = api.get(url, params={"cursorMark": mark, "limit": 100}, timeout=10)
    assert retry.status_code == 200 and retry.json()["data"][0]["id"] != page1.json()["data"][0]["id"]


def test_malformed_json(sim: ThreatQSimulator) -> None:
    api = api_session(sim)
    sim.faults.add({"path_regex": "^/api/indicators$", "action": "malformed"})
    resp = api.get(f"{sim.url}/api/indicators", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(resp.content)


def test_truncated_body(sim: ThreatQSimulator) -> None:
    api = api_session(sim)
    sim.faults.add({"path_regex": r"^/api/indicators(\?|$)", "action": "truncate"})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api.get(f"{sim.url}/api/indicators", params={"limit": 200}, timeout=10)
    assert api.get(f"{sim.url}/api/indicators", timeout=10).status_code == 200


def test_connection_reset(sim: ThreatQSimulator) -> None:
    api = api_session(sim)
    sim.faults.add({"path_regex": "^/api/indicators$", "action": "reset"})
    with pytest.raises(requests.exceptions.ConnectionError):
        api.get(f"{sim.url}/api/indicators", timeout=10)
    assert api.get(f"{sim.url}/api/indicators", timeout=10).status_code == 200
    assert sim.stats["faults_by_kind"] == {"reset": 1}


def test_commit_then_reset_creates_the_event_but_loses_the_answer(sim: ThreatQSimulator) -> None:
    api = api_session(sim)
    sim.faults.add({"method": "POST", "path_regex": "^/api/events$", "action": "commit_then_reset"})
    body = {"title": "Lost answer", "type": "Malware", "happened_at": "2026-02-01 10:00:00"}
    before = len(sim.corpus.event_ids())
    with pytest.raises(requests.exceptions.ConnectionError):
        api.post(f"{sim.url}/api/events", json=body, timeout=10)
    assert len(sim.corpus.event_ids()) == before + 1  # the write took effect
    listed = api.get(f"{sim.url}/api/events", params={"title": "Lost answer", "happened_at": "2026-02-01 10:00:00"},
                     timeout=10).json()
    assert listed["total"] == 1 and listed["data"][0]["title"] == "Lost answer"
    assert sim.stats["faults_by_kind"] == {"commit_then_reset": 1}


def test_faults_also_apply_to_the_token_endpoint(sim: ThreatQSimulator) -> None:
    sim.faults.add({"path_regex": "^/api/token", "status": 503, "headers": {"Retry-After": "1"}})
    with pytest.raises(requests.HTTPError):
        token_for(sim)
    assert token_for(sim)


def test_control_endpoints(sim: ThreatQSimulator) -> None:
    api = api_session(sim)
    added = requests.post(f"{sim.url}/_sim/faults", json=[{"path_regex": "^/api/events$", "status": 500, "times": None}],
                          timeout=10)
    assert added.status_code == 201 and added.json()["data"][0]["status"] == 500
    assert [api.get(f"{sim.url}/api/events", timeout=10).status_code for _ in range(2)] == [500, 500]
    listed = requests.get(f"{sim.url}/_sim/faults", timeout=10).json()["data"]
    assert listed[0]["triggered"] == 2
    assert requests.post(f"{sim.url}/_sim/faults", json={"rules": [{"bogus": 1}]}, timeout=10).status_code == 400
    assert requests.delete(f"{sim.url}/_sim/faults", timeout=10).status_code == 204
    assert api.get(f"{sim.url}/api/events", timeout=10).status_code == 200
    expired = requests.post(f"{sim.url}/_sim/expire-tokens", timeout=10).json()["data"]["expired"]
    assert expired >= 1 and api.get(f"{sim.url}/api/events", timeout=10).status_code == 401
    stats = requests.get(f"{sim.url}/_sim/stats", timeout=10).json()["data"]
    # by_path counts every request; by_route only those that got past the fault plan
    assert stats["by_path"]["GET /api/events"] == 4 and stats["by_route"]["GET /api/events"] == 2
    assert stats["by_status"]["500"] == 2 and stats["unauthorized"] == 1 and stats["tokens_issued"] == 1
    assert requests.delete(f"{sim.url}/_sim/stats", timeout=10).status_code == 204
    assert sim.stats["requests"] == 0


def test_plan_given_at_start_up(threatq_sim_factory) -> None:
    plan = FaultPlan.from_json(json.dumps([{"path_regex": "^/api/indicator/statuses", "nth": 1, "times": 1, "status": 504}]))
    sim = threatq_sim_factory(indicators=10, events=1, faults=plan)
    api = api_session(sim)
    assert sim.faults is plan
    assert [api.get(f"{sim.url}/api/indicator/statuses", timeout=10).status_code for _ in range(2)] == [504, 200]


def test_rules_see_the_decoded_query_string(sim: ThreatQSimulator) -> None:
    api = api_session(sim)
    sim.faults.add({"path_regex": r"cursorMark=\*", "times": 1, "action": "truncate"})
    url = f"{sim.url}/api/indicators/query/hash/{sim.corpus.collection('All indicators')['hash']}"
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api.get(url, params={"cursorMark": "*", "limit": 200}, timeout=10)
    assert api.get(url, params={"cursorMark": "*", "limit": 200}, timeout=10).status_code == 200


def test_documented_example_plan_loads() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "docs" / "simulators.md").read_text(encoding="utf-8")
    section = readme.split("## ThreatQ API simulator", 1)[1]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    plan = FaultPlan.from_json(block)
    assert [r.action for r in plan.rules if r.action] == ["expire_token", "truncate", "malformed", "reset",
                                                          "commit_then_reset"]
    assert plan.match("GET", "/api/indicators/query/hash/h", "cursorMark=*") is not None
