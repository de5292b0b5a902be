"""The MISP share operators close the ThreatQ and MISP HTTP sessions they opened, also on failure."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from threatq_provider.misp.hook import MispHook
from threatq_provider.operators.share import (
    MispSendInvestigationOperator,
    MispShareEventOperator,
    ThreatQSelectEventsOperator,
)


class _Closable:
    def __init__(self):
        self.closed = 0

    def close(self):
        self.closed += 1


class _FakeThreatQ(_Closable):
    base_url = "https://tq.example.test"

    def get_investigation(self, *args, **kwargs):
        raise RuntimeError("ThreatQ went away")

    get_event = get_investigation

    def iter_events(self, *args, **kwargs):
        yield {"id": 1, "type": {"name": "Incident"}}
        raise RuntimeError("page 2 malformed")


class _FakeHook(_Closable):
    """A hook whose client is ``client`` (or whose client cannot be built: ``client`` is an error)."""

    def __init__(self, client):
        super().__init__()
        self._client = client

    def get_client(self):
        if isinstance(self._client, Exception):
            raise self._client
        return self._client

    def instance(self):
        from threatq_provider.threatq.instance import ThreatQInstance

        return ThreatQInstance("tq.example.test")


class _FakeMisp:
    describe_types: dict = {}


@pytest.mark.parametrize("op", [
    MispShareEventOperator(task_id="share", event_ids=[1]),
    MispSendInvestigationOperator(task_id="send", investigation=7),
])
@pytest.mark.parametrize("fails", ["misp", "threatq"])
def test_share_operators_close_both_sessions_when_a_call_fails(op, fails):
    tq = _FakeHook(_FakeThreatQ() if fails == "threatq" else RuntimeError("ThreatQ unreachable"))
    misp = _FakeHook(RuntimeError("MISP refused") if fails == "misp" else _FakeMisp())
    op.__dict__.update(threatq_hook=tq, hook=misp)  # the cached_property hooks, pre-filled
    with pytest.raises(RuntimeError):
        op.execute({})
    assert tq.closed == (fails == "threatq") and misp.closed == 1


@pytest.mark.parametrize("cls, kwargs", [(MispShareEventOperator, {"event_ids": [1]}),
                                         (MispSendInvestigationOperator, {"investigation": 7}),
                                         (ThreatQSelectEventsOperator, {})])
def test_on_kill_closes_every_hook_of_the_operator(cls, kwargs):
    op = cls(task_id="t", **kwargs)
    hooks = {name: _FakeHook(None) for name in cls.hook_names}
    op.__dict__.update(hooks)
    op.on_kill()
    assert all(h.closed == 1 for h in hooks.values())


def test_select_events_closes_the_threatq_session_when_paging_fails(monkeypatch):
    import threatq_provider.threatq.hook as hook_mod

    client = _FakeThreatQ()

    class FakeHook:
        def __init__(self, threatq_conn_id):
            pass

        def get_client(self):
            return client

        def close(self):
            client.close()

    monkeypatch.setattr(hook_mod, "ThreatQHook", FakeHook)
    op = ThreatQSelectEventsOperator(task_id="select", window_start="2026-01-01T00:00:00Z",
                                     window_end="2026-01-02T00:00:00Z")
    with pytest.raises(RuntimeError, match="page 2"):
        op.execute({})
    assert client.closed == 1


def test_misp_hook_close_closes_the_pymisp_session():
    hook = MispHook(misp_conn_id="unused")
    session = _Closable()
    client = SimpleNamespace()
    setattr(client, "_PyMISP__session", session)
    hook.__dict__["client"] = client
    hook.close()
    hook.close()  # a second close is a no-op
    assert session.closed == 1 and "client" not in hook.__dict__


def test_an_attachment_over_the_limit_is_skipped_logged_and_counted(monkeypatch):
    from threatq_provider.misp.options import ShareOptions
    from threatq_provider.operators import share as share_mod
    from threatq_provider.threatq import sharing
    from threatq_provider.threatq.errors import ThreatQTooLarge

    class TQ(_Closable):
        def download_attachment(self, ident, *, max_bytes):
            assert max_bytes == sharing.MAX_ATTACHMENT_BYTES
            if ident == 2:
                raise ThreatQTooLarge(f"/api/attachments/{ident}/download", max_bytes, max_bytes + 1)
            return b"small"

    op = MispShareEventOperator(task_id="share", event_ids=[1])
    options = ShareOptions(**{name: getattr(op, name) for name in share_mod.OPTION_FIELDS})
    warnings = []

    class Log:  # the task logger is structlog; record its warnings directly
        def warning(self, msg, *args):
            warnings.append(msg % args)

    monkeypatch.setattr(MispShareEventOperator, "log", property(lambda self: Log()))
    reader = op.reader(TQ())
    got = list(op.attachments(reader, [{"id": 1, "name": "a.txt"}, {"id": 2, "name": "big.pcap"}], options))
    assert [(a["id"], raw) for a, raw in got] == [(1, b"small")]
    assert op.totals([], reader)["attachments_too_large"] == 1
    assert op.totals([], reader)["attachments_too_large_ids"] == [2]
    assert len(warnings) == 1 and "big.pcap" in warnings[0] and "over the limit" in warnings[0]
    off = ShareOptions(**{**{name: getattr(op, name) for name in share_mod.OPTION_FIELDS}, "send_attachments": False})
    assert list(op.attachments(reader, [{"id": 1}], off)) == []
