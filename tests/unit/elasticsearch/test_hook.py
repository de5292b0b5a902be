"""Connection → Elasticsearch client arguments for each auth form; no secret in any message."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from airflow.exceptions import AirflowProviderDeprecationWarning

from threatq_provider.elasticsearch.errors import ConnectionConfigError
from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook, client_kwargs_from_connection

CANARY = "canary-S3CRET-es-77f0"


def conn(conn_type="elasticsearch_ecs", host="https://es1.example.test:9200", port=None, schema=None,
         login=None, password=None, **extra):
    return SimpleNamespace(conn_id="es_test", conn_type=conn_type, host=host, port=port, schema=schema,
                           login=login, password=password, extra_dejson=extra)


def test_basic_auth_and_defaults():
    kwargs = client_kwargs_from_connection(conn(login="elastic", password=CANARY))

    assert kwargs == {"hosts": ["https://es1.example.test:9200"], "basic_auth": ("elastic", CANARY),
                      "verify_certs": True, "request_timeout": 60.0}


def test_several_hosts_comma_separated_with_https_assumed():
    kwargs = client_kwargs_from_connection(conn(host="https://es1:9200, es2:9200 ,http://es3:9201/"))

    assert kwargs["hosts"] == ["https://es1:9200", "https://es2:9200", "http://es3:9201"]


def test_base64_api_key_wins_over_login_password():
    kwargs = client_kwargs_from_connection(conn(login="elastic", password="pw", api_key="aWQ6a2V5"))

    assert kwargs["api_key"] == "aWQ6a2V5" and "basic_auth" not in kwargs


@pytest.mark.parametrize(("password", "api_key"),
                         [("aWQ6a2V5", "aWQ6a2V5"), ("my-id:" + CANARY, ("my-id", CANARY))])
def test_password_without_login_is_an_api_key(password, api_key, recwarn):
    kwargs = client_kwargs_from_connection(conn(password=password))

    assert kwargs["api_key"] == api_key and "basic_auth" not in kwargs
    assert not [w for w in recwarn if issubclass(w.category, AirflowProviderDeprecationWarning)]


def test_the_legacy_api_key_extra_still_wins_with_a_deprecation_warning(caplog):
    caplog.set_level(logging.WARNING)
    with pytest.warns(AirflowProviderDeprecationWarning, match="Move it to Password") as warned:
        kwargs = client_kwargs_from_connection(conn(login="elastic", password="pw", api_key="id:" + CANARY))

    assert kwargs["api_key"] == ("id", CANARY) and "basic_auth" not in kwargs
    assert "'api_key'" in caplog.text and CANARY not in caplog.text and CANARY not in str(warned[0].message)


def test_id_colon_key_api_key_becomes_a_pair():
    assert client_kwargs_from_connection(conn(api_key="my-id:" + CANARY))["api_key"] == ("my-id", CANARY)


def test_cloud_id_replaces_hosts():
    kwargs = client_kwargs_from_connection(conn(host="", cloud_id="deploy:ZXUtd2VzdC0x", api_key="aWQ6a2V5"))

    assert kwargs["cloud_id"] == "deploy:ZXUtd2VzdC0x" and "hosts" not in kwargs


def test_tls_verify_off_ca_bundle_and_timeout():
    kwargs = client_kwargs_from_connection(conn(verify_certs="false", ca_certs="/etc/ssl/ca.pem",
                                                request_timeout="12.5"))

    assert (kwargs["verify_certs"], kwargs["ca_certs"], kwargs["request_timeout"]) == (False, "/etc/ssl/ca.pem", 12.5)


def test_legacy_prefixed_extras_are_read():
    kwargs = client_kwargs_from_connection(conn(**{"extra__elasticsearch_ecs__request_timeout": "5"}))

    assert kwargs["request_timeout"] == 5.0


def test_airflow_elasticsearch_type_builds_the_url_from_host_port_schema():
    kwargs = client_kwargs_from_connection(conn(conn_type="elasticsearch", host="es.internal", port=9201,
                                                schema="https", login="u", password="p"))

    assert kwargs["hosts"] == ["https://es.internal:9201"] and kwargs["basic_auth"] == ("u", "p")


def test_airflow_elasticsearch_type_defaults_to_http_and_port_9200():
    assert client_kwargs_from_connection(conn(conn_type="elasticsearch", host="localhost"))["hosts"] == [
        "http://localhost:9200"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"host": ""}, "host"),
        ({"verify_certs": CANARY}, "verify_certs"),
        ({"request_timeout": CANARY}, "request_timeout"),
        ({"request_timeout": "-1"}, "request_timeout"),
    ],
)
def test_bad_fields_name_the_field_but_never_the_value(fields, field):
    with pytest.raises(ConnectionConfigError) as info:
        client_kwargs_from_connection(conn(**{k: v for k, v in fields.items() if k == "host"},
                                           **{k: v for k, v in fields.items() if k != "host"}))

    assert info.value.field == field and CANARY not in str(info.value) and "es_test" in str(info.value)


@pytest.mark.parametrize(("value", "verify"), [(" ", True), ("None", True), ("n", False), ("y", True)])
def test_verify_certs_blank_is_unset_and_y_n_are_words(value, verify):
    # Decided drift (#11): a blank or "None" extra was an error here; unset now takes the default,
    # and y/n are words on every connection type.
    assert client_kwargs_from_connection(conn(verify_certs=value))["verify_certs"] is verify


def test_hook_class_attributes_and_no_io_in_init(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MISSING", raising=False)
    hook = ElasticsearchEcsHook(elasticsearch_conn_id="missing")

    assert (hook.conn_name_attr, hook.default_conn_name, hook.conn_type) == (
        "elasticsearch_conn_id", "elasticsearch_default", "elasticsearch_ecs")


def test_test_connection_failure_message_has_no_secret(monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_ES_DOWN", json.dumps({
        "conn_type": "elasticsearch_ecs", "host": f"http://elastic:{CANARY}@127.0.0.1:9",
        "password": CANARY, "login": "elastic",
        "extra": {"api_key": f"id:{CANARY}", "request_timeout": 2, "allow_insecure_http": True}}))
    caplog.set_level(logging.DEBUG)

    ok, message = ElasticsearchEcsHook(elasticsearch_conn_id="es_down").test_connection()

    assert ok is False
    assert CANARY not in message
    assert CANARY not in caplog.text


def test_urls_without_a_port_get_the_schemes_default_or_the_connection_port():
    assert client_kwargs_from_connection(conn(host="https://abc.es.example.io,http://es2"))["hosts"] == [
        "https://abc.es.example.io:443", "http://es2:80"]
    assert client_kwargs_from_connection(conn(host="es1", port=9243))["hosts"] == ["https://es1:9243"]


def test_client_accepts_the_kwargs_of_every_form():
    from elasticsearch import Elasticsearch

    for c in (conn(login="u", password="p"), conn(host="a:9200,b", api_key="id:key", verify_certs=False),
              conn(conn_type="elasticsearch", host="localhost"), conn(host="", cloud_id="x:" + "ZXhhbXBsZS5jb20kYWJjJGRlZg==")):
        client = Elasticsearch(**client_kwargs_from_connection(c))  # builds, connects lazily
        assert client.transport.node_pool.all()
        client.close()


def test_a_password_inside_the_host_url_is_registered_with_the_log_masker(monkeypatch):
    masked: list[str] = []
    monkeypatch.setattr("threatq_provider.elasticsearch.hook.mask_secret", masked.append)
    monkeypatch.setenv("AIRFLOW_CONN_ES_USERINFO", json.dumps({
        "conn_type": "elasticsearch_ecs", "host": f"https://es0:9200,https://elastic:{CANARY}@es1:9200"}))
    ElasticsearchEcsHook(elasticsearch_conn_id="es_userinfo").client_kwargs()
    assert masked == [CANARY]


@pytest.mark.parametrize(("fields", "kind"), [
    ({"login": "elastic", "password": CANARY}, "password"),
    ({"password": "id:" + CANARY}, "API key"),
    ({"api_key": "id:" + CANARY}, "API key"),
    ({"host": f"http://elastic:{CANARY}@127.0.0.1:9200"}, "password"),
    ({"host": "https://es1:9200,http://es2:9200", "password": CANARY}, "API key"),
])
def test_credentials_to_a_plain_http_host_are_refused(fields, kind):
    fields = {"host": "http://127.0.0.1:9200", **fields}
    with pytest.raises(ConnectionConfigError) as info:
        client_kwargs_from_connection(conn(**fields))
    message = str(info.value)
    assert f"refusing to send the {kind} over plain http" in message and "allow_insecure_http" in message
    assert CANARY not in message


def test_airflow_elasticsearch_type_with_login_is_refused_on_its_default_http():
    with pytest.raises(ConnectionConfigError, match="plain http to http://es.internal:9200"):
        client_kwargs_from_connection(conn(conn_type="elasticsearch", host="es.internal", login="u",
                                           password="p"))


def test_a_plain_http_host_without_credentials_needs_no_opt_in():
    kwargs = client_kwargs_from_connection(conn(host="http://127.0.0.1:9250"))
    assert kwargs["hosts"] == ["http://127.0.0.1:9250"]


def test_the_opt_in_lets_credentials_go_over_http_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_ES_LAB", json.dumps({
        "conn_type": "elasticsearch_ecs", "host": "http://127.0.0.1:9200", "login": "elastic",
        "password": CANARY, "extra": {"allow_insecure_http": "yes"}}))
    caplog.set_level(logging.WARNING)
    kwargs = ElasticsearchEcsHook(elasticsearch_conn_id="es_lab").client_kwargs()
    assert kwargs["basic_auth"] == ("elastic", CANARY)
    assert "sends its password over plain http" in caplog.text and CANARY not in caplog.text


def test_the_hooks_client_speaks_json_through_orjson(monkeypatch):
    from elasticsearch.serializer import OrjsonSerializer

    from threatq_provider.elasticsearch.serializers import BulkBodySerializer

    monkeypatch.setenv("AIRFLOW_CONN_ES_ORJSON", json.dumps({"conn_type": "elasticsearch_ecs",
                                                             "host": "http://es.example.test:9200"}))
    client = ElasticsearchEcsHook(elasticsearch_conn_id="es_orjson").get_client()

    for mimetype in ("application/json", "application/vnd.elasticsearch+json"):
        assert isinstance(client.transport.serializers.get_serializer(mimetype), OrjsonSerializer)
    for mimetype in ("application/x-ndjson", "application/vnd.elasticsearch+x-ndjson"):
        assert isinstance(client.transport.serializers.get_serializer(mimetype), BulkBodySerializer)


def test_a_ready_bulk_body_is_sent_as_it_is_and_action_lists_as_the_client_sends_them():
    from elasticsearch.serializer import NdjsonSerializer

    from threatq_provider.elasticsearch.serializers import BulkBodySerializer

    body = b'{"index":{"_id":"1"}}\n{"a":"\xc3\xa9"}\n'
    assert BulkBodySerializer().dumps(body) is body  # no copy of a 5 MiB body
    actions = ['{"index":{"_id":"1"}}', {"a": "é", "n": 1}, b'{"delete":{"_id":"2"}}']
    assert BulkBodySerializer().dumps(actions) == NdjsonSerializer().dumps(actions)
    assert BulkBodySerializer().dumps(b'{"a":1}') == b'{"a":1}\n'  # no final newline: the client's rule
