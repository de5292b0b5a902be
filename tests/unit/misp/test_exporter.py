"""MispExporter decisions with a fake PyMISP (the real client is exercised in tests/component/misp)."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from pymisp import MISPEvent

from threatq_provider.misp.exporter import MispExporter, attribute_label
from threatq_provider.misp.mapping import MappingResult
from threatq_provider.misp.options import ShareOptions


class FakeMisp:
    """Records calls; answers like PyMISP would for a MISP that holds ``stored``."""

    key = "fake-key"

    def __init__(self, stored: dict[str, Any] | None = None, add_answer: dict[str, Any] | None = None):
        self.stored = stored
        self.add_answer = add_answer
        self.calls: list[tuple[str, Any]] = []

    def event_exists(self, uuid):
        return self.stored is not None

    def get_event(self, uuid):
        self.calls.append(("get_event", uuid))
        if self.stored is None:
            return {"errors": (404, {"name": "Invalid event.", "message": "Invalid event.", "url": "/"})}
        return {"Event": self.stored}

    def add_event(self, event, metadata=False):
        self.calls.append(("add_event", len(event.attributes)))
        if self.add_answer is not None:
            return self.add_answer
        return {"Event": {"id": "7", "uuid": event.uuid}}

    def add_attribute(self, uuid, attributes):
        self.calls.append(("add_attribute", len(attributes)))
        return {"Attribute": [a.to_dict() for a in attributes]}

    def update_event(self, event, metadata=False):
        self.calls.append(("update_event", len(event.attributes)))
        return {"Event": {"id": "7"}}

    def publish(self, uuid, alert=False):
        self.calls.append(("publish", alert))
        return {"saved": True}

    def untag(self, uuid, tag):
        self.calls.append(("untag", tag))
        return {"saved": True}

    report_answer: dict[str, Any] | None = None

    def add_event_report(self, event_uuid, report):
        self.calls.append(("add_event_report", report.uuid))
        return self.report_answer or {"EventReport": {"id": "1", **report.to_dict()}}

    def update_event_report(self, report, report_id):
        self.calls.append(("update_event_report", report_id))
        return {"EventReport": {"id": "1", **report.to_dict()}}

    def delete_event_report(self, report_id, hard=False):
        self.calls.append(("delete_event_report", report_id, hard))
        return {"saved": True, "success": True}


REPORT_UUID = "5c8e4a3e-1f2b-5d6c-9e7f-0a1b2c3d4e5f"  # a uuid5, as the mapping derives


def mapping(n: int = 3, data: bytes | None = None, report: str | None = None) -> MappingResult:
    event = MISPEvent()
    event.uuid = "6e574903-a9c4-5785-b552-4c393dd0d129"
    event.info, event.distribution, event.threat_level_id, event.analysis = "x", 0, 2, 2
    event.set_date("2024-05-01")
    event.add_tag("tlp:green")
    for i in range(n):
        event.add_attribute("ip-dst", f"10.0.0.{i}", uuid=f"00000000-0000-4000-8000-{i:012d}")
    if data is not None:
        event.add_attribute("attachment", "big.bin", data=BytesIO(data), uuid="00000000-0000-4000-8000-999999999999")
    if report is not None:
        event.add_event_report("ThreatQ description", report, uuid=REPORT_UUID, distribution=5)
    return MappingResult(misp_event=event, managed_tag_prefixes=("tlp:",))


def stored_copy(result: MappingResult, **changes: Any) -> dict[str, Any]:
    event = result.misp_event
    return {"id": "7", "uuid": event.uuid, "info": event.info, "date": "2024-05-01", "distribution": "0",
            "threat_level_id": "2", "analysis": "2", "sharing_group_id": "0", "published": True,
            "Tag": [{"name": "tlp:green"}],
            "Attribute": [{**a.to_dict(), "to_ids": a.to_ids, "comment": ""} for a in event.attributes], **changes}


def test_a_new_event_is_created_from_metadata_then_attributes_in_chunks_then_published():
    fake = FakeMisp()
    result = MispExporter(fake, options=ShareOptions(chunk_size=2)).share(mapping(5))
    assert [c[0] for c in fake.calls] == ["add_event", "add_attribute", "add_attribute",
                                          "add_attribute", "publish"]
    assert [c[1] for c in fake.calls if c[0] == "add_attribute"] == [2, 2, 1]
    assert (result.created, result.added, result.published) == (True, 5, True)


def test_an_unchanged_published_event_gets_no_write():
    m = mapping(3)
    fake = FakeMisp(stored=stored_copy(m))
    result = MispExporter(fake, options=ShareOptions()).share(m)
    assert [c[0] for c in fake.calls] == ["get_event"]
    assert (result.unchanged, result.published, result.changed) == (3, True, False)


def test_an_unchanged_but_unpublished_event_is_published_when_the_option_is_on():
    m = mapping(1)
    fake = FakeMisp(stored=stored_copy(m, published=False))
    MispExporter(fake, options=ShareOptions()).share(m)
    assert [c[0] for c in fake.calls] == ["get_event", "publish"]


def test_publish_off_never_publishes():
    fake = FakeMisp()
    result = MispExporter(fake, options=ShareOptions(publish=False)).share(mapping(1))
    assert "publish" not in [c[0] for c in fake.calls] and result.published is False


def test_a_stale_managed_tag_is_removed_and_others_are_kept():
    m = mapping(1)
    fake = FakeMisp(stored=stored_copy(m, Tag=[{"name": "tlp:green"}, {"name": "tlp:red"}, {"name": "analyst-note"}]))
    result = MispExporter(fake, options=ShareOptions()).share(m)
    assert ("untag", "tlp:red") in fake.calls and ("untag", "analyst-note") not in fake.calls
    assert result.tags_removed == 1


def test_a_concurrent_create_turns_into_an_update():
    m = mapping(1)
    fake = FakeMisp(add_answer={"errors": (404, {"name": "Event already exists, if you would like to edit it, use "
                                                 "the url in the location header.", "message": "Event already exists",
                                                 "url": "/events/add"})})
    fake.event_exists = lambda uuid: any(c[0] == "add_event" for c in fake.calls)
    fake.stored = stored_copy(m)
    result = MispExporter(fake, options=ShareOptions()).share(m)
    assert result.created is False and result.unchanged == 1


def test_attachment_bytes_bound_the_chunks():
    fake = FakeMisp()
    MispExporter(fake, options=ShareOptions(chunk_size=1000), max_request_bytes=1000).share(mapping(3, b"x" * 900))
    assert [c[1] for c in fake.calls if c[0] == "add_attribute"] == [3, 1]


def test_attribute_label_names_type_value_and_uuid():
    label = attribute_label({"type": "ip-dst", "value": "1.2.3.4/33", "uuid": "u-1"})
    assert label == "ip-dst '1.2.3.4/33' (uuid u-1)"


def stored_report(content: str = "text", **changes: Any) -> dict[str, Any]:
    return {"id": "1", "uuid": REPORT_UUID, "event_id": "7", "name": "ThreatQ description", "content": content,
            "distribution": "5", "sharing_group_id": "0", "timestamp": "1700000000", "deleted": False, **changes}


def test_a_new_event_gets_its_report_after_the_attributes_and_before_the_publish():
    fake = FakeMisp()
    result = MispExporter(fake, options=ShareOptions()).share(mapping(2, report="text"))
    assert [c[0] for c in fake.calls] == ["add_event", "add_attribute", "add_event_report", "publish"]
    assert ("add_event_report", REPORT_UUID) in fake.calls
    assert (result.reports_added, result.summary()["reports_added"]) == (1, 1)


def test_an_unchanged_report_is_not_sent():
    m = mapping(1, report="text")
    fake = FakeMisp(stored=stored_copy(m, EventReport=[stored_report("text")]))
    result = MispExporter(fake, options=ShareOptions()).share(m)
    assert [c[0] for c in fake.calls] == ["get_event"]
    assert result.changed is False


def test_a_changed_description_edits_the_same_report_then_publishes():
    m = mapping(1, report="new text")
    fake = FakeMisp(stored=stored_copy(m, EventReport=[stored_report("old text")]))
    result = MispExporter(fake, options=ShareOptions()).share(m)
    assert [c[0] for c in fake.calls] == ["get_event", "update_event_report", "publish"]
    assert ("update_event_report", REPORT_UUID) in fake.calls
    assert (result.reports_added, result.reports_updated, result.published) == (0, 1, True)


def test_a_deleted_copy_does_not_count_as_present():
    m = mapping(1, report="text")
    fake = FakeMisp(stored=stored_copy(m, EventReport=[stored_report("text", deleted=True)]))
    MispExporter(fake, options=ShareOptions()).share(m)
    assert ("add_event_report", REPORT_UUID) in fake.calls


def test_our_report_is_hard_deleted_when_threatq_no_longer_yields_it_and_peoples_reports_stay():
    m = mapping(1)
    people = stored_report("analyst notes", id="2", uuid="0d3c4b5a-6978-4a1b-8c2d-3e4f5a6b7c8d", name="Notes")
    fake = FakeMisp(stored=stored_copy(m, EventReport=[stored_report(), people]))
    result = MispExporter(fake, options=ShareOptions()).share(m)
    assert [c for c in fake.calls if c[0] == "delete_event_report"] == [("delete_event_report", REPORT_UUID, True)]
    assert result.reports_removed == 1 and result.published


def test_a_refused_report_is_named_while_the_rest_is_shared():
    fake = FakeMisp()
    fake.report_answer = {"errors": (403, {"saved": False, "name": "Could not add EventReport",
                                           "message": "Could not add EventReport", "url": "/eventReports/add",
                                           "errors": "The UUID provided is not unique"})}
    result = MispExporter(fake, options=ShareOptions()).share(mapping(2, report="text"))
    assert result.added == 2 and result.reports_added == 0
    assert result.rejected == [(f"event report 'ThreatQ description' (uuid {REPORT_UUID})",
                                "The UUID provided is not unique")]
    assert str(result.errors()[0]).startswith("MISP rejected event report 'ThreatQ description'")


def tagged_mapping(tags: dict[int, str]) -> MappingResult:
    """Three ip-dst attributes, ``tags`` = {index: managed tag}, managed attribute tags ``tlp:``."""
    m = mapping(3)
    for index, name in tags.items():
        m.misp_event.attributes[index].add_tag(name)
    return MappingResult(misp_event=m.misp_event, managed_tag_prefixes=("tlp:",),
                         managed_attribute_tag_prefixes=("tlp:",))


def with_stored_tags(stored: dict[str, Any], tags: dict[int, list[str]]) -> dict[str, Any]:
    for index, names in tags.items():
        stored["Attribute"][index]["Tag"] = [{"name": n} for n in names]
    return stored


def test_a_new_attribute_tlp_is_attached_to_the_attribute_already_in_misp_then_published():
    m = tagged_mapping({1: "tlp:red"})
    fake = FakeMisp(stored=with_stored_tags(stored_copy(m), {1: []}))
    fake.tag = lambda uuid, name: fake.calls.append(("tag", uuid, name)) or {"saved": True}
    result = MispExporter(fake, options=ShareOptions()).share(m)
    assert [c for c in fake.calls if c[0] in ("tag", "untag")] == [("tag", m.misp_event.attributes[1].uuid, "tlp:red")]
    assert (result.attribute_tags_added, result.unchanged, result.published) == (1, 3, True)
    assert result.summary()["attribute_tags_added"] == 1


def test_a_stale_attribute_tlp_is_removed_and_peoples_attribute_tags_stay():
    m = tagged_mapping({})
    fake = FakeMisp(stored=with_stored_tags(stored_copy(m), {0: ["tlp:red", "analyst:checked"]}))
    fake.untag = lambda uuid, name: fake.calls.append(("untag", uuid, name)) or {"saved": True}
    result = MispExporter(fake, options=ShareOptions()).share(m)
    assert [c for c in fake.calls if c[0] == "untag"] == [("untag", m.misp_event.attributes[0].uuid, "tlp:red")]
    assert result.attribute_tags_removed == 1 and result.changed


def test_matching_attribute_tags_send_nothing_and_new_attributes_carry_theirs_in_the_add():
    m = tagged_mapping({0: "tlp:red", 2: "tlp:amber"})
    fake = FakeMisp(stored=with_stored_tags(stored_copy(m), {0: ["tlp:red"], 2: ["tlp:amber"]}))
    assert MispExporter(fake, options=ShareOptions()).share(m).changed is False
    assert [c[0] for c in fake.calls] == ["get_event"]

    created = FakeMisp()
    MispExporter(created, options=ShareOptions()).share(tagged_mapping({0: "tlp:red"}))
    assert not [c for c in created.calls if c[0] in ("tag", "untag")]
