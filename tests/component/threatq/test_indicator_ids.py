"""``ThreatQClient.iter_indicator_ids`` (ids only, keyset on id) and the simulator's
``DELETE /api/indicators/{id}``, over real HTTP: what the deletion reconciliation reads."""

from __future__ import annotations

import pytest

from threatq_provider.threatq.auth import PasswordGrant
from threatq_provider.threatq.client import ThreatQClient
from threatq_provider.threatq.errors import ThreatQNotFound

pytestmark = [pytest.mark.component]


def _client(sim) -> ThreatQClient:
    return ThreatQClient(sim.url, auth=PasswordGrant(sim.client_id, sim.username, sim.password), verify=False)


def test_ids_come_ascending_in_pages_of_ids_only_and_deleted_ones_are_gone(threatq_sim_factory):
    sim = threatq_sim_factory(seed=3, indicators=2_500, events=5)
    with _client(sim) as client:
        pages = list(client.iter_indicator_ids(page_size=1000))
        assert [len(p) for p in pages] == [1000, 1000, 500]
        assert [i for p in pages for i in p] == list(range(1, 2501))

        for gone in (1, 777, 2500):
            assert client.request_json("DELETE", f"/api/indicators/{gone}") is None  # 204
        with pytest.raises(ThreatQNotFound):
            client.request_json("DELETE", "/api/indicators/777")  # deleted already
        with pytest.raises(ThreatQNotFound):
            client.get_indicator(777)
        ids = [i for p in client.iter_indicator_ids(page_size=700) for i in p]
    assert ids == [i for i in range(1, 2501) if i not in (1, 777, 2500)]
    assert 777 not in {int(row["id"]) for row in sim.corpus.iter_indicators()}
    assert sim.stats["by_route"]["DELETE /api/indicators/{id}"] == 4


def test_a_capped_page_is_followed_not_taken_for_the_end(threatq_sim_factory):
    from threatq_simulators.faults import FaultPlan, FaultRule

    sim = threatq_sim_factory(seed=4, indicators=900, events=5,
                              faults=FaultPlan([FaultRule(path_regex="^/api/indicators/query", page_cap=250,
                                                          times=None)]))
    with _client(sim) as client:
        ids = [i for p in client.iter_indicator_ids(page_size=1000) for i in p]
    assert ids == list(range(1, 901))
