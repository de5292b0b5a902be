"""with=/fields= in v6 vs legacy, detail forms, creation, events, search, investigations, attachments."""

from __future__ import annotations

import hashlib

import pytest

from threatq_simulators.threatq_sim import ThreatQSimulator

from .conftest import api_session

pytestmark = pytest.mark.component


def _first_page(api, sim: ThreatQSimulator, **params) -> list[dict]:
    resp = api.get(f"{sim.url}/api/indicators", params={"limit": 60, **params}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def test_v6_omits_attributes_and_sources_unless_asked(api, threatq_sim: ThreatQSimulator) -> None:
    plain = _first_page(api, threatq_sim)
    assert not any("attributes" in r or "sources" in r for r in plain)
    assert all({"type", "status", "adversaries"} <= set(r) for r in plain)
    with_ = _first_page(api, threatq_sim, **{"with": "attributes,sources"})
    assert all("attributes" in r and "sources" in r for r in with_)
    by_fields = _first_page(api, threatq_sim, fields="*,sources,attributes,attributes.name,attributes.value")
    assert all("attributes" in r and "sources" in r and "value" in r for r in by_fields)
    query = api.post(f"{threatq_sim.url}/api/indicators/query", params={"limit": 20},
                     json={"fields": ["id", "value", "updated_at", "type", "status", "sources", "attributes", "score"]},
                     timeout=10).json()["data"]
    assert all(set(r) <= {"id", "value", "updated_at", "type", "status", "sources", "attributes", "score"} for r in query)
    assert all("sources" in r and "attributes" in r for r in query)


def test_fields_subkeys_restrict_nested_objects(api, threatq_sim: ThreatQSimulator) -> None:
    rows = _first_page(api, threatq_sim, fields="*,attributes.name,attributes.value")
    attrs = [a for r in rows for a in r["attributes"]]
    assert attrs and all(set(a) == {"name", "value"} for a in attrs)


def test_legacy_mode_always_includes_attributes_and_sources(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=100, events=5, mode="legacy")
    api = api_session(sim)
    rows = _first_page(api, sim)
    assert all("attributes" in r and "sources" in r for r in rows)
    coll = sim.corpus.collection("All indicators")
    feed = api.get(f"{sim.url}/api/indicators/query/hash/{coll['hash']}", params={"cursorMark": "*"}, timeout=10).json()
    assert all("attributes" in r and "sources" in r for r in feed["data"])
    ev = api.get(f"{sim.url}/api/events/1", timeout=10).json()["data"]
    assert "attributes" in ev and "sources" in ev


def test_rows_are_the_corpus_truth(api, threatq_sim: ThreatQSimulator) -> None:
    rows = _first_page(api, threatq_sim, **{"with": "attributes,sources"})
    for row in rows:
        truth = threatq_sim.corpus.indicator(row["id"])
        for key in ("value", "type_id", "status_id", "score", "updated_at", "hash"):
            assert row[key] == truth[key]
        assert row["sources"] == truth["sources"] and row["attributes"] == truth["attributes"]
        assert row.get("expired_at") == truth["expired_at"] and row.get("expires_at") == truth["expires_at"]


def test_detail_form_with_score_object_and_pivot_sources(api, threatq_sim: ThreatQSimulator) -> None:
    data = api.get(f"{threatq_sim.url}/api/indicators/7", params={"with": "attributes,sources,score,type,status"},
                   timeout=10).json()["data"]
    assert set(data["score"]) == {"indicator_id", "generated_score", "manual_score", "score_config_hash",
                                  "created_at", "updated_at"}
    assert isinstance(data["score"]["generated_score"], str)
    truth = threatq_sim.corpus.indicator(7)
    expected = int(data["score"]["manual_score"]) if data["score"]["manual_score"] is not None else int(
        float(data["score"]["generated_score"]))
    assert expected == truth["score"]
    assert all("pivot" in s and {"id", "source_id", "indicator_id"} <= set(s["pivot"]) for s in data["sources"])
    assert {"wildcard_matching", "score"} <= set(data["type"]) and "visible" in data["status"]
    bare = api.get(f"{threatq_sim.url}/api/indicators/7", timeout=10).json()["data"]
    assert "sources" not in bare and bare["score"] == truth["score"] and "expires_at" in bare
    assert api.get(f"{threatq_sim.url}/api/indicators/999999", timeout=10).status_code == 404


def test_create_indicator_then_get_list_and_search(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=200, events=5)
    api = api_session(sim)
    body = [{"value": "bad-domain-for-tests.example", "type": {"name": "FQDN"}, "status": {"name": "Active"},
             "description": "from a test", "sources": [{"name": "Unit Tests", "tlp_id": 2}],
             "attributes": [{"name": "Confidence", "value": "High"}]}]
    resp = api.post(f"{sim.url}/api/indicators", json=body, timeout=10)
    assert resp.status_code == 201
    created = resp.json()
    assert created["total"] == 1 and isinstance(created["data"], list)
    row = created["data"][0]
    assert row["existing"] == "N" and row["value"] == body[0]["value"] and row["type"]["name"] == "FQDN"
    iid = row["id"]
    got = api.get(f"{sim.url}/api/indicators/{iid}", params={"with": "sources,attributes"}, timeout=10).json()["data"]
    assert got["sources"][0]["name"] == "Unit Tests" and got["sources"][0]["tlp_id"] == 2
    assert got["attributes"][0]["value"] == "High"
    listed = api.get(f"{sim.url}/api/indicators", params={"value": body[0]["value"]}, timeout=10).json()
    assert [r["id"] for r in listed["data"]] == [iid]
    hits = api.get(f"{sim.url}/api/search", params={"query": "bad-domain-for", "limit": 5}, timeout=10).json()["data"]
    assert {"id": iid, "object": "indicator", "value": body[0]["value"]} in hits
    again = api.post(f"{sim.url}/api/indicators", json={"value": body[0]["value"], "type": "FQDN"}, timeout=10).json()
    assert again["data"][0]["existing"] == "Y" and again["data"][0]["id"] == iid
    assert api.post(f"{sim.url}/api/indicators", json={"value": "1.1.1.1", "type_id": 15}, timeout=10).json()["data"][0]["type"]["name"] == "IP Address"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"type": "FQDN"}, "value"), ({"value": "x"}, "type"), ({"value": "x", "type": "Martian"}, "type"),
     ({"value": "300.1.1.1", "type": "IP Address"}, "value")],
)
def test_create_indicator_validation_uses_error_form_1(api, threatq_sim: ThreatQSimulator, body: dict, field: str) -> None:
    resp = api.post(f"{threatq_sim.url}/api/indicators", json=[body], timeout=10)
    assert resp.status_code == 400
    errors = resp.json()["data"]["errors"]
    assert list(errors) == [field] and isinstance(errors[field][0], str)


def test_create_event_then_get_list_and_search(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=50, events=5)
    api = api_session(sim)
    body = {"title": "Phishing wave (test)", "type": "Spearphish", "happened_at": "2026-01-03 10:00:00",
            "description": "<p>d</p>", "sources": [{"name": "SOC", "tlp": {"name": "RED"}}]}
    resp = api.post(f"{sim.url}/api/events", json=body, timeout=10)
    assert resp.status_code == 201
    ev = resp.json()["data"]
    assert isinstance(ev, dict) and ev["type"]["name"] == "Spearphish" and ev["title"] == body["title"]
    got = api.get(f"{sim.url}/api/events/{ev['id']}", params={"with": "sources,type"}, timeout=10).json()["data"]
    assert got["sources"][0]["tlp_name"] == "TLP:RED" and got["happened_at"] == "2026-01-03 10:00:00"
    listed = api.get(f"{sim.url}/api/events", params={"title": "Phishing wave%"}, timeout=10).json()
    assert [e["id"] for e in listed["data"]] == [ev["id"]]
    hits = api.get(f"{sim.url}/api/search", params={"query": "phishing wave (test)"}, timeout=10).json()["data"]
    assert {"id": ev["id"], "object": "event", "value": body["title"]} in hits
    by_type_id = api.post(f"{sim.url}/api/events", json={**body, "type": None, "type_id": 13}, timeout=10)
    assert by_type_id.status_code == 201 and by_type_id.json()["data"]["type"]["name"] == "Incident"
    bad = api.post(f"{sim.url}/api/events", json={"type": "Spearphish", "happened_at": "2026-01-01"}, timeout=10)
    assert bad.status_code == 400 and "title" in bad.json()["data"]["errors"]


def test_event_detail_relations_and_indicator_pages(api, threatq_sim: ThreatQSimulator) -> None:
    truth = threatq_sim.corpus.event(4)
    ev = api.get(f"{threatq_sim.url}/api/events/4",
                 params={"with": "indicators,attributes,adversaries,attachments,sources,type,tags"}, timeout=10).json()["data"]
    assert [i["id"] for i in ev["indicators"]] == truth["indicator_ids"]
    assert ev["attributes"] == truth["attributes"] and ev["sources"] == truth["sources"]
    assert ev["type"]["name"] == truth["type"]["name"] and len(ev["attachments"]) == len(truth["attachments"])
    ids: list[int] = []
    offset = 0
    while True:
        page = api.get(f"{threatq_sim.url}/api/events/4/indicators", params={"limit": 4, "offset": offset}, timeout=10).json()
        ids.extend(r["id"] for r in page["data"])
        assert all(r["pivot"]["dest_object_id"] == r["id"] for r in page["data"])
        offset += 4
        if offset >= page["total"]:
            break
    assert ids == truth["indicator_ids"]
    assert api.get(f"{threatq_sim.url}/api/events/100000", timeout=10).status_code == 404


def test_metadata_endpoints_and_name_filters(api, threatq_sim: ThreatQSimulator) -> None:
    types = api.get(f"{threatq_sim.url}/api/indicator/types", params={"limit": 100}, timeout=10).json()
    assert types["total"] == 34
    ip = api.get(f"{threatq_sim.url}/api/indicator/types", params={"name": "IP Address"}, timeout=10).json()["data"]
    assert [t["id"] for t in ip] == [15]
    assert api.get(f"{threatq_sim.url}/api/indicator/types/15", timeout=10).json()["data"]["name"] == "IP Address"
    statuses = api.get(f"{threatq_sim.url}/api/indicator/statuses", timeout=10).json()["data"]
    assert [s["name"] for s in statuses] == ["Active", "Expired", "Indirect", "Review", "Whitelisted"]
    et = api.get(f"{threatq_sim.url}/api/event/types", params={"name": "Spear%"}, timeout=10).json()["data"]
    assert [e["name"] for e in et] == ["Spearphish"]


def test_id_offset_instance_serves_shifted_ids(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=60, events=3, id_offset=40)
    api = api_session(sim)
    ip = api.get(f"{sim.url}/api/indicator/types", params={"name": "IP Address"}, timeout=10).json()["data"][0]
    assert ip["id"] == 55
    rows = api.get(f"{sim.url}/api/indicators", params={"type_id": 55}, timeout=10).json()["data"]
    assert rows and all(r["type"]["name"] == "IP Address" for r in rows)
    created = api.post(f"{sim.url}/api/indicators", json={"value": "1.2.3.4", "type": "IP Address", "status": "Active"},
                       timeout=10).json()["data"][0]
    assert created["type_id"] == 55 and created["status_id"] == 41


def test_investigations_and_attachments(api, threatq_sim: ThreatQSimulator) -> None:
    invs = api.get(f"{threatq_sim.url}/api/investigations", timeout=10).json()
    assert invs["total"] == 5
    name = invs["data"][0]["name"]
    assert [i["name"] for i in api.get(f"{threatq_sim.url}/api/investigations", params={"name": name}, timeout=10).json()["data"]] == [name]
    inv = api.get(f"{threatq_sim.url}/api/investigations/1", params={"with": "events,indicators,attachments"},
                  timeout=10).json()["data"]
    truth = threatq_sim.corpus.investigation(1)
    assert [e["id"] for e in inv["events"]] == truth["event_ids"]
    assert [i["id"] for i in inv["indicators"]] == truth["indicator_ids"]
    assert [a["id"] for a in inv["attachments"]] == truth["attachment_ids"]
    att = threatq_sim.corpus.attachments[0]
    meta = api.get(f"{threatq_sim.url}/api/attachments/{att['id']}", timeout=10).json()["data"]
    assert meta == att
    dl = api.get(f"{threatq_sim.url}/api/attachments/{att['id']}/download", timeout=10)
    assert dl.status_code == 200 and hashlib.md5(dl.content).hexdigest() == att["hash"]
    assert att["name"] in dl.headers["Content-Disposition"]
    by_hash = api.get(f"{threatq_sim.url}/api/attachments", params={"hash": att["hash"]}, timeout=10).json()["data"]
    assert [a["id"] for a in by_hash] == [att["id"]]


def test_search_requires_a_query_and_finds_adversaries(api, threatq_sim: ThreatQSimulator) -> None:
    assert api.get(f"{threatq_sim.url}/api/search", timeout=10).json()["data"]["errors"]["query"]
    hits = api.get(f"{threatq_sim.url}/api/search", params={"query": "lazarus"}, timeout=10).json()["data"]
    assert any(h["object"] == "adversary" and h["value"] == "Lazarus Group" for h in hits)
    value = threatq_sim.corpus.indicator(321)["value"]
    assert {"id": 321, "object": "indicator", "value": value} in api.get(
        f"{threatq_sim.url}/api/search", params={"query": value}, timeout=10).json()["data"]


def test_unknown_paths_and_methods_are_json_errors(api, threatq_sim: ThreatQSimulator) -> None:
    missing = api.get(f"{threatq_sim.url}/api/nothing-here", timeout=10)
    assert missing.status_code == 404 and missing.json()["errors"]
    wrong = api.delete(f"{threatq_sim.url}/api/indicator/types", timeout=10)
    assert wrong.status_code == 405 and wrong.json()["errors"]
    not_json = api.post(f"{threatq_sim.url}/api/indicators/query", data=b"{oops", timeout=10)
    assert not_json.status_code == 400 and not_json.json()["errors"]
    bad_filter = api.post(f"{threatq_sim.url}/api/indicators/query", json={"filters": {"score": {"+between": [1, 2]}}}, timeout=10)
    assert bad_filter.status_code == 400 and bad_filter.json()["data"]["errors"]


def test_keep_alive_connection_is_reused(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=10, events=1)
    api = api_session(sim)  # the token call uses its own connection
    before = sim.stats["connections"]
    for _ in range(5):
        resp = api.get(f"{sim.url}/api/indicators", params={"limit": 3}, timeout=10)
        assert resp.status_code == 200 and resp.headers.get("Connection", "").lower() != "close"
    assert sim.stats["connections"] - before == 1


def test_list_endpoints_filter_on_any_column(api, threatq_sim: ThreatQSimulator) -> None:
    ind = threatq_sim.corpus.indicator(99)
    rows = api.get(f"{threatq_sim.url}/api/indicators", params={"updated_at": ind["updated_at"], "limit": 100},
                   timeout=10).json()["data"]
    assert 99 in [r["id"] for r in rows] and all(r["updated_at"] == ind["updated_at"] for r in rows)
    ev = threatq_sim.corpus.event(2)
    events = api.get(f"{threatq_sim.url}/api/events", params={"happened_at": ev["happened_at"]}, timeout=10).json()["data"]
    assert [e["id"] for e in events] == [2]


def test_keyset_sort_updated_at_then_id(api, threatq_sim: ThreatQSimulator) -> None:
    rows = api.post(f"{threatq_sim.url}/api/indicators/query", params={"limit": 10000, "sort": "updated_at,id"},
                    json={"filters": {"+and": [{"updated_at": {"+gte": "2026-01-02"}}, {"+or": [
                        {"updated_at": {"+gt": "2026-01-02 12:00:00"}}, {"id": {"+gt": 1000}}]}]}}, timeout=30).json()["data"]
    keys = [(r["updated_at"], r["id"]) for r in rows]
    assert keys == sorted(keys)
    truth = [i["id"] for i in threatq_sim.served("2026-01-02")
             if i["updated_at"] > "2026-01-02 12:00:00" or i["id"] > 1000]
    assert [r["id"] for r in rows] == truth
