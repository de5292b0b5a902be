"""Offset paging, window filters and the cursorMark data-collection feed against the corpus truth."""

from __future__ import annotations

import base64

import pytest
import requests

from threatq_simulators.corpus import Corpus
from threatq_simulators.threatq_sim import ThreatQSimulator

from .conftest import api_session

pytestmark = pytest.mark.component


def _offset_pages(api: requests.Session, method: str, url: str, limit: int, **kw) -> tuple[list[int], set[int]]:
    ids: list[int] = []
    totals: set[int] = set()
    offset = 0
    while True:
        params = {**kw.pop("params", {}), "limit": limit, "offset": offset}
        kw_params = dict(params)
        resp = api.request(method, url, params=kw_params, timeout=30, **kw)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["limit"] == limit and body["offset"] == offset
        totals.add(body["total"])
        ids.extend(row["id"] for row in body["data"])
        offset += limit
        if offset >= body["total"]:
            return ids, totals
        kw["params"] = {k: v for k, v in params.items() if k not in ("limit", "offset")}


@pytest.mark.parametrize("sort", ["id", "-id", "updated_at", "-updated_at", "score", "-created_at,id"])
def test_offset_paging_returns_every_indicator_exactly_once(api, threatq_sim: ThreatQSimulator, sort: str) -> None:
    ids, totals = _offset_pages(api, "GET", f"{threatq_sim.url}/api/indicators", 333, params={"sort": sort})
    # the session simulator is shared: count what it holds (other tests may have created indicators)
    everything = threatq_sim.corpus.indicator_ids()
    assert totals == {len(everything)} and len(everything) >= 2000
    assert len(ids) == len(everything) and set(ids) == set(everything)
    if sort == "-id":
        assert ids == sorted(ids, reverse=True)


def test_query_default_sort_is_id_and_repeatable(api, threatq_sim: ThreatQSimulator) -> None:
    url = f"{threatq_sim.url}/api/indicators/query"
    a = api.post(url, params={"limit": 50, "offset": 100}, json={}, timeout=10).json()
    b = api.post(url, params={"limit": 50, "offset": 100}, json={}, timeout=10).json()
    assert [r["id"] for r in a["data"]] == [r["id"] for r in b["data"]] == list(range(101, 151))


@pytest.mark.parametrize(
    ("since", "until"),
    [("2026-01-02 00:00:00", "2026-01-03 00:00:00"), ("2026-01-01 00:00:00", "2026-01-08 00:00:00"),
     ("2026-01-05 13:17:00", "2026-01-05 19:00:01"), ("2025-01-01 00:00:00", "2026-01-01 00:00:00")],
)
def test_window_query_matches_corpus_truth(api, threatq_sim: ThreatQSimulator, since: str, until: str) -> None:
    body = {"filters": {"+and": [{"updated_at": {"+gte": since}}, {"updated_at": {"+lt": until}}]}}
    ids, totals = _offset_pages(api, "POST", f"{threatq_sim.url}/api/indicators/query", 250,
                                params={"sort": "updated_at"}, json=body)
    truth = threatq_sim.corpus.indicator_ids(since, until)
    assert ids == truth and totals == {len(truth)}
    assert [i["id"] for i in threatq_sim.served(since, until)] == truth


def test_window_boundaries_are_inclusive_start_exclusive_end(api, threatq_sim: ThreatQSimulator) -> None:
    ind = threatq_sim.corpus.indicator(777)
    at = ind["updated_at"]
    url = f"{threatq_sim.url}/api/indicators/query"
    starting = api.post(url, params={"limit": 10000}, json={"filters": {"updated_at": {"+gte": at, "+lt": "2026-02-01"}}}, timeout=30)
    ending = api.post(url, params={"limit": 10000}, json={"filters": {"updated_at": {"+gte": "2025-01-01", "+lt": at}}}, timeout=30)
    assert 777 in {r["id"] for r in starting.json()["data"]}
    assert 777 not in {r["id"] for r in ending.json()["data"]}


def test_query_filters_match_corpus(api, threatq_sim: ThreatQSimulator) -> None:
    body = {"criteria": {}, "filters": {"+and": [{"type_name": "FQDN"}, {"status_name": "Active"}, {"score": {"+gte": 6}}]}}
    resp = api.post(f"{threatq_sim.url}/api/indicators/query", params={"limit": 10000}, json=body, timeout=30).json()
    truth = [i["id"] for i in threatq_sim.corpus.iter_indicators(types=["FQDN"])
             if i["status"]["name"] == "Active" and i["score"] >= 6]
    assert sorted(r["id"] for r in resp["data"]) == sorted(truth) and resp["total"] == len(truth)
    value = threatq_sim.corpus.indicator(42)["value"]
    single = api.post(f"{threatq_sim.url}/api/indicators/query", json={"criteria": {"+or": [{"value": value}, {"value": "x"}]}}, timeout=10).json()
    assert [r["id"] for r in single["data"]] == [42]


def test_get_list_filters(api, threatq_sim: ThreatQSimulator) -> None:
    ind = threatq_sim.corpus.indicator(15)
    by_value = api.get(f"{threatq_sim.url}/api/indicators", params={"value": ind["value"]}, timeout=10).json()
    assert [r["id"] for r in by_value["data"]] == [15]
    by_type = api.get(f"{threatq_sim.url}/api/indicators", params={"type_id": ind["type_id"], "limit": 10000}, timeout=10).json()
    assert by_type["total"] == sum(1 for _ in threatq_sim.corpus.iter_indicators(types=[ind["type"]["name"]]))


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 10001}, {"limit": "ten"}, {"offset": -1}, {"sort": "bogus"}, {"with": "nonsense"}])
def test_bad_paging_parameters_get_400_form_2(api, threatq_sim: ThreatQSimulator, params: dict) -> None:
    resp = api.get(f"{threatq_sim.url}/api/indicators", params=params, timeout=10)
    assert resp.status_code == 400
    assert isinstance(resp.json()["errors"], list) and resp.json()["errors"]


def _feed(api: requests.Session, url: str, limit: int, mark: str = "*", **params) -> tuple[list[int], list[dict]]:
    ids: list[int] = []
    pages: list[dict] = []
    while True:
        resp = api.get(url, params={"sort": "updated_at", "limit": limit, "cursorMark": mark, **params}, timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages.append(body)
        if not body["data"]:
            return ids, pages
        ids.extend(r["id"] for r in body["data"])
        mark = body["nextCursorMark"]


def test_cursor_feed_runs_to_an_empty_object_page(api, threatq_sim: ThreatQSimulator) -> None:
    coll = threatq_sim.corpus.collection("All active")
    url = f"{threatq_sim.url}/api/indicators/query/hash/{coll['hash']}"
    ids, pages = _feed(api, url, 100)
    truth = [i["id"] for i in threatq_sim.corpus.iter_collection(coll["hash"])]
    assert ids == truth
    last = pages[-1]
    assert set(last) == {"total", "data", "nextCursorMark", "limit"}
    assert last["data"] == {} and last["total"] == len(truth) and last["limit"] == 100
    # as recorded: the empty page's cursor differs from the one sent only in its first character
    sent = pages[-2]["nextCursorMark"]
    assert last["nextCursorMark"] != sent and last["nextCursorMark"][1:] == sent[1:]
    again = api.get(url, params={"sort": "updated_at", "limit": 100, "cursorMark": last["nextCursorMark"]}, timeout=10).json()
    assert again["data"] == {} and again["nextCursorMark"] == last["nextCursorMark"]
    base64.b64decode(last["nextCursorMark"], validate=True)


def test_cursor_feed_sorted_by_id_and_empty_array_quirk(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=450, events=3, empty_page="array")
    api = api_session(sim)
    coll = sim.corpus.collection("All indicators")
    ids, pages = _feed(api, f"{sim.url}/api/indicators/query/hash/{coll['hash']}", 100, sort="id")
    assert ids == list(range(1, 451)) and pages[-1]["data"] == []


def test_saved_cursor_resumes_with_only_new_indicators(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=300, events=3)
    api = api_session(sim)
    url = f"{sim.url}/api/indicators/query/hash/{sim.corpus.collection('All indicators')['hash']}"
    first, pages = _feed(api, url, 128)
    assert len(first) == 300
    saved = pages[-1]["nextCursorMark"]
    created = api.post(f"{sim.url}/api/indicators", json=[{"value": "198.51.100.77", "type": "IP Address", "status": "Active"}],
                       timeout=10).json()["data"][0]["id"]
    resumed, _ = _feed(api, url, 128, mark=saved)
    assert resumed == [created]


def test_cursor_feed_fields_and_errors(api, threatq_sim: ThreatQSimulator) -> None:
    coll = threatq_sim.corpus.collection("All indicators")
    url = f"{threatq_sim.url}/api/indicators/query/hash/{coll['hash']}"
    plain = api.get(url, params={"cursorMark": "*", "limit": 5, "sort": "updated_at"}, timeout=10).json()["data"]
    assert not any("attributes" in r or "sources" in r for r in plain)
    full = api.get(url, params={"cursorMark": "*", "limit": 5, "sort": "updated_at",
                                "fields": "*,sources,attributes,attributes.name,attributes.value"}, timeout=10).json()["data"]
    assert all("attributes" in r and "sources" in r and "type" in r for r in full)
    assert api.get(url, params={"cursorMark": "not-a-cursor"}, timeout=10).status_code == 400
    assert api.get(url, params={"cursorMark": "*", "sort": "-score"}, timeout=10).status_code == 400
    missing = api.get(f"{threatq_sim.url}/api/indicators/query/hash/0000", params={"cursorMark": "*"}, timeout=10)
    assert missing.status_code == 404


def test_query_endpoint_also_pages_by_cursor(api, threatq_sim: ThreatQSimulator) -> None:
    ids: list[int] = []
    mark = "*"
    body = {"filters": {"type_name": "URL"}}
    while True:
        page = api.post(f"{threatq_sim.url}/api/indicators/query", params={"cursorMark": mark, "limit": 37, "sort": "id"},
                        json=body, timeout=10).json()
        if not page["data"]:
            break
        ids.extend(r["id"] for r in page["data"])
        mark = page["nextCursorMark"]
    assert ids == sorted(i["id"] for i in threatq_sim.corpus.iter_indicators(types=["URL"]))


def test_events_window_query_matches_iter_events(api, threatq_sim: ThreatQSimulator) -> None:
    since, until = "2026-01-02 00:00:00", "2026-01-05 00:00:00"
    resp = api.post(f"{threatq_sim.url}/api/events/query", params={"limit": 1000, "sort": "updated_at"},
                    json={"filters": {"updated_at": {"+gte": since, "+lt": until}}}, timeout=10).json()
    truth = [e["id"] for e in threatq_sim.corpus.iter_events(since, until)]
    assert [e["id"] for e in resp["data"]] == truth and resp["total"] == len(truth) and truth


def test_events_offset_paging_is_complete(api, threatq_sim: ThreatQSimulator) -> None:
    ids, totals = _offset_pages(api, "GET", f"{threatq_sim.url}/api/events", 7, params={"sort": "-happened_at"})
    assert sorted(ids) == threatq_sim.corpus.event_ids() and totals == {len(ids)}


def test_large_corpus_pages_of_1000(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(corpus=Corpus(indicators=12_000, events=5), max_limit=1000)
    api = api_session(sim)
    ids, _ = _feed(api, f"{sim.url}/api/indicators/query/hash/{sim.corpus.collection('All indicators')['hash']}", 1000)
    assert ids == sim.corpus.indicator_ids()
    assert api.get(f"{sim.url}/api/indicators", params={"limit": 1001}, timeout=10).status_code == 400
