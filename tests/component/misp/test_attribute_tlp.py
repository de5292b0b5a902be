"""Attribute-level TLP: an indicator's own source TLP as a tag on its MISP attribute (real PyMISP → double)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.component.misp.test_share import share
from threatq_provider.operators.share import MispShareEventOperator

pytestmark = pytest.mark.component

# Independent ground truth for the checks below (the mapping reads its own table from its package data).
RANK = {"RED": 4, "AMBER+STRICT": 3, "AMBER": 2, "GREEN": 1, "WHITE": 0, "CLEAR": 0}


def tags_by_value(double: Any) -> dict[str, list[str]]:
    (event,) = double.events()
    return {a["value"]: sorted(t["name"] for t in a["Tag"]) for a in event["Attribute"]}


def test_an_indicator_more_restrictive_than_the_event_carries_its_tlp(double, pymisp_client, case):
    result = share(pymisp_client, case)

    tags = tags_by_value(double)
    assert tags["203.0.113.5"] == ["tlp:red"]  # a RED source on an AMBER event
    assert tags["evil.example.com"] == []      # GREEN is less restrictive than the event's AMBER
    assert "tlp:amber" in {t["name"] for t in double.events()[0]["Tag"]}
    assert result.added == 11 and result.attribute_tags_added == 0  # the tag came with the attribute


def test_a_tlp_change_in_threatq_tags_and_untags_the_same_attributes(double, pymisp_client, case):
    share(pymisp_client, case)
    people = next(a for a in double.events()[0]["Attribute"] if a["value"] == "203.0.113.5")
    pymisp_client.tag(people["uuid"], "analyst:reviewed")
    changed = copy.deepcopy(case)
    ind = {i["id"]: i for i in changed["indicators"]}
    ind[101]["sources"] = [{"id": 12, "name": "Analyst", "tlp_id": 3}]          # the RED source is gone
    ind[103]["sources"].append({"id": 16, "name": "Partner", "tlp_name": "TLP:AMBER+STRICT"})
    double.clear_requests()

    result = share(pymisp_client, changed)

    tags = tags_by_value(double)
    assert tags["203.0.113.5"] == ["analyst:reviewed"]  # ours removed, the analyst's kept
    assert tags["evil.example.com"] == ["tlp:amber+strict"]
    assert (result.attribute_tags_added, result.attribute_tags_removed) == (1, 1)
    assert (result.added, result.updated, result.created) == (0, 0, False)
    posts = [r.path for r in double.requests() if r.method == "POST"]
    assert sorted(posts[:2]) == ["tags/attachTagToObject", "tags/removeTagFromObject"]
    assert posts[2:] == [f"events/publish/{result.event_uuid}"]
    assert double.events()[0]["published"] is True

    double.clear_requests()
    assert share(pymisp_client, changed).changed is False
    assert [r.method for r in double.requests()] == ["HEAD", "GET"]


def test_raising_the_event_tlp_drops_attribute_tags_no_longer_more_restrictive(double, pymisp_client, case):
    share(pymisp_client, case)
    raised = copy.deepcopy(case)
    raised["event"]["sources"].append({"id": 17, "name": "Closed group", "tlp_id": 1})

    result = share(pymisp_client, raised)

    assert tags_by_value(double)["203.0.113.5"] == []
    event_tags = {t["name"] for t in double.events()[0]["Tag"]}
    assert "tlp:red" in event_tags and "tlp:amber" not in event_tags
    assert result.attribute_tags_removed == 1


def test_share_operator_tags_simulator_indicators_by_their_sources(threatq_conn, threatq_sim, misp_conn):
    corpus = threatq_sim.corpus

    def name(source: dict[str, Any]) -> str | None:
        raw = source.get("tlp_name")
        return str(raw).upper().replace("TLP:", "").strip() if raw else None

    def most(sources: list[dict[str, Any]]) -> str | None:
        names = [n for n in map(name, sources) if n in RANK]
        return max(names, key=RANK.__getitem__) if names else None

    def expected(event_id: int) -> dict[str, list[str]]:
        event_tlp = most(corpus.event(event_id)["sources"])
        out = {}
        for iid in corpus.event_indicator_ids(event_id):
            indicator = corpus.indicator(iid)
            own = most(indicator.get("sources") or [])
            more = own is not None and (event_tlp is None or RANK[own] > RANK[event_tlp])
            out[str(indicator["value"]).lower()] = [f"tlp:{own.lower()}"] if more else []
        return out

    event_id = next(e for e in corpus.event_ids()[:40] if any(expected(e).values()))
    xcom = MispShareEventOperator(task_id="share", event_ids=[event_id]).execute({})

    assert xcom["events"] == 1 and xcom["rejected"] == 0
    truth = expected(event_id)
    (event,) = misp_conn.events()
    checked = 0
    for attribute in event["Attribute"]:
        value = attribute["value"].lower()
        if value in truth:
            assert sorted(t["name"] for t in attribute["Tag"] if t["name"].startswith("tlp:")) == truth[value], value
            checked += 1
    assert checked and any(truth.values())


def test_the_double_attaches_the_tags_an_attribute_edit_carries_and_keeps_the_others(double, pymisp_client):
    from pymisp import MISPEvent

    first = MISPEvent()
    first.info = "edit tags"
    attribute = first.add_attribute("ip-dst", "203.0.113.9", Tag=[{"name": "keep:me"}])
    pymisp_client.add_event(first)
    edit = MISPEvent()
    edit.uuid, edit.info = first.uuid, first.info
    edit.add_attribute("ip-dst", "203.0.113.9", uuid=attribute.uuid, comment="edited", Tag=[{"name": "tlp:red"}])

    pymisp_client.update_event(edit)

    (stored,) = double.event(first.uuid)["Attribute"]
    assert stored["comment"] == "edited"
    assert sorted(t["name"] for t in stored["Tag"]) == ["keep:me", "tlp:red"]
