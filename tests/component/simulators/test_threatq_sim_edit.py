"""``PUT /api/indicators/{id}`` over real HTTP: an edit, as an analyst makes in ThreatQ, moves the
indicator's ``updated_at`` to now, so the next window poll serves it (with the new values) and
the old window no longer does. The DAG tests use it to change indicators while a scheduler is down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threatq_simulators.timefmt import fmt

from .conftest import api_session

pytestmark = pytest.mark.component


def _window_ids(api, sim, since: str, until: str) -> dict[int, dict]:
    body = {"filters": {"+and": [{"updated_at": {"+gte": since}}, {"updated_at": {"+lt": until}}]}}
    resp = api.post(f"{sim.url}/api/indicators/query", params={"limit": 10000, "sort": "updated_at"}, json=body,
                    timeout=30)
    assert resp.status_code == 200, resp.text
    return {row["id"]: row for row in resp.json()["data"]}


def test_an_edit_is_served_in_the_window_of_now_with_its_new_values(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(seed=4, indicators=200, events=2, start="2026-01-01", end="2026-01-08")
    since = fmt(int(datetime.now(UTC).timestamp()))
    until = fmt(int((datetime.now(UTC) + timedelta(hours=1)).timestamp()))
    with api_session(sim) as api:
        assert 17 in _window_ids(api, sim, "2026-01-01 00:00:00", "2026-01-08 00:00:00")
        resp = api.put(f"{sim.url}/api/indicators/17", json={"status": "Review", "description": "edited"}, timeout=10)
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        review = sim.corpus.resolve_status("Review")["id"]
        assert (data["id"], data["status_id"], data["description"]) == (17, review, "edited")
        # SIEM's form: status_id in the query string, no body
        expired = sim.corpus.resolve_status("Expired")["id"]
        assert api.put(f"{sim.url}/api/indicators/18", params={"status_id": expired}, timeout=10).status_code == 200

        now = _window_ids(api, sim, since, until)
        assert {i: r["status"]["name"] for i, r in now.items()} == {17: "Review", 18: "Expired"}
        assert now[17]["updated_at"] >= since and now[18]["expired_at"] == now[18]["updated_at"]
        assert not {17, 18} & set(_window_ids(api, sim, "2026-01-01 00:00:00", "2026-01-08 00:00:00"))
    assert sim.stats["by_route"]["PUT /api/indicators/{id}"] == 2


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [("/api/indicators/9999", {"description": "x"}, 404, None),
     ("/api/indicators/3", {"value": "203.0.113.1"}, 400, "value"),
     ("/api/indicators/3", {"status": "Bogus"}, 400, "status"),
     ("/api/indicators/3", {}, 400, "data"),
     ("/api/indicators/3", [1], 400, "data")],
)
def test_a_bad_edit_is_refused_in_threatqs_error_forms(threatq_sim_factory, path, body, status, field) -> None:
    sim = threatq_sim_factory(seed=4, indicators=20, events=2)
    before = sim.corpus.indicator(3)
    with api_session(sim) as api:
        resp = api.put(f"{sim.url}{path}", json=body, timeout=10)
    assert resp.status_code == status, resp.text
    if field is None:
        assert resp.json() == {"errors": ["Not found."]}
    else:
        assert field in resp.json()["data"]["errors"]
    assert sim.corpus.indicator(3) == before
