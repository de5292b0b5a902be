"""Action operators without Airflow's runtime: arguments stored unchanged, execute is a thin recipe."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from threatq_provider.operators import actions

CASES = [
    (actions.ThreatQSearchIndicatorsOperator, {"indicator": {"value": "1.2.3.4"}, "limit": "5"},
     "search_indicators", {"indicator": {"value": "1.2.3.4"}, "limit": 5}, {"total": 0, "data": []}),
    (actions.ThreatQSearchOperator, {"query": "evil", "limit": "3"}, "search", {"query": "evil", "limit": 3},
     {"results": []}),
    (actions.ThreatQListEventsOperator, {"event": {"title": "x"}}, "list_events",
     {"event": {"title": "x"}, "limit": None}, {"total": 0, "data": []}),
    (actions.ThreatQCreateIndicatorOperator, {"status": "Active", "source": "s", "type": "FQDN", "value": "a.b"},
     "create_indicator", {"status": "Active", "source": "s", "type": "FQDN", "value": "a.b"}, {"id": 1}),
    (actions.ThreatQCreateEventOperator, {"title": "t", "type": "Malware", "date": "2026-01-01", "source": "s"},
     "create_event", {"title": "t", "type": "Malware", "date": "2026-01-01", "source": "s", "description": None},
     {"id": 2}),
    (actions.ThreatQGetIndicatorOperator, {"indicator_id": "7", "with_": ["sources"]}, "get_indicator",
     {"indicator_id": "7", "with_": ["sources"]}, {"data": {"id": 7}}),
    (actions.ThreatQGetEventOperator, {"event_id": 8}, "get_event", {"event_id": 8, "with_": None},
     {"data": {"id": 8}}),
]


class FakeClient:
    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def __getattr__(self, name):
        def call(**kwargs):
            self.calls.append((name, kwargs))
            return self.answer
        return call


class FakeHook:
    def __init__(self, client):
        self.client = client
        self.closed = False

    def get_client(self):
        return self.client

    def close(self):
        self.closed = True


@pytest.mark.parametrize("cls, kwargs, method, expected_call, answer", CASES, ids=[c[0].__name__ for c in CASES])
def test_execute_calls_the_client_action_and_returns_its_output(cls, kwargs, method, expected_call, answer):
    op = cls(task_id="t", **kwargs)
    for key, value in kwargs.items():
        assert getattr(op, key) == value  # stored unchanged, under the template field's name
    hook = FakeHook(FakeClient(answer))
    op.__dict__["hook"] = hook  # the cached_property, pre-filled
    assert op.execute(context={}) == answer
    assert hook.client.calls == [(method, expected_call)]
    assert hook.closed


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        actions.ThreatQSearchOperator("t", "query")  # type: ignore[misc]


def test_default_connection_and_lazy_hook(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_THREATQ_DEFAULT", raising=False)
    op = actions.ThreatQSearchOperator(task_id="t", query="x")  # no connection needed to build it
    assert op.threatq_conn_id == "threatq_default"
    assert op.hook.threatq_conn_id == "threatq_default"


class EventClient:
    """Answers find_event with ``existing`` and create_event with a new id; records the calls."""

    def __init__(self, existing):
        self.existing = existing
        self.calls = []

    def find_event(self, **kwargs):
        self.calls.append(("find_event", kwargs))
        return self.existing

    def create_event(self, **kwargs):
        self.calls.append(("create_event", kwargs))
        return {"id": 99}


EVENT = {"title": "t", "type": "Malware", "date": "2026-01-01", "source": "s"}


def _event_op(client):
    op = actions.ThreatQCreateEventOperator(task_id="create_event", retries=2, **EVENT)
    hook = FakeHook(client)
    op.__dict__["hook"] = hook
    return op, hook


@pytest.mark.parametrize("context", [{}, {"ti": SimpleNamespace(try_number=1)}], ids=["no-ti", "first-try"])
def test_create_event_first_try_posts_without_looking_up(context):
    op, hook = _event_op(EventClient({"id": 5}))
    assert op.execute(context) == {"id": 99}
    assert [name for name, _ in hook.client.calls] == ["create_event"]
    assert hook.closed


def test_create_event_retry_reuses_the_event_an_earlier_try_created(caplog, capsys):
    op, hook = _event_op(EventClient({"id": 5, "title": "t"}))
    with caplog.at_level("INFO"):
        assert op.execute({"ti": SimpleNamespace(try_number=2)}) == {"id": 5}
    assert hook.client.calls == [("find_event", EVENT)]
    assert hook.closed
    # Airflow's task logger may print through structlog (stdout) rather than propagate to caplog.
    logged = caplog.text + capsys.readouterr().out
    assert "already exists with id 5 (try 2)" in logged and "reusing it" in logged


def test_create_event_retry_creates_when_nothing_matches():
    op, hook = _event_op(EventClient(None))
    assert op.execute({"task_instance": SimpleNamespace(try_number=3)}) == {"id": 99}
    assert [name for name, _ in hook.client.calls] == ["find_event", "create_event"]
