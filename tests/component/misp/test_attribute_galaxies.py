"""Attribute-level galaxies: an indicator's own Malware Family as galaxy tags on its MISP attribute.

Real PyMISP against the MISP double.
"""

from __future__ import annotations

import copy

import pytest

from tests.component.misp.test_attribute_tlp import tags_by_value
from tests.component.misp.test_share import share

pytestmark = pytest.mark.component

# Independent ground truth: the clusters misp-galaxy (pymispgalaxies' data) holds for these families.
EMOTET = ['misp-galaxy:malpedia="Emotet"', 'misp-galaxy:mitre-malware="Emotet - S0367"']
QAKBOT = ['misp-galaxy:malpedia="QakBot"', 'misp-galaxy:mitre-malware="QakBot - S0650"']


def with_families(case: dict, **families: list[str]) -> dict:
    """The case with ``Malware Family`` attributes on the indicators named by value."""
    changed = copy.deepcopy(case)
    for indicator in changed["indicators"]:
        names = families.get(indicator["value"])
        if names is not None:
            indicator["attributes"] = [{"id": 700 + k, "name": "Malware Family", "value": n}
                                       for k, n in enumerate(names)]
    return changed


def test_a_malware_family_tags_the_attribute_and_a_reshare_keeps_it_in_step(double, pymisp_client, case):
    first = with_families(case, **{"evil.example.com": ["Emotet"], "203.0.113.5": ["Emotet", "QakBot"]})

    result = share(pymisp_client, first)

    tags = tags_by_value(double)
    assert tags["evil.example.com"] == EMOTET
    assert tags["203.0.113.5"] == sorted([*EMOTET, *QAKBOT, "tlp:red"])
    assert result.attribute_tags_added == 0  # the tags came with the new attributes

    attribute = next(a for a in double.events()[0]["Attribute"] if a["value"] == "203.0.113.5")
    pymisp_client.tag(attribute["uuid"], "analyst:reviewed")
    pymisp_client.tag(attribute["uuid"], 'misp-galaxy:tool="Cobalt Strike"')  # a galaxy ThreatQ does not feed
    second = with_families(case, **{"evil.example.com": ["QakBot"], "203.0.113.5": ["Emotet"]})
    double.clear_requests()

    result = share(pymisp_client, second)

    tags = tags_by_value(double)
    assert tags["evil.example.com"] == QAKBOT
    people = ["analyst:reviewed", 'misp-galaxy:tool="Cobalt Strike"']
    assert tags["203.0.113.5"] == sorted([*EMOTET, *people, "tlp:red"])
    assert (result.attribute_tags_added, result.attribute_tags_removed) == (2, 4)
    assert (result.added, result.updated, result.removed, result.created) == (0, 0, 0, False)
    posts = [r.path for r in double.requests() if r.method == "POST"]
    assert sorted(set(posts[:-1])) == ["tags/attachTagToObject", "tags/removeTagFromObject"]

    double.clear_requests()
    assert share(pymisp_client, second).changed is False
    assert [r.method for r in double.requests()] == ["HEAD", "GET"]

    result = share(pymisp_client, case)  # ThreatQ no longer names any family

    tags = tags_by_value(double)
    assert tags["evil.example.com"] == []
    assert tags["203.0.113.5"] == sorted([*people, "tlp:red"])
    assert result.attribute_tags_removed == 4


def test_unknown_and_ambiguous_families_tag_nothing_and_are_counted(double, pymisp_client, case):
    # "Interplanetary Storm": a synonym two malpedia clusters share
    changed = with_families(case, **{"evil.example.com": ["Our Own Loader"],
                                     "203.0.113.5": ["Interplanetary Storm"]})

    result = share(pymisp_client, changed)

    tags = tags_by_value(double)
    assert tags["evil.example.com"] == [] and tags["203.0.113.5"] == ["tlp:red"]
    assert result.skipped_unmapped["Malware"] == 2


def test_share_operator_tags_simulator_indicators_by_their_malware_family(threatq_conn, threatq_sim,
                                                                         misp_conn):
    from threatq_provider.operators.share import MispShareEventOperator

    corpus = threatq_sim.corpus
    known = {"Emotet": EMOTET, "QakBot": QAKBOT,
             "Dridex": ['misp-galaxy:malpedia="Dridex"', 'misp-galaxy:mitre-malware="Dridex - S0384"']}

    def families(event_id: int) -> dict[str, list[str]]:
        out = {}
        for iid in corpus.event_indicator_ids(event_id):
            indicator = corpus.indicator(iid)
            names = [a["value"] for a in indicator.get("attributes") or []
                     if a.get("name") == "Malware Family"]
            out[str(indicator["value"]).lower()] = names
        return out

    # the event with the most indicators of a known family (some are of types MISP has none for)
    event_id = max(corpus.event_ids()[:40],
                   key=lambda e: sum(bool(set(n) & set(known)) for n in families(e).values()))
    xcom = MispShareEventOperator(task_id="share", event_ids=[event_id]).execute({})

    assert xcom["events"] == 1 and xcom["rejected"] == 0
    truth = families(event_id)
    (event,) = misp_conn.events()
    checked = 0
    for attribute in event["Attribute"]:
        names = truth.get(attribute["value"].lower())
        if names and set(names) <= set(known):
            galaxies = sorted(t["name"] for t in attribute["Tag"] if t["name"].startswith("misp-galaxy:"))
            assert galaxies == sorted({tag for n in names for tag in known[n]}), attribute["value"]
            checked += 1
    assert checked
