"""Malware and ATT&CK attack patterns as MISP galaxy clusters (real PyMISP → MISP double, ThreatQ simulator)."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

import pytest

from tests.component.misp.test_share import share
from tests.fixtures.threatq import threatq_conn_json
from threatq_provider.operators.share import MispShareEventOperator
from threatq_simulators.faults import FaultPlan, FaultRule

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
    # The counts say which galaxies the event carries (XCom, demo summary).
    assert result.galaxy_clusters["mitre-malware"] >= 1 and result.galaxy_clusters["malpedia"] >= 1
    assert result.galaxy_clusters["mitre-attack-pattern"] >= 1 and result.galaxy_clusters["threat-actor"] == 1
    assert result.summary()["galaxy_clusters"] == result.galaxy_clusters


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


def attack_pattern_tag(threatq_name: str) -> str:
    """The ATT&CK cluster a ThreatQ name "T1059 - Command and Scripting Interpreter" stands for."""
    technique, name = threatq_name.split(" - ", 1)
    return f'misp-galaxy:mitre-attack-pattern="{name} - {technique}"'


def test_share_operator_reads_malware_and_attack_patterns_from_threatq(threatq_conn, threatq_sim, misp_conn):
    # The session simulator serves /api/events/{id}/malware and /attack_pattern from its corpus.
    corpus = threatq_sim.corpus
    event = next(e for e in corpus.events if "Emotet" in [m["value"] for m in e["malware"]]
                 and any(re.match(r"T\d{4}(\.\d{3})? - ", p["value"]) for p in e["attack_pattern"]))
    threatq_sim.reset_stats()

    xcom = MispShareEventOperator(task_id="share", event_ids=[event["id"]]).execute({})

    assert xcom["events"] == 1 and xcom["rejected"] == 0
    assert xcom["galaxy_clusters"]["mitre-malware"] >= 1
    assert xcom["galaxy_clusters"].get("mitre-attack-pattern", 0) >= 1
    techniques = {attack_pattern_tag(p["value"]) for p in event["attack_pattern"]
                  if re.match(r"T\d{4}(\.\d{3})? - ", p["value"])}
    assert EMOTET | techniques <= stored_tags(misp_conn)
    (stored,) = misp_conn.events()
    clusters = {c["value"] for g in stored["Galaxy"] for c in g["GalaxyCluster"]}
    assert {"Emotet - S0367", "Emotet"} <= clusters
    routes = threatq_sim.stats["by_route"]
    assert routes["GET /api/events/{id}/malware"] == routes["GET /api/events/{id}/attack_pattern"] == 1


def test_share_operator_tolerates_an_instance_without_the_relations(threatq_sim_factory, misp_conn, monkeypatch,
                                                                     caplog, capsys):
    caplog.set_level(logging.WARNING)
    # An older ThreatQ: no attack_pattern relation (404), malware served; the share goes on.
    sim = threatq_sim_factory(indicators=200, events=12, faults=FaultPlan([FaultRule(
        path_regex=r"^/api/events/\d+/attack_pattern", times=None, status=404, body={"errors": ["Not found."]})]))
    monkeypatch.setenv("AIRFLOW_CONN_THREATQ_DEFAULT", threatq_conn_json(sim))
    ids = [e["id"] for e in sim.corpus.events if e["malware"] and e["attack_pattern"]][:3]
    assert len(ids) == 3

    xcom = MispShareEventOperator(task_id="share", event_ids=ids).execute({})

    assert xcom["events"] == 3 and xcom["rejected"] == 0
    logged = capsys.readouterr().out + caplog.text  # Airflow's task logger writes to stdout
    warnings = [line for line in logged.splitlines() if "does not serve" in line]
    assert len(warnings) == 1 and "attack_pattern" in warnings[0]  # once per relation per task, not per event
    assert sim.stats["by_status"]["404"] == 1  # asked once, then left out for the rest of the task
    tags = {t["name"] for e in misp_conn.events() for t in e["Tag"]}
    assert any(t.startswith(("misp-galaxy:mitre-malware=", "misp-galaxy:malpedia=")) for t in tags)
    assert not any(t.startswith("misp-galaxy:mitre-attack-pattern=") for t in tags)
