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

    def iter_events(self, *args, **kwargs):
        yield {"id": 1, "type": {"name": "Incident"}}
        raise RuntimeError("page 2 malformed")


class _FakeMispHook(_Closable):
    def get_client(self):
        raise RuntimeError("MISP refused")


@pytest.mark.parametrize("op", [
    MispShareEventOperator(task_id="share", event_ids=[1]),
    MispSendInvestigationOperator(task_id="send", investigation=7),
])
def test_share_operators_close_both_sessions_when_a_call_fails(op):
    tq = op.__dict__["threatq"] = _FakeThreatQ()
    misp = op.__dict__["misp_hook"] = _FakeMispHook()
    with pytest.raises(RuntimeError):
        op.execute({})
    assert tq.closed == 1 and misp.closed == 1
    assert "threatq" not in op.__dict__ and "misp_hook" not in op.__dict__


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
    from threatq_provider.threatq.errors import ThreatQTooLarge

    class TQ(_Closable):
        def download_attachment(self, ident, *, max_bytes):
            assert max_bytes == share_mod.MAX_ATTACHMENT_BYTES
            if ident == 2:
                raise ThreatQTooLarge(f"/api/attachments/{ident}/download", max_bytes, max_bytes + 1)
            return b"small"

    op = MispShareEventOperator(task_id="share", event_ids=[1])
    op.__dict__["threatq"] = TQ()
    options = ShareOptions(**{name: getattr(op, name) for name in share_mod.OPTION_FIELDS})
    warnings = []

    class Log:  # the task logger is structlog; record its warnings directly
        def warning(self, msg, *args):
            warnings.append(msg % args)

    monkeypatch.setattr(MispShareEventOperator, "log", property(lambda self: Log()))
    got = list(op.attachments([{"id": 1, "name": "a.txt"}, {"id": 2, "name": "big.pcap"}], options))
    assert [(a["id"], raw) for a, raw in got] == [(1, b"small")]
    assert op.totals([])["attachments_too_large"] == 1 and op.totals([])["attachments_too_large_ids"] == [2]
    assert len(warnings) == 1 and "big.pcap" in warnings[0] and "over the limit" in warnings[0]
