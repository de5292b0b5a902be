"""Airflow hook that turns a search-cluster connection into a cached client: ``Elasticsearch``, or
``opensearchpy.OpenSearch`` for an OpenSearch connection. The connection's type chooses the target.

Three connection types are accepted, so users can reuse the one they already have:

``elasticsearch_ecs`` (this provider; form declared in :mod:`threatq_provider.provider_info`)

=============  ====================  =======================================================
field          extra key             meaning
=============  ====================  =======================================================
Host           –                     comma-separated URLs, e.g. ``https://es1:9200,https://es2:9200``
                                     (``https://`` is assumed when a URL has no scheme; a URL
                                     without a port gets Port, else 443/80 by scheme)
Login          –                     basic-auth user; empty → Password is an API key
Password       –                     basic-auth password, or (Login empty) an API key, base64
                                     ``id:key`` form or ``id:key`` (secret)
–              ``api_key``           deprecated: the API key; put it in Password (Login empty),
                                     where Airflow's audit log masks it
–              ``cloud_id``          Elastic Cloud id; replaces Host
–              ``verify_certs``      verify the cluster's TLS certificate (default true)
–              ``ca_certs``          path to a PEM CA bundle (optional)
–              ``request_timeout``   seconds per request (default 60)
–              ``allow_insecure_http`` send credentials to ``http://`` hosts (default false:
                                     refused, loopback included; no credentials, no check)
=============  ====================  =======================================================

``elasticsearch`` (Airflow's Elasticsearch provider): Host, Port (default 9200), Schema
(``http`` default, as that provider does), Login/Password, and the same extras.

``opensearch`` (Airflow's OpenSearch provider): the OpenSearch target. That provider's hook builds
the client (:mod:`threatq_provider.opensearch.connection`: Host, Port, Login/Password, extras
``use_ssl``, ``verify_certs``, …; credentials over plain http refused unless
``allow_insecure_http``). Loads, templates and sweeps are the same code for both targets
(:mod:`.cluster`).

Legacy ``extra__<conn_type>__<key>`` extras are read when the plain key is absent; a legacy
``api_key`` extra still wins over Login/Password, with a deprecation warning.
"""

from __future__ import annotations

import logging
import re
import warnings
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.providers.common.compat.sdk import BaseHook, mask_secret
from elasticsearch import ApiError, Elasticsearch, TransportError

from threatq_provider._conn_test import names_requested_connection
from threatq_provider._connection_form import connection_form
from threatq_provider.elasticsearch.serializers import client_serializers
from threatq_provider._conn_extras import (
    ALLOW_INSECURE_HTTP,
    as_bool,
    as_positive_number,
    extra_value,
    legacy_secret_message,
    plain_http_hosts,
    plain_http_refusal,
)
from threatq_provider.elasticsearch.errors import ConnectionConfigError, ElasticsearchEcsError

# Module logger (not self.log): the plain-http warning reaches the task log and caplog alike.
log = logging.getLogger(__name__)
DEFAULT_REQUEST_TIMEOUT = 60.0
#: Airflow's OpenSearch provider's connection type: the OpenSearch target.
OPENSEARCH_CONN_TYPE = "opensearch"
_USERINFO = re.compile(r"//[^/@\s]+@")


def _as_bool(conn_id: str, key: str, value: Any, default: bool) -> bool:
    return as_bool(value, default, lambda reason: ConnectionConfigError(conn_id, key, reason))


def _as_timeout(conn_id: str, value: Any) -> float:
    return as_positive_number(value, DEFAULT_REQUEST_TIMEOUT,
                              lambda reason: ConnectionConfigError(conn_id, "request_timeout", reason),
                              not_a_number="a number of seconds is required")


def _hosts(conn: Any, conn_id: str) -> list[str]:
    """URLs of the nodes: comma-separated Host, or host/port/schema of Airflow's own type."""
    raw = (conn.host or "").strip()
    if not raw:
        raise ConnectionConfigError(conn_id, "host", "no host URL (and no cloud_id extra)")
    airflow_type = conn.conn_type == "elasticsearch"
    default_scheme = ((conn.schema or "http") if airflow_type else "https").strip() or "http"
    hosts = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        url = part if "://" in part else f"{default_scheme}://{part}"
        netloc = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        has_port = ":" in netloc.rsplit("]", 1)[-1]
        if not has_port:
            # The client needs an explicit port: the connection's Port, 9200 for Airflow's own type
            # (as its provider does), else the URL scheme's default (Elastic Cloud endpoints: 443).
            default_port = 9200 if airflow_type else (443 if url.startswith("https://") else 80)
            url = url.replace(netloc, f"{netloc}:{conn.port or default_port}", 1)
        hosts.append(url.rstrip("/"))
    return hosts


def client_kwargs_from_connection(conn: Any, conn_id: str | None = None) -> dict[str, Any]:
    """Keyword arguments of :class:`elasticsearch.Elasticsearch` for an Airflow connection.

    Reads only the given connection object. Login set: basic auth with Password; Login empty:
    Password is an API key. A legacy ``api_key`` extra wins over both (deprecation warning); a
    Cloud ID replaces Host.

    :param conn: an Airflow ``Connection`` of type ``elasticsearch_ecs`` or ``elasticsearch``
        (anything with ``conn_type, host, port, schema, login, password, extra_dejson``).
    :param conn_id: id used in error messages (defaults to ``conn.conn_id``).
    :return: ``hosts`` or ``cloud_id``, ``basic_auth`` or ``api_key``, ``verify_certs``,
        ``ca_certs`` (when set) and ``request_timeout``.
    :raises ConnectionConfigError: a field is missing or malformed (no value is echoed).
    """
    conn_id = conn_id or getattr(conn, "conn_id", None) or "?"
    conn_type = conn.conn_type or "elasticsearch_ecs"
    extras = conn.extra_dejson or {}
    kwargs: dict[str, Any] = {}
    cloud_id = extra_value(extras, conn_type, "cloud_id")
    if cloud_id:
        kwargs["cloud_id"] = str(cloud_id).strip()
    else:
        kwargs["hosts"] = _hosts(conn, conn_id)
    api_key = extra_value(extras, conn_type, "api_key")
    if api_key:
        message = legacy_secret_message(conn_id, "api_key", "Password, with Login empty")
        warnings.warn(message, AirflowProviderDeprecationWarning, stacklevel=2)
        log.warning("%s", message)
    elif not conn.login and conn.password:
        api_key = conn.password
    if api_key:
        api_key = str(api_key).strip()
        # Base64 never contains ':', so "id:key" is the unencoded pair.
        kwargs["api_key"] = tuple(api_key.split(":", 1)) if ":" in api_key else api_key
    elif conn.login:
        kwargs["basic_auth"] = (conn.login, conn.password or "")
    verify_certs = extra_value(extras, conn_type, "verify_certs")
    kwargs["verify_certs"] = _as_bool(conn_id, "verify_certs", verify_certs, True)
    ca_certs = extra_value(extras, conn_type, "ca_certs")
    if ca_certs:
        kwargs["ca_certs"] = str(ca_certs)
    kwargs["request_timeout"] = _as_timeout(conn_id, extra_value(extras, conn_type, "request_timeout"))
    kind = credential_kind(kwargs)
    refusal = plain_http_refusal(kwargs.get("hosts") or (), kind) if kind else None
    opt_in = extra_value(extras, conn_type, ALLOW_INSECURE_HTTP)
    if refusal and not _as_bool(conn_id, ALLOW_INSECURE_HTTP, opt_in, False):
        raise ConnectionConfigError(conn_id, "host", refusal)
    return kwargs


def credential_kind(kwargs: dict[str, Any]) -> str | None:
    """What secret the client arguments would send: ``"API key"``, ``"password"`` or ``None``.

    :param kwargs: the output of :func:`client_kwargs_from_connection`.
    """
    if kwargs.get("api_key"):
        return "API key"
    in_url = any(urlsplit(h).username or urlsplit(h).password for h in kwargs.get("hosts") or ())
    if kwargs.get("basic_auth") or in_url:
        return "password"
    return None


def safe_error_text(exc: BaseException) -> str:
    """Describe a client error without credentials: status and error type, URLs without userinfo.

    :param exc: an exception raised by the Elasticsearch client.
    :return: a short message safe for logs, XCom and the UI.
    """
    if isinstance(exc, ElasticsearchEcsError):
        return str(exc)
    if isinstance(exc, ApiError):
        return f"HTTP {exc.meta.status} {exc.error}"
    if isinstance(exc, TransportError):
        return f"{type(exc).__name__}: {_USERINFO.sub('//***@', str(exc.message))[:200]}"
    if type(exc).__module__.startswith("opensearchpy"):
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            return f"HTTP {status} {getattr(exc, 'error', '')}"
        return f"{type(exc).__name__}: {_USERINFO.sub('//***@', str(getattr(exc, 'error', '')))[:200]}"
    return type(exc).__name__


@connection_form
class ElasticsearchEcsHook(BaseHook):
    """Build and cache an ``Elasticsearch`` client from an Airflow connection.

    Credentials come only from the connection; the client is built on first use.

    :param elasticsearch_conn_id: id of an ``elasticsearch_ecs`` or ``elasticsearch`` connection.
    """

    conn_name_attr = "elasticsearch_conn_id"
    default_conn_name = "elasticsearch_default"
    conn_type = "elasticsearch_ecs"
    hook_name = "Elasticsearch (ECS threat intel)"

    def __init__(self, elasticsearch_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.elasticsearch_conn_id = elasticsearch_conn_id

    def client_kwargs(self) -> dict[str, Any]:
        """Client arguments for this hook's connection, with secrets registered for masking.

        :return: see :func:`client_kwargs_from_connection`.
        """
        conn = self.get_connection(self.elasticsearch_conn_id)
        kwargs = client_kwargs_from_connection(conn, self.elasticsearch_conn_id)
        api_key = kwargs.get("api_key")
        if api_key:
            for part in api_key if isinstance(api_key, tuple) else (api_key,):
                mask_secret(part)
        if kwargs.get("basic_auth") and kwargs["basic_auth"][1]:
            mask_secret(kwargs["basic_auth"][1])
        for host in kwargs.get("hosts") or ():
            # https://user:password@es:9200 in Host: the client sends it as basic auth.
            password = urlsplit(host).password
            if password:
                mask_secret(password)
        kind = credential_kind(kwargs)
        if kind and plain_http_hosts(kwargs.get("hosts") or ()):
            # Only reached with allow_insecure_http set: client_kwargs_from_connection refuses otherwise.
            log.warning("Elasticsearch connection %r sends its %s over plain http (extra %s is set)",
                             self.elasticsearch_conn_id, kind, ALLOW_INSECURE_HTTP)
        return kwargs

    @cached_property
    def _client(self) -> Any:
        conn = self.get_connection(self.elasticsearch_conn_id)
        if conn.conn_type == OPENSEARCH_CONN_TYPE:
            from threatq_provider.opensearch.connection import opensearch_client

            return opensearch_client(self.elasticsearch_conn_id, conn)
        # orjson for JSON bodies, and the loader's bulk bodies sent without a copy (.serializers).
        return Elasticsearch(**self.client_kwargs(), serializers=client_serializers())

    @property
    def target(self) -> str:
        """``"opensearch"`` for an ``opensearch`` connection, else ``"elasticsearch"`` (reads the connection)."""
        conn = self.get_connection(self.elasticsearch_conn_id)
        return "opensearch" if conn.conn_type == OPENSEARCH_CONN_TYPE else "elasticsearch"

    def get_client(self) -> Any:
        """The cached client of this hook.

        :return: an ``elasticsearch.Elasticsearch``, or an ``opensearchpy.OpenSearch`` for an
            ``opensearch`` connection.
        """
        return self._client

    def get_conn(self) -> Any:
        """Same as :meth:`get_client` (Airflow's generic hook entry point)."""
        return self._client

    @names_requested_connection("elasticsearch_conn_id")  # the UI tests a copy under a random id
    def test_connection(self) -> tuple[bool, str]:
        """Ask the cluster (Elasticsearch or OpenSearch) for its health (works without the
        monitor/main privilege of ``GET /``).

        :return: ``(ok, message)``; the message never carries a credential.
        """
        try:
            health = self.get_client().cluster.health()
        except Exception as exc:  # the UI button must answer, whatever failed
            product = "OpenSearch" if type(exc).__module__.startswith("opensearchpy") else "Elasticsearch"
            return False, f"{product} not reachable: {safe_error_text(exc)}"
        return True, f"Connected to cluster {health['cluster_name']!r}, status {health['status']}"

    def close(self) -> None:
        """Close the client's connection pool, if one was built."""
        client = self.__dict__.pop("_client", None)
        if client is not None:
            client.close()
