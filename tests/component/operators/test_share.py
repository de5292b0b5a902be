"""The MISP operators over real HTTP: ThreatQ simulator → operators → real PyMISP → MISP double."""

from __future__ import annotations

import json
import logging

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from tests.fixtures.misp import MISP_CANARY_KEY
from threatq_provider.misp.errors import MispConfigError
from threatq_provider.misp.options import OPTION_FIELDS
from threatq_provider.operators.share import (
    MispSendInvestigationOperator,
    MispShareEventOperator,
    ThreatQSelectEventsOperator,
    event_matches,
    parse_ids,
)

pytestmark = pytest.mark.component


def test_every_argument_is_templated():
    assert set(MispShareEventOperator.template_fields) == {"event_ids", "threatq_conn_id", "misp_conn_id",
                                                           *OPTION_FIELDS}
    assert "investigation" in MispSendInvestigationOperator.template_fields
    assert {"event_ids", "event_types", "tags", "sources", "window_start", "window_end"} <= set(
        ThreatQSelectEventsOperator.template_fields)


@pytest.mark.parametrize(("raw", "ids"), [(5, [5]), ("[3, 4, 3]", [3, 4]), ("1,2", [1, 2]), ([], []), ("", []),
                                         (["12", " 15", "", "  "], [12, 15])])  # the form's lines
def test_event_ids_accept_rendered_templates(raw, ids):
    assert parse_ids(raw) == ids


def test_filters_match_type_tags_and_sources_case_insensitively():
    event = {"type": {"name": "Malware"}, "tags": ["APT", {"name": "finance"}], "sources": [{"name": "OSINT"}]}
    assert event_matches(event, event_types=["malware"], tags=["Finance"], sources=["osint"])
    assert not event_matches(event, event_types=["Spearphish"], tags=[], sources=[])
    assert not event_matches(event, event_types=[], tags=["retail"], sources=[])


def test_share_event_operator_shares_and_returns_counts_without_secrets(threatq_conn, threatq_sim, misp_conn,
                                                                       caplog):
    caplog.set_level(logging.DEBUG)
    corpus = threatq_sim.corpus
    op = MispShareEventOperator(task_id="share", event_ids="[1, 2]", distribution="This community only")

    xcom = op.execute({})

    assert xcom["events"] == 2 and xcom["created"] == 2 and xcom["rejected"] == 0
    assert len(misp_conn.events()) == 2
    assert {e["info"] for e in misp_conn.events()} == {corpus.event(1)["title"], corpus.event(2)["title"]}
    assert {e["distribution"] for e in misp_conn.events()} == {"1"}
    assert MISP_CANARY_KEY not in json.dumps(xcom) and MISP_CANARY_KEY not in caplog.text
    attachments = [a for e in misp_conn.events() for a in e["Attribute"] if a["type"] == "attachment"]
    assert len(attachments) == sum(len(corpus.event(i)["attachments"]) for i in (1, 2))

    again = MispShareEventOperator(task_id="share", event_ids=[1, 2], distribution="this_community_only").execute({})
    assert (again["created"], again["added"], again["unchanged"]) == (0, 0, xcom["added"])


def test_a_bad_option_fails_before_any_call(threatq_conn, misp_conn):
    op = MispShareEventOperator(task_id="share", event_ids=[1], default_threat_level="apocalyptic")
    with pytest.raises(AirflowFailException, match="high, medium, low, undefined") as info:
        op.execute({})
    assert isinstance(info.value.__cause__, MispConfigError)  # failed without a retry: options do not heal
    assert misp_conn.requests() == []


def test_send_investigation_makes_one_event_of_its_events_indicators_and_attachments(threatq_conn, threatq_sim,
                                                                                    misp_conn):
    corpus = threatq_sim.corpus
    investigation = corpus.investigations[0]

    xcom = MispSendInvestigationOperator(task_id="send", investigation=investigation["name"]).execute({})

    events = misp_conn.events()
    assert len(events) == 1 and xcom["investigation_id"] == investigation["id"]
    event = events[0]
    assert event["info"] == f"ThreatQ investigation: {investigation['name']}"
    tags = {t["name"] for t in event["Tag"]}
    assert f'threatq:investigation-id="{investigation["id"]}"' in tags
    assert {f'threatq:event-type="{corpus.event(i)["type"]["name"]}"' for i in investigation["event_ids"]} <= tags
    names = {a["value"] for a in event["Attribute"] if a["type"] == "attachment"}
    assert names == {corpus.attachment(a)["name"] for a in investigation["attachment_ids"]}

    again = MispSendInvestigationOperator(task_id="send", investigation=str(investigation["id"])).execute({})
    assert again["created"] == 0 and again["added"] == 0 and len(misp_conn.events()) == 1


def test_select_events_returns_the_given_ids_or_the_matching_window(threatq_conn, threatq_sim):
    corpus = threatq_sim.corpus
    assert ThreatQSelectEventsOperator(task_id="s", event_ids=[7, 3]).execute({}) == [7, 3]
    ids = ThreatQSelectEventsOperator(task_id="s", window_start="2000-01-01T00:00:00Z",
                                      window_end="2100-01-01T00:00:00Z", event_types=["Malware"]).execute({})
    assert sorted(ids) == sorted(e["id"] for e in corpus.events if e["type"]["name"] == "Malware")


def test_more_events_than_max_tasks_are_grouped_and_each_group_shares(threatq_conn, misp_conn):
    groups = ThreatQSelectEventsOperator(task_id="s", event_ids=list(range(1, 8)), max_tasks=3).execute({})
    assert groups == [[1, 2, 3], [4, 5, 6], [7]]
    xcom = MispShareEventOperator(task_id="share", event_ids=groups[2]).execute({})
    assert xcom["events"] == 1 and len(misp_conn.events()) == 1


@pytest.mark.parametrize(("n", "per_task", "spread", "sizes"), [
    (100, 25, 4, [25, 25, 25, 25]),  # the demo: four tasks, one per parallel slot
    (10, 25, 4, [3, 3, 3, 1]),  # a small run still uses every slot
    (1000, 25, 4, [25] * 40),  # bounded: never more than 25 shares in one task
    (3, 25, 4, [1, 1, 1]),
    (0, 25, 4, []),
])
def test_events_are_shared_in_bounded_lists_spread_over_the_parallel_slots(n, per_task, spread, sizes):
    """Issue 17: per-task costs (worker, ThreatQ token, PyMISP start-up) are paid per list, not per event."""
    op = ThreatQSelectEventsOperator(task_id="s", events_per_task=per_task, spread_over=spread)
    groups = op.batches(list(range(1, n + 1)))
    assert [len(g) for g in groups] == sizes
    assert [i for g in groups for i in g] == list(range(1, n + 1))


def test_max_tasks_still_bounds_the_number_of_lists():
    op = ThreatQSelectEventsOperator(task_id="s", events_per_task=2, spread_over=4, max_tasks=3)
    assert op.batches(list(range(1, 10))) == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_a_list_of_events_is_shared_by_one_task_with_one_client_each(threatq_conn, misp_conn, threatq_sim,
                                                                       monkeypatch):
    from threatq_provider.misp.hook import MispHook

    built = []
    original = MispHook.__dict__["client"].func

    def counting(self):
        built.append(self.misp_conn_id)
        return original(self)

    monkeypatch.setattr(MispHook, "client", cached_property_of(counting))
    ids = [e["id"] for e in threatq_sim.corpus.events[:5]]
    xcom = MispShareEventOperator(task_id="share", event_ids=ids).execute({})
    assert xcom["events"] == 5 and len(misp_conn.events()) == 5
    assert len(built) == 1  # one PyMISP client (user and type look-ups) for the five events


def cached_property_of(func):
    from functools import cached_property

    prop = cached_property(func)
    prop.__set_name__(None, "client")
    return prop
