"""Malware and ATT&CK attack patterns as MISP galaxy clusters (real PyMISP → MISP double, ThreatQ simulator)."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

import pytest
import requests_mock

from tests.component.misp.test_share import share
from threatq_provider.operators.share import MispShareEventOperator

pytestmark = pytest.mark.component

EMOTET = {'misp-galaxy:mitre-malware="Emotet - S0367"', 'misp-galaxy:malpedia="Emotet"'}
T1059 = 'misp-galaxy:mitre-attack-pattern="Command and Scripting Interpreter - T1059"'


def with_galaxy_objects(case: dict[str, Any]) -> dict[str, Any]:
    case = copy.deepcopy(case)
    case["event"]["malware"] = [{"id": 1, "value": "Emotet"}, {"id": 2, "value": "Totally Custom Loader"}]
    case["event"]["attack_pattern"] = [{"id": 3, "value": "T1059 - Command and Scripting Interpreter"}]
    return case


def stored_tags(double: Any) -> set[str]:
    (event,) = double.events()
    return {t["name"] for t in event["Tag"]}


def test_malware_and_attack_patterns_arrive_as_galaxies_misp_renders(double, pymisp_client, case):
    result = share(pymisp_client, with_galaxy_objects(case))

    assert EMOTET | {T1059, 'misp-galaxy:threat-actor="APT28"'} <= stored_tags(double)
    (event,) = double.events()
    clusters = {(g["type"], c["value"]) for g in event["Galaxy"] for c in g["GalaxyCluster"]}
    assert {("mitre-malware", "Emotet - S0367"), ("malpedia", "Emotet"),
            ("mitre-attack-pattern", "Command and Scripting Interpreter - T1059")} <= clusters
    assert result.skipped_unmapped["Malware"] == 1  # the custom loader has no cluster
    assert result.rejected == []


def test_galaxies_follow_threatq_on_reshare_and_an_unchanged_reshare_sends_nothing(double, pymisp_client, case):
    shared = with_galaxy_objects(case)
    share(pymisp_client, shared)
    double.clear_requests()
    assert share(pymisp_client, shared).changed is False
    assert [r.method for r in double.requests()] == ["HEAD", "GET"]

    pymisp_client.tag(double.events()[0]["uuid"], 'misp-galaxy:tool="Mimikatz"')  # an analyst's own galaxy
    changed = copy.deepcopy(shared)
    changed["event"]["malware"] = [{"id": 5, "value": "QakBot"}]
    result = share(pymisp_client, changed)

    tags = stored_tags(double)
    assert not EMOTET & tags
    assert {'misp-galaxy:mitre-malware="QakBot - S0650"', 'misp-galaxy:malpedia="QakBot"', T1059} <= tags
    assert 'misp-galaxy:tool="Mimikatz"' in tags
    assert result.tags_removed == 2 and double.events()[0]["published"] is True


def test_unmatched_objects_become_attributes_misp_accepts_when_asked(double, pymisp_client, case):
    extra = with_galaxy_objects(case)
    extra["event"]["attack_pattern"].append({"id": 4, "value": "Our own technique name"})

    result = share(pymisp_client, extra, include_unmapped_attribution=True)

    (event,) = double.events()
    by_value = {a["value"]: a for a in event["Attribute"]}
    assert (by_value["Totally Custom Loader"]["type"], by_value["Totally Custom Loader"]["category"]) == (
        "malware-type", "Payload delivery")
    assert by_value["Our own technique name"]["comment"] == "ThreatQ Attack Pattern"
    assert result.rejected == [] and "Malware" not in result.skipped_unmapped


def test_share_operator_reads_the_event_relations_and_tolerates_an_instance_without_them(
        threatq_conn, threatq_sim, misp_conn, caplog, capsys):
    caplog.set_level(logging.WARNING)
    # The simulator serves no /api/events/{id}/malware|attack_pattern: the share goes on without galaxies.
    plain = MispShareEventOperator(task_id="share", event_ids=[1, 2]).execute({})
    assert plain["events"] == 2 and plain["rejected"] == 0
    logged = capsys.readouterr().out + caplog.text  # Airflow's task logger writes to stdout
    warnings = [line for line in logged.splitlines() if "does not serve" in line]
    assert len(warnings) == 2  # once per relation per task, not once per event
    misp_conn.reset()

    # A ThreatQ that serves them (answers as ThreatQ's related-object lists, everything else is real HTTP).
    with requests_mock.Mocker(real_http=True) as mock:
        mock.get(re.compile(r"/api/events/1/malware"), json={"total": 1, "data": [
            {"id": 11, "value": "Emotet", "object_code": "malware", "pivot": {"id": 1}}]})
        mock.get(re.compile(r"/api/events/1/attack_pattern"), json={"total": 1, "data": [
            {"id": 12, "value": "T1059 - Command and Scripting Interpreter", "object_code": "attack_pattern"}]})
        xcom = MispShareEventOperator(task_id="share", event_ids=[1]).execute({})

    assert xcom["events"] == 1
    assert EMOTET | {T1059} <= stored_tags(misp_conn)
