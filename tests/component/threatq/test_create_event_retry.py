"""ThreatQCreateEventOperator retried against the simulator: a lost answer never makes a second event.

The simulator's ``commit_then_reset`` fault creates the event and then drops the connection, the
way a proxy timeout or a network cut loses the answer of a write that took effect. The client
does not re-send a non-idempotent POST, so the try fails; the retry must find the event instead
of creating it again. Tries are told apart by the context's task instance (``try_number``), as
Airflow runs them; each try uses a fresh operator, as each Airflow try is a fresh process.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.fixtures.threatq import threatq_conn_json
from threatq_provider.operators.actions import ThreatQCreateEventOperator
from threatq_simulators.faults import FaultRule
from threatq_provider.threatq.errors import ThreatQConnectionError

pytestmark = pytest.mark.component

TITLE = "Macro dropper campaign (retry)"
INPUTS = {"title": TITLE, "type": "Malware", "date": "2026-02-01T10:00:00Z", "source": "Airflow",
          "description": "<p>seen twice?</p>"}


@pytest.fixture
def sim(threatq_sim_factory, monkeypatch):
    """A fresh simulator (its events and faults are this test's own) behind ``threatq_default``."""
    sim = threatq_sim_factory(indicators=50, events=5)
    monkeypatch.setenv("AIRFLOW_CONN_THREATQ_DEFAULT", threatq_conn_json(sim))
    return sim


def _try(number: int, **overrides) -> dict:
    op = ThreatQCreateEventOperator(task_id="create_event", retries=2, **{**INPUTS, **overrides})
    return op.execute({"ti": SimpleNamespace(try_number=number)})


def _events_titled(sim, title: str) -> list[dict]:
    return [sim.corpus.event_base(e) for e in sim.corpus.event_ids() if sim.corpus.event_base(e)["title"] == title]


def _count(sim, key: str) -> int:
    return sim.stats["by_path"].get(key, 0)


def test_retry_after_a_lost_answer_reuses_the_event_instead_of_creating_a_duplicate(sim, caplog, capsys):
    sim.faults.add(FaultRule(method="POST", path_regex="^/api/events$", times=1, action="commit_then_reset"))

    with pytest.raises(ThreatQConnectionError):
        _try(1)
    (created,) = _events_titled(sim, TITLE)  # the first POST took effect; its answer was lost
    assert _count(sim, "GET /api/events") == 0  # the first try never looks up

    with caplog.at_level("INFO"):
        xcom = _try(2)

    assert xcom == {"id": created["id"]}
    assert len(_events_titled(sim, TITLE)) == 1  # exactly one event
    assert _count(sim, "POST /api/events") == 1 and _count(sim, "GET /api/events") == 1
    logged = caplog.text + capsys.readouterr().out
    assert f"already exists with id {created['id']} (try 2)" in logged and "reusing it" in logged


def test_retry_after_a_post_that_never_arrived_creates_the_event_once(sim):
    sim.faults.add(FaultRule(method="POST", path_regex="^/api/events$", times=1, action="reset"))

    with pytest.raises(ThreatQConnectionError):
        _try(1)
    assert _events_titled(sim, TITLE) == []

    xcom = _try(2)

    (event,) = _events_titled(sim, TITLE)
    assert xcom == {"id": event["id"]}
    assert event["happened_at"] == "2026-02-01 10:00:00" and event["type"]["name"] == "Malware"
    assert [s["name"] for s in event["sources"]] == ["Airflow"]


@pytest.mark.parametrize("other", [
    {"date": "2026-02-01T10:00:01Z"},           # another second
    {"type": "Incident"},                       # another type
    {"source": "Someone else"},                 # another source
    {"title": TITLE.upper()},                   # ThreatQ's filter ignores case; the match does not
], ids=["date", "type", "source", "case"])
def test_a_retry_only_reuses_an_event_with_the_same_title_type_date_and_source(sim, other):
    existing = _try(1, **other)  # an event that differs in one input only

    xcom = _try(2)

    assert xcom != existing
    (made,) = [e for e in _events_titled(sim, TITLE) if e["happened_at"] == "2026-02-01 10:00:00"
               and e["type"]["name"] == "Malware" and [s["name"] for s in e["sources"]] == ["Airflow"]]
    assert xcom == {"id": made["id"]}


def test_a_percent_sign_in_the_title_is_not_a_wildcard_to_the_match(sim):
    existing = _try(1)  # "Macro dropper campaign (retry)"
    wildcard_title = "Macro dropper % (retry)"  # ThreatQ's title filter finds the event above

    xcom = _try(2, title=wildcard_title)

    assert xcom != existing
    assert [e["id"] for e in _events_titled(sim, wildcard_title)] == [xcom["id"]]


def test_the_lookup_sends_the_real_apis_list_filters(sim):
    """``GET /api/events`` with plain field equality (docs/reference/threatq-api.md §2), as ThreatQ's
    list endpoints take them."""
    _try(1)
    from threatq_provider.threatq.hook import ThreatQHook

    hook = ThreatQHook()
    try:
        client = hook.get_client()
        payload = client.request_json("GET", "/api/events", params={
            "title": TITLE, "happened_at": "2026-02-01 10:00:00", "type_id": client.event_type_id("Malware"),
            "with": "type,sources", "sort": "-id"})
        found = client.find_event(title=TITLE, type="Malware", date="2026-02-01 10:00:00", source="Airflow")
    finally:
        hook.close()
    assert payload["total"] == 1 and payload["data"][0]["title"] == TITLE
    assert found is not None and found["id"] == payload["data"][0]["id"]
    assert json.dumps(found)  # plain JSON, the plugin's event fields
