"""ThreatQClient against the simulator's deep-nesting fault (issue #18, item 7).

``nest_indicator`` wraps one indicator's attribute value in N JSON arrays, past where Python's
parser recurses: the page must not crash with ``RecursionError``. Callers that set bad rows aside
(the poll) get that row as an ``UnparsedRow`` in its place and every other row; other callers get
a typed error naming the row and the page.
"""

from __future__ import annotations

import pytest

from threatq_simulators.faults import FaultRule
from threatq_provider.threatq.errors import ThreatQResponseError
from threatq_provider.threatq.paging import UnparsedRow

from .test_client_sim import WINDOW, client_for

pytestmark = pytest.mark.component


@pytest.fixture
def sim(threatq_sim_factory):
    return threatq_sim_factory(indicators=600, events=5)


def test_window_paging_sets_the_deep_row_aside_and_delivers_every_other(sim):
    truth = [i["id"] for i in sim.corpus.iter_indicators(*WINDOW)]
    deep = truth[250]
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query", times=None, nest_indicator=deep, nest_depth=5_000))
    with client_for(sim, page_size=200) as client:
        rows = [r for p in client.iter_indicator_pages(*WINDOW, keep_unparsed=True) for r in p]
    assert [r["id"] for r in rows] == truth
    unparsed = [r for r in rows if isinstance(r, UnparsedRow)]
    assert [r["id"] for r in unparsed] == [deep] and "[" * 5_000 in unparsed[0].text
    assert unparsed[0]["updated_at"] == sim.corpus.indicator(deep)["updated_at"]


def test_collection_paging_sets_the_deep_row_aside_and_keeps_its_cursor(sim):
    coll = sim.corpus.collections[1]
    truth = [i["id"] for i in sim.corpus.iter_collection(coll["hash"])]
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query/hash/", times=None, nest_indicator=truth[0]))
    with client_for(sim, page_size=50) as client:
        pages = list(client.iter_collection_pages(coll["hash"], keep_unparsed=True))
    assert [r["id"] for p in pages for r in p.indicators] == truth
    assert isinstance(pages[0].indicators[0], UnparsedRow) and all(p.next_cursor for p in pages)


def test_without_setting_rows_aside_the_error_names_the_row_and_the_page(sim):
    truth = [i["id"] for i in sim.corpus.iter_indicators(*WINDOW)]
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query", times=None, nest_indicator=truth[3]))
    with client_for(sim, page_size=100) as client, pytest.raises(ThreatQResponseError) as err:
        list(client.iter_indicator_pages(*WINDOW))
    assert f"page cursorMark=*: row id {truth[3]} is nested too deeply to parse" in str(err.value)


def test_a_deep_single_indicator_is_a_typed_error(sim):
    sim.faults.add(FaultRule(path_regex="^/api/indicators/5", times=None, nest_indicator=5))
    with client_for(sim) as client, pytest.raises(ThreatQResponseError, match="body nested too deeply to parse"):
        client.get_indicator(5, with_=["attributes"])
