"""The MISP double behaves as MISP does for the calls PyMISP makes (real PyMISP client, real HTTP)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import requests
from pymisp import MISPAttribute, MISPEvent, PyMISP
from pymisp.exceptions import PyMISPError

from tests.fixtures.misp import MISP_CANARY_KEY

pytestmark = pytest.mark.component


def new_event(info: str = "double test", **attrs: str) -> MISPEvent:
    event = MISPEvent()
    event.uuid = str(uuid.uuid4())
    event.info = info
    event.distribution, event.threat_level_id, event.analysis = 0, 2, 0
    for misp_type, value in attrs.items():
        event.add_attribute(misp_type.replace("_", "-"), value)
    return event


def test_requests_without_the_key_get_misp_403(double):
    answer = requests.get(f"{double.url}/events/view/1", headers={"Authorization": "nope",
                                                                  "Accept": "application/json"}, timeout=5)
    assert answer.status_code == 403 and "Authentication failed" in answer.json()["message"]
    with pytest.raises(PyMISPError, match="Unable to get the user settings"):
        PyMISP(double.url, "not-" + MISP_CANARY_KEY, ssl=False, timeout=5)


def test_a_duplicate_event_uuid_is_refused_with_the_location_of_the_existing_event(double, pymisp_client):
    event = new_event(ip_dst="203.0.113.1")
    created = pymisp_client.add_event(event)
    again = pymisp_client.add_event(event)
    assert again["errors"][0] == 404 and "already exists" in again["errors"][1]["message"]
    assert len(double.events()) == 1 and created["Event"]["uuid"] == event.uuid


def test_a_deleted_uuid_is_blocklisted_until_the_blocklist_entry_goes(double, pymisp_client):
    event = new_event(ip_dst="203.0.113.1")
    pymisp_client.add_event(event)
    pymisp_client.delete_event(event.uuid)
    assert pymisp_client.add_event(event)["errors"][0] == 403
    pymisp_client.delete_event_blocklist(event.uuid)
    assert "Event" in pymisp_client.add_event(event)


def test_an_empty_published_event_is_refused(double, pymisp_client):
    event = new_event()
    event.published = True
    assert pymisp_client.add_event(event)["errors"][0] == 403


def test_invalid_attributes_are_dropped_on_add_and_listed_in_errors(double, pymisp_client):
    event = new_event(ip_dst="203.0.113.1", domain="bad_domain_")
    answer = pymisp_client.add_event(event)
    assert "Event" in answer and "attribute_1" in answer["errors"]["Attribute"]
    assert [a["value"] for a in double.events()[0]["Attribute"]] == ["203.0.113.1"]


def test_a_type_outside_its_category_is_refused(double, pymisp_client):
    event = new_event()
    pymisp_client.add_event(event)
    answer = pymisp_client.add_attribute(event.uuid, {"type": "mutex", "category": "Network activity", "value": "x"})
    assert answer["errors"][0] == 403 and "type" in answer["errors"][1]["errors"]


def test_attribute_uuids_are_unique_across_the_instance(double, pymisp_client):
    first, second = new_event(ip_dst="203.0.113.1"), new_event()
    pymisp_client.add_event(first)
    pymisp_client.add_event(second)
    reused = MISPAttribute()
    reused.from_dict(type="ip-dst", value="203.0.113.9", uuid=first.attributes[0].uuid)
    answer = pymisp_client.add_attribute(second.uuid, reused)
    assert answer["errors"][1]["errors"] == {"uuid": ["The UUID provided is not unique"]}


def test_a_similar_attribute_is_refused_unless_break_on_duplicate_is_off(double, pymisp_client):
    event = new_event(ip_dst="203.0.113.1")
    pymisp_client.add_event(event)
    dup = {"type": "ip-dst", "value": "203.0.113.1", "comment": "again"}
    refused = pymisp_client.add_attribute(event.uuid, dup)
    assert "A similar attribute already exists" in str(refused["errors"])
    pymisp_client.add_attribute(event.uuid, dup, break_on_duplicate=False)
    stored = double.events()[0]["Attribute"]
    assert len(stored) == 1 and stored[0]["comment"] == "again"


def test_an_edit_updates_by_uuid_never_deletes_and_unpublishes(double, pymisp_client):
    event = new_event(ip_dst="203.0.113.1", domain="a.example.com")
    pymisp_client.add_event(event)
    pymisp_client.publish(event.uuid)
    edit = new_event("edited")
    edit.uuid = event.uuid
    edit.add_attribute("ip-dst", "203.0.113.1", uuid=event.attributes[0].uuid, to_ids=False)
    pymisp_client.update_event(edit)
    stored = double.event(event.uuid)
    assert stored["info"] == "edited" and stored["published"] is False
    assert {a["value"]: a["to_ids"] for a in stored["Attribute"]} == {"203.0.113.1": False, "a.example.com": True}


def test_a_stale_timestamp_is_refused(double, pymisp_client):
    event = new_event()
    pymisp_client.add_event(event)
    stale = pymisp_client.get_event(event.uuid, pythonify=True)
    stale.info = "stale"
    stale.timestamp = 1
    stale.edited = False
    answer = pymisp_client.update_event(stale)
    assert answer["errors"][0] == 403 and "not newer" in answer["errors"][1]["message"]


def test_rest_search_filters_and_rate_limit_fault(double, pymisp_client):
    one, two = new_event("alpha one"), new_event("beta two")
    one.add_tag("tlp:green")
    pymisp_client.add_event(one)
    pymisp_client.add_event(two)
    assert [e["Event"]["info"] for e in pymisp_client.search(eventinfo="alpha%")] == ["alpha one"]
    assert [e["Event"]["uuid"] for e in pymisp_client.search(tags=["tlp:green"], metadata=True)] == [one.uuid]
    double.add_fault({"method": "POST", "path_regex": "^/events/restSearch", "status": 429, "times": 1})
    assert pymisp_client.search(eventinfo="alpha%")["errors"][0] == 429
    assert any(r.status == 429 and r.fault for r in double.requests())


def test_galaxy_clusters_can_be_found_and_attached(double, pymisp_client):
    event = new_event()
    stored = pymisp_client.add_event(event, pythonify=True)
    galaxy = next(g for g in pymisp_client.galaxies() if g["Galaxy"]["type"] == "threat-actor")
    found = pymisp_client.search_galaxy_clusters(galaxy["Galaxy"]["id"], searchall="Fancy Bear")
    cluster = next(c for c in found if c["GalaxyCluster"]["value"] == "APT28")
    pymisp_client.attach_galaxy_cluster(stored, cluster["GalaxyCluster"]["id"])
    view = double.event(event.uuid)
    assert 'misp-galaxy:threat-actor="APT28"' in {t["name"] for t in view["Tag"]}
    assert view["Galaxy"][0]["GalaxyCluster"][0]["value"] == "APT28"


def test_the_cli_documents_its_defaults():
    out = subprocess.run([sys.executable, "-m", "threatq_simulators.misp_cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--port" in out and "8481" in out and "--faults" in out


def test_the_session_double_accepts_only_its_key(misp_double):
    assert misp_double.api_key == MISP_CANARY_KEY
