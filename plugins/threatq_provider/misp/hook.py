"""Airflow hook for MISP: a Connection → a cached PyMISP client.

PyMISP's constructor is not lazy (it calls ``servers/getVersion``, ``users/view/me`` and
``attributes/describeTypes.json``), so the client is built on first use and cached for the task.
Connection: host = MISP URL, password = API key, extras ``verify_tls``, ``ca_bundle``, ``proxy``,
``timeout``, ``allow_insecure_http`` (declared as form fields in provider_info). An ``http://`` URL
is refused (the key would travel in clear text) unless ``allow_insecure_http`` is true. Errors
surface as ``MispError`` subclasses with the API key never in their text.
"""

from __future__ import annotations

import logging
import re
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from threatq_provider._conn_extras import ALLOW_INSECURE_HTTP, as_bool, plain_http_refusal
from threatq_provider._conn_test import names_requested_connection
from threatq_provider._connection_form import connection_form
from threatq_provider.misp.errors import MispAuthError, MispConfigError, MispError, MispServerError, call

# Module logger (not self.log): the plain-http warning reaches the task log and caplog alike.
log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 10.0
TOOL_NAME = "airflow-provider-threatq"
RETRY_STATUSES = (429, 502, 503, 504)


def retrying_adapter() -> Any:
    """An HTTP adapter that retries reads (GET/HEAD) on 429/502/503/504 and failed connects, with backoff.

    Writes are not retried here: a POST the server applied before failing would come back as
    "UUID not unique"; the task retry re-runs the whole upsert instead, which is idempotent.
    TLS failures (``other=0``) are not retried either: a certificate that fails verification comes
    back on every try (a rare transient handshake failure is left to the task retry).
    """
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(total=4, connect=3, read=2, status=3, other=0, backoff_factor=0.5, backoff_jitter=0.25,
                  status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET", "HEAD"}),
                  respect_retry_after_header=True, raise_on_status=False)
    return HTTPAdapter(max_retries=retry)


class _RedactKey(logging.Filter):
    """PyMISP logs request headers (the API key included) at DEBUG; blank the key out of its records."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.key in message:
            record.msg, record.args = message.replace(self.key, "***"), None
        return True


def _guard_pymisp_logs(key: str) -> None:
    pymisp_logger = logging.getLogger("pymisp")
    if not any(isinstance(f, _RedactKey) and f.key == key for f in pymisp_logger.filters):
        pymisp_logger.addFilter(_RedactKey(key))


# The network cause inside a requests/urllib3 error text: "[Errno 111] Connection refused", a
# timeout, a TLS failure or a DNS failure.
_CAUSE = re.compile(r"(\[Errno -?\d+\][^'\")\]]*|[Rr]ead timed out|timed out|certificate verify failed[^'\")\]]*|"
                    r"Name or service not known|nodename nor servname provided[^'\")]*)")


def _connect_failure(exc: BaseException, key: str) -> str:
    """Why PyMISP's constructor failed: the underlying error's type and network cause, no URL or key.

    PyMISP wraps every failure as ``Unable to connect to MISP (<url>)…: <error>``; the error it
    wraps is the exception's context.
    """
    cause = exc.__context__ or exc
    text = str(cause).replace(key, "***") if key else str(cause)
    found = _CAUSE.search(text)
    return f"{type(cause).__name__}: {found.group(1).strip()}" if found else type(cause).__name__


@connection_form
class MispHook(BaseHook):
    """Interact with MISP through PyMISP.

    :param misp_conn_id: Airflow connection id of type ``misp``.
    """

    conn_name_attr = "misp_conn_id"
    default_conn_name = "misp_default"
    conn_type = "misp"
    hook_name = "MISP"

    def __init__(self, misp_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.misp_conn_id = misp_conn_id

    @cached_property
    def client_kwargs(self) -> dict[str, Any]:
        """PyMISP constructor arguments from the connection (the API key included; never log this)."""
        conn = self.get_connection(self.misp_conn_id)
        url = (conn.host or "").strip()
        if not url:
            raise MispConfigError(f"connection {self.misp_conn_id!r}: host (MISP URL) is empty")
        if "://" not in url:
            url = f"{conn.schema or 'https'}://{url}"
        if conn.port and url.count(":") < 2:
            url = f"{url.rstrip('/')}:{conn.port}"
        key = conn.password or ""
        if not key:
            raise MispConfigError(f"connection {self.misp_conn_id!r}: password (MISP API key) is empty")
        extra = conn.extra_dejson or {}
        # A typo ("flase") must not switch TLS verification off: unknown words are an error.
        verify = self._flag(extra, "verify_tls", True)
        refusal = plain_http_refusal([url], "API key")
        if refusal and not self._flag(extra, ALLOW_INSECURE_HTTP, False):
            raise MispConfigError(f"connection {self.misp_conn_id!r}: {refusal}")
        if refusal:
            log.warning("MISP connection %r sends its API key over plain http (extra %s is set)",
                             self.misp_conn_id, ALLOW_INSECURE_HTTP)
        ca_bundle = extra.get("ca_bundle") or None
        proxy = extra.get("proxy") or None
        proxy_password = urlsplit(str(proxy)).password if proxy else None
        if proxy_password:
            mask_secret(proxy_password)  # http://user:password@proxy:3128 is a credential too
        try:
            read_timeout = float(extra.get("timeout") or 60)
        except (TypeError, ValueError):
            raise MispConfigError(f"connection {self.misp_conn_id!r}: extra timeout must be a number") from None
        return {
            "url": url.rstrip("/") + "/",
            "key": key,
            "ssl": ca_bundle if (verify and ca_bundle) else verify,
            "proxies": {"http": proxy, "https": proxy} if proxy else None,
            "timeout": (CONNECT_TIMEOUT_S, read_timeout),
            "tool": TOOL_NAME,
            "https_adapter": retrying_adapter(),
        }

    def _flag(self, extra: dict[str, Any], key: str, default: bool) -> bool:
        value = extra.get(key)
        conn_id = self.misp_conn_id
        return as_bool(value, default,
                       lambda reason: MispConfigError(f"connection {conn_id!r}: extra {key}: {reason}"))

    @property
    def url(self) -> str:
        """The MISP base URL of the connection."""
        return str(self.client_kwargs["url"])

    @cached_property
    def client(self) -> Any:
        """The PyMISP client, built once (three HTTP calls) and reused."""
        from pymisp import PyMISP
        from pymisp.exceptions import PyMISPError

        kwargs = self.client_kwargs
        mask_secret(kwargs["key"])  # Airflow's task-log masker
        _guard_pymisp_logs(kwargs["key"])  # PyMISP's own DEBUG lines print the headers
        try:
            client = PyMISP(**kwargs)
        except PyMISPError as exc:
            text = str(exc).replace(kwargs["key"], "***")
            if "(403" in text or "Authentication failed" in text:
                raise MispAuthError(f"connection {self.misp_conn_id!r}: MISP at {self.url} refused the API key "
                                    "(403); check the key and that its user may use the API", status=403) from None
            raise MispServerError(f"connection {self.misp_conn_id!r}: cannot reach MISP at {self.url} "
                                  f"({_connect_failure(exc, kwargs['key'])})") from None
        # PyMISP only takes an adapter for https://; give plain-http URLs (labs, the double) the same.
        session = getattr(client, "_PyMISP__session", None)
        if session is not None:
            session.mount("http://", retrying_adapter())
        return client

    def close(self) -> None:
        """Close the PyMISP client's HTTP session, if the client was built (the next use builds a new one)."""
        client = self.__dict__.pop("client", None)
        session = getattr(client, "_PyMISP__session", None)
        if session is not None:
            session.close()

    def get_conn(self) -> Any:
        """The cached PyMISP client (Airflow's generic accessor)."""
        return self.client

    def get_client(self) -> Any:
        """The cached PyMISP client."""
        return self.client

    def call(self, action: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``client.<method>(*args, **kwargs)``; raise ``MispError`` subclasses, never return an errors dict.

        :param action: what is attempted, named in error messages (e.g. ``"publish event <uuid>"``).
        :param method: PyMISP method name.
        :return: the call's result.
        """
        return call(action, getattr(self.client, method), *args, secret=self.client_kwargs["key"], **kwargs)

    @names_requested_connection("misp_conn_id")  # the UI tests a copy under a random id
    def test_connection(self) -> tuple[bool, str]:
        """Check URL, TLS and API key by building the client. :return: ``(ok, message)`` without secrets."""
        try:
            client = self.client
            version = client.misp_instance_version.get("version", "?")
            user = getattr(getattr(client, "_current_user", None), "email", "?")
            return True, f"Connected to MISP {version} at {self.url} as {user}"
        except MispError as exc:
            return False, str(exc)
        except Exception as exc:  # the UI's Test button must get an answer, never a traceback with a key
            key = self.client_kwargs.get("key") if "client_kwargs" in self.__dict__ else None
            text = str(exc).replace(key, "***") if key else str(exc)
            return False, f"{type(exc).__name__}: {text[:300]}"
