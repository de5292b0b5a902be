"""Typed errors of the MISP side.

PyMISP reports a 4xx as a returned ``{"errors": (status, body)}`` dict and a 5xx as an exception
whose text is the raw body. The hook turns both into these classes so that no caller inspects a
dict or matches a string. Messages name the cause and the object (connection id, event uuid,
attribute) and never carry the API key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any


class MispError(Exception):
    """Base class of every MISP failure raised by this provider.

    :param message: human-readable cause, already free of secrets.
    :param status: HTTP status when the server answered, else None.
    :param path: request path (relative to the MISP URL) when known.
    """

    def __init__(self, message: str, *, status: int | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.path = path


class MispConfigError(MispError):
    """The connection or the share options are unusable (missing URL/key, unknown sharing group)."""


class MispAuthError(MispError):
    """MISP refused the API key (403 on the user lookup or any call)."""


class MispNotFound(MispError):
    """The event, attribute or route does not exist on the server (404)."""


class MispRateLimited(MispError):
    """MISP answered 429 (restSearch rate limit of the user's role)."""


class MispServerError(MispError):
    """MISP answered 5xx, a non-JSON body, or could not be reached."""


class MispRejected(MispError):
    """MISP refused a write (validation failure, 403 saveFail): ``errors`` holds its field messages.

    :param errors: MISP's ``errors`` member, e.g. ``{"value": ["Value not in the right type/format."]}``.
    """

    def __init__(self, message: str, *, errors: Any = None, status: int | None = None, path: str | None = None):
        super().__init__(message, status=status, path=path)
        self.errors = errors


class MispAttributeRejected(MispRejected):
    """One attribute of an event was refused while the rest of the event was shared.

    The message names the attribute (type, value, uuid) and MISP's reason.
    """


def _scrub(text: str, secret: str | None, limit: int = 300) -> str:
    """Cut a server text to ``limit`` characters and mask the API key if it ever appears."""
    text = str(text)
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= limit else text[:limit] + "…"


def _error_name(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("name") or "")
    return str(body)


def translate(action: str, response: Any, *, secret: str | None = None) -> Any:
    """Turn PyMISP's ``{"errors": (status, body)}`` answer into a typed ``MispError``.

    Partial successes (``"Event"``/``"Attribute"`` next to ``"errors"``) are returned unchanged:
    the object was written and the caller reads the per-attribute errors.

    :param action: what was attempted, e.g. ``"add event 6e57…"`` (names the object in messages).
    :param response: what the PyMISP call returned.
    :param secret: the API key, masked if a server echo ever contains it.
    :return: ``response`` when it is not an error.
    """
    if not isinstance(response, dict) or "errors" not in response:
        return response
    if "Event" in response or "Attribute" in response or "Object" in response:
        return response
    errors = response["errors"]
    if isinstance(errors, tuple | list) and len(errors) == 2 and isinstance(errors[0], int):
        status, body = errors
    else:
        status, body = None, errors
    text = _scrub(_error_name(body), secret)
    details = body.get("errors") if isinstance(body, dict) else None
    where = body.get("url") if isinstance(body, dict) else None
    if status == 403 and "Authentication failed" in text:
        raise MispAuthError(f"{action}: MISP refused the API key (403 {text})", status=status, path=where)
    if status == 404 and "already exists" not in text:
        raise MispNotFound(f"{action}: not found on MISP (404 {text})", status=status, path=where)
    if status == 429:
        raise MispRateLimited(f"{action}: MISP rate limit exceeded (429)", status=status, path=where)
    detail = f": {_scrub(json.dumps(details, default=str), secret)}" if details else ""
    raise MispRejected(f"{action}: MISP refused ({status} {text}){detail}", errors=details, status=status,
                       path=where)


def call(action: str, fn: Callable[..., Any], *args: Any, secret: str | None = None, **kwargs: Any) -> Any:
    """Run one PyMISP call and raise ``MispError`` subclasses instead of dicts or library errors.

    :param action: what is attempted, named in any error message.
    :param fn: the bound PyMISP method.
    :param secret: the API key, masked from messages.
    :return: the call's (non-error) result.
    """
    import requests  # here, not at module level: DAG files import the options (and so this module)
    from pymisp.exceptions import MISPServerError as _PyMispServerError
    from pymisp.exceptions import PyMISPError, PyMISPUnexpectedResponse

    try:
        response = fn(*args, **kwargs)
    except PyMISPUnexpectedResponse:
        raise MispServerError(f"{action}: MISP answered a body that is not JSON (proxy page or wrong URL?)") from None
    except _PyMispServerError as exc:
        match = re.match(r"Error code (\d+)", str(exc))
        status = int(match.group(1)) if match else None
        first = str(exc).split("\n", 2)
        excerpt = _scrub(first[1] if len(first) > 1 else "", secret, 200)
        # PyMISP reports every status >= 500 as "Error code 500"; only 4xx codes are exact.
        shown = "HTTP 5xx" if status == 500 else f"HTTP {status}"
        raise MispServerError(f"{action}: MISP server error ({shown}) {excerpt}".rstrip(), status=status) from None
    except requests.exceptions.Timeout:
        raise MispServerError(f"{action}: MISP did not answer in time (timeout)") from None
    except requests.exceptions.RequestException as exc:
        raise MispServerError(f"{action}: MISP unreachable ({type(exc).__name__})") from None
    except PyMISPError as exc:
        raise MispError(f"{action}: {_scrub(str(exc), secret)}") from None
    return translate(action, response, secret=secret)
