"""Typed errors of the MISP side.

PyMISP reports a 4xx as a returned ``{"errors": (status, body)}`` dict and a 5xx as an exception
whose text is the raw body. The hook turns both into these classes so that no caller inspects a
dict or matches a string. Messages name the cause and the object (connection id, event uuid,
attribute) and never carry the API key.
"""

from __future__ import annotations

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
