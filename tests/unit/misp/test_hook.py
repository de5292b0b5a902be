"""MispHook: connection → PyMISP arguments, no I/O until used."""

from __future__ import annotations

import json

import pytest

from threatq_provider.misp.errors import MispConfigError
from threatq_provider.misp.hook import MispHook

KEY = "misp-unit-canary-key-9f8e7d"


def set_conn(monkeypatch, **fields):
    conn = {"conn_type": "misp", "host": "https://misp.example.com", "password": KEY, **fields}
    monkeypatch.setenv("AIRFLOW_CONN_MISP_DEFAULT", json.dumps(conn))


def test_the_hook_declares_its_connection_type():
    assert (MispHook.conn_type, MispHook.default_conn_name, MispHook.conn_name_attr) == (
        "misp", "misp_default", "misp_conn_id")


def test_building_the_hook_does_no_io(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MISP_DEFAULT", raising=False)
    hook = MispHook()  # no connection exists: only reading it would fail
    assert hook.misp_conn_id == "misp_default"


def test_extras_become_pymisp_arguments(monkeypatch):
    set_conn(monkeypatch, extra={"verify_tls": True, "ca_bundle": "/etc/ssl/misp.pem", "proxy": "http://proxy:3128",
                                 "timeout": 120})
    kwargs = MispHook().client_kwargs
    assert kwargs["url"] == "https://misp.example.com/"
    assert kwargs["ssl"] == "/etc/ssl/misp.pem"
    assert kwargs["proxies"] == {"http": "http://proxy:3128", "https": "http://proxy:3128"}
    assert kwargs["timeout"] == (10.0, 120.0)


def test_verify_off_ignores_the_ca_bundle(monkeypatch):
    set_conn(monkeypatch, extra={"verify_tls": False, "ca_bundle": "/etc/ssl/misp.pem"})
    assert MispHook().client_kwargs["ssl"] is False


@pytest.mark.parametrize(("fields", "text"), [({"host": ""}, "host"), ({"password": ""}, "API key")])
def test_a_connection_without_url_or_key_is_a_configuration_error(monkeypatch, fields, text):
    set_conn(monkeypatch, **fields)
    with pytest.raises(MispConfigError, match=text) as info:
        _ = MispHook().client_kwargs
    assert KEY not in str(info.value)


def test_an_unreachable_misp_names_the_network_cause_without_the_key(monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on: bound, then released
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    set_conn(monkeypatch, host=f"http://127.0.0.1:{port}", extra={"allow_insecure_http": True})
    ok, message = MispHook().test_connection()
    assert not ok
    assert "Connection refused" in message and f"127.0.0.1:{port}" in message
    assert KEY not in message


def test_a_proxy_password_is_registered_with_the_log_masker(monkeypatch):
    masked: list[str] = []
    monkeypatch.setattr("threatq_provider.misp.hook.mask_secret", masked.append)
    set_conn(monkeypatch, extra=json.dumps({"proxy": "http://svc:proxy-canary-77@proxy.example:3128"}))
    MispHook().client_kwargs
    assert masked == ["proxy-canary-77"]


def test_a_misspelt_verify_tls_is_an_error_not_tls_off(monkeypatch):
    set_conn(monkeypatch, extra={"verify_tls": "flase"})
    with pytest.raises(MispConfigError, match="verify_tls"):
        _ = MispHook().client_kwargs
    set_conn(monkeypatch, extra={"verify_tls": "no"})
    assert MispHook().client_kwargs["ssl"] is False
    set_conn(monkeypatch, extra={"verify_tls": ""})
    assert MispHook().client_kwargs["ssl"] is True


@pytest.mark.parametrize("host", ["http://misp.example.com", "http://127.0.0.1:8481", "http://localhost"])
def test_plain_http_is_refused_unless_the_connection_opts_in(monkeypatch, host):
    set_conn(monkeypatch, host=host)
    with pytest.raises(MispConfigError) as info:
        _ = MispHook().client_kwargs
    message = str(info.value)
    assert "refusing to send the API key over plain http" in message and '"allow_insecure_http": true' in message
    assert KEY not in message


def test_plain_http_with_the_opt_in_is_accepted_and_warned_about(monkeypatch, caplog):
    set_conn(monkeypatch, host="http://127.0.0.1:8481", extra={"allow_insecure_http": True})
    caplog.set_level("WARNING")
    assert MispHook().client_kwargs["url"] == "http://127.0.0.1:8481/"
    assert "sends its API key over plain http" in caplog.text and KEY not in caplog.text


def test_test_connection_reports_the_plain_http_refusal_without_calling_misp(monkeypatch, requests_mock):
    set_conn(monkeypatch, host="http://misp.example.com")
    ok, message = MispHook().test_connection()
    assert ok is False and "plain http" in message and KEY not in message
    assert requests_mock.call_count == 0
