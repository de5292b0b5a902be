"""The ThreatQ description as a MISP event report: real PyMISP against the MISP double."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest
from pymisp import MISPEvent, MISPEventReport

from tests.component.misp.conftest import THREATQ_HOST
from tests.component.misp.test_share import share
from tests.fixtures.misp import misp_connection_json
from threatq_provider.misp.mapping import event_uuid, report_uuid
from threatq_provider.operators.share import MispSendInvestigationOperator, MispShareEventOperator
from threatq_simulators.faults import FaultRule

pytestmark = pytest.mark.component


def reports(double: Any) -> list[dict[str, Any]]:
    (event,) = double.events()
    return event["EventReport"]


# ------------------------------------------------------------------ the double answers as MISP does


@pytest.fixture
def stored_event(pymisp_client) -> MISPEvent:
    event = MISPEvent()
    event.info = "report target"
    event.add_attribute("ip-dst", "203.0.113.9")
    return pymisp_client.add_event(event, pythonify=True)


def test_report_endpoints_round_trip_through_pymisp(double, pymisp_client, stored_event):
    report = MISPEventReport()
    report.from_dict(name="Notes", content="# Title\n\nbody", distribution=5)

    added = pymisp_client.add_event_report(stored_event, report, pythonify=True)
    assert isinstance(added, MISPEventReport)
    assert (added.name, added.content, added.uuid, added.event_id) == ("Notes", "# Title\n\nbody", report.uuid,
                                                                        int(stored_event.id))
    by_uuid = pymisp_client.get_event_report(report.uuid, pythonify=True)
    by_id = pymisp_client.get_event_report(added.id, pythonify=True)
    assert by_uuid.uuid == by_id.uuid == report.uuid
    listed = pymisp_client.get_event_reports(stored_event.id, pythonify=True)
    assert [r.uuid for r in listed] == [report.uuid]

    report.content = "changed"
    updated = pymisp_client.update_event_report(report, report.uuid, pythonify=True)
    assert updated.content == "changed" and updated.id == added.id
    assert pymisp_client.get_event(stored_event.uuid, pythonify=True).event_reports[0].content == "changed"


def test_add_and_edit_unpublish_the_event(double, pymisp_client, stored_event):
    pymisp_client.publish(stored_event)
    report = MISPEventReport()
    report.from_dict(name="Notes", content="x")
    pymisp_client.add_event_report(stored_event.uuid, report)
    assert double.event(stored_event.uuid)["published"] is False
    pymisp_client.publish(stored_event)
    report.content = "y"
    pymisp_client.update_event_report(report, report.uuid)
    assert double.event(stored_event.uuid)["published"] is False


def test_a_reused_report_uuid_is_refused_even_after_a_soft_delete(double, pymisp_client, stored_event):
    report = MISPEventReport()
    report.from_dict(name="Notes", content="x")
    pymisp_client.add_event_report(stored_event, report)
    soft = pymisp_client.delete_event_report(report.uuid)
    assert soft["EventReport"]["deleted"] is True
    assert reports(double) == []  # the event view lists live reports only
    assert pymisp_client.get_event_reports(stored_event.id) == []

    again = pymisp_client.add_event_report(stored_event, report)
    status, body = again["errors"]
    assert status == 403 and body["errors"] == "The UUID provided is not unique"
    assert body["name"] == "Could not add EventReport" and body["url"] == "/eventReports/add"

    hard = pymisp_client.delete_event_report(report.uuid, hard=True)
    assert hard["saved"] is True
    assert "EventReport" in pymisp_client.add_event_report(stored_event, report)  # the uuid is free again


def test_unknown_event_or_report_is_a_404(double, pymisp_client):
    report = MISPEventReport()
    report.from_dict(name="Notes", content="x")
    assert pymisp_client.add_event_report("0b5e5e5e-0000-4000-8000-000000000000", report)["errors"][0] == 404
    assert pymisp_client.get_event_report("0b5e5e5e-0000-4000-8000-000000000001")["errors"][0] == 404


def test_a_sharing_group_report_needs_a_group_the_user_may_use(double, pymisp_client, stored_event):
    report = MISPEventReport()
    report.from_dict(name="Notes", content="x", distribution=4, sharing_group_id=99)
    status, body = pymisp_client.add_event_report(stored_event, report)["errors"]
    assert status == 403 and "Sharing Group" in body["errors"]


# ------------------------------------------------------------------ the exporter keeps one report per event


def test_sharing_creates_one_report_and_an_unchanged_reshare_sends_nothing(double, pymisp_client, case):
    case["event"]["description"] = "<p>Seen by <b>APT28</b></p><script>alert(1)</script><p>&lt;img onerror=x&gt;</p>"
    first = share(pymisp_client, case)
    (report,) = reports(double)
    assert first.reports_added == 1
    assert report["name"] == "ThreatQ description" and report["distribution"] == "5"
    assert report["content"] == "Seen by **APT28**\n\n&lt;img onerror=x&gt;"
    assert report["uuid"] == report_uuid(event_uuid(THREATQ_HOST, case["event"]["id"]))
    assert double.events()[0]["published"] is True

    double.clear_requests()
    second = share(pymisp_client, case)
    assert (second.reports_added, second.reports_updated, second.changed) == (0, 0, False)
    assert [r.method for r in double.requests()] == ["HEAD", "GET"]


def test_a_changed_description_edits_the_same_report_and_republishes(double, pymisp_client, case):
    share(pymisp_client, case)
    (before,) = reports(double)
    changed = copy.deepcopy(case)
    changed["event"]["description"] = "<p>now with <i>more</i> detail</p>"
    double.clear_requests()

    result = share(pymisp_client, changed)

    (after,) = reports(double)
    assert (after["id"], after["uuid"]) == (before["id"], before["uuid"])
    assert after["content"] == "now with *more* detail"
    assert result.reports_updated == 1 and result.added == result.updated == 0
    paths = [r.path for r in double.requests() if r.method == "POST"]
    assert paths == [f"eventReports/edit/{before['uuid']}", f"events/publish/{result.event_uuid}"]
    assert double.events()[0]["published"] is True


def test_an_emptied_description_or_the_option_off_removes_our_report_and_it_can_come_back(double, pymisp_client,
                                                                                         case):
    share(pymisp_client, case)
    emptied = copy.deepcopy(case)
    emptied["event"]["description"] = ""
    assert share(pymisp_client, emptied).reports_removed == 1
    assert reports(double) == []

    assert share(pymisp_client, case).reports_added == 1  # hard delete freed the uuid
    result = share(pymisp_client, case, send_description=False)
    assert result.reports_removed == 1 and reports(double) == []
    assert share(pymisp_client, case, send_description=False).changed is False


def test_a_report_people_wrote_in_misp_is_kept(double, pymisp_client, case):
    share(pymisp_client, case)
    theirs = MISPEventReport()
    theirs.from_dict(name="Analyst notes", content="keep me")
    pymisp_client.add_event_report(event_uuid(THREATQ_HOST, case["event"]["id"]), theirs)
    emptied = copy.deepcopy(case)
    emptied["event"]["description"] = None

    share(pymisp_client, emptied)

    assert [r["name"] for r in reports(double)] == ["Analyst notes"]


# ------------------------------------------------------------------ through the operators


def test_share_event_operator_sends_each_description_and_honours_the_option(threatq_conn, threatq_sim, misp_conn):
    corpus = threatq_sim.corpus
    xcom = MispShareEventOperator(task_id="share", event_ids=[1, 2]).execute({})
    assert xcom["reports_added"] == 2
    by_id = {t["name"]: e for e in misp_conn.events() for t in e["Tag"] if t["name"].startswith("threatq:event-id=")}
    for number in (1, 2):
        (report,) = by_id[f'threatq:event-id="{number}"']["EventReport"]
        source = corpus.event(number)["sources"][0]["name"]
        assert report["content"].endswith(f"Observed by {source}.".replace("_", "\\_"))

    off = MispShareEventOperator(task_id="share", event_ids=[1, 2], send_description="false").execute({})
    assert off["reports_removed"] == 2
    assert all(e["EventReport"] == [] for e in misp_conn.events())


def test_send_investigation_report_has_a_section_per_event(threatq_conn, threatq_sim, misp_conn):
    investigation = threatq_sim.corpus.investigations[0]
    xcom = MispSendInvestigationOperator(task_id="send", investigation=investigation["name"]).execute({})
    (event,) = misp_conn.events()
    (report,) = event["EventReport"]
    assert xcom["reports_added"] == 1
    headings = [line for line in report["content"].split("\n") if line.startswith("## ")]
    assert len(headings) == len(investigation["event_ids"])


def test_a_misp_without_event_reports_gets_the_events_published_with_one_warning(threatq_conn, misp_double_factory,
                                                                                monkeypatch, caplog):
    # A MISP older than 2.4.137 (or a proxy blocking the route) answers 404 to every eventReports call.
    not_found = json.dumps({"name": "Not Found", "message": "Not Found", "url": "/eventReports/add"})
    double = misp_double_factory(faults=[FaultRule(path_regex="^/eventReports/", times=None, status=404,
                                                   body=not_found)])
    monkeypatch.setenv("AIRFLOW_CONN_MISP_DEFAULT", misp_connection_json(double.url))
    caplog.set_level(logging.WARNING)

    xcom = MispShareEventOperator(task_id="share", event_ids=[1, 2, 3]).execute({})

    assert (xcom["events"], xcom["created"], xcom["published"], xcom["rejected"]) == (3, 3, 3, 0)
    assert (xcom["reports_unavailable"], xcom["reports_added"]) == (3, 0)
    events = double.events()
    assert len(events) == 3 and all(e["published"] and e["EventReport"] == [] for e in events)
    assert sum(len(e["Attribute"]) for e in events) == xcom["added"] > 0
    asked = [r for r in double.requests() if r.path.startswith("eventReports/")]
    assert len(asked) == 1  # asked once, then left out for the rest of the task
    warnings = [r.getMessage() for r in caplog.records if "does not serve event reports" in r.getMessage()]
    assert len(warnings) == 1 and "404" in warnings[0]

    double.faults.clear()  # the MISP is upgraded: the next run adds the descriptions and republishes
    again = MispShareEventOperator(task_id="share", event_ids=[1, 2, 3]).execute({})
    assert (again["reports_added"], again["reports_unavailable"], again["published"]) == (3, 0, 3)
    assert all(len(e["EventReport"]) == 1 and e["published"] for e in double.events())
