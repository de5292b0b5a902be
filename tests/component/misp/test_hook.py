"""MispHook against the MISP double: lazy cached client, test_connection, no key in any text."""

from __future__ import annotations

import logging

import pytest

from tests.fixtures.misp import MISP_CANARY_KEY, misp_connection_json
from tests.fixtures.tls import UntrustedTLSServer
from threatq_provider.misp.errors import MispAuthError, MispNotFound, MispServerError
from threatq_provider.misp.hook import MispHook
from threatq_provider.operators._common import CERTIFICATE_FAILURE, permanent_reason

pytestmark = pytest.mark.component


def test_test_connection_reports_version_and_user(misp_conn):
    ok, message = MispHook().test_connection()
    assert ok and "2.5.1" in message and "admin@admin.test" in message


def test_the_client_is_built_once_with_its_three_calls(misp_conn):
    hook = MispHook()
    assert misp_conn.requests() == []  # nothing before first use
    assert hook.get_client() is hook.get_conn()
    assert [r.path for r in misp_conn.requests()] == ["servers/getVersion", "users/view/me",
                                                      "attributes/describeTypes.json"]


def test_a_wrong_key_fails_clearly_and_never_shows_the_key(monkeypatch, misp_double, caplog):
    wrong = "wrong-" + MISP_CANARY_KEY
    monkeypatch.setenv("AIRFLOW_CONN_MISP_DEFAULT", misp_connection_json(misp_double.url, key=wrong))
    caplog.set_level(logging.DEBUG)
    ok, message = MispHook().test_connection()
    assert not ok and "refused the API key" in message
    with pytest.raises(MispAuthError) as info:
        MispHook().get_client()
    for text in (message, str(info.value), caplog.text):
        assert wrong not in text and MISP_CANARY_KEY not in text


def test_an_unreachable_server_is_reported(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MISP_DEFAULT", misp_connection_json("http://127.0.0.1:9"))
    ok, message = MispHook().test_connection()
    assert not ok and "cannot reach MISP" in message and MISP_CANARY_KEY not in message


def test_an_untrusted_certificate_is_tried_once_and_known_as_permanent(monkeypatch):
    with UntrustedTLSServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_MISP_DEFAULT", misp_connection_json(server.url, verify_tls=True))
        with pytest.raises(MispServerError) as info:
            MispHook().get_client()
        assert server.attempts == 1  # the read adapter does not retry a certificate that fails verification
    assert "certificate verify failed" in str(info.value) and MISP_CANARY_KEY not in str(info.value)
    assert permanent_reason(info.value) == CERTIFICATE_FAILURE  # so the task fails without a retry


def test_call_raises_typed_errors_instead_of_returning_dicts(misp_conn, caplog):
    hook = MispHook()
    with pytest.raises(MispNotFound, match="Invalid event"):
        hook.call("get event 99", "get_event", 99)
    assert MISP_CANARY_KEY not in caplog.text


def test_reads_are_retried_on_503_and_429(misp_conn):
    hook = MispHook()
    client = hook.get_client()
    misp_conn.add_fault({"method": "GET", "path_regex": "^/sharingGroups/index", "status": 503, "times": 1})
    misp_conn.add_fault({"method": "GET", "path_regex": "^/sharingGroups/index", "status": 429, "times": 1,
                         "headers": {"Retry-After": "0"}})
    groups = hook.call("list sharing groups", "sharing_groups")
    assert [g["SharingGroup"]["name"] for g in groups][:1] == ["ThreatQ partners"]
    assert [r.status for r in misp_conn.requests() if r.path == "sharingGroups/index"] == [503, 429, 200]
    assert client is hook.get_client()


def test_writes_are_not_retried_by_the_client(misp_conn):
    hook = MispHook()
    misp_conn.add_fault({"method": "POST", "path_regex": "^/events/add", "status": 503, "times": 1})
    from pymisp import MISPEvent

    from threatq_provider.misp.errors import MispServerError

    event = MISPEvent()
    event.info = "x"
    with pytest.raises(MispServerError):
        hook.call("add event", "add_event", event)
    assert len([r for r in misp_conn.requests() if r.path.startswith("events/add")]) == 1
