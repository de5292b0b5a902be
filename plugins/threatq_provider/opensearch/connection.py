"""An ``opensearchpy.OpenSearch`` client from Airflow's ``opensearch`` connection type.

The connection is the one of Airflow's OpenSearch provider (``apache-airflow-providers-opensearch``):
Host, Port, Login, Password, and the extras that provider reads (``use_ssl``, ``verify_certs``,
``url_prefix``, ``timeout``, ``headers``, ``http_compress``, ``opaque_id``, ``scheme``). Its
:class:`~airflow.providers.opensearch.hooks.opensearch.OpenSearchHook` builds the client; this
module adds what the Elasticsearch side of this provider does for every connection:

- credentials never go over plain http: Login/Password with ``use_ssl`` off is refused, unless the
  extra ``allow_insecure_http`` is true (as for ``elasticsearch_ecs``);
- the password is registered for masking before the client exists;
- the client uses urllib3's thread-safe connection pool (the loader keeps several bulk requests in
  flight), not the provider's default ``requests`` connection class;
- opensearch-py's ``opensearchpy.trace`` logger (every request body as a curl line) is quiet
  unless its level was set on purpose;
- without a ``timeout`` extra, requests may take 60 s (the Elasticsearch connection's default), not
  the client's 10 s: a 5 MB bulk request on a busy small cluster takes longer than that.

Note: Airflow's OpenSearch provider leaves ``verify_certs`` off unless the extra says ``true``;
with ``use_ssl`` on and ``verify_certs`` off this module logs a warning (set ``verify_certs``).
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.common.compat.sdk import mask_secret

from threatq_provider._conn_extras import ALLOW_INSECURE_HTTP, as_bool
from threatq_provider.elasticsearch.errors import ConnectionConfigError

log = logging.getLogger(__name__)

CONN_TYPE = "opensearch"
#: Seconds per request when the connection's ``timeout`` extra is unset (as ``elasticsearch_ecs``).
DEFAULT_REQUEST_TIMEOUT = 60


def _flag(conn_id: str, extras: dict[str, Any], key: str, default: bool) -> bool:
    return as_bool(extras.get(key), default, lambda reason: ConnectionConfigError(conn_id, key, reason))


def check_connection(conn: Any, conn_id: str) -> None:
    """Refuse what this provider never does with a connection; warn about what it should not.

    :param conn: an Airflow ``Connection`` of type ``opensearch``.
    :param conn_id: its id (messages).
    :raises ConnectionConfigError: no host, or credentials over plain http without the opt-in.
    """
    extras = conn.extra_dejson or {}
    if not (conn.host or "").strip():
        raise ConnectionConfigError(conn_id, "host", "no host")
    use_ssl = _flag(conn_id, extras, "use_ssl", False)
    if (conn.login or conn.password) and not use_ssl and not _flag(conn_id, extras, ALLOW_INSECURE_HTTP, False):
        raise ConnectionConfigError(
            conn_id, "host", "the password would go over plain http: set the extra use_ssl to true "
            f"(or {ALLOW_INSECURE_HTTP} to true to accept that risk)")
    if use_ssl and not _flag(conn_id, extras, "verify_certs", False):
        log.warning("OpenSearch connection %r does not verify the cluster's TLS certificate (Airflow's "
                    "OpenSearch provider defaults verify_certs to false): set the extra verify_certs to true",
                    conn_id)


def opensearch_client(conn_id: str, conn: Any) -> Any:
    """The ``opensearchpy.OpenSearch`` client that Airflow's ``OpenSearchHook`` builds for ``conn_id``.

    :param conn_id: id of an ``opensearch`` connection.
    :param conn: the same connection, already read (checked here, then read again by the hook).
    :raises ConnectionConfigError: see :func:`check_connection`.
    """
    from airflow.providers.opensearch.hooks.opensearch import OpenSearchHook
    from opensearchpy import Urllib3HttpConnection

    check_connection(conn, conn_id)
    if conn.password:
        mask_secret(conn.password)
    hook = OpenSearchHook(open_search_conn_id=conn_id, log_query=False,
                          open_search_conn_class=Urllib3HttpConnection)
    if hook.timeout is None:  # read by hook.client, which is built on first access
        hook.timeout = int(DEFAULT_REQUEST_TIMEOUT)
    trace = logging.getLogger("opensearchpy.trace")
    if trace.level == logging.NOTSET:
        # opensearch-py logs every request *with its body* as a curl line on this logger at INFO,
        # which Airflow's task logs would take (megabytes per bulk request). Opt in by setting its level.
        trace.setLevel(logging.WARNING)
    return hook.client
