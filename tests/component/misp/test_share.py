"""Sharing ThreatQ events with the real PyMISP client into the MISP double (issue 6, item 7)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.component.misp.conftest import THREATQ_HOST
from threatq_provider.misp.errors import MispServerError
from threatq_provider.misp.exporter import MispExporter, ShareResult
from threatq_provider.misp.mapping import event_to_misp, event_uuid
from threatq_provider.misp.options import ShareOptions

pytestmark = pytest.mark.component


def share(client: Any, case: dict[str, Any], options: ShareOptions | None = None, **overrides: Any) -> ShareResult:
    options = options or ShareOptions(**overrides)
    mapping = event_to_misp(case["event"], case["indicators"], threatq_host=THREATQ_HOST, options=options,
                            attachments=case["attachments"])
    return MispExporter(client, options=options).share(mapping)


def attribute_view(event: dict[str, Any]) -> list[tuple[str, str, str, str, bool]]:
    return sorted((a["uuid"], a["type"], a["category"], a["value"], a["to_ids"]) for a in event["Attribute"])


def test_sharing_twice_keeps_one_event_with_the_same_attributes(double, pymisp_client, case):
    first = share(pymisp_client, case)
    after_first = double.events()
    double.clear_requests()
    second = share(pymisp_client, case)
    after_second = double.events()

    assert len(after_second) == 1
    assert attribute_view(after_second[0]) == attribute_view(after_first[0])
    assert first.created and first.added == len(after_first[0]["Attribute"]) == 11
    assert not second.created and second.added == 0 and second.updated == 0
    assert second.unchanged == first.added
    assert after_second[0]["uuid"] == event_uuid(THREATQ_HOST, case["event"]["id"])
    # nothing changed, so the second share sent no write at all
    assert [r.method for r in double.requests()] == ["HEAD", "GET"]


def test_a_change_in_threatq_updates_the_event_instead_of_creating_one(double, pymisp_client, case):
    share(pymisp_client, case)
    changed = copy.deepcopy(case)
    changed["event"]["title"] = "Spearphish campaign against finance (update)"
    changed["indicators"].append({"id": 110, "value": "new.evil.example.com", "type": {"name": "FQDN"}})
    changed["indicators"][0]["status"] = {"name": "Expired"}  # IDS flag goes off

    result = share(pymisp_client, changed)

    events = double.events()
    assert len(events) == 1
    assert events[0]["info"] == "Spearphish campaign against finance (update)"
    values = {a["value"]: a for a in events[0]["Attribute"]}
    assert "new.evil.example.com" in values
    assert values["203.0.113.5"]["to_ids"] is False
    assert (result.created, result.added, result.updated) == (False, 1, 1)
    assert events[0]["published"] is True


def test_an_attribute_misp_rejects_is_named_while_the_rest_is_shared(double, pymisp_client, case, caplog):
    case["indicators"].append({"id": 111, "value": "203.0.113.0/33", "type": {"name": "CIDR Block"}})

    result = share(pymisp_client, case)

    assert len(result.rejected) == 1
    label, reason = result.rejected[0]
    assert "203.0.113.0/33" in label and "ip-src" in label  # the default IP type (MISP Operation: Source IP)
    assert "CIDR" in reason
    message = str(result.errors()[0])
    assert "203.0.113.0/33" in message and result.event_uuid in message
    assert any("203.0.113.0/33" in r.getMessage() for r in caplog.records)
    stored = double.events()[0]
    assert len(stored["Attribute"]) == 11  # every other attribute arrived
    assert "203.0.113.0/33" not in {a["value"] for a in stored["Attribute"]}
    assert stored["published"] is True


def big_case(n: int) -> dict[str, Any]:
    indicators = [{"id": i, "value": f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}", "type": {"name": "IP Address"}}
                  for i in range(1, n + 1)]
    return {"event": {"id": 9000, "title": "Big watchlist", "type": {"name": "Watchlist"},
                      "happened_at": "2024-05-01 00:00:00"},
            "indicators": indicators, "attachments": []}


def test_a_5000_attribute_event_is_shared_in_chunks(double, pymisp_client):
    result = share(pymisp_client, big_case(5000), chunk_size=1000)

    adds = [r for r in double.requests() if r.method == "POST" and r.path.startswith("attributes/add/")]
    assert [r.attributes for r in adds] == [1000] * 5
    create = next(r for r in double.requests() if r.path.startswith("events/add"))
    assert create.attributes == 0  # the event is created from its metadata, attributes follow in chunks
    assert result.added == 5000
    assert len(double.events()[0]["Attribute"]) == 5000

    double.clear_requests()
    again = share(pymisp_client, big_case(5000), chunk_size=1000)
    assert again.unchanged == 5000 and again.added == 0
    assert len(double.events()) == 1


def test_a_server_error_mid_share_is_raised_and_a_retry_completes_without_duplicates(double, pymisp_client):
    double.add_fault({"method": "POST", "path_regex": "^/attributes/add/", "status": 500, "nth": 2, "times": 1})

    with pytest.raises(MispServerError, match="server error"):
        share(pymisp_client, big_case(30), chunk_size=10)
    assert len(double.events()[0]["Attribute"]) == 10

    retry = share(pymisp_client, big_case(30), chunk_size=10)

    assert (retry.unchanged, retry.added) == (10, 20)
    assert len(double.events()) == 1 and len(double.events()[0]["Attribute"]) == 30
    assert double.events()[0]["published"] is True


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"method": "POST", "path_regex": "^/events/add", "times": None, "action": "malformed"}, "not JSON"),
        ({"path_regex": "^/events/view/", "times": None, "status": 502, "body": "<html>bad gateway</html>"},
         "server error"),
        ({"path_regex": "^/events/add", "times": None, "action": "close"}, "unreachable"),
        ({"path_regex": "^/events/add", "times": None, "action": "reset"}, "unreachable"),
    ],
)
def test_transport_faults_become_misp_server_errors(double, pymisp_client, case, fault, expected):
    double.add_fault(fault)
    with pytest.raises(MispServerError, match=expected):
        share(pymisp_client, case)


def test_a_slow_server_surfaces_as_a_timeout_error(double, case):
    from pymisp import PyMISP

    from tests.fixtures.misp import MISP_CANARY_KEY

    client = PyMISP(double.url, MISP_CANARY_KEY, ssl=False, timeout=(2, 0.3))
    double.add_fault({"path_regex": "^/events/view/", "delay_s": 1.0, "times": 1})
    with pytest.raises(MispServerError, match="timeout"):
        share(client, case)


def test_an_indicator_unlinked_in_threatq_is_removed_but_attributes_added_in_misp_stay(double, pymisp_client, case):
    first = share(pymisp_client, case)
    pymisp_client.add_attribute(first.event_uuid, {"type": "comment", "value": "analyst note"})
    dropped = case["indicators"].pop(0)

    result = share(pymisp_client, case)

    values = {a["value"] for a in double.events()[0]["Attribute"]}
    assert dropped["value"] not in values and "analyst note" in values
    assert (result.removed, result.added, result.updated) == (1, 0, 0)
    assert double.events()[0]["published"] is True
