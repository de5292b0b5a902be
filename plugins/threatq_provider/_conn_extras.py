"""Reading Airflow connection extras: the one place the hooks look up and parse extra values.

Used by the ThreatQ, MISP and Elasticsearch hooks. Each hook keeps its own error type, so the
parsers take a factory that builds the hook's exception from a reason text. Imports no Airflow.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable
from urllib.parse import urlsplit

from threatq_provider.coerce import CoercionError, parse_bool, parse_int

POSITIVE_REQUIRED = "a positive number is required"
#: The one extra, on every connection type of this provider, that lets credentials go over plain
#: ``http://``. Loopback URLs are not exempt: a connection's proxy extra, a port forward or a
#: sidecar can carry "127.0.0.1" traffic off the host in clear text, and one rule is easier to audit.
ALLOW_INSECURE_HTTP = "allow_insecure_http"
#: ThreatQ connection extras that name the instance (state keys, document ids, MISP UUIDs) and the
#: web UI that links back to it (``threat.indicator.reference``).
INSTANCE = "instance"
UI_BASE_URL = "ui_base_url"


def as_http_url(value: Any, invalid: Callable[[str], Exception]) -> str | None:
    """An ``http(s)://`` base URL extra without its trailing slash (``None`` when absent).

    :raises Exception: what ``invalid`` builds, when the value is not an http(s) URL with a host.
    """
    if value is None or str(value).strip() == "":
        return None
    url = str(value).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise invalid("an http:// or https:// URL with a host is required")
    return url


def extra_value(extras: dict[str, Any], conn_type: str, key: str) -> Any:
    """The value of an extra, falling back to the legacy ``extra__<conn_type>__<key>`` form.

    :param extras: the connection's ``extra_dejson``.
    :param conn_type: connection type used in the legacy key.
    :param key: plain extra key.
    :return: the value, or ``None`` when absent or empty in both forms.
    """
    value = extras.get(key)
    if value is None or value == "":
        value = extras.get(f"extra__{conn_type}__{key}")
    return None if value == "" else value


def as_bool(value: Any, default: bool, invalid: Callable[[str], Exception]) -> bool:
    """Parse a yes/no extra with the provider's one set of words (:func:`threatq_provider.coerce.parse_bool`:
    ``true/false``, ``yes/no``, ``on/off``, ``y/n``, ``1/0``; any case).

    :param value: raw extra value (unset, i.e. ``None``, blank or ``"None"`` → ``default``; a bool
        is taken as is).
    :param default: result when the value is unset.
    :param invalid: builds the exception to raise from a reason text (the value is not shown: a
        secret pasted into the wrong field must not reach a log).
    :return: the boolean.
    :raises Exception: what ``invalid`` builds, when the value is not a recognised word.
    """
    try:
        return parse_bool(value, "extra", default=default)
    except CoercionError:
        raise invalid("true or false is required (also yes/no, on/off, y/n, 1/0)") from None


def as_positive_number(value: Any, default: float, invalid: Callable[[str], Exception], *,
                       cast: type = float, not_a_number: str = POSITIVE_REQUIRED) -> Any:
    """Parse a positive number extra.

    :param value: raw extra value (``None`` or ``""`` → ``cast(default)``).
    :param default: result when the value is absent.
    :param invalid: builds the exception to raise from a reason text.
    :param cast: ``float`` or ``int``.
    :param not_a_number: reason given when the value does not parse.
    :return: the number, of type ``cast``.
    :raises Exception: what ``invalid`` builds, when the value does not parse or is not above zero.
    """
    if value is None or value == "":
        return cast(default)
    try:
        # Whole numbers through coerce: "12.7" or 12.7 is refused, not cut to 12.
        number = parse_int(value, "extra") if cast is int else cast(value)
    except (TypeError, ValueError):
        raise invalid(not_a_number) from None
    if number <= 0:
        raise invalid(POSITIVE_REQUIRED)
    return number


def plain_http_hosts(urls: Iterable[str]) -> list[str]:
    """The ``scheme://host:port`` of each ``http://`` URL among ``urls`` (userinfo and path left out).

    :param urls: URLs as the client will use them.
    :return: the plain-http ones, in order, safe to show (no ``user:password@``).
    """
    found = []
    for url in urls:
        parts = urlsplit(str(url).strip())
        if parts.scheme.lower() == "http":
            host = parts.hostname or "?"
            host = f"[{host}]" if ":" in host else host
            found.append(f"http://{host}" + (f":{parts.port}" if parts.port else ""))
    return found


def plain_http_refusal(urls: Iterable[str], credentials: str) -> str | None:
    """Why credentials must not be sent to ``urls``, or ``None`` when every URL is ``https://``.

    The text names the credential kind and the host, never a value, and says how to opt in.

    :param urls: the URLs the credentials would be sent to.
    :param credentials: what would be sent, e.g. ``"password"`` or ``"API key"``.
    :return: the reason, or ``None``.
    """
    hosts = plain_http_hosts(urls)
    if not hosts:
        return None
    return (f"refusing to send the {credentials} over plain http to {', '.join(hosts)}: anyone on the "
            "network path can read it. Use an https:// URL, or, for a lab or a local simulator, accept "
            f'the risk with the connection extra "{ALLOW_INSECURE_HTTP}": true')


def legacy_secret_message(conn_id: str, key: str, instead: str) -> str:
    """The deprecation notice for a secret kept in an extra, where Airflow's audit log does not mask it.

    :param conn_id: the connection id.
    :param key: the extra key holding the secret (its value is never shown).
    :param instead: where the secret belongs now, e.g. ``"Password, with Login empty"``.
    :return: the message.
    """
    return (f"connection {conn_id!r} keeps a secret in extra {key!r}, which is deprecated: `airflow "
            "connections add` records extra values in plain text in Airflow's log table (it masks only "
            f"Password). Move it to {instead}; the extra is still read meanwhile")
