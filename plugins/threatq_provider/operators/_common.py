"""Plumbing the operators share: reading rendered template values, the run's clock, stage-file names,
and failing fast on errors no retry can heal (hooks: :mod:`threatq_provider.operators._base`).

Light at import time (DAG files import the operators): no client library is imported here.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.providers.common.compat.sdk import AirflowFailException

from threatq_provider._tls import certificate_failed
from threatq_provider.coerce import CoercionError, is_unset, parse_bool, parse_int, parse_iso

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

def is_template(value: Any) -> bool:
    """Whether an argument is still a Jinja template (checked at run time, not at parse time)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def as_bool(value: Any, name: str = "flag") -> bool:
    """A flag from a bool or a rendered template, with the provider's one set of words
    (:func:`threatq_provider.coerce.parse_bool`; unset, i.e. ``None``, empty or ``"None"``, is false).

    A misspelt word is an error, not "false": ``dry_run="ture"`` must not sweep for real.

    :param value: the raw value.
    :param name: the argument's name, for the error message.
    :return: the flag.
    :raises AirflowFailException: the value is not a flag (a retry cannot fix it).
    """
    try:
        return parse_bool(value, name, default=False)
    except CoercionError as exc:
        raise AirflowFailException(str(exc)) from None


def optional(value: Any, cast: type) -> Any:
    """``cast(value)``, or ``None`` when the value is unset (:func:`threatq_provider.coerce.is_unset`).

    :param value: the raw (rendered) value.
    :param cast: ``int`` (read by :func:`threatq_provider.coerce.parse_int`: ``"2.5"`` or ``2.5`` is
        refused, not cut to 2), ``float`` or ``str``.
    :return: the cast value or ``None``.
    :raises ValueError: the value does not convert.
    """
    if is_unset(value):
        return None
    return parse_int(value, "value") if cast is int else cast(value)


def resolve_now(value: Any, context: Context) -> datetime:
    """The run's clock: the given ISO-8601 value, else ``data_interval_end``, ``logical_date``, now.

    :param value: a datetime, an ISO-8601 string (``Z`` accepted) or unset.
    :param context: the task context.
    :return: an aware datetime (UTC when the value has no zone).
    :raises AirflowFailException: the value is not an ISO-8601 date-time (a retry cannot fix it).
    """
    if is_unset(value):
        value = context.get("data_interval_end") or context.get("logical_date")
    if value is None:
        return datetime.now(timezone.utc)
    try:
        return parse_iso(value, "now")
    except CoercionError as exc:
        raise AirflowFailException(str(exc)) from None


def sibling_ndjson_path(path: str, tag: str) -> str:
    """``…/ecs.ndjson`` → ``…/ecs.<tag>.ndjson``: a file written beside a stage file, compressed
    like it (``…/ecs.ndjson.zst`` → ``…/ecs.<tag>.ndjson.zst``).

    :param path: the stage file's URI (with or without the ``.ndjson`` suffix).
    :param tag: what the sibling holds, e.g. ``"rejects"``.
    :return: the sibling's URI.
    """
    zst = ".zst" if path.endswith(".zst") else ""
    return f"{path.removesuffix('.zst').removesuffix('.ndjson')}.{tag}.ndjson{zst}"


_TQ = "threatq_provider.threatq.errors"
_MISP = "threatq_provider.misp.errors"
_ES = "threatq_provider.elasticsearch.errors"
CERTIFICATE_FAILURE = "the server's TLS certificate failed verification"

#: Errors a task retry cannot heal, as ``(module, class, why)``, checked in order with isinstance.
#: A module not imported yet cannot have raised, so none is imported here (DAG parsing stays light).
#: Transient faults (connection refused/reset, timeouts, 429, 5xx, ThreatQConnectionError,
#: MispServerError, MispRateLimited, Elasticsearch's own transport errors) are not listed: they
#: keep the task's retries.
PERMANENT_ERRORS: tuple[tuple[str, str, str], ...] = (
    (_TQ, "ThreatQTLSError", CERTIFICATE_FAILURE),
    (_TQ, "ThreatQValidationError", "an argument or connection setting is invalid"),
    (_TQ, "ThreatQAuthError", "ThreatQ refused the credentials or the access"),
    (_TQ, "ThreatQBadRequest", "ThreatQ rejected the request's content"),
    (_TQ, "ThreatQNotFound", "ThreatQ has no such object (404)"),
    (_MISP, "MispAuthError", "MISP refused the API key (403)"),
    (_MISP, "MispConfigError", "the MISP connection or share options are unusable"),
    (_ES, "ConnectionConfigError", "the Elasticsearch connection is unusable"),
    ("elasticsearch", "AuthenticationException", "Elasticsearch refused the credentials (401)"),
    ("elasticsearch", "AuthorizationException", "Elasticsearch denied this user the operation (403)"),
    ("opensearchpy.exceptions", "AuthenticationException", "OpenSearch refused the credentials (401)"),
    ("opensearchpy.exceptions", "AuthorizationException", "OpenSearch denied this user the operation (403)"),
)
_USERINFO = re.compile(r"//[^/@\s]+@")

_Execute = TypeVar("_Execute", bound=Callable[..., Any])


def permanent_reason(exc: BaseException) -> str | None:
    """Why a retry cannot heal ``exc`` (see :data:`PERMANENT_ERRORS`), or ``None`` when it may be transient.

    :param exc: the error a task raised.
    :return: a short reason, or ``None``.
    """
    for module_name, class_name, why in PERMANENT_ERRORS:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return why
    return CERTIFICATE_FAILURE if certificate_failed(exc) else None


def fail_fast(execute: _Execute) -> _Execute:
    """Decorate an operator's ``execute``: an error no retry can heal fails the task at once.

    It becomes ``AirflowFailException`` (no retry) chained to the original, whose text it keeps;
    every other error propagates unchanged, so transient faults still use the task's retries.
    """

    @functools.wraps(execute)
    def run(self: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return execute(self, context, *args, **kwargs)
        except AirflowFailException:
            raise
        except Exception as exc:
            why = permanent_reason(exc)
            if why is None:
                raise
            # Our errors are secret-free by construction; a library's text loses any user:password@.
            own = type(exc).__module__.startswith("threatq_provider.")
            text = str(exc) if own else f"{type(exc).__name__}: {_USERINFO.sub('//***@', str(exc))[:300]}"
            raise AirflowFailException(f"{text} (not retried: {why})") from exc

    return run  # type: ignore[return-value]
