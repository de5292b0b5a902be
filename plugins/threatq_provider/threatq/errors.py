"""Typed errors of the ThreatQ client.

Every error is safe to show: messages name the cause and the object (HTTP method, API path,
status, field), never a password, client secret, access token or refresh token. Body excerpts
are cut short and pass through :func:`mask_body` first.

Family::

    ThreatQError
    ├── ThreatQConnectionError      network failure (refused, reset, timeout), after retries
    │   └── ThreatQTLSError         the server's certificate failed verification (never retried)
    ├── ThreatQValidationError      a bad input value, found before any request (also a ValueError)
    ├── ThreatQTooLarge             a download is larger than the caller's limit (memory guard)
    └── ThreatQAPIError             the server answered with an error (status, method, path, excerpt)
        ├── ThreatQAuthError        token endpoint refused the credentials, or 401/403 after re-auth
        ├── ThreatQBadRequest       400/422: the server rejected the input (field errors parsed)
        ├── ThreatQNotFound         404
        ├── ThreatQRateLimited      429 after retries
        ├── ThreatQServerError      5xx after retries
        └── ThreatQResponseError    2xx with a body that is not the JSON we expect (or truncated)
            └── ThreatQIncompleteError  paging ended short of the server's own ``total``
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

#: Longest body excerpt carried by an error, in characters.
EXCERPT_CHARS = 200

# JSON or form fields whose value is a credential, whatever the surrounding text.
_SECRET_KEYS = r"(?:access_token|refresh_token|id_token|token|client_secret|secret|password|api_key|apikey)"
_JSON_SECRET = re.compile(r'("' + _SECRET_KEYS + r'"\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
_FORM_SECRET = re.compile(r"(\b" + _SECRET_KEYS + r"=)[^&\s\"']+", re.IGNORECASE)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# Opaque, token-shaped strings: long runs of base64/hex/url-safe characters. This also hides
# 32-hex object hashes in excerpts; an error message loses nothing useful by that.
_TOKEN_SHAPED = re.compile(r"[A-Za-z0-9_\-+/=.]{32,}")

MASK = "***"


def mask_body(text: str, secrets: Iterable[str] = (), limit: int = EXCERPT_CHARS) -> str:
    """Return a short excerpt of ``text`` with every credential replaced by ``***``.

    :param text: response or request text (may be long).
    :param secrets: known secret values (password, client secret, tokens) to remove verbatim.
    :param limit: maximum length of the excerpt.
    :return: the masked excerpt, at most ``limit`` characters plus an ellipsis.
    """
    # Mask before cutting, so a secret straddling the cut is still removed.
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    text = _JSON_SECRET.sub(r'\1"' + MASK + '"', text)
    text = _FORM_SECRET.sub(r"\1" + MASK, text)
    text = _BEARER.sub(r"\1 " + MASK, text)
    text = _TOKEN_SHAPED.sub(MASK, text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


class ThreatQError(Exception):
    """Base of every error raised by the ThreatQ client and hook."""


class ThreatQConnectionError(ThreatQError):
    """The server could not be reached or dropped the connection, after the retries allowed.

    :param method: HTTP method.
    :param path: API path (no query string: it may carry a refresh token).
    :param reason: short description of the network failure (exception class name and text).
    :param attempts: how many times the request was sent.
    """

    def __init__(self, method: str, path: str, reason: str, attempts: int = 1) -> None:
        self.method = method
        self.path = path
        self.reason = reason
        self.attempts = attempts
        super().__init__(f"ThreatQ {method} {path} failed after {attempts} attempt(s): {reason}")


class ThreatQTLSError(ThreatQConnectionError):
    """The server's TLS certificate failed verification (untrusted CA, expired, wrong host name).

    Sent once, never retried: every retry meets the same certificate. The fix is on the
    connection (``ca_bundle``, the host name) or the server's certificate.
    """


class ThreatQValidationError(ThreatQError, ValueError):
    """A value given to the client is not valid; lists the accepted values where there is a list.

    :param field: name of the input at fault.
    :param value: the value received (never a secret).
    :param valid: the accepted values, if they form a list.
    :param reason: free text for rules that are not a list (e.g. a date format).
    """

    def __init__(
        self, field: str, value: Any, valid: Sequence[str] = (), reason: str | None = None
    ) -> None:
        self.field = field
        self.value = value
        self.valid = list(valid)
        if reason is None:
            reason = "valid values: " + ", ".join(self.valid) if self.valid else "invalid value"
        self.reason = reason
        super().__init__(f"invalid {field} {value!r}: {reason}")


class ThreatQTooLarge(ThreatQError):
    """A download is larger than the limit the caller set; it was abandoned, not held in memory.

    :param path: API path.
    :param limit: the limit in bytes.
    :param size: the size announced or reached, in bytes.
    """

    def __init__(self, path: str, limit: int, size: int) -> None:
        self.path = path
        self.limit = limit
        self.size = size
        super().__init__(f"ThreatQ GET {path}: content over the limit of {limit} bytes (at least {size} bytes)")


class ThreatQAPIError(ThreatQError):
    """The ThreatQ API answered with an error status.

    :param status: HTTP status code (``None`` when no usable response came back).
    :param method: HTTP method.
    :param path: API path without the query string.
    :param body_excerpt: the start of the response body, credentials masked.
    :param detail: optional one-line explanation put before the excerpt.
    """

    def __init__(
        self,
        status: int | None,
        method: str,
        path: str,
        body_excerpt: str = "",
        detail: str | None = None,
    ) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.body_excerpt = body_excerpt
        self.detail = detail
        parts = [f"ThreatQ {method} {path}"]
        parts.append(f"returned HTTP {status}" if status is not None else "failed")
        if detail:
            parts.append(f"({detail})")
        message = " ".join(parts)
        if body_excerpt:
            message += f": {body_excerpt}"
        super().__init__(message)


class ThreatQAuthError(ThreatQAPIError):
    """Credentials refused by ``/api/token``, or a call still unauthorised after one re-authentication."""


class ThreatQBadRequest(ThreatQAPIError):
    """400/422: the server rejected the request's content.

    :ivar errors: field errors parsed from either ThreatQ error form
        (``{"data":{"errors":{field:[msg]}}}`` or ``{"errors":[msg, [msg]]}``), as ``{field: [msg]}``
        with field ``"_"`` for messages not tied to a field.
    """

    def __init__(self, *args: Any, errors: dict[str, list[str]] | None = None, **kwargs: Any) -> None:
        self.errors = errors or {}
        super().__init__(*args, **kwargs)


class ThreatQNotFound(ThreatQAPIError):
    """404: the object or endpoint does not exist on this instance."""


class ThreatQRateLimited(ThreatQAPIError):
    """429 still returned after the retries allowed.

    :ivar retry_after: the last ``Retry-After`` value in seconds, if the server sent one.
    """

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)


class ThreatQServerError(ThreatQAPIError):
    """5xx, after the retries allowed for the status and the method."""


class ThreatQResponseError(ThreatQAPIError):
    """A success status with a body we cannot use: not JSON, truncated, or missing ``data``."""


class ThreatQIncompleteError(ThreatQResponseError):
    """Paging ended with fewer rows than the server's own ``total`` announced.

    Raised instead of ending quietly: a server or proxy that serves fewer rows than it counts
    (a silent cap, rows it will not hand out) would otherwise turn into a green run that staged
    part of the window.

    :ivar expected: rows the server's ``total`` announced.
    :ivar received: rows received before the server signalled the end.
    """

    def __init__(self, method: str, path: str, *, expected: int, received: int, where: str = "") -> None:
        self.expected = expected
        self.received = received
        detail = f"paging ended after {received} rows but the server's total is {expected}"
        super().__init__(200, method, path, "", detail=detail + (f"; {where}" if where else ""))
