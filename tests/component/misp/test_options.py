"""Each share option changes the MISP event as docs/misp.md documents (real PyMISP → MISP double)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.component.misp.test_share import share

pytestmark = pytest.mark.component

IP_VALUES = {"203.0.113.5", "198.51.100.0/24"}
ATTACHMENT_TYPES = {"attachment", "malware-sample"}


def without_levels(case: dict[str, Any]) -> dict[str, Any]:
    """The case without its Threat Level / Analysis Level attributes, so the defaults apply."""
    case["event"]["attributes"] = [a for a in case["event"]["attributes"]
                                   if a["name"] not in ("Threat Level", "Analysis Level")]
    return case


def ids_of(event: dict[str, Any], types: set[str] | None = None, values: set[str] | None = None) -> set[bool]:
    return {a["to_ids"] for a in event["Attribute"]
            if (types is None or a["type"] in types) and (values is None or a["value"] in values)}


def by_value(event: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["value"].split("|")[0]: a for a in event["Attribute"]}


Check = Callable[[dict[str, Any], Any], None]

CASES: list[tuple[str, dict[str, Any], Check]] = [
    ("publish on", {"publish": True}, lambda e, d: _eq(e["published"], True)),
    ("publish off", {"publish": False}, lambda e, d: _eq(e["published"], False)),
    ("distribution org", {"distribution": "your_organisation_only"}, lambda e, d: _eq(e["distribution"], "0")),
    ("distribution community", {"distribution": "this_community_only"}, lambda e, d: _eq(e["distribution"], "1")),
    ("distribution connected", {"distribution": "connected_communities"}, lambda e, d: _eq(e["distribution"], "2")),
    ("distribution all", {"distribution": "all_communities"}, lambda e, d: _eq(e["distribution"], "3")),
    ("sharing group", {"distribution": "sharing_group", "sharing_group": "National CERT network"},
     lambda e, d: _eq((e["distribution"], e["sharing_group_id"]),
                      ("4", d.sharing_group_id("National CERT network")))),
    ("analysis initial", {"default_analysis": "initial"}, lambda e, d: _eq(e["analysis"], "0")),
    ("analysis ongoing", {"default_analysis": "ongoing"}, lambda e, d: _eq(e["analysis"], "1")),
    ("analysis completed", {"default_analysis": "completed"}, lambda e, d: _eq(e["analysis"], "2")),
    ("threat high", {"default_threat_level": "high"}, lambda e, d: _eq(e["threat_level_id"], "1")),
    ("threat low", {"default_threat_level": "low"}, lambda e, d: _eq(e["threat_level_id"], "3")),
    ("threat undefined", {"default_threat_level": "undefined"}, lambda e, d: _eq(e["threat_level_id"], "4")),
    ("IOCs to IDS on", {"to_ids": True}, lambda e, d: _eq(ids_of(e, {"ip-src", "domain", "url"}), {True})),
    ("IOCs to IDS off", {"to_ids": False}, lambda e, d: _eq(ids_of(e, {"ip-src", "domain", "url", "md5"}), {False})),
    ("attachments to IDS on", {"attachments_to_ids": True}, lambda e, d: _eq(ids_of(e, ATTACHMENT_TYPES), {True})),
    ("attachments to IDS off", {"attachments_to_ids": False},
     lambda e, d: _eq(ids_of(e, ATTACHMENT_TYPES), {False})),
    ("IP type source", {"default_ip_type": "ip-src"},
     lambda e, d: _eq({a["type"] for a in e["Attribute"] if a["value"] in IP_VALUES}, {"ip-src"})),
    ("IP type destination", {"default_ip_type": "ip-dst"},
     lambda e, d: _eq({a["type"] for a in e["Attribute"] if a["value"] in IP_VALUES}, {"ip-dst"})),
    ("unmapped attribution on", {"include_unmapped_attribution": True},
     lambda e, d: _eq((by_value(e)["Totally Unknown Crew"]["type"], by_value(e)["hunter2"]["type"]),
                      ("threat-actor", "text"))),
    ("unmapped attribution off", {"include_unmapped_attribution": False},
     lambda e, d: _eq({"Totally Unknown Crew", "hunter2"} & set(by_value(e)), set())),
    ("attachments sent", {"send_attachments": True},
     lambda e, d: _eq({a["type"] for a in e["Attribute"]} & ATTACHMENT_TYPES, ATTACHMENT_TYPES)),
    ("attachments not sent", {"send_attachments": False},
     lambda e, d: _eq({a["type"] for a in e["Attribute"]} & ATTACHMENT_TYPES, set())),
    ("chunk size", {"chunk_size": 4},
     lambda e, d: _eq([r.attributes for r in d.requests() if r.path.startswith("attributes/add/")], [4, 4, 3])),
]


def _eq(actual: Any, expected: Any) -> None:
    assert actual == expected


@pytest.mark.parametrize(("options", "check"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_option_changes_the_misp_event(double, pymisp_client, case, options, check):
    share(pymisp_client, without_levels(case), **options)

    events = double.events()
    assert len(events) == 1
    check(events[0], double)


def test_threat_and_analysis_level_attributes_override_the_defaults(double, pymisp_client, case):
    share(pymisp_client, case, default_threat_level="low", default_analysis="completed")

    event = double.events()[0]
    assert (event["threat_level_id"], event["analysis"]) == ("1", "1")  # High, Ongoing from ThreatQ


def test_tlp_event_type_and_adversary_become_tags_and_a_galaxy(double, pymisp_client, case):
    share(pymisp_client, case)

    event = double.events()[0]
    tags = {t["name"] for t in event["Tag"]}
    assert {"tlp:amber", 'threatq:event-type="Spearphish"', 'rsit:fraud="phishing"',
            'misp-galaxy:threat-actor="APT28"'} <= tags
    assert [c["value"] for g in event["Galaxy"] for c in g["GalaxyCluster"]] == ["APT28"]


def test_malware_samples_are_stored_as_filename_and_md5(double, pymisp_client, case):
    share(pymisp_client, case)

    sample = next(a for a in double.events()[0]["Attribute"] if a["type"] == "malware-sample")
    assert sample["value"] == "invoice.exe|" + __import__("hashlib").md5(b"MZ dropper bytes").hexdigest()


def test_switching_distribution_to_a_sharing_group_updates_the_same_event(double, pymisp_client, case):
    share(pymisp_client, case)
    result = share(pymisp_client, case, distribution="sharing_group", sharing_group="ThreatQ partners")

    events = double.events()
    assert len(events) == 1 and result.metadata_changed
    assert (events[0]["distribution"], events[0]["sharing_group_id"]) == ("4", double.sharing_group_id("ThreatQ partners"))


def test_an_unknown_sharing_group_is_a_configuration_error_listing_the_available_ones(double, pymisp_client, case):
    from threatq_provider.misp.errors import MispConfigError

    with pytest.raises(MispConfigError, match="ThreatQ partners"):
        share(pymisp_client, case, distribution="sharing_group", sharing_group="Nope")
    assert double.events() == []
