"""The OpenSearch target's connection: Airflow's ``opensearch`` type, through the hook this provider's
operators use (no cluster needed: building a client sends nothing)."""

from __future__ import annotations

import json
import logging

import pytest

from threatq_provider.elasticsearch.cluster import OPENSEARCH, flavor_of
from threatq_provider.elasticsearch.errors import ConnectionConfigError
from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook

CANARY = "os-canary-password-7f3a"


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "opensearch", **fields}))


def test_an_opensearch_connection_gives_an_opensearch_client_built_by_airflows_provider(monkeypatch):
    _conn(monkeypatch, "os_plain", host="127.0.0.1", port=9260)
    hook = ElasticsearchEcsHook(elasticsearch_conn_id="os_plain")

    client = hook.get_client()

    assert type(client).__module__.startswith("opensearchpy") and flavor_of(client) == OPENSEARCH
    assert hook.target == "opensearch"
    # urllib3's thread-safe pool, not the provider's default requests connection class; 60 s per
    # request unless the connection's timeout extra says otherwise (the client's own default is 10 s)
    assert type(client.transport.get_connection()).__name__ == "Urllib3HttpConnection"
    assert client.transport.get_connection().timeout == 60
    # request bodies stay out of the task log (opensearch-py's trace logger, INFO)
    assert not logging.getLogger("opensearchpy.trace").isEnabledFor(logging.INFO)
    hook.close()


def test_the_timeout_extra_is_honoured(monkeypatch):
    _conn(monkeypatch, "os_timeout", host="127.0.0.1", port=9260, extra={"timeout": 5})

    client = ElasticsearchEcsHook(elasticsearch_conn_id="os_timeout").get_client()

    assert client.transport.get_connection().timeout == 5


def test_a_password_over_plain_http_is_refused_without_echoing_it(monkeypatch):
    _conn(monkeypatch, "os_http_pw", host="os.example", port=9200, login="threatq", password=CANARY)

    with pytest.raises(ConnectionConfigError, match="use_ssl") as info:
        ElasticsearchEcsHook(elasticsearch_conn_id="os_http_pw").get_client()

    assert CANARY not in str(info.value)


def test_allow_insecure_http_opts_in_and_the_password_is_masked(monkeypatch):
    masked: list[str] = []
    monkeypatch.setattr("threatq_provider.opensearch.connection.mask_secret", masked.append)
    _conn(monkeypatch, "os_lab", host="127.0.0.1", port=9260, login="threatq", password=CANARY,
          extra={"allow_insecure_http": True})

    client = ElasticsearchEcsHook(elasticsearch_conn_id="os_lab").get_client()

    assert client.transport.get_connection().headers.get("authorization", "").startswith("Basic ")
    assert masked == [CANARY]


def test_tls_without_certificate_verification_is_warned_about(monkeypatch, caplog):
    _conn(monkeypatch, "os_tls", host="os.example", port=9200, login="threatq", password=CANARY,
          extra={"use_ssl": True})
    caplog.set_level(logging.WARNING, logger="threatq_provider.opensearch.connection")

    ElasticsearchEcsHook(elasticsearch_conn_id="os_tls").get_client()

    assert "verify_certs" in caplog.text and CANARY not in caplog.text


def test_the_test_button_names_opensearch_and_no_secret_when_the_node_is_down(monkeypatch):
    _conn(monkeypatch, "os_down", host="127.0.0.1", port=1, extra={"timeout": 2})

    ok, message = ElasticsearchEcsHook(elasticsearch_conn_id="os_down").test_connection()

    assert not ok and message.startswith("OpenSearch not reachable: ConnectionError")
