"""Threat Library objects over real HTTP: /api/events/{id}/malware|attack_pattern, /api/malware, /api/attack_pattern."""

from __future__ import annotations

import pytest
import requests

from threatq_simulators.threatq_sim import ThreatQSimulator

from .conftest import api_session

pytestmark = pytest.mark.component

CODES = ("malware", "attack_pattern")
BASE = {"id", "value", "description", "type_id", "status_id", "object_id", "object_code", "object_name",
        "object_name_plural", "created_at", "updated_at", "touched_at"}


def _rich_event(sim: ThreatQSimulator, code: str, at_least: int = 2) -> int:
    return next(e["id"] for e in sim.corpus.events if len(e[code]) >= at_least)


@pytest.mark.parametrize("code", CODES)
def test_event_related_objects_are_the_corpus_truth_with_a_pivot(api, threatq_sim: ThreatQSimulator, code: str) -> None:
    eid = _rich_event(threatq_sim, code)
    truth = threatq_sim.corpus.event(eid)[code]
    body = api.get(f"{threatq_sim.url}/api/events/{eid}/{code}", timeout=10).json()

    assert body["total"] == len(truth) and (body["limit"], body["offset"]) == (50, 0)
    rows = body["data"]
    assert [{k: v for k, v in r.items() if k != "pivot"} for r in rows] == truth
    for row in rows:
        assert set(row) == BASE | {"pivot"} and row["object_code"] == code
        assert row["type_id"] is None and row["status_id"] is None
        assert set(row["pivot"]) == {"id", "created_at", "updated_at"}
    assert rows[0]["object_id"] == {"malware": 9, "attack_pattern": 6}[code]  # as in the recorded payloads


@pytest.mark.parametrize("code", CODES)
def test_event_related_objects_page_with_limit_and_offset(api, threatq_sim: ThreatQSimulator, code: str) -> None:
    eid = _rich_event(threatq_sim, code)
    truth = [o["id"] for o in threatq_sim.corpus.event(eid)[code]]
    ids, offset = [], 0
    while True:
        page = api.get(f"{threatq_sim.url}/api/events/{eid}/{code}", params={"limit": 1, "offset": offset},
                       timeout=10).json()
        assert page["total"] == len(truth)
        if not page["data"]:
            break
        ids += [r["id"] for r in page["data"]]
        offset += 1
    assert ids == truth
    bad = api.get(f"{threatq_sim.url}/api/events/{eid}/{code}", params={"limit": 0}, timeout=10)
    assert bad.status_code == 400 and isinstance(bad.json()["errors"][0], str)


def test_an_event_without_such_objects_answers_an_empty_list(api, threatq_sim: ThreatQSimulator) -> None:
    eid = next(e["id"] for e in threatq_sim.corpus.events if not e["malware"])
    assert api.get(f"{threatq_sim.url}/api/events/{eid}/malware", timeout=10).json()["data"] == []


@pytest.mark.parametrize("code", CODES)
def test_a_missing_event_is_the_usual_404(api, threatq_sim: ThreatQSimulator, code: str) -> None:
    resp = api.get(f"{threatq_sim.url}/api/events/99999/{code}", timeout=10)
    indicators = api.get(f"{threatq_sim.url}/api/events/99999/indicators", timeout=10)
    assert resp.status_code == indicators.status_code == 404
    assert resp.json() == indicators.json() == {"errors": ["Not found."]}


def test_the_related_lists_need_a_bearer_token(threatq_sim: ThreatQSimulator) -> None:
    resp = requests.get(f"{threatq_sim.url}/api/events/1/attack_pattern", timeout=10)
    assert resp.status_code == 401 and resp.json()["error"] == "Unauthenticated."


def test_v6_sends_attributes_and_sources_on_request_legacy_always(api, threatq_sim: ThreatQSimulator,
                                                                  threatq_sim_factory) -> None:
    eid = _rich_event(threatq_sim, "malware", 1)
    url = f"{threatq_sim.url}/api/events/{eid}/malware"
    assert not any("sources" in r or "attributes" in r for r in api.get(url, timeout=10).json()["data"])
    rows = api.get(url, params={"with": "sources,attributes"}, timeout=10).json()["data"]
    for row in rows:
        truth = threatq_sim.corpus.library_object("malware", row["id"])
        assert row["sources"] == truth["sources"] and row["attributes"] == truth["attributes"]
        assert all(s["pivot"]["malware_id"] == row["id"] for s in row["sources"])
        assert [a["name"] for a in row["attributes"]] == ["Malware Type"]
    bad = api.get(url, params={"with": "nonsense"}, timeout=10)
    assert bad.status_code == 400 and "nonsense" in bad.json()["errors"][0]

    legacy = threatq_sim_factory(indicators=50, events=20, mode="legacy")
    leid = _rich_event(legacy, "attack_pattern", 1)
    rows = api_session(legacy).get(f"{legacy.url}/api/events/{leid}/attack_pattern", timeout=10).json()["data"]
    assert rows and all("sources" in r and "attributes" in r for r in rows)


def test_event_detail_with_malware_and_attack_pattern_embeds_the_same_rows(api, threatq_sim: ThreatQSimulator) -> None:
    eid = _rich_event(threatq_sim, "attack_pattern")
    ev = api.get(f"{threatq_sim.url}/api/events/{eid}", params={"with": "malware,attack_pattern"}, timeout=10).json()["data"]
    for code in CODES:
        related = api.get(f"{threatq_sim.url}/api/events/{eid}/{code}", timeout=10).json()["data"]
        assert ev[code] == related
    plain = api.get(f"{threatq_sim.url}/api/events/{eid}", timeout=10).json()["data"]
    assert "malware" not in plain and "attack_pattern" not in plain


def test_top_level_lists_filter_by_value_and_get_by_id(api, threatq_sim: ThreatQSimulator) -> None:
    everything = api.get(f"{threatq_sim.url}/api/malware", params={"limit": 100}, timeout=10).json()
    assert everything["total"] == len(threatq_sim.corpus.malware) and everything["total"] >= 10
    emotet = api.get(f"{threatq_sim.url}/api/malware", params={"value": "emotet"}, timeout=10).json()["data"]
    assert [m["value"] for m in emotet] == ["Emotet"]
    t1566 = api.get(f"{threatq_sim.url}/api/attack_pattern", params={"value": "T1566%"}, timeout=10).json()["data"]
    assert {a["value"] for a in t1566} == {"T1566.001 - Spearphishing Attachment", "T1566.002 - Spearphishing Link"}

    one = api.get(f"{threatq_sim.url}/api/attack_pattern/{t1566[0]['id']}", params={"with": "events,sources"},
                  timeout=10).json()["data"]
    assert one["value"] == t1566[0]["value"] and one["sources"]
    linked = threatq_sim.corpus.library_event_ids("attack_pattern", one["id"])
    assert [e["id"] for e in one["events"]] == linked and linked
    assert all(one["value"] in [a["value"] for a in threatq_sim.corpus.event(e)["attack_pattern"]] for e in linked)
    missing = api.get(f"{threatq_sim.url}/api/malware/9999", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"errors": ["Not found."]}


def test_search_finds_threat_library_objects(api, threatq_sim: ThreatQSimulator) -> None:
    hits = api.get(f"{threatq_sim.url}/api/search", params={"query": "cobalt strike"}, timeout=10).json()["data"]
    (malware,) = [h for h in hits if h["object"] == "malware"]
    assert malware["value"] == "Cobalt Strike"


def test_fault_rules_apply_to_the_new_paths(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=50, events=10)
    api = api_session(sim)
    # ThreatQ versions that answer 500 to attack-pattern relations (docs/reference/threatq-api.md §7 quirk 5)
    sim.faults.add({"path_regex": r"^/api/events/\d+/attack_pattern", "times": None, "status": 500})
    sim.faults.add({"path_regex": r"with=[^&]*attack_pattern", "times": None, "status": 500})
    assert api.get(f"{sim.url}/api/events/1/attack_pattern", timeout=10).status_code == 500
    assert api.get(f"{sim.url}/api/events/1", params={"with": "attack_pattern"}, timeout=10).status_code == 500
    assert api.get(f"{sim.url}/api/events/1/malware", timeout=10).status_code == 200
    assert sim.stats["by_route"]["GET /api/events/{id}/malware"] == 1
    sim.faults.clear()
    assert api.get(f"{sim.url}/api/events/1/attack_pattern", timeout=10).status_code == 200


def test_created_events_have_no_threat_library_objects(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=20, events=2)
    api = api_session(sim)
    created = api.post(f"{sim.url}/api/events", json={"title": "New", "type": "Incident",
                                                      "happened_at": "2026-01-02 03:04:05"}, timeout=10).json()["data"]
    for code in CODES:
        body = api.get(f"{sim.url}/api/events/{created['id']}/{code}", timeout=10).json()
        assert (body["total"], body["data"]) == (0, [])
