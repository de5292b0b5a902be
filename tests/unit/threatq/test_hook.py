"""ThreatQHook: connection → client arguments, grants, test_connection, no secrets in messages."""

from __future__ import annotations

import json
import logging

import pytest
from airflow.exceptions import AirflowProviderDeprecationWarning

from threatq_provider.threatq.auth import ClientCredentials, PasswordGrant
from threatq_provider.threatq.errors import ThreatQValidationError
from threatq_provider.threatq.hook import ThreatQHook

CANARY = "canary-S3CRET-hook-4a1b"
TOKEN = {"access_token": "acc-h", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "ref-h"}


def set_conn(monkeypatch, conn_id="threatq_default", **fields):
    conn = {"conn_type": "threatq", "host": "https://tq.example.test", "login": "analyst@example.com",
            "password": CANARY, "extra": {"client_id": "cid"}}
    conn.update(fields)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_class_attributes():
    assert ThreatQHook.conn_name_attr == "threatq_conn_id"
    assert ThreatQHook.default_conn_name == "threatq_default"
    assert ThreatQHook.conn_type == "threatq"
    assert ThreatQHook.hook_name == "ThreatQ"


def test_init_does_no_io(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MISSING", raising=False)
    hook = ThreatQHook(threatq_conn_id="missing")  # no connection exists; must not raise here
    assert hook.threatq_conn_id == "missing"


def test_password_grant_when_no_client_secret(monkeypatch):
    set_conn(monkeypatch)
    kwargs = ThreatQHook().client_kwargs()
    assert kwargs["auth"] == PasswordGrant("cid", "analyst@example.com", CANARY)
    assert kwargs["base_url"] == "https://tq.example.test"
    assert kwargs["verify"] is True and kwargs["proxies"] is None
    assert kwargs["timeout"] == (10.0, 60.0) and kwargs["page_size"] == 1000


def test_client_credentials_when_login_is_empty_with_the_secret_in_password(monkeypatch, recwarn):
    set_conn(monkeypatch, login=None, extra={"client_id": "cid"})
    assert ThreatQHook().client_kwargs()["auth"] == ClientCredentials("cid", CANARY)
    assert not [w for w in recwarn if issubclass(w.category, AirflowProviderDeprecationWarning)]


def test_the_legacy_client_secret_extra_still_works_with_a_deprecation_warning(monkeypatch, caplog):
    masked = []
    monkeypatch.setattr("threatq_provider.threatq.hook.mask_secret", masked.append)
    # As before: the extra selects client credentials even when Login/Password are filled.
    set_conn(monkeypatch, password="unused", extra={"client_id": "cid", "client_secret": CANARY})
    caplog.set_level(logging.WARNING)
    with pytest.warns(AirflowProviderDeprecationWarning, match="Move it to Password") as warned:
        kwargs = ThreatQHook().client_kwargs()
    assert kwargs["auth"] == ClientCredentials("cid", CANARY)
    assert masked == [CANARY]  # Airflow masks Password by itself, not extras
    assert "log table" in str(warned[0].message) and "'client_secret'" in caplog.text
    assert CANARY not in str(warned[0].message) and CANARY not in caplog.text


def test_a_connection_without_login_or_password_says_what_to_fill(monkeypatch):
    set_conn(monkeypatch, login=None, password=None)
    with pytest.raises(ThreatQValidationError) as info:
        ThreatQHook().client_kwargs()
    assert "set Login and Password (password grant)" in str(info.value)
    assert "put the OAuth client secret in Password" in str(info.value)


def test_extras_and_legacy_prefixed_keys(monkeypatch):
    set_conn(monkeypatch, extra={"extra__threatq__client_id": "legacy", "verify_tls": "true",
                                 "ca_bundle": "/etc/ca.pem", "proxy": "http://proxy:3128",
                                 "timeout": "30", "extra__threatq__page_size": "250"})
    kwargs = ThreatQHook().client_kwargs()
    assert kwargs["auth"].client_id == "legacy"
    assert kwargs["verify"] == "/etc/ca.pem"
    assert kwargs["proxies"] == {"http": "http://proxy:3128", "https": "http://proxy:3128"}
    assert kwargs["timeout"] == (10.0, 30.0) and kwargs["page_size"] == 250


def test_verify_false_wins_over_ca_bundle(monkeypatch):
    set_conn(monkeypatch, extra={"client_id": "cid", "verify_tls": False, "ca_bundle": "/etc/ca.pem"})
    assert ThreatQHook().client_kwargs()["verify"] is False


@pytest.mark.parametrize("blank", ["  ", "None", "none"])
def test_a_blank_verify_tls_is_unset_and_verifies(monkeypatch, blank):
    # Decided drift (#11): a blank extra used to mean false here (TLS off); unset now takes the default.
    set_conn(monkeypatch, extra={"client_id": "cid", "verify_tls": blank})
    assert ThreatQHook().client_kwargs()["verify"] is True


@pytest.mark.parametrize(("word", "verify"), [("y", True), ("n", False), ("off", False)])
def test_verify_tls_takes_the_providers_one_set_of_words(monkeypatch, word, verify):
    set_conn(monkeypatch, extra={"client_id": "cid", "verify_tls": word})
    assert ThreatQHook().client_kwargs()["verify"] is verify


@pytest.mark.parametrize("page_size", [250.5, "250.5", "1_000"])
def test_a_page_size_that_is_not_a_whole_number_is_refused(monkeypatch, page_size):
    # Decided drift (#11): int() cut 250.5 to 250 and read "1_000"; whole numbers come from coerce.parse_int.
    set_conn(monkeypatch, extra={"client_id": "cid", "page_size": page_size})
    with pytest.raises(ThreatQValidationError, match="page_size"):
        ThreatQHook().client_kwargs()


def test_host_without_scheme_and_port(monkeypatch):
    set_conn(monkeypatch, host="tq.local", port=8443)
    assert ThreatQHook().client_kwargs()["base_url"] == "https://tq.local:8443"


def test_bad_page_size_is_a_validation_error(monkeypatch):
    set_conn(monkeypatch, extra={"client_id": "cid", "page_size": "lots"})
    with pytest.raises(ThreatQValidationError, match="page_size"):
        ThreatQHook().client_kwargs()


def test_client_is_cached(monkeypatch):
    set_conn(monkeypatch)
    hook = ThreatQHook()
    assert hook.get_client() is hook.get_client() is hook.get_conn()


def test_test_connection_success(monkeypatch, requests_mock):
    set_conn(monkeypatch)
    requests_mock.post("https://tq.example.test/api/token", json=TOKEN)
    requests_mock.get("https://tq.example.test/api/indicator/statuses", json={"total": 5, "data": []})
    ok, message = ThreatQHook().test_connection()
    assert ok is True
    assert message == "Connected to ThreatQ at https://tq.example.test as analyst@example.com (password grant)"


def test_test_connection_failure_is_readable_and_secret_free(monkeypatch, requests_mock):
    set_conn(monkeypatch)
    requests_mock.post("https://tq.example.test/api/token", status_code=400,
                       json={"error": "invalid_grant", "password": CANARY})
    ok, message = ThreatQHook().test_connection()
    assert ok is False
    assert "HTTP 400" in message and "credentials refused" in message
    assert CANARY not in message


def test_test_connection_missing_connection(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NOPE", raising=False)
    ok, message = ThreatQHook(threatq_conn_id="nope").test_connection()
    assert ok is False and "nope" in message


def test_test_connection_misconfigured_without_client_id(monkeypatch):
    set_conn(monkeypatch, extra={})
    ok, message = ThreatQHook().test_connection()
    assert ok is False and "client_id" in message and CANARY not in message


def test_hook_client_registers_received_tokens_with_the_log_masker(monkeypatch, requests_mock):
    masked: list[str] = []
    monkeypatch.setattr("threatq_provider.threatq.hook.mask_secret", masked.append)
    set_conn(monkeypatch)
    requests_mock.post("https://tq.example.test/api/token", json=TOKEN)
    requests_mock.get("https://tq.example.test/api/indicators/7", json={"data": {"id": 7}})
    hook = ThreatQHook()
    hook.get_client().get_indicator(7)
    hook.close()
    assert "acc-h" in masked and "ref-h" in masked


def test_a_proxy_password_is_registered_with_the_log_masker(monkeypatch):
    masked: list[str] = []
    monkeypatch.setattr("threatq_provider.threatq.hook.mask_secret", masked.append)
    set_conn(monkeypatch, extra={"client_id": "cid", "proxy": f"http://svc:{CANARY}@proxy.example:3128"})
    ThreatQHook().client_kwargs()
    assert masked == [CANARY]


@pytest.mark.parametrize("grant", ["password", "client_credentials"])
@pytest.mark.parametrize("host", ["http://tq.example.test", "http://127.0.0.1:8480", "HTTP://[::1]:8480"])
def test_plain_http_is_refused_naming_why_and_the_opt_in_without_the_secret(monkeypatch, grant, host):
    set_conn(monkeypatch, host=host, login="analyst@example.com" if grant == "password" else None)
    with pytest.raises(ThreatQValidationError) as info:
        ThreatQHook().client_kwargs()
    message = str(info.value)
    kind = "password" if grant == "password" else "client secret"
    assert f"refusing to send the {kind} over plain http" in message
    assert "anyone on the network path can read it" in message
    assert '"allow_insecure_http": true' in message and "'threatq_default'" in message
    assert CANARY not in message


def test_plain_http_with_the_opt_in_is_accepted_and_warned_about(monkeypatch, caplog):
    set_conn(monkeypatch, host="http://127.0.0.1:8480",
             extra={"client_id": "cid", "allow_insecure_http": "true"})
    caplog.set_level("WARNING")
    assert ThreatQHook().client_kwargs()["base_url"] == "http://127.0.0.1:8480"
    assert "sends its password over plain http" in caplog.text and CANARY not in caplog.text


def test_an_explicit_false_opt_in_still_refuses(monkeypatch):
    set_conn(monkeypatch, host="http://tq.example.test",
             extra={"client_id": "cid", "allow_insecure_http": False})
    with pytest.raises(ThreatQValidationError, match="plain http"):
        ThreatQHook().client_kwargs()


def test_a_host_without_scheme_and_http_schema_is_plain_http_too(monkeypatch):
    set_conn(monkeypatch, host="tq.example.test", schema="http")
    with pytest.raises(ThreatQValidationError, match="plain http to http://tq.example.test"):
        ThreatQHook().client_kwargs()


def test_test_connection_reports_the_plain_http_refusal(monkeypatch, requests_mock):
    set_conn(monkeypatch, host="http://tq.example.test")
    ok, message = ThreatQHook().test_connection()
    assert ok is False and "misconfigured" in message and "allow_insecure_http" in message
    assert requests_mock.call_count == 0  # nothing was sent
    assert CANARY not in message


# -- instance and UI base URL (#13 items 4-5) ---------------------------------------------------


def test_the_instance_is_named_by_the_extra_or_derived_from_the_host(monkeypatch):
    from threatq_provider.threatq.instance import ThreatQInstance

    set_conn(monkeypatch)
    assert ThreatQHook().instance() == ThreatQInstance("tq.example.test", explicit=False)
    set_conn(monkeypatch, host="http://127.0.0.1:8480/")
    assert ThreatQHook().instance() == ThreatQInstance("127.0.0.1:8480", explicit=False)
    set_conn(monkeypatch, extra={"client_id": "cid", "instance": "Partner-A"})
    named = ThreatQHook().instance()
    assert named == ThreatQInstance("partner-a", explicit=True) and named.document_id(42) == "partner-a:42"
    assert ThreatQInstance("tq.example.test").document_id(42) == "42"  # the default instance keeps its ids
    set_conn(monkeypatch, extra={"client_id": "cid", "instance": "prod/eu"})
    with pytest.raises(ThreatQValidationError, match="instance") as err:
        ThreatQHook().instance()
    assert CANARY not in str(err.value)


def test_the_ui_base_url_is_the_extra_or_the_host(monkeypatch):
    set_conn(monkeypatch)
    assert ThreatQHook().ui_base_url() == "https://tq.example.test"
    set_conn(monkeypatch, extra={"client_id": "cid", "ui_base_url": "https://threatq-ui.example.test/"})
    assert ThreatQHook().ui_base_url() == "https://threatq-ui.example.test"
    set_conn(monkeypatch, extra={"client_id": "cid", "ui_base_url": "threatq-ui.example.test"})
    with pytest.raises(ThreatQValidationError, match="ui_base_url"):
        ThreatQHook().ui_base_url()
