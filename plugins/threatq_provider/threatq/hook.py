"""Airflow hook for ThreatQ: turns a ``threatq`` Connection into a :class:`ThreatQClient`.

Connection fields (declared as data in :mod:`threatq_provider.provider_info`):

=============  ========================  ==========================================================
field          extra key                 meaning
=============  ========================  ==========================================================
Host           –                         full URL, e.g. ``https://threatq.example.com``
Login          –                         account e-mail: set → password grant; empty → client
                                         credentials
Password       –                         account password (password grant), or the OAuth client secret
                                         (client-credentials grant, Login empty)
–              ``client_id``             OAuth client id (both grants)
–              ``client_secret``         deprecated: the client secret (client-credentials grant); put it
                                         in Password instead, where Airflow's audit log masks it
–              ``verify_tls``            verify the TLS certificate (default true)
–              ``ca_bundle``             PEM CA bundle path (optional)
–              ``proxy``                 proxy URL for all calls (optional)
–              ``timeout``               read timeout in seconds (default 60; connect is 10)
–              ``page_size``             rows per page when polling (default 1000)
–              ``allow_insecure_http``   send the credentials to an ``http://`` URL (default false:
                                         refused, loopback included)
–              ``instance``              name of this ThreatQ instance (default: derived from the host);
                                         see :mod:`threatq_provider.threatq.instance`
–              ``ui_base_url``           base URL of ThreatQ's web UI for links back (default: the host)
=============  ========================  ==========================================================

The grant follows from the fields alone: Login set means the password grant, Login empty means
the client-credentials grant with Password as the secret; a legacy ``client_secret`` extra still
selects client credentials (with a deprecation warning). Legacy ``extra__threatq__<key>`` extras
are read when the plain key is absent.
"""

from __future__ import annotations

import logging
import warnings
from functools import cached_property
from typing import Any, Callable
from urllib.parse import urlsplit

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from threatq_provider._conn_test import names_requested_connection
from threatq_provider._connection_form import connection_form
from threatq_provider._conn_extras import (
    ALLOW_INSECURE_HTTP,
    INSTANCE,
    UI_BASE_URL,
    as_http_url,
    as_bool,
    as_positive_number,
    extra_value,
    legacy_secret_message,
    plain_http_refusal,
)
from threatq_provider.threatq.auth import ClientCredentials, PasswordGrant
from threatq_provider.threatq.client import RetryPolicy, ThreatQClient
from threatq_provider.threatq.errors import ThreatQError, ThreatQValidationError, mask_body
from threatq_provider.threatq.instance import ThreatQInstance, derive_instance_name, validate_instance_name

# Module logger (not self.log): the plain-http warning reaches the task log and caplog alike.
log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 10.0


def _invalid(key: str, value: Any) -> Callable[[str], ThreatQValidationError]:
    return lambda reason: ThreatQValidationError(key, value, reason=reason)


def _as_bool(key: str, value: Any, default: bool) -> bool:
    return as_bool(value, default, _invalid(key, value))


def _as_number(key: str, value: Any, default: float, cast: type = float) -> Any:
    return as_positive_number(value, default, _invalid(key, value), cast=cast)


@connection_form
class ThreatQHook(BaseHook):
    """Interact with a ThreatQ instance through :class:`ThreatQClient`.

    Credentials come only from the connection. The client (one HTTP session, one cached token)
    is built on first use and reused by every call on this hook.

    :param threatq_conn_id: id of a ``threatq`` connection.
    """

    conn_name_attr = "threatq_conn_id"
    default_conn_name = "threatq_default"
    conn_type = "threatq"
    hook_name = "ThreatQ"

    def __init__(self, threatq_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threatq_conn_id = threatq_conn_id

    def _extra(self, extras: dict[str, Any], key: str) -> Any:
        return extra_value(extras, self.conn_type, key)

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments of :class:`ThreatQClient` read from the connection (reads it once per call).

        :return: ``base_url``, ``auth``, ``verify``, ``proxies``, ``timeout``, ``page_size``.
        :raises ThreatQValidationError: a field is missing or malformed (never echoes a secret).
        """
        conn = self.get_connection(self.threatq_conn_id)
        extras = conn.extra_dejson or {}
        base_url = self._base_url(conn)
        auth = self._grant(conn, extras)
        self._check_transport(base_url, auth, extras)
        verify: bool | str = _as_bool("verify_tls", self._extra(extras, "verify_tls"), True)
        ca_bundle = self._extra(extras, "ca_bundle")
        if verify and ca_bundle:
            verify = str(ca_bundle)
        proxy = self._extra(extras, "proxy")
        proxy_password = urlsplit(str(proxy)).password if proxy else None
        if proxy_password:
            mask_secret(proxy_password)  # http://user:password@proxy:3128 is a credential too
        read_timeout = _as_number("timeout", self._extra(extras, "timeout"), 60.0)
        page_size = _as_number("page_size", self._extra(extras, "page_size"), 1000, int)
        return {
            "base_url": base_url,
            "auth": auth,
            "verify": verify,
            "proxies": {"http": proxy, "https": proxy} if proxy else None,
            "timeout": (min(CONNECT_TIMEOUT_S, read_timeout), read_timeout),
            "page_size": page_size,
        }

    def instance(self) -> ThreatQInstance:
        """The ThreatQ instance this connection reads (extra ``instance``, else derived from the host).

        :return: the :class:`~threatq_provider.threatq.instance.ThreatQInstance`; ``explicit`` when
            the extra names it (only then are document ids prefixed and MISP UUIDs re-keyed).
        :raises ThreatQValidationError: the extra is not a valid name, or the host has none to derive.
        """
        conn = self.get_connection(self.threatq_conn_id)
        named = self._extra(conn.extra_dejson or {}, INSTANCE)
        try:
            if named not in (None, ""):
                return ThreatQInstance(validate_instance_name(named), explicit=True)
            return ThreatQInstance(derive_instance_name(self._base_url(conn)))
        except ValueError as exc:
            raise ThreatQValidationError("instance", named, reason=f"connection {self.threatq_conn_id!r}: {exc}") from None

    def ui_base_url(self) -> str | None:
        """Base URL of the ThreatQ web UI for links back (extra ``ui_base_url``, else the host URL).

        :return: the URL without a trailing slash.
        """
        conn = self.get_connection(self.threatq_conn_id)
        given = self._extra(conn.extra_dejson or {}, UI_BASE_URL)
        return as_http_url(given, _invalid(UI_BASE_URL, given)) or self._base_url(conn)

    def _grant(self, conn: Any, extras: dict[str, Any]) -> ClientCredentials | PasswordGrant:
        """Login set → password grant; Login empty → client credentials with Password as the secret."""
        client_id = self._extra(extras, "client_id") or ""
        legacy_secret = self._extra(extras, "client_secret")
        if legacy_secret:
            mask_secret(legacy_secret)  # Airflow masks Password by itself, not this extra
            message = legacy_secret_message(self.threatq_conn_id, "client_secret",
                                            "Password, with Login empty")
            warnings.warn(message, AirflowProviderDeprecationWarning, stacklevel=3)
            log.warning("%s", message)
            return ClientCredentials(client_id, str(legacy_secret))
        if conn.login:
            return PasswordGrant(client_id, conn.login, conn.password or "")
        if not conn.password:
            reason = (f"connection {self.threatq_conn_id!r} has no credentials: set Login and Password "
                      "(password grant), or leave Login empty and put the OAuth client secret in Password "
                      "(client-credentials grant)")
            raise ThreatQValidationError("password", "<empty>", reason=reason)
        return ClientCredentials(client_id, conn.password)

    def _check_transport(self, base_url: str, auth: ClientCredentials | PasswordGrant,
                         extras: dict[str, Any]) -> None:
        """Refuse to send the grant's secret over plain http unless the connection opts in."""
        refusal = plain_http_refusal([base_url], auth.secret_name)
        if refusal is None:
            return
        if not _as_bool(ALLOW_INSECURE_HTTP, self._extra(extras, ALLOW_INSECURE_HTTP), False):
            raise ThreatQValidationError("host scheme", "http",
                                         reason=f"connection {self.threatq_conn_id!r}: {refusal}")
        log.warning("ThreatQ connection %r sends its %s over plain http (extra %s is set)",
                         self.threatq_conn_id, auth.secret_name, ALLOW_INSECURE_HTTP)

    def _base_url(self, conn: Any) -> str:
        host = (conn.host or "").strip()
        if not host:
            raise ThreatQValidationError("host", host, reason=f"connection {self.threatq_conn_id!r} has no host URL")
        if "://" not in host:
            scheme = (conn.schema or "https").strip() or "https"
            host = f"{scheme}://{host}"
        scheme, rest = host.split("://", 1)
        netloc = rest.split("/", 1)[0]
        if conn.port and ":" not in netloc.rsplit("]", 1)[-1]:
            rest = rest.replace(netloc, f"{netloc}:{conn.port}", 1)
        return f"{scheme}://{rest}".rstrip("/")

    @cached_property
    def _client(self) -> ThreatQClient:
        # Tokens are registered with Airflow's masker as they arrive (see ThreatQClient on_secret).
        return ThreatQClient(**self.client_kwargs(), retry=RetryPolicy(), on_secret=mask_secret)

    def get_client(self) -> ThreatQClient:
        """The cached client of this hook.

        :return: a :class:`ThreatQClient`; close it with :meth:`close` when done.
        """
        return self._client

    def get_conn(self) -> ThreatQClient:
        """Same as :meth:`get_client` (Airflow's generic hook entry point)."""
        return self._client

    def close(self) -> None:
        """Close the client's HTTP session, if one was built."""
        client = self.__dict__.pop("_client", None)
        if client is not None:
            client.close()

    @names_requested_connection("threatq_conn_id")  # the UI tests a copy under a random id
    def test_connection(self) -> tuple[bool, str]:
        """Fetch a token and make one cheap read; used by the UI's Test button and the CLI.

        :return: ``(True, "Connected to ThreatQ at <url> as <identity>")`` or ``(False, reason)``;
            the reason never contains a password, secret or token.
        """
        try:
            client = ThreatQClient(**self.client_kwargs(), retry=RetryPolicy(total=1, backoff_factor=0.2),
                                   on_secret=mask_secret)
        except ThreatQError as exc:
            return False, f"ThreatQ connection {self.threatq_conn_id!r} is misconfigured: {exc}"
        except Exception as exc:  # connection lookup failed (missing id, bad JSON)
            reason = mask_body(f"{type(exc).__name__}: {exc}")
            return False, f"ThreatQ connection {self.threatq_conn_id!r} could not be read: {reason}"
        try:
            identity = client.check()
        except ThreatQError as exc:
            return False, f"Cannot connect to ThreatQ at {client.base_url}: {exc}"
        finally:
            client.close()
        return True, f"Connected to ThreatQ at {client.base_url} as {identity}"
