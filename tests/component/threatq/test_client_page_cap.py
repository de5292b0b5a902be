"""ThreatQClient against the simulator with a silent page cap (issue #18, item 1).

The simulator's ``page_cap`` fault serves at most N rows per page whatever ``limit`` asks, with a
correct ``total``: what a proxy, or a ``page_size`` above the server's maximum, does. Every paging
method must still deliver exactly the ground truth, and a server ending short of its own total
must fail loudly.
"""

from __future__ import annotations

import pytest

from threatq_simulators.faults import FaultRule
from threatq_provider.threatq.errors import ThreatQIncompleteError

from .test_client_sim import WINDOW, client_for

pytestmark = pytest.mark.component


@pytest.fixture
def sim(threatq_sim_factory):
    return threatq_sim_factory(indicators=1_000, events=30)


def test_window_paging_through_a_cap_delivers_exactly_the_window(sim):
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query", times=None, page_cap=70))
    truth = [i["id"] for i in sim.corpus.iter_indicators(*WINDOW)]
    with client_for(sim, page_size=500) as client:
        pages = list(client.iter_indicator_pages(*WINDOW))
    assert [r["id"] for p in pages for r in p] == truth
    assert len(truth) == 1_000 and max(len(p) for p in pages) == 70


def test_window_paging_by_keyset_through_a_cap_delivers_exactly_the_window(sim):
    # A server without cursors on /query: the client pages by keyset filter; totals count what is left.
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query", times=None, page_cap=90))
    truth = [i["id"] for i in sim.corpus.iter_indicators(*WINDOW)]
    with client_for(sim, page_size=400) as client:
        original = client._parse_json  # every page's answer is parsed here

        def without_cursor(*args, **kwargs):
            payload = original(*args, **kwargs)
            if isinstance(payload, dict):
                payload.pop("nextCursorMark", None)
            return payload

        client._parse_json = without_cursor
        ids = [r["id"] for p in client.iter_indicator_pages(*WINDOW) for r in p]
    assert ids == truth
    keyset_calls = sim.stats["by_path"]["POST /api/indicators/query"]
    assert keyset_calls == len(truth) // 90 + 1  # 12 pages of 90 and one of 10: the total ends it


def test_events_and_their_related_indicators_through_a_cap(sim):
    sim.faults.extend([FaultRule(path_regex="^/api/events", times=None, page_cap=4)])
    truth = [e["id"] for e in sorted(sim.corpus.events, key=lambda e: (e["updated_at"], e["id"]))]
    with client_for(sim, page_size=50) as client:
        events = [e["id"] for e in client.iter_events()]
        biggest = max(truth, key=lambda e: len(sim.corpus.event_indicator_ids(e)))
        related = [r["id"] for r in client.iter_event_indicators(biggest, page_size=50)]
    assert events == truth
    assert len(related) > 4 and related == sim.corpus.event_indicator_ids(biggest)


@pytest.mark.parametrize("empty_page", ["object", "array"])
def test_collection_paging_stays_exact_through_a_cap(threatq_sim_factory, empty_page):
    sim = threatq_sim_factory(indicators=1_000, events=5, empty_page=empty_page)
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query/hash/", times=None, page_cap=60))
    coll = sim.corpus.collections[1]
    truth = [i["id"] for i in sim.corpus.iter_collection(coll["hash"])]
    with client_for(sim, page_size=1000) as client:
        pages = list(client.iter_collection_pages(coll["hash"]))
    assert len(truth) > 60 and [r["id"] for p in pages for r in p.indicators] == truth


def test_a_server_that_stops_serving_short_of_its_total_fails_loudly(sim):
    # From the fourth cursor page on, the server answers an empty page while its total still
    # counts the whole window (a "data: {}" body with the real total).
    truth = [i["id"] for i in sim.corpus.iter_indicators(*WINDOW)]
    sim.faults.extend([
        FaultRule(path_regex="^/api/indicators/query", times=None, page_cap=100),
        FaultRule(path_regex="^/api/indicators/query", nth=4, times=None, status=200,
                  body={"total": len(truth), "data": {}, "nextCursorMark": "AoJend"}),
    ])
    received: list[int] = []
    with client_for(sim, page_size=500) as client, pytest.raises(ThreatQIncompleteError) as err:
        for page in client.iter_indicator_pages(*WINDOW):
            received.extend(r["id"] for r in page)
    assert received == truth[:300]
    assert (err.value.expected, err.value.received) == (len(truth), 300)
    assert f"server's total is {len(truth)}" in str(err.value)
