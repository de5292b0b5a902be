"""OAuth2 grants for ThreatQ's ``POST /api/token`` and the cached token.

Request shapes follow the public clients (docs/reference/threatq-api.md §1.2):

* password grant: JSON body ``{"email", "password", "grant_type": "password", "client_id"}``
  (InsightConnect, Polarity, Kibana, ThreatQ's Splunk app);
* client-credentials grant: ``?grant_type=client_credentials``, ``Authorization: Basic
  base64(client_id:client_secret)``, form body ``grant_type=client_credentials`` (Elastic Agent,
  ThreatQ's Splunk add-on, Kibana);
* refresh-token grant: ``?grant_type=refresh_token&refresh_token=<rt>`` as threatqsdk sends it,
  with the grant's own client authentication (Basic for client credentials, the old bearer
  token plus ``client_id`` for the password grant).

No Airflow import here: the client is tested against the simulator without Airflow.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

from threatq_provider.threatq.errors import ThreatQValidationError

# Renew this long before ``expires_in`` runs out, capped at a tenth of the lifetime so that very
# short-lived tokens (tests, strict servers) are still used at all.
RENEW_MARGIN_S = 60.0


def _require(field_name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        # The value itself is never echoed: it may be a secret.
        raise ThreatQValidationError(field_name, "<empty>" if not value else "<not a string>",
                                     reason="a non-empty string is required")


@dataclass(frozen=True)
class TokenRequest:
    """Everything ``POST /api/token`` needs for one grant.

    :ivar params: query string.
    :ivar json: JSON body, or ``None``.
    :ivar data: form body, or ``None``.
    :ivar headers: extra headers (client authentication).
    """

    # Every field may hold a credential (password, Basic header, refresh token): none in repr.
    params: dict[str, str] = field(repr=False)
    json: dict[str, str] | None = field(default=None, repr=False)
    data: dict[str, str] | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)


def _basic(client_id: str, client_secret: str) -> str:
    raw = f"{client_id}:{client_secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class PasswordGrant:
    """User login: ThreatQ account e-mail and password plus the instance's OAuth client id.

    :param client_id: per-instance client id (My Account → API Credentials).
    :param username: account e-mail.
    :param password: account password (never shown in repr, logs or errors).
    """

    client_id: str
    username: str
    password: str = field(repr=False)

    kind = "password grant"
    secret_name = "password"

    def __post_init__(self) -> None:
        _require("client_id", self.client_id)
        _require("username", self.username)
        _require("password", self.password)

    def describe(self) -> str:
        """Short, secret-free description, e.g. ``analyst@example.com (password grant)``."""
        return f"{self.username} ({self.kind})"

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a message."""
        return (self.password,)

    def token_request(self) -> TokenRequest:
        """The password-grant request."""
        return TokenRequest(
            params={},
            json={
                "email": self.username,
                "password": self.password,
                "grant_type": "password",
                "client_id": self.client_id,
            },
        )

    def refresh_request(self, refresh_token: str, access_token: str | None) -> TokenRequest:
        """The refresh-token request (threatqsdk shape)."""
        headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        return TokenRequest(
            params={"grant_type": "refresh_token", "refresh_token": refresh_token},
            data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": self.client_id},
            headers=headers,
        )


@dataclass(frozen=True)
class ClientCredentials:
    """OAuth client-credentials grant (an OAuth client created on the ThreatQ server).

    :param client_id: OAuth client id.
    :param client_secret: OAuth client secret (never shown in repr, logs or errors).
    """

    client_id: str
    client_secret: str = field(repr=False)

    kind = "client-credentials grant"
    secret_name = "client secret"

    def __post_init__(self) -> None:
        _require("client_id", self.client_id)
        _require("client_secret", self.client_secret)

    def describe(self) -> str:
        """Short, secret-free description."""
        return f"OAuth client ({self.kind})"

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a message."""
        return (self.client_secret,)

    def token_request(self) -> TokenRequest:
        """The client-credentials request: credentials in a Basic header, as Elastic sends them."""
        return TokenRequest(
            params={"grant_type": "client_credentials"},
            data={"grant_type": "client_credentials"},
            headers={"Authorization": _basic(self.client_id, self.client_secret)},
        )

    def refresh_request(self, refresh_token: str, access_token: str | None) -> TokenRequest:
        """The refresh-token request, authenticated as the OAuth client."""
        return TokenRequest(
            params={"grant_type": "refresh_token", "refresh_token": refresh_token},
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            headers={"Authorization": _basic(self.client_id, self.client_secret)},
        )


Grant = PasswordGrant | ClientCredentials


@dataclass(frozen=True)
class Token:
    """An access token and when to renew it (monotonic clock).

    :ivar access_token: bearer token.
    :ivar refresh_token: refresh token, if the server offered one.
    :ivar renew_at: ``time.monotonic()`` value after which the token is renewed before use.
    """

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    renew_at: float

    @classmethod
    def from_response(cls, body: Any, now: float | None = None) -> Token | None:
        """Build a token from a ``/api/token`` JSON body; ``None`` if it holds no usable token.

        :param body: parsed JSON.
        :param now: monotonic time of the request (default: now).
        """
        if not isinstance(body, dict):
            return None
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            return None
        refresh = body.get("refresh_token")
        try:
            raw_expiry = body.get("expires_in")
            expires_in = 3600.0 if raw_expiry in (None, "") else max(0.0, float(raw_expiry))
        except (TypeError, ValueError):
            expires_in = 3600.0
        margin = min(RENEW_MARGIN_S, expires_in / 10)
        start = time.monotonic() if now is None else now
        return cls(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            renew_at=start + expires_in - margin,
        )

    def fresh(self, now: float | None = None) -> bool:
        """True while the token need not be renewed."""
        return (time.monotonic() if now is None else now) < self.renew_at
