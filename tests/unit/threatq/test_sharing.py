"""ShareReader: what a MISP share reads from ThreatQ, over a recording fake client (the real HTTP
path is tests/component/operators/test_share.py, against the simulator)."""

from __future__ import annotations

import pytest

from threatq_provider.threatq.errors import ThreatQResponseError, ThreatQServerError
from threatq_provider.threatq.listings import DEFAULT_EVENT_WITH
from threatq_provider.threatq.sharing import (
    INDICATOR_WITH,
    INVESTIGATION_WITH,
    RELATED_PAGE,
    ShareReader,
    related_ids,
)


class Client:
    """Answers from dicts; records each call."""

    def __init__(self, *, events=None, related=None, investigation=None, event_indicators=None, indicators=None):
        self.events = events or {}
        self.related = related or {}
        self.inv = investigation
        self.event_indicators = event_indicators or {}
        self.indicators = indicators or {}
        self.calls = []

    def get_event(self, event_id, with_=None):
        self.calls.append(("get_event", event_id, with_))
        return {"data": dict(self.events[event_id])}

    def get_event_related(self, event_id, relation, *, limit):
        self.calls.append(("related", event_id, relation, limit))
        answer = self.related[relation]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def get_investigation(self, name_or_id, with_=None):
        self.calls.append(("get_investigation", name_or_id, with_))
        return self.inv

    def iter_event_indicators(self, event_id, with_=None):
        self.calls.append(("event_indicators", event_id, with_))
        return iter(self.event_indicators.get(event_id, []))

    def get_indicator(self, indicator_id, with_=None):
        self.calls.append(("get_indicator", indicator_id, with_))
        return {"data": self.indicators[indicator_id]}


class Log:
    def __init__(self):
        self.warnings = []

    def warning(self, msg, *args):
        self.warnings.append(msg % args)


def test_an_event_comes_with_its_relations_and_galaxy_relations():
    client = Client(events={1: {"id": 1, "title": "t"}},
                    related={"malware": ([{"value": "Emotet"}], 1), "attack_pattern": ([], 0)})
    event = ShareReader(client).event(1)
    assert event == {"id": 1, "title": "t", "malware": [{"value": "Emotet"}], "attack_pattern": []}
    assert client.calls[0] == ("get_event", 1, DEFAULT_EVENT_WITH)
    assert client.calls[1:] == [("related", 1, "malware", RELATED_PAGE),
                                ("related", 1, "attack_pattern", RELATED_PAGE)]


def test_a_relation_the_instance_does_not_serve_is_asked_once_logged_and_left_out():
    broken = ThreatQServerError(500, "GET", "/api/events/1/attack_pattern", "")
    client = Client(events={1: {"id": 1}, 2: {"id": 2}}, related={"malware": ([], 0), "attack_pattern": broken})
    log = Log()
    reader = ShareReader(client, log=log)
    assert "attack_pattern" not in reader.event(1) and "attack_pattern" not in reader.event(2)
    assert [c for c in client.calls if c[:1] == ("related",) and c[2] == "attack_pattern"] == [
        ("related", 1, "attack_pattern", RELATED_PAGE)]
    assert reader.relations_unavailable == {"attack_pattern"}
    assert len(log.warnings) == 1 and "ThreatQServerError" in log.warnings[0]


def test_more_related_objects_than_one_page_are_matched_in_part_and_said():
    client = Client(events={1: {"id": 1}}, related={"malware": ([{"value": "a"}], 3), "attack_pattern": ([], None)})
    log = Log()
    assert ShareReader(client, log=log).event(1)["malware"] == [{"value": "a"}]
    assert log.warnings == ["ThreatQ event 1 has 3 malware objects; the first 1 are matched"]


def test_an_investigation_brings_its_events_indicators_and_attachments_each_once():
    client = Client(
        investigation={"id": 7, "events": [{"id": 1}], "indicator_ids": "10, 11", "attachment_ids": [5, 6]},
        events={1: {"id": 1, "attachments": [{"id": 5, "name": "a.txt"}], "malware": [], "attack_pattern": []}},
        event_indicators={1: [{"id": 10, "value": "x"}]},
        indicators={11: {"id": 11, "value": "y"}},
    )
    contents = ShareReader(client).investigation("Case 7")
    assert client.calls[0] == ("get_investigation", "Case 7", INVESTIGATION_WITH)
    assert [e["id"] for e in contents.events] == [1]
    assert [i["id"] for i in contents.indicators] == [10, 11]  # 10 through the event, 11 on its own
    assert ("event_indicators", 1, INDICATOR_WITH) in client.calls
    assert ("get_indicator", 11, INDICATOR_WITH) in client.calls
    assert ("get_indicator", 10, INDICATOR_WITH) not in client.calls
    assert contents.attachments == [{"id": 5, "name": "a.txt"}, {"id": 6}]


@pytest.mark.parametrize(("investigation", "ids"), [
    ({"events": [{"id": 3}, {"id": "4"}, {"id": 3}, {"name": "no id"}]}, [3, 4]),
    ({"event_ids": [2, "1", 2, " "]}, [2, 1]),
    ({"event_ids": "[4, 5]"}, [4, 5]),
    ({"event_ids": "4,5"}, [4, 5]),
    ({"event_ids": None}, []),
    ({}, []),
])
def test_related_ids_read_embedded_objects_or_id_lists(investigation, ids):
    assert related_ids(investigation, "events") == ids


@pytest.mark.parametrize("bad", [["x"], [0], "1,-2"])
def test_a_related_id_that_is_not_an_id_is_a_response_error_naming_it(bad):
    with pytest.raises(ThreatQResponseError, match="investigation events: .* is not a ThreatQ id"):
        related_ids({"event_ids": bad}, "events")
