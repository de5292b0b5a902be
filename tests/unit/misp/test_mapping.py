"""Pure mapping ThreatQ event → MISPEvent (no network, no Airflow)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from threatq_provider.misp.mapping import (
    attribute_uuid,
    event_to_misp,
    event_uuid,
    galaxy_tag,
    _galaxy_rule,
    galaxy_tags,
    investigation_to_misp,
    match_cluster,
    most_restrictive_tlp,
    report_uuid,
    tables,
    tlp_level,
)
from threatq_provider.misp.options import ShareOptions

DATA = Path(__file__).resolve().parents[2] / "data" / "misp"
HOST = "https://threatq.example.com"


@pytest.fixture
def case():
    raw = json.loads((DATA / "event_spearphish.json").read_text())
    raw["attachments"] = [(a["attachment"], a["content_text"].encode()) for a in raw["attachments"]]
    return raw


def build(case, **options):
    return event_to_misp(case["event"], case["indicators"], threatq_host=HOST, options=ShareOptions(**options),
                         attachments=case["attachments"])


def attrs(result):
    return {a.value: a for a in result.misp_event.attributes}


def test_the_event_matches_the_golden_file(case):
    produced = json.loads(build(case).misp_event.to_json(sort_keys=True, indent=2))
    golden = DATA / "event_spearphish.expected.json"
    if os.environ.get("MISP_REGEN_GOLDEN") == "1":  # review the diff after regenerating
        golden.write_text(json.dumps(produced, indent=2, sort_keys=True) + "\n")
    assert produced == json.loads(golden.read_text())


def test_uuids_are_deterministic_and_scoped_by_host_and_event(case):
    first, second = build(case), build(copy.deepcopy(case))
    assert first.misp_event.to_json(sort_keys=True) == second.misp_event.to_json(sort_keys=True)
    assert event_uuid("https://ThreatQ.example.com/", 2019) == event_uuid("threatq.example.com", 2019)
    assert event_uuid(HOST, 2019) != event_uuid("https://other.example.com", 2019)
    assert event_uuid(HOST, 1, "investigation") != event_uuid(HOST, 1)
    a = attribute_uuid(event_uuid(HOST, 1), "indicator:IP Address:203.0.113.5")
    assert a != attribute_uuid(event_uuid(HOST, 2), "indicator:IP Address:203.0.113.5")


def test_attribute_uuid_survives_a_change_of_ip_type(case):
    dst = attrs(build(case, default_ip_type="ip-dst"))["203.0.113.5"]
    src = attrs(build(case))["203.0.113.5"]
    assert (dst.type, src.type) == ("ip-dst", "ip-src") and dst.uuid == src.uuid


def test_categories_and_ids_flags_come_from_describe_types(case):
    by_value = attrs(build(case))
    assert (by_value["evil.example.com"].category, by_value["evil.example.com"].to_ids) == ("Network activity", True)
    assert (by_value["Invoice overdue"].category, by_value["Invoice overdue"].to_ids) == ("Payload delivery", False)
    assert by_value["13335"].type == "AS"  # normalised as MISP stores it


def test_expired_indicators_are_shared_without_the_ids_flag(case):
    md5 = attrs(build(case))["d41d8cd98f00b204e9800998ecf8427e"]
    assert md5.to_ids is False


def test_types_without_misp_counterpart_are_counted_or_sent_as_text(case):
    assert build(case).skipped_unmapped == {"Password": 1, "Adversary": 1}
    included = build(case, include_unmapped_attribution=True)
    assert included.skipped_unmapped == {}
    assert attrs(included)["hunter2"].type == "text"
    assert attrs(included)["Totally Unknown Crew"].type == "threat-actor"


def test_adversaries_match_galaxy_clusters_exactly_by_name_or_synonym():
    assert galaxy_tag("Fancy Bear") == 'misp-galaxy:threat-actor="APT28"'
    assert galaxy_tag("apt28") == 'misp-galaxy:threat-actor="APT28"'
    assert galaxy_tag("Emotet") is None  # a fuzzy search would hit "... (Emotet Downloader)"


def test_tlp_is_the_most_restrictive_over_the_sources(case):
    tags = [t.name for t in build(case).misp_event.tags]
    assert "tlp:amber" in tags and "tlp:green" not in tags
    case["event"]["sources"] = [{"name": "x", "tlp_name": "TLP:RED"}]
    assert "tlp:red" in [t.name for t in build(case).misp_event.tags]


def test_event_type_becomes_a_machine_tag_and_taxonomy_tags(case):
    tags = [t.name for t in build(case).misp_event.tags]
    assert 'threatq:event-type="Spearphish"' in tags and 'rsit:fraud="phishing"' in tags


def test_level_attributes_override_the_defaults_case_insensitively(case):
    case["event"]["attributes"][0]["value"] = "low"
    case["event"]["attributes"][1]["value"] = "complete"
    event = build(case, default_threat_level="high", default_analysis="initial").misp_event
    assert (event.threat_level_id, event.analysis) == (3, 2)


def test_duplicate_values_are_merged_because_misp_refuses_them(case):
    case["indicators"].append({"id": 500, "value": "evil.example.com", "type": {"name": "FQDN"}})
    case["indicators"].append({"id": 501, "value": "payload.exe", "type": {"name": "Filename"}})
    case["indicators"].append({"id": 502, "value": "payload.exe", "type": {"name": "File Path"}})
    result = build(case)
    assert result.duplicates == 2
    assert [a.value for a in result.misp_event.attributes].count("payload.exe") == 1


def test_attachments_are_uploaded_as_bytes_or_left_out(case):
    by_value = attrs(build(case))
    assert by_value["report.pdf"].type == "attachment"
    assert by_value["report.pdf"].data.getvalue() == b"%PDF-1.4 campaign report"
    assert by_value["invoice.exe"].type == "malware-sample"
    assert "report.pdf" not in attrs(build(case, send_attachments=False))


def test_investigation_merges_its_events_into_one_misp_event(case):
    other = {"id": 7, "title": "C2", "type": {"name": "Command and Control"}, "sources": [{"name": "s", "tlp_id": 1}]}
    result = investigation_to_misp({"id": 3, "name": "Op Winter"}, [case["event"], other], case["indicators"],
                                   threatq_host=HOST, options=ShareOptions())
    tags = [t.name for t in result.misp_event.tags]
    assert result.misp_event.info == "ThreatQ investigation: Op Winter"
    assert result.misp_event.uuid == event_uuid(HOST, 3, "investigation")
    assert {"tlp:red", 'threatq:event-type="Spearphish"', 'threatq:event-type="Command and Control"'} <= set(tags)


@pytest.mark.parametrize(("holder", "name"), [
    ({"tlp_name": "TLP:AMBER"}, "AMBER"), ({"tlp_name": "AMBER"}, "AMBER"), ({"tlp": {"name": "amber"}}, "AMBER"),
    ({"tlp_id": 2}, "AMBER"), ({"tlp_id": "1"}, "RED"), ({"tlp": "TLP: Amber Strict"}, "AMBER+STRICT"),
    ({"tlp_name": "TLP:AMBER+STRICT"}, "AMBER+STRICT"), ({"tlp_name": "tlp:clear"}, "CLEAR"),
    ({"tlp_name": "testtlp"}, None), ({"tlp_id": None, "tlp_name": None}, None), ({}, None), ("RED", None),
])
def test_tlp_spellings_threatq_uses(holder, name):
    level = tlp_level(holder)
    assert (level.name if level else None) == name


def test_tlp_order_is_data_and_white_equals_clear():
    levels = list(tables().tlp_levels.values())
    assert [lv.tag for lv in levels] == ["tlp:red", "tlp:amber+strict", "tlp:amber", "tlp:green", "tlp:white",
                                         "tlp:clear"]
    assert [lv.rank for lv in levels] == sorted((lv.rank for lv in levels), reverse=True)
    assert most_restrictive_tlp([{"tlp_name": "CLEAR"}, {"tlp_name": "WHITE"}]).name == "WHITE"
    assert most_restrictive_tlp([{"tlp_id": 3}, {"tlp_name": "AMBER+STRICT"}, {"tlp_id": 2}]).name == "AMBER+STRICT"
    assert most_restrictive_tlp([{"tlp_name": "nonsense"}, {}]) is None


@pytest.mark.parametrize(("event_tlps", "indicator_tlps", "tags"), [
    (["AMBER"], ["TLP:RED"], ["tlp:red"]),
    (["AMBER"], ["AMBER"], []),
    (["AMBER"], ["GREEN"], []),
    ([], ["GREEN"], ["tlp:green"]),
    ([], [], []),
    (["WHITE"], ["TLP:CLEAR"], []),
    (["GREEN"], ["AMBER", "AMBER+STRICT", "WHITE"], ["tlp:amber+strict"]),
    (["CLEAR"], ["testtlp"], []),
    (["RED", "GREEN"], ["AMBER"], []),
])
def test_an_attribute_gets_its_sources_tlp_only_when_more_restrictive_than_the_event(event_tlps, indicator_tlps,
                                                                                      tags):
    event = {"id": 1, "title": "t", "sources": [{"name": f"s{k}", "tlp_name": n} for k, n in enumerate(event_tlps)]}
    indicator = {"id": 9, "value": "203.0.113.7", "type": {"name": "IP Address"},
                 "sources": [{"name": f"i{k}", "tlp_name": n} for k, n in enumerate(indicator_tlps)]}
    (attribute,) = event_to_misp(event, [indicator], threatq_host=HOST, options=ShareOptions()).misp_event.attributes
    assert [t.name for t in attribute.tags] == tags


@pytest.mark.parametrize("order", [("GREEN", "RED"), ("RED", "GREEN")])
def test_merged_repeats_keep_the_most_restrictive_tlp(order):
    indicators = [{"id": k, "value": "203.0.113.7", "type": {"name": kind}, "sources": [{"name": "s", "tlp_name": n}]}
                  for k, (kind, n) in enumerate(zip(("IP Address", "CIDR Block"), order, strict=True))]
    result = event_to_misp({"id": 1, "title": "t"}, indicators, threatq_host=HOST, options=ShareOptions())
    (attribute,) = result.misp_event.attributes
    assert [t.name for t in attribute.tags] == ["tlp:red"] and result.duplicates == 1


def rule(kind):
    return next(r for r in tables().galaxy_rules if r.kind == kind)


@pytest.mark.parametrize(("kind", "name", "tags"), [
    ("Malware", "Emotet", ['misp-galaxy:mitre-malware="Emotet - S0367"', 'misp-galaxy:malpedia="Emotet"']),
    ("Malware", "  emotet ", ['misp-galaxy:mitre-malware="Emotet - S0367"', 'misp-galaxy:malpedia="Emotet"']),
    ("Malware", "Geodo", ['misp-galaxy:mitre-malware="Emotet - S0367"', 'misp-galaxy:malpedia="Emotet"']),
    ("Malware", "S0367", ['misp-galaxy:mitre-malware="Emotet - S0367"']),
    ("Malware", "Sliver", ['misp-galaxy:malpedia="Sliver"']),
    ("Malware", "Emotet Downloader", []),  # no fuzzy matches
    ("Attack Pattern", "T1059 - Command and Scripting Interpreter",
     ['misp-galaxy:mitre-attack-pattern="Command and Scripting Interpreter - T1059"']),
    ("Attack Pattern", "Command and Scripting Interpreter",  # the mobile T1623 shares the name
     ['misp-galaxy:mitre-attack-pattern="Command and Scripting Interpreter - T1059"']),
    ("Attack Pattern", "Command and Scripting Interpreter - T1059",
     ['misp-galaxy:mitre-attack-pattern="Command and Scripting Interpreter - T1059"']),
    ("Attack Pattern", "t1059.001", ['misp-galaxy:mitre-attack-pattern="PowerShell - T1059.001"']),
    ("Attack Pattern", "PowerShell", ['misp-galaxy:mitre-attack-pattern="PowerShell - T1059.001"']),  # not the revoked T1086
    ("Attack Pattern", "T1086", ['misp-galaxy:mitre-attack-pattern="PowerShell - T1086"']),
    ("Attack Pattern", "Spearphishing Attachment", []),  # T1566.001 and T1598.002: ambiguous
    ("Attack Pattern", "T9999 - Phishing", ['misp-galaxy:mitre-attack-pattern="Phishing - T1566"']),
    ("Attack Pattern", "Scripting Things", []),
    ("Adversary", "Fancy Bear", ['misp-galaxy:threat-actor="APT28"']),
    ("Adversary", "PLA Navy", []),  # a synonym of three actors
])
def test_galaxy_matching_is_exact_by_id_value_name_or_synonym(kind, name, tags):
    assert galaxy_tags(name, rule(kind)) == tags


def test_an_unknown_match_field_in_the_table_fails_loudly():
    row = {"kind": "X", "relations": [], "event_attributes": [], "name_fields": ["value"], "id_pattern": None,
           "uuid_key": "x", "galaxies": [{"galaxy": "tool", "match": ["value", "fuzzy"]}], "unmatched": {"type": "text"}}
    with pytest.raises(ValueError, match="fuzzy"):
        _galaxy_rule(row)
    assert match_cluster("Zbot", "banker", ("synonyms",)) == "Zeus"


def galaxy_case(case):
    case["event"]["malware"] = [{"id": 1, "value": "Emotet", "object_code": "malware"},
                                {"id": 2, "value": "Totally Custom Loader"}]
    case["event"]["attack_pattern"] = [{"id": 3, "value": "T1566.001 - Spearphishing Attachment"},
                                       {"id": 4, "value": "Our own technique name"}]
    case["event"]["attributes"].append({"id": 9, "name": "Malware Family", "value": "QakBot"})
    return case


def test_malware_and_attack_patterns_become_galaxy_tags_and_unmatched_ones_are_counted(case):
    result = build(galaxy_case(case))
    tags = [t.name for t in result.misp_event.tags]
    assert {'misp-galaxy:mitre-malware="Emotet - S0367"', 'misp-galaxy:malpedia="Emotet"',
            'misp-galaxy:mitre-attack-pattern="Spearphishing Attachment - T1566.001"',
            'misp-galaxy:mitre-malware="QakBot - S0650"', 'misp-galaxy:malpedia="QakBot"'} <= set(tags)
    assert result.skipped_unmapped["Malware"] == 1 and result.skipped_unmapped["Attack Pattern"] == 1
    assert "QakBot" in attrs(result)  # the event attribute is still sent as text
    assert {"misp-galaxy:mitre-malware=", "misp-galaxy:malpedia=", "misp-galaxy:mitre-attack-pattern="} <= set(
        result.managed_tag_prefixes)


def test_unmatched_malware_and_attack_patterns_are_attributes_when_asked(case):
    values = attrs(build(galaxy_case(case), include_unmapped_attribution=True))
    loader, technique = values["Totally Custom Loader"], values["Our own technique name"]
    assert (loader.type, loader.category, loader.to_ids) == ("malware-type", "Payload delivery", False)
    assert (technique.type, technique.category, technique.comment) == ("text", "External analysis",
                                                                        "ThreatQ Attack Pattern")
    assert loader.uuid == attribute_uuid(event_uuid(HOST, 2019), "malware:totally custom loader")


def test_investigation_merges_its_events_malware_and_attack_patterns(case):
    other = {"id": 7, "title": "C2", "malware": [{"value": "Cobalt Strike"}], "attack_pattern": [{"value": "T1071"}]}
    result = investigation_to_misp({"id": 3, "name": "Op Winter"}, [galaxy_case(case)["event"], other], [],
                                   threatq_host=HOST, options=ShareOptions())
    tags = {t.name for t in result.misp_event.tags}
    assert {'misp-galaxy:malpedia="Cobalt Strike"', 'misp-galaxy:malpedia="Emotet"',
            'misp-galaxy:mitre-attack-pattern="Application Layer Protocol - T1071"'} <= tags


EMOTET = ['misp-galaxy:mitre-malware="Emotet - S0367"', 'misp-galaxy:malpedia="Emotet"']


def family(indicator_id, value, *families, name="Malware Family", type_="FQDN"):
    return {"id": indicator_id, "value": value, "type": {"name": type_},
            "attributes": [{"id": 900 + k, "name": name, "value": f} for k, f in enumerate(families)]}


def attribute_tags(result):
    return {a.value: [t.name for t in a.tags] for a in result.misp_event.attributes}


def test_an_indicators_malware_family_becomes_galaxy_tags_on_its_attribute(case):
    case["indicators"] += [family(600, "emotet-c2.example.com", "Emotet"),
                           family(601, "qbot.example.com", "QBot", name="malware"),  # name case-insensitive
                           {"id": 602, "value": "plain.example.com", "type": {"name": "FQDN"},
                            "attributes": [{"name": "Country", "value": "Emotet"}]}]  # not a galaxy attribute
    result = build(case)
    tags = attribute_tags(result)
    assert tags["emotet-c2.example.com"] == EMOTET
    assert tags["qbot.example.com"] == ['misp-galaxy:mitre-malware="QakBot - S0650"']
    assert tags["plain.example.com"] == []
    assert not any(t.name.startswith(("misp-galaxy:mitre-malware=", "misp-galaxy:malpedia="))
                   for t in result.misp_event.tags)  # the event gets none of them
    assert {"tlp:", "misp-galaxy:mitre-malware=", "misp-galaxy:malpedia="} == set(
        result.managed_attribute_tag_prefixes)


def test_an_unknown_family_tags_nothing_and_is_counted_like_the_events_unmatched_malware(case):
    case["event"]["malware"] = [{"id": 1, "value": "Our Own Loader"}]
    case["indicators"] += [family(600, "a.example.com", "Our Own Loader"),  # the event's: counted once
                           family(601, "b.example.com", "Totally Custom RAT"),
                           family(602, "c.example.com", "totally custom rat")]
    result = build(case)
    tags = attribute_tags(result)
    assert tags["a.example.com"] == tags["b.example.com"] == tags["c.example.com"] == []
    assert result.skipped_unmapped["Malware"] == 2

    values = attrs(build(case, include_unmapped_attribution=True))
    rat = values["Totally Custom RAT"]
    assert (rat.type, rat.to_ids) == ("malware-type", False)
    assert "totally custom rat" not in values  # one attribute per name, as for event relations


def test_an_ambiguous_family_tags_nothing(case):
    from threatq_provider.misp.mapping import galaxy_index

    # "Interplanetary Storm" is a synonym of two malpedia clusters and no mitre-malware name
    assert galaxy_index("malpedia")["synonyms"]["interplanetary storm"] is None
    case["indicators"].append(family(600, "ipstorm.example.com", "Interplanetary Storm"))
    assert attribute_tags(build(case))["ipstorm.example.com"] == []


def test_merged_indicators_union_their_galaxy_tags_and_keep_the_most_restrictive_tlp():
    indicators = [family(1, "203.0.113.7", "Emotet", type_="IP Address"),
                  family(2, "203.0.113.7", "QakBot", "Emotet", type_="CIDR Block")]
    indicators[1]["sources"] = [{"name": "s", "tlp_name": "RED"}]
    result = event_to_misp({"id": 1, "title": "t"}, indicators, threatq_host=HOST, options=ShareOptions())
    (attribute,) = result.misp_event.attributes
    qakbot = ['misp-galaxy:mitre-malware="QakBot - S0650"', 'misp-galaxy:malpedia="QakBot"']
    assert [t.name for t in attribute.tags] == [*EMOTET, "tlp:red", *qakbot]
    assert result.duplicates == 1


def test_indicator_galaxy_attributes_naming_an_unknown_kind_fail_loudly():
    from threatq_provider.misp.mapping import _indicator_galaxy_rules

    with pytest.raises(ValueError, match="Malwear"):
        _indicator_galaxy_rules({"Malware Family": ["Malwear"]}, tables().galaxy_rules)


def test_the_description_becomes_one_event_report_with_a_derived_uuid(case):
    case["event"]["description"] = "<p>Seen by <b>APT28</b>.</p><script>alert(1)</script>"
    reports = build(case).misp_event.event_reports
    assert len(reports) == 1
    report = reports[0]
    assert (report.name, report.content, report.distribution) == ("ThreatQ description", "Seen by **APT28**.", 5)
    assert report.uuid == report_uuid(event_uuid(HOST, 2019)) == build(copy.deepcopy(case)).misp_event.event_reports[0].uuid
    assert report_uuid(event_uuid(HOST, 2019)) != report_uuid(event_uuid(HOST, 2020))


@pytest.mark.parametrize("description", [None, "", "   ", "<p> </p>", "<script>x</script>"])
def test_no_visible_description_means_no_report(case, description):
    case["event"]["description"] = description
    assert build(case).misp_event.event_reports == []


def test_the_description_option_off_sends_no_report(case):
    assert build(case, send_description=False).misp_event.event_reports == []
    assert build(case, send_description="false").misp_event.event_reports == []


def test_a_long_description_is_cut_with_a_note_naming_the_threatq_event(case):
    case["event"]["description"] = "<p>" + "word " * 30000 + "</p>"
    content = build(case).misp_event.event_reports[0].content
    assert len(content) < 100_000 + 200
    assert content.endswith("*(Cut at 100000 of 149999 characters: the whole description is on ThreatQ event 2019.)*")


def test_investigation_report_holds_its_description_then_each_event_under_its_title(case):
    other = {"id": 7, "title": "C2 *beacon*", "description": "<p>Beacon every <b>60 s</b></p>"}
    result = investigation_to_misp({"id": 3, "name": "Op Winter", "description": "<p>Why we look</p>"},
                                   [case["event"], other, {"id": 8, "title": "quiet"}], [], threatq_host=HOST,
                                   options=ShareOptions())
    (report,) = result.misp_event.event_reports
    assert report.content == ("Why we look\n\n## Spearphish campaign against finance\n\ntest\n\n"
                              "## C2 \\*beacon\\*\n\nBeacon every **60 s**")
    assert report.uuid == report_uuid(event_uuid(HOST, 3, "investigation"))
