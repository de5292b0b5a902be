"""The ThreatQ client's transport: HTTP session, OAuth2 token, retries, errors, JSON parsing.

:class:`Transport` is the base every part of :class:`~threatq_provider.threatq.client.ThreatQClient`
builds on: it owns the ``requests.Session``, the token (renewed through
:mod:`~threatq_provider.threatq.auth`) and :meth:`Transport.request_json`, the one way the other
parts reach the server. Plain ``requests``; no Airflow import.

Retry rules (:class:`RetryPolicy`)
----------------------------------
* Connection errors before the request reached the server (refused, DNS, connect timeout):
  retried for every method, nothing was sent. A TLS certificate that fails verification is not
  retried (the same certificate comes back every time): it raises ``ThreatQTLSError`` at once.
* 429 and 503: retried for every method; the server says it did not process the request. A
  ``Retry-After`` header (seconds or HTTP date) is honoured, capped at ``retry_after_max``.
* 502 and 504 (a gateway may have forwarded the request), read errors, connection resets after
  the request was sent and truncated bodies: retried for *idempotent* requests only: GETs,
  read-only ``POST …/query`` calls, ``/api/token``, and ``POST /api/indicators`` (ThreatQ
  de-duplicates indicators by type and value, answering ``existing: "Y"``). ``POST /api/events``
  is not idempotent (ThreatQ creates a second event with the same title), so it is never re-sent
  once it may have reached the server: the caller gets the typed error instead of a duplicate,
  and can ask :meth:`ThreatQClient.find_event` whether the event was made before trying again
  (the Create Event operator does so on a task retry).
* 500 is not retried by default: on ThreatQ it is usually deterministic (e.g. an unsupported
  ``with=`` relation) and retrying only delays the error. Add 500 to ``RetryPolicy.statuses`` to
  retry it; it then follows the idempotency rule of 502/504.
* Other 4xx are never retried. A 401 on an API call triggers one re-authentication (refresh
  token first, then the full grant) and one re-send; a second 401 raises
  :class:`~threatq_provider.threatq.errors.ThreatQAuthError`.
* Malformed JSON in a complete response is not retried: it raises ``ThreatQResponseError``.

Backoff before retry *n* (1-based): ``min(backoff_max, backoff_factor * 2**(n-1)) +
uniform(0, jitter)`` seconds, or the ``Retry-After`` value plus the same jitter.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import msgspec
import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from threatq_provider import __version__
from threatq_provider._jsonscan import split_member, top_level_scalars
from threatq_provider._tls import certificate_failed
from threatq_provider.threatq.auth import ClientCredentials, Grant, PasswordGrant, Token, TokenRequest
from threatq_provider.threatq.errors import (
    ThreatQAPIError,
    ThreatQAuthError,
    ThreatQBadRequest,
    ThreatQConnectionError,
    ThreatQNotFound,
    ThreatQRateLimited,
    ThreatQResponseError,
    ThreatQServerError,
    ThreatQTLSError,
    ThreatQValidationError,
    mask_body,
)
from threatq_provider.threatq.paging import UnparsedRow

__all__ = ["RetryPolicy", "Transport"]

#: Every part of the client logs under this one name (the module that held them all before the
#: split), so log settings and filters written for it keep working.
log = logging.getLogger("threatq_provider.threatq.client")

_TOKEN_PATH = "/api/token"
_MISSING = object()


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry; validated when built.

    :param total: retries after the first attempt (0 disables retries).
    :param backoff_factor: seconds of the first backoff; doubles each retry.
    :param backoff_max: cap of one backoff, in seconds.
    :param jitter: up to this many random seconds added to each wait (spreads clients apart).
    :param statuses: HTTP statuses that may be retried (see the module docstring for which
        methods each applies to).
    :param retry_after_max: cap of a server's ``Retry-After``, in seconds.
    """

    total: int = 5
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    statuses: tuple[int, ...] = (429, 502, 503, 504)
    retry_after_max: float = 300.0

    def __post_init__(self) -> None:
        if not isinstance(self.total, int) or isinstance(self.total, bool) or self.total < 0:
            raise ThreatQValidationError("retry.total", self.total, reason="an integer >= 0 is required")
        for name in ("backoff_factor", "backoff_max", "jitter", "retry_after_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ThreatQValidationError(f"retry.{name}", value, reason="a number >= 0 is required")
        statuses = tuple(self.statuses)
        bad = [s for s in statuses if not isinstance(s, int) or not 400 <= s <= 599]
        if bad:
            raise ThreatQValidationError("retry.statuses", bad, reason="HTTP error statuses 400-599 only")
        object.__setattr__(self, "statuses", statuses)

    def backoff(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        if retry_after is not None:
            base = min(retry_after, self.retry_after_max)
        else:
            base = min(self.backoff_max, self.backoff_factor * (2 ** (retry - 1)))
        return base + random.uniform(0, self.jitter)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_connect_error(exc: requests.exceptions.RequestException) -> bool:
    """True when the request never reached the server (safe to re-send any method)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    inner = getattr(reason, "reason", reason)
    return isinstance(inner, (NewConnectionError, NameResolutionError))


def _is_certificate_error(exc: requests.exceptions.RequestException) -> bool:
    """True when TLS certificate verification failed (untrusted, expired, wrong host): never transient.

    requests wraps the ``ssl.SSLCertVerificationError`` in urllib3 errors (``args``, ``reason``);
    other TLS failures (a handshake cut short) may be transient and stay retryable.
    """
    if not isinstance(exc, requests.exceptions.SSLError):
        return False
    return certificate_failed(exc) or "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _network_reason(exc: requests.exceptions.RequestException) -> str:
    """Short cause of a network failure, e.g. ``connection refused``, without the URL repeated."""
    inner: Any = exc.args[0] if exc.args else exc
    inner = getattr(inner, "reason", inner)  # urllib3 MaxRetryError → the underlying error
    if isinstance(inner, BaseException) and inner.args and isinstance(inner.args[-1], BaseException):
        inner = inner.args[-1]  # ProtocolError('Connection aborted.', ConnectionResetError(...))
    text = str(inner)
    # urllib3 prefixes "<HTTPConnection(host=..., port=...)>: "; the caller names the host already.
    text = text.split(": ", 1)[1] if text.startswith(("<", "HTTPConnection", "HTTPSConnection")) and ": " in text else text
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


def _bad_request_errors(payload: Any) -> dict[str, list[str]]:
    """Field errors from either ThreatQ error form (docs/reference/threatq-api.md §2)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(payload, dict):
        return errors
    data = payload.get("data")
    form1 = data.get("errors") if isinstance(data, dict) else None
    if isinstance(form1, dict):
        for key, msgs in form1.items():
            errors[str(key)] = [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
    form2 = payload.get("errors")
    if isinstance(form2, list):
        flat: list[str] = []
        for item in form2:
            flat.extend(str(m) for m in (item if isinstance(item, list) else [item]))
        errors.setdefault("_", []).extend(flat)
    elif isinstance(form2, dict):
        for key, msgs in form2.items():
            errors[str(key)] = [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
    return errors


class Transport:
    """Session, token and retries of one ThreatQ instance (see the module docstring).

    Takes the arguments of :class:`~threatq_provider.threatq.client.ThreatQClient`, which
    documents them.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: Grant,
        verify: bool | str = True,
        proxies: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] = (10, 60),
        retry: RetryPolicy = RetryPolicy(),
        page_size: int = 1000,
        user_agent: str = f"airflow-provider-threatq/{__version__}",
        on_secret: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ThreatQValidationError("base_url", base_url, reason="an http:// or https:// URL is required")
        if not isinstance(auth, (PasswordGrant, ClientCredentials)):
            raise ThreatQValidationError("auth", type(auth).__name__,
                                         reason="PasswordGrant or ClientCredentials is required")
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise ThreatQValidationError("page_size", page_size, reason="an integer >= 1 is required")
        url = base_url.rstrip("/")
        if url.endswith("/api"):
            url = url[: -len("/api")]
        self.base_url = url
        self.auth = auth
        self.verify = verify
        self.proxies = dict(proxies or {})
        self.timeout = timeout
        self.retry = retry
        self.page_size = page_size
        self._session = requests.Session()
        self._session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})
        self._session.verify = verify
        if self.proxies:
            self._session.proxies.update(self.proxies)
        self._on_secret = on_secret
        self._token: Token | None = None
        self._token_lock = threading.Lock()
        # Indirection so tests can observe waits without sleeping.
        self._sleep: Callable[[float], None] = time.sleep

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- secrets and tokens ------------------------------------------------------------------

    def _secrets(self) -> tuple[str, ...]:
        token = self._token
        extra = (token.access_token, token.refresh_token or "") if token else ()
        return (*self.auth.secrets(), *extra)

    def _excerpt(self, text: str) -> str:
        return mask_body(text, self._secrets())

    def _access_token(self) -> str:
        with self._token_lock:
            token = self._token
            if token is not None and token.fresh():
                return token.access_token
            self._token = self._renew(token)
            return self._token.access_token

    def _renew(self, old: Token | None) -> Token:
        if old is not None and old.refresh_token:
            try:
                token = self._fetch_token(self.auth.refresh_request(old.refresh_token, old.access_token))
                log.debug("ThreatQ token refreshed with the refresh-token grant")
                return token
            except ThreatQAPIError as exc:
                # An expired or revoked refresh token is normal: fall back to the full grant.
                log.info("ThreatQ refresh-token grant refused (HTTP %s); requesting a new token", exc.status)
        token = self._fetch_token(self.auth.token_request())
        log.debug("ThreatQ token obtained with the %s", self.auth.kind)
        return token

    def _fetch_token(self, req: TokenRequest) -> Token:
        started = time.monotonic()
        resp = self._send(
            "POST", _TOKEN_PATH, params=req.params, json=req.json, data=req.data,
            headers=req.headers, idempotent=True, authenticated=False,
        )
        body = self._parse_json("POST", _TOKEN_PATH, resp)
        token = Token.from_response(body, now=started)
        if token is None:
            raise ThreatQAuthError(resp.status_code, "POST", _TOKEN_PATH, self._excerpt(resp.text),
                                   detail="token response has no access_token")
        if self._on_secret is not None:
            for secret in (token.access_token, token.refresh_token):
                if secret:
                    self._on_secret(secret)
        return token

    def invalidate_token(self) -> None:
        """Forget the access token (keeps the refresh token) so the next call renews it."""
        with self._token_lock:
            if self._token is not None:
                self._token = Token(self._token.access_token, self._token.refresh_token, renew_at=0.0)

    # -- HTTP core ---------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        authenticated: bool = True,
        stream: bool = False,
    ) -> requests.Response:
        """Send one logical request with retries and one re-authentication; return a 2xx response."""
        url = self.base_url + path
        retries = 0
        reauthenticated = False
        while True:
            hdrs = dict(headers or {})
            if authenticated:
                hdrs["Authorization"] = f"Bearer {self._access_token()}"
            try:
                resp = self._session.request(
                    method, url, params=params, json=json, data=data, headers=hdrs,
                    timeout=self.timeout, verify=self.verify, stream=stream,
                )
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                truncated = isinstance(exc, requests.exceptions.ChunkedEncodingError)
                safe = idempotent or _is_connect_error(exc)
                reason = self._excerpt(_network_reason(exc))
                if _is_certificate_error(exc):
                    raise ThreatQTLSError(method, path, reason, attempts=retries + 1) from None
                if safe and retries < self.retry.total:
                    retries += 1
                    wait = self.retry.backoff(retries)
                    log.warning("ThreatQ %s %s: %s; retry %d/%d in %.1fs", method, path,
                                type(exc).__name__, retries, self.retry.total, wait)
                    self._sleep(wait)
                    continue
                if truncated:
                    raise ThreatQResponseError(None, method, path, "", detail=f"truncated body: {reason}") from None
                raise ThreatQConnectionError(method, path, reason, attempts=retries + 1) from None
            except requests.exceptions.RequestException as exc:
                # InvalidURL, TooManyRedirects and the like: not transient.
                raise ThreatQConnectionError(method, path, self._excerpt(f"{type(exc).__name__}: {exc}"),
                                             attempts=retries + 1) from None

            status = resp.status_code
            if status < 400:
                return resp
            if status == 401 and authenticated and not reauthenticated:
                log.info("ThreatQ %s %s: HTTP 401, renewing the token once", method, path)
                reauthenticated = True
                self.invalidate_token()
                continue
            retry_after = _retry_after_seconds(resp.headers.get("Retry-After"))
            if status in self.retry.statuses and retries < self.retry.total and (
                status in (429, 503) or idempotent
            ):
                retries += 1
                wait = self.retry.backoff(retries, retry_after)
                log.warning("ThreatQ %s %s: HTTP %d; retry %d/%d in %.1fs", method, path, status,
                            retries, self.retry.total, wait)
                self._sleep(wait)
                continue
            raise self._http_error(method, path, resp, authenticated, retry_after)

    def _http_error(
        self, method: str, path: str, resp: requests.Response, authenticated: bool, retry_after: float | None
    ) -> ThreatQAPIError:
        status = resp.status_code
        excerpt = self._excerpt(resp.text or "")
        if path == _TOKEN_PATH and status in (400, 401, 403):
            return ThreatQAuthError(status, method, path, excerpt,
                                    detail=f"credentials refused for {self.auth.describe()}")
        if status in (401, 403):
            detail = "unauthorised after re-authentication" if status == 401 else "forbidden"
            return ThreatQAuthError(status, method, path, excerpt, detail=detail)
        if status == 404:
            return ThreatQNotFound(status, method, path, excerpt)
        if status in (400, 422):
            try:
                errors = _bad_request_errors(resp.json())
            except ValueError:
                errors = {}
            return ThreatQBadRequest(status, method, path, excerpt, errors=errors)
        if status == 429:
            return ThreatQRateLimited(status, method, path, excerpt, retry_after=retry_after)
        if status >= 500:
            return ThreatQServerError(status, method, path, excerpt)
        return ThreatQAPIError(status, method, path, excerpt)

    def _parse_json(self, method: str, path: str, resp: requests.Response, page: str | None = None) -> Any:
        try:
            try:
                # msgspec parses a page of indicators several times faster than the standard
                # library, and like it raises RecursionError past Python's recursion limit (the
                # too-deep path below is unchanged). What it refuses (not UTF-8, a lone surrogate
                # escape, NaN) is parsed as before, with the same outcome.
                return msgspec.json.decode(resp.content)
            except msgspec.DecodeError:
                return resp.json()
        except ValueError:
            raise ThreatQResponseError(resp.status_code, method, path, self._excerpt(resp.text or ""),
                                       detail="body is not valid JSON") from None
        except RecursionError:
            # Nested deeper than the parser recurses (~1,000 levels): a typed error, or for a
            # page its rows one by one, so one bad row does not sink the others.
            if page is None:
                raise ThreatQResponseError(resp.status_code, method, path, self._excerpt(resp.text[:400]),
                                           detail="body nested too deeply to parse") from None
            return self._split_page(method, path, resp.text, page)

    def _split_page(self, method: str, path: str, text: str, page: str) -> dict[str, Any]:
        """A page too deep to parse whole, parsed row by row (see :class:`.paging.UnparsedRow`)."""
        def unusable(why: str) -> ThreatQResponseError:
            return ThreatQResponseError(200, method, path, self._excerpt(text[:400]), detail=f"{page}: {why}")

        split = split_member(text, "data")
        if split is None:
            raise unusable("body nested too deeply to parse, and its rows cannot be told apart")
        try:
            envelope = jsonlib.loads(split.envelope)
        except (ValueError, RecursionError):
            raise unusable("body nested too deeply to parse, and its rows cannot be told apart") from None
        rows: list[Any] = []
        for member in split.members:
            try:
                rows.append(jsonlib.loads(member))
            except RecursionError:
                rows.append(UnparsedRow(top_level_scalars(member), member))
            except ValueError:
                raise unusable("body is not valid JSON") from None
        if not isinstance(envelope, dict):
            raise unusable("body nested too deeply to parse, and its rows cannot be told apart")
        envelope["data"] = rows
        return envelope

    def _parsed_rows(self, method: str, path: str, rows: list[dict[str, Any]], page: str,
                     keep_unparsed: bool) -> list[dict[str, Any]]:
        """``rows``, refusing an :class:`UnparsedRow` unless the caller takes them."""
        if not keep_unparsed:
            for row in rows:
                if isinstance(row, UnparsedRow):
                    raise ThreatQResponseError(200, method, path, "", detail=f"{page}: row id {row.get('id')} is "
                                               "nested too deeply to parse")
        return rows

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        page: str | None = None,
    ) -> Any:
        """Authenticated call returning parsed JSON (``None`` for an empty 2xx body, e.g. 204).

        :param method: HTTP method.
        :param path: API path starting with ``/api/``.
        :param params: query parameters (``None`` values are dropped).
        :param json: JSON body.
        :param idempotent: may the call be re-sent after it possibly reached the server?
            Default: ``True`` for GET/HEAD/PUT/DELETE and ``POST …/query``, else ``False``.
        :param page: for a page of a listing, where it is (e.g. ``cursorMark=…``): a body nested too
            deeply to parse whole is then parsed row by row, a row still too deep coming back as an
            :class:`~threatq_provider.threatq.paging.UnparsedRow`; the error otherwise names it.
        :return: the parsed body.
        """
        resp = self._response(method, path, params=params, json=json, idempotent=idempotent)
        if not resp.content:
            return None
        return self._parse_json(method.upper(), path, resp, page)

    def _response(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
                  idempotent: bool | None = None) -> requests.Response:
        """The raw 2xx response of :meth:`request_json` (same parameters), before parsing."""
        method = method.upper()
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE") or path.rstrip("/").endswith("/query")
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        return self._send(method, path, params=clean, json=json, idempotent=idempotent)

    def _get(self, path: str, **params: Any) -> Any:
        return self.request_json("GET", path, params=params)

    def _data_object(self, method: str, path: str, payload: Any) -> dict[str, Any]:
        data = payload.get("data") if isinstance(payload, dict) else None
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return data[0]
        if not isinstance(data, dict) or not data:
            raise ThreatQResponseError(200, method, path, self._excerpt(jsonlib.dumps(payload)[:400]),
                                       detail="response has no data object")
        return data

    def _page_rows(self, method: str, path: str, payload: Any) -> list[dict[str, Any]]:
        """Rows of one page of a paged listing.

        An empty ``data`` (``[]``, ThreatQ's ``{}``, or ``null``) ends the paging. A 2xx body without
        a ``data`` member, or with rows that are not objects, is an error: treating it as the end
        would silently drop the rest of the window.
        """
        data = payload.get("data", _MISSING) if isinstance(payload, dict) else _MISSING
        if data is None or (isinstance(data, dict) and not data):
            return []
        if isinstance(data, list) and all(isinstance(r, dict) for r in data):
            return data
        excerpt = self._excerpt(jsonlib.dumps(payload, default=str)[:400])
        detail = "page rows are not all objects" if isinstance(data, list) else "page has no data list"
        raise ThreatQResponseError(200, method, path, excerpt, detail=detail)

    # -- connectivity ------------------------------------------------------------------------

    def check(self) -> str:
        """Authenticate and make one cheap read; for ``test_connection``.

        :return: secret-free description of the identity used.
        :raises ThreatQError: on any failure.
        """
        self.invalidate_token()
        with self._token_lock:
            self._token = self._renew(None)
        self._get("/api/indicator/statuses", limit=1)
        return self.auth.describe()
