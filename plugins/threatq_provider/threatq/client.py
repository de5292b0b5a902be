"""ThreatQ REST API client: OAuth2 token, retries, paging, the seven InsightConnect actions.

Plain ``requests``; no Airflow import (the hook in :mod:`threatq_provider.threatq.hook` turns a
Connection into the arguments of :class:`ThreatQClient`).

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
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import msgspec
import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from threatq_provider import __version__
from threatq_provider.threatq import enums
from threatq_provider.threatq.auth import ClientCredentials, Grant, PasswordGrant, Token, TokenRequest
from threatq_provider.threatq.errors import (
    ThreatQAPIError,
    ThreatQAuthError,
    ThreatQBadRequest,
    ThreatQConnectionError,
    ThreatQError,
    ThreatQIncompleteError,
    ThreatQNotFound,
    ThreatQRateLimited,
    ThreatQResponseError,
    ThreatQServerError,
    ThreatQTLSError,
    ThreatQTooLarge,
    ThreatQValidationError,
    mask_body,
)
from threatq_provider._jsonscan import split_member, top_level_scalars
from threatq_provider.threatq.paging import (
    CollectionPage,
    UnparsedRow,
    after_clause,
    any_of,
    rows_of,
    sort_key,
    to_threatq_time,
    total_of,
    window_clauses,
)

__all__ = [
    "DEFAULT_COLLECTION_FIELDS",
    "DEFAULT_EVENT_WITH",
    "DEFAULT_WITH",
    "EVENT_FIELDS",
    "INDICATOR_FIELDS",
    "ClientCredentials",
    "CollectionPage",
    "PasswordGrant",
    "RetryPolicy",
    "ThreatQClient",
    "ThreatQError",
]

log = logging.getLogger(__name__)

#: Relations asked for when polling indicators. Since 2026 ThreatQ omits attributes and sources
#: unless asked (reference/threatq-api.md §2), so they are always named.
DEFAULT_WITH: tuple[str, ...] = ("attributes", "sources", "type", "status", "adversaries")
#: ``fields`` of the data-collection feed: every column plus the relations (Elastic PR #20042).
DEFAULT_COLLECTION_FIELDS: tuple[str, ...] = ("*", "sources", "attributes", "adversaries")
#: Relations asked for when iterating events (the MISP exporter needs them).
DEFAULT_EVENT_WITH: tuple[str, ...] = ("type", "attributes", "sources", "adversaries", "attachments", "tags")

#: Fields of the InsightConnect plugin's ``indicator`` type: the Search Indicators filter keys
#: and the fields of each result.
INDICATOR_FIELDS: tuple[str, ...] = (
    "id", "value", "class", "hash", "type_id", "status_id", "created_at", "updated_at", "last_detected_at",
)
#: Fields of the plugin's ``event`` type: the List Events filter keys and result fields.
EVENT_FIELDS: tuple[str, ...] = (
    "id", "title", "type_id", "description", "hash", "happened_at", "created_at", "updated_at",
)
_SEARCH_RESULT_FIELDS = ("id", "object", "value")
#: Rows :meth:`ThreatQClient.find_event` reads (newest first): same title, date and type.
_FIND_EVENT_LIMIT = 100

_TOKEN_PATH = "/api/token"
_MISSING = object()
_SORT = "updated_at,id"


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
    stack: list[Any] = [exc]
    seen: set[int] = set()
    while stack:
        err = stack.pop()
        if not isinstance(err, BaseException) or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ssl.SSLCertVerificationError):
            return True
        stack.extend((*err.args, getattr(err, "reason", None), err.__cause__, err.__context__))
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


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
    """Field errors from either ThreatQ error form (reference/threatq-api.md §2)."""
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


def _project(row: Any, keys: Sequence[str]) -> dict[str, Any]:
    if not isinstance(row, dict):
        return {}
    return {k: row[k] for k in keys if k in row}


def _join(values: Iterable[str] | str | None) -> str | None:
    if values is None:
        return None
    if isinstance(values, str):
        return values or None
    joined = ",".join(v for v in values if v)
    return joined or None


def _int_id(field_name: str, value: Any) -> int:
    try:
        ident = int(value)
    except (TypeError, ValueError):
        raise ThreatQValidationError(field_name, value, reason="a positive integer id is required") from None
    if ident <= 0 or (isinstance(value, float) and value != ident):
        raise ThreatQValidationError(field_name, value, reason="a positive integer id is required")
    return ident


class ThreatQClient:
    """Client of one ThreatQ instance; one ``requests.Session`` and one cached token.

    :param base_url: instance URL, e.g. ``https://threatq.example.com`` (a trailing ``/api`` is
        accepted and removed).
    :param auth: :class:`PasswordGrant` or :class:`ClientCredentials`.
    :param verify: verify TLS (``True``/``False``) or the path of a CA bundle.
    :param proxies: ``requests`` proxies mapping, e.g. ``{"https": "http://proxy:3128"}``.
    :param timeout: ``(connect, read)`` seconds, or one number for both.
    :param retry: retry policy.
    :param page_size: rows per page when paging (1–1000 on ThreatQ; Elastic uses 1000).
    :param user_agent: ``User-Agent`` header.
    :param on_secret: called with every access and refresh token received, so a log masker
        (Airflow's ``mask_secret``) can hide them: the refresh grant sends its token in the query
        string, which urllib3 logs at DEBUG.
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
        self._names: dict[str, dict[str, tuple[str, int]]] = {}
        # Indirection so tests can observe waits without sleeping.
        self._sleep: Callable[[float], None] = time.sleep

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        self._session.close()

    def __enter__(self) -> ThreatQClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ThreatQClient({self.base_url!r}, auth={self.auth.describe()!r})"

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
        method = method.upper()
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE") or path.rstrip("/").endswith("/query")
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        resp = self._send(method, path, params=clean, json=json, idempotent=idempotent)
        if not resp.content:
            return None
        return self._parse_json(method, path, resp, page)

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

    # -- name look-ups -----------------------------------------------------------------------

    def _name_map(self, kind: str) -> dict[str, tuple[str, int]]:
        cached = self._names.get(kind)
        if cached is not None:
            return cached
        path = {"indicator_types": "/api/indicator/types", "statuses": "/api/indicator/statuses",
                "event_types": "/api/event/types"}[kind]
        names: dict[str, tuple[str, int]] = {}
        offset = 0
        while True:
            payload = self._get(path, limit=self.page_size, offset=offset)
            rows = rows_of(payload)
            for row in rows:
                if isinstance(row, dict) and row.get("name") and row.get("id") is not None:
                    names[str(row["name"]).casefold()] = (str(row["name"]), int(row["id"]))
            total = payload.get("total") if isinstance(payload, dict) else None
            offset += len(rows)
            if not rows or not isinstance(total, int) or offset >= total:
                break
        self._names[kind] = names
        return names

    def _resolve(self, kind: str, name: str) -> tuple[str, int | None]:
        """Canonical name and instance id of a type/status name.

        Non-admin accounts get ``{}`` from the metadata endpoints; then the name is checked against
        the default enumerations and sent by name (the API accepts names), with id ``None``.
        """
        validators = {"indicator_types": enums.validate_indicator_type, "statuses": enums.validate_status,
                      "event_types": enums.validate_event_type}
        field_names = {"indicator_types": "indicator type", "statuses": "indicator status",
                       "event_types": "event type"}
        if not isinstance(name, str) or not name.strip():
            raise ThreatQValidationError(field_names[kind], name, reason="a non-empty name is required")
        wanted = name.strip()
        if kind == "indicator_types":
            aliases = enums.load().indicator_type_aliases
            wanted = next((t for a, t in aliases.items() if a.casefold() == wanted.casefold()), wanted)
        live = self._name_map(kind)
        if not live:
            return validators[kind](wanted), None
        hit = live.get(wanted.casefold())
        if hit is None:
            raise ThreatQValidationError(field_names[kind], name, sorted(n for n, _ in live.values()))
        return hit

    def indicator_type_id(self, name: str) -> int | None:
        """Id of an indicator type on this instance (cached per client).

        :param name: type name, any case; ``"Eamil Attachment"`` is read as ``"Email Attachment"``.
        :return: the id, or ``None`` when the account may not list types (then use the name).
        :raises ThreatQValidationError: unknown name, listing this instance's types.
        """
        return self._resolve("indicator_types", name)[1]

    def status_id(self, name: str) -> int | None:
        """Id of an indicator status on this instance (cached per client); see :meth:`indicator_type_id`."""
        return self._resolve("statuses", name)[1]

    def event_type_id(self, name: str) -> int | None:
        """Id of an event type on this instance (cached per client); see :meth:`indicator_type_id`."""
        return self._resolve("event_types", name)[1]

    # -- polling -----------------------------------------------------------------------------

    def _page_size(self, page_size: int | None) -> int:
        size = self.page_size if page_size is None else page_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ThreatQValidationError("page_size", size, reason="an integer >= 1 is required")
        return size

    def _iter_keyset(
        self,
        collection: str,
        clauses: list[dict[str, Any]],
        *,
        page_size: int | None,
        with_: Iterable[str] | str | None,
        fields: Iterable[str] | None,
        keep_unparsed: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``POST /api/<collection>/query`` in ``(updated_at, id)`` order, each row once.

        The first request asks for ``cursorMark=*`` sorted by ``updated_at`` (Kibana's way; the
        server keeps the position, so the window's filter stays the same on every page and the
        server can reuse its result). If the server answers without ``nextCursorMark`` it does not
        do cursors on this collection, and the client continues by keyset filter instead
        (:func:`~threatq_provider.threatq.paging.after_clause`). Either way a page holds only rows
        after the last one yielded, so nothing repeats, and an unsorted page or a server that
        ignores both mechanisms raises :class:`ThreatQResponseError` instead of looping.

        Paging ends on the server's signals, never on a short page alone (see :mod:`.paging`,
        "How paging ends"), and raises :class:`ThreatQIncompleteError` when it ends short of the
        server's ``total``.
        """
        size = self._page_size(page_size)
        path = f"/api/{collection}/query"
        cursor: str | None = "*"
        last: tuple[str, int] | None = None
        seen = 0  # rows received while following the cursor (a cursor page's total counts them all)
        capped = False
        while True:
            keyset = cursor is None and last is not None
            body: dict[str, Any] = {
                "criteria": {},
                "filters": {"+and": clauses + ([after_clause(last)] if keyset and last else [])},
            }
            if fields:
                body["fields"] = list(fields)
            params: dict[str, Any] = {"limit": size, "with": _join(with_)}
            if cursor is not None:
                params.update(sort="updated_at", cursorMark=cursor)
            else:
                params["sort"] = _SORT
            page = (f"page cursorMark={cursor}" if cursor is not None
                    else f"page after id {last[1]} updated_at {last[0]}" if last else "first page")
            payload = self.request_json("POST", path, params=params, json=body, page=page)
            rows = self._parsed_rows("POST", path, self._page_rows("POST", path, payload), page, keep_unparsed)
            try:
                fresh = [r for r in rows if last is None or sort_key(r) > last]
                keys = [sort_key(r) for r in fresh]
            except (TypeError, ValueError):
                raise ThreatQResponseError(200, "POST", path, "", detail="a row has no integer id") from None
            if keys != sorted(keys):
                raise ThreatQResponseError(200, "POST", path, "", detail=f"rows not sorted by {_SORT}")
            if rows and not fresh:
                # The server ignored both cursor and keyset; paging on would loop for ever.
                raise ThreatQResponseError(200, "POST", path, "", detail="paging ignored by server")
            if fresh:
                yield fresh
                last = keys[-1]
                seen += len(fresh)
            total = total_of(payload)
            on_cursor = cursor is not None
            # Rows the server still counts beyond this page: a cursor page's total is the whole
            # window, a keyset page's total the rows after the last one received before it.
            remaining = None if total is None else (total - seen if on_cursor else total - len(rows))
            if not rows:
                self._check_complete(path, total if on_cursor else None, seen, remaining, last)
                return
            # The server's total is reached. On a cursor page that ends the paging only where no
            # row can have been counted twice: the first page, or a short page before any cap
            # (a row updated mid-run comes back at the end of the sort, so later pages may repeat
            # rows the total counts once, and unseen rows may still follow).
            if remaining is not None and remaining <= 0 and (
                not on_cursor or cursor == "*" or (len(rows) < size and not capped)
            ):
                return
            if len(rows) < size:
                # Short, yet the server counts more (or sent no total to tell): a capped page.
                if not capped:
                    log.warning("ThreatQ POST %s served %d rows for limit=%d and counts %s more: the server "
                                "(or a proxy) caps pages; paging on until it signals the end",
                                path, len(rows), size, remaining if remaining is not None else "maybe")
                capped = True
            if on_cursor:
                nxt = payload.get("nextCursorMark") if isinstance(payload, dict) else None
                if not isinstance(nxt, str) or not nxt:
                    log.debug("ThreatQ %s: no nextCursorMark, paging by keyset", path)
                    cursor = None
                elif nxt == cursor:
                    self._check_complete(path, total, seen, remaining, last)
                    return
                else:
                    cursor = nxt

    def _check_complete(self, path: str, total: int | None, seen: int, remaining: int | None,
                        last: tuple[str, int] | None) -> None:
        """At the server's end signal: raise when it still counts rows it never sent."""
        if remaining is None or remaining <= 0:
            return
        where = f"last row id {last[1]} updated_at {last[0]}" if last else "no row received"
        expected = total if total is not None else seen + remaining
        raise ThreatQIncompleteError("POST", path, expected=expected, received=seen, where=where)

    def iter_indicator_pages(
        self,
        updated_since: datetime | str,
        updated_until: datetime | str,
        *,
        types: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
        min_score: int | None = None,
        sources: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        page_size: int | None = None,
        with_: Iterable[str] | str | None = DEFAULT_WITH,
        fields: Iterable[str] | None = None,
        keep_unparsed: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of indicators with ``updated_since <= updated_at < updated_until``.

        Sorted by ``(updated_at, id)`` and paged by keyset, so each row of the window arrives
        exactly once even when rows change during the run (see :mod:`.paging`). Empty pages
        (``data: []`` or ``{}``) end the iteration.

        :param updated_since: window start, included (datetime or ISO string; naive = UTC).
        :param updated_until: window end, excluded.
        :param types: only these indicator type names (aliases accepted); ``None``/empty = all.
        :param statuses: only these status names; ``None``/empty = all.
        :param min_score: only indicators whose score is at least this (0-10); ``None`` = all.
        :param sources: only indicators from any of these sources (names); ``None``/empty = all.
        :param tags: only indicators carrying any of these tags (names); ``None``/empty = all.
        :param page_size: rows per request (default: the client's ``page_size``).
        :param with_: relations to embed (default :data:`DEFAULT_WITH`).
        :param fields: optional ``fields`` list sent in the query body.
        :param keep_unparsed: yield a row nested too deeply to parse as an
            :class:`~threatq_provider.threatq.paging.UnparsedRow` (its text, id and ``updated_at``)
            in its place, so the caller can set it aside and page on; ``False`` raises
            :class:`ThreatQResponseError` naming the row's id and page.
        :return: iterator of non-empty lists of indicator dicts.
        """
        since = to_threatq_time(updated_since, "updated_since")
        until = to_threatq_time(updated_until, "updated_until")
        if since > until:
            raise ThreatQValidationError("updated_until", until, reason=f"must not be before {since}")
        clauses = window_clauses(since, until)
        # None or an empty list both mean "every type" (a Param default of [] reads naturally).
        if types:
            names = [self._resolve("indicator_types", t)[0] for t in ([types] if isinstance(types, str) else types)]
            clauses.append(any_of("type_name", names))
        if statuses:
            names = [self._resolve("statuses", s)[0] for s in ([statuses] if isinstance(statuses, str) else statuses)]
            clauses.append(any_of("status_name", names))
        # The filters of a data collection (Threat Library search), as ThreatQ's query grammar
        # spells them; a collection's own criteria are the server's business.
        if min_score is not None:
            clauses.append({"score": {"+gte": int(min_score)}})
        for key, names in (("source_name", sources), ("tags", tags)):
            if names:
                clauses.append(any_of(key, [names] if isinstance(names, str) else list(names)))
        if since == until:
            return
        yield from self._iter_keyset("indicators", clauses, page_size=page_size, with_=with_, fields=fields,
                                     keep_unparsed=keep_unparsed)

    def iter_indicator_ids(self, *, page_size: int | None = None) -> Iterator[list[int]]:
        """Pages of the ids of every indicator ThreatQ has, ascending, ids only.

        ``POST /api/indicators/query?sort=id`` with ``fields=["id"]`` and the keyset filter
        ``id > <last id>``: each page costs the server an index seek, memory stays flat, and an
        indicator created or deleted meanwhile cannot make the paging skip or repeat one. It ends on
        an empty page only (a capped page is simply followed by the next), so a short page never
        passes for the end. For the deletion reconciliation, which merges this stream with the
        active index's ids.

        :param page_size: ids per request (default: the client's ``page_size``).
        :return: iterator of non-empty lists of ids, strictly ascending across pages.
        :raises ThreatQResponseError: a row without an integer id, or ids out of order (the merge
            would be wrong), or a server that ignores the filter.
        """
        size = self._page_size(page_size)
        path = "/api/indicators/query"
        last: int | None = None
        while True:
            clauses = [] if last is None else [{"id": {"+gt": last}}]
            body = {"criteria": {}, "filters": {"+and": clauses}, "fields": ["id"]}
            page = f"page after id {last}" if last is not None else "first page"
            payload = self.request_json("POST", path, params={"limit": size, "sort": "id"}, json=body, page=page)
            rows = self._page_rows("POST", path, payload)
            try:
                ids = [int(row["id"]) for row in rows]
            except (KeyError, TypeError, ValueError):
                raise ThreatQResponseError(200, "POST", path, "", detail=f"{page}: a row has no integer id") from None
            if not ids:
                return
            if any(b <= a for a, b in zip(ids, ids[1:])) or (last is not None and ids[0] <= last):
                raise ThreatQResponseError(200, "POST", path, "",
                                           detail=f"{page}: ids not strictly ascending (sort=id ignored?)")
            yield ids
            last = ids[-1]

    def iter_indicators(self, updated_since: datetime | str, updated_until: datetime | str,
                        **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Indicators of :meth:`iter_indicator_pages`, one by one (same arguments)."""
        for page in self.iter_indicator_pages(updated_since, updated_until, **kwargs):
            yield from page

    def iter_collection_pages(
        self,
        collection_hash: str,
        *,
        cursor: str = "*",
        page_size: int | None = None,
        fields: Iterable[str] | None = None,
        keep_unparsed: bool = False,
    ) -> Iterator[CollectionPage]:
        """Pages of a data collection (saved Threat Library search), by ``cursorMark``.

        ``GET /api/indicators/query/hash/{hash}?sort=updated_at&limit=&cursorMark=&fields=`` as the
        Elastic Agent calls it. Stops on an empty page (``data: []`` or ``{}``), a missing
        ``nextCursorMark``, or a cursor that no longer changes. Each page carries the cursor to
        resume *after* it; persist it once the page is staged, and pass it back as ``cursor``.

        :param collection_hash: the collection's hash id.
        :param cursor: ``"*"`` for the start, else a saved ``next_cursor``.
        :param page_size: rows per request.
        :param fields: ``fields`` list (default :data:`DEFAULT_COLLECTION_FIELDS`; ``()`` sends none).
        :param keep_unparsed: as for :meth:`iter_indicator_pages`.
        :return: iterator of :class:`CollectionPage`.
        """
        if not isinstance(collection_hash, str) or not collection_hash.strip():
            raise ThreatQValidationError("collection_hash", collection_hash, reason="a non-empty hash is required")
        if not isinstance(cursor, str) or not cursor:
            raise ThreatQValidationError("cursor", cursor, reason='"*" or a saved nextCursorMark is required')
        size = self._page_size(page_size)
        path = f"/api/indicators/query/hash/{quote(collection_hash.strip(), safe='')}"
        field_list = _join(DEFAULT_COLLECTION_FIELDS if fields is None else fields)
        while True:
            page = f"page cursorMark={cursor}"
            payload = self.request_json("GET", path, params={"sort": "updated_at", "limit": size, "cursorMark": cursor,
                                                             "fields": field_list}, page=page)
            rows = self._parsed_rows("GET", path, self._page_rows("GET", path, payload), page, keep_unparsed)
            nxt = payload.get("nextCursorMark") if isinstance(payload, dict) else None
            nxt = nxt if isinstance(nxt, str) and nxt else None
            if not rows:
                return
            yield CollectionPage(indicators=rows, next_cursor=nxt)
            if nxt is None or nxt == cursor:
                return
            cursor = nxt

    def _iter_offset(self, path: str, params: Mapping[str, Any], page_size: int | None) -> Iterator[dict[str, Any]]:
        """Offset paging over a GET list (related lists, where rows do not move mid-run).

        Ends when the offset reaches the server's ``total`` or on an empty page, never on a short
        page alone (a capped ``limit``); an empty page short of ``total`` raises
        :class:`ThreatQIncompleteError`.
        """
        size = self._page_size(page_size)
        offset = 0
        while True:
            page = f"page offset={offset}"
            payload = self.request_json("GET", path, params={**params, "limit": size, "offset": offset}, page=page)
            rows = self._parsed_rows("GET", path, self._page_rows("GET", path, payload), page, False)
            yield from rows
            offset += len(rows)
            total = total_of(payload)
            if total is not None and offset >= total:
                return
            if not rows:
                if total is not None:
                    raise ThreatQIncompleteError("GET", path, expected=total, received=offset,
                                                 where=f"empty page at offset {offset}")
                return

    def iter_events(
        self,
        updated_since: datetime | str | None = None,
        updated_until: datetime | str | None = None,
        *,
        with_: Iterable[str] | str | None = DEFAULT_EVENT_WITH,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Events with ``updated_since <= updated_at < updated_until`` (open ends allowed), by keyset.

        :param updated_since: start, included; ``None`` for no lower bound.
        :param updated_until: end, excluded; ``None`` for no upper bound.
        :param with_: relations to embed (default :data:`DEFAULT_EVENT_WITH`).
        :param page_size: rows per request.
        :return: iterator of event dicts.
        """
        clauses: list[dict[str, Any]] = []
        if updated_since is not None:
            clauses.append({"updated_at": {"+gte": to_threatq_time(updated_since, "updated_since")}})
        if updated_until is not None:
            clauses.append({"updated_at": {"+lt": to_threatq_time(updated_until, "updated_until")}})
        for page in self._iter_keyset("events", clauses, page_size=page_size, with_=with_, fields=None):
            yield from page

    def iter_event_indicators(
        self, event_id: int, *, with_: Iterable[str] | str | None = ("type", "status"), page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Indicators related to an event (``GET /api/events/{id}/indicators``, offset paging).

        :param event_id: ThreatQ event id.
        :param with_: relations to embed in each indicator.
        :param page_size: rows per request.
        :return: iterator of indicator dicts (each may carry a ``pivot``).
        """
        ident = _int_id("event_id", event_id)
        yield from self._iter_offset(f"/api/events/{ident}/indicators", {"with": _join(with_)}, page_size)

    def get_investigation(self, name_or_id: int | str, *, with_: Iterable[str] | str | None = None) -> dict[str, Any]:
        """One investigation, by id or by exact name.

        :param name_or_id: numeric id, or the investigation's name.
        :param with_: relations to embed.
        :return: the investigation object.
        :raises ThreatQNotFound: no investigation with that id or name.
        """
        if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.strip().isdigit()):
            ident = _int_id("investigation", name_or_id)
            path = f"/api/investigations/{ident}"
            return self._data_object("GET", path, self._get(path, **{"with": _join(with_)}))
        if not isinstance(name_or_id, str) or not name_or_id.strip():
            raise ThreatQValidationError("investigation", name_or_id, reason="an id or a name is required")
        path = "/api/investigations"
        rows = rows_of(self._get(path, name=name_or_id.strip(), limit=2, **{"with": _join(with_)}))
        for row in rows:
            if isinstance(row, dict) and row.get("name") == name_or_id.strip():
                return row
        raise ThreatQNotFound(404, "GET", path, "", detail=f"no investigation named {name_or_id.strip()!r}")

    def download_attachment(self, attachment_id: int, *, max_bytes: int | None = None) -> bytes:
        """Content of an attachment (``GET /api/attachments/{id}/download``).

        :param attachment_id: ThreatQ attachment id.
        :param max_bytes: largest content accepted; a bigger file is abandoned while streaming
            (never held whole in memory). ``None``: no limit.
        :return: the file's bytes.
        :raises ThreatQTooLarge: the content is over ``max_bytes``.
        """
        ident = _int_id("attachment_id", attachment_id)
        path = f"/api/attachments/{ident}/download"
        if max_bytes is None:
            return self._send("GET", path, headers={"Accept": "*/*"}, idempotent=True).content
        with self._send("GET", path, headers={"Accept": "*/*"}, idempotent=True, stream=True) as resp:
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ThreatQTooLarge(path, max_bytes, int(declared))
            content = bytearray()
            try:
                for block in resp.iter_content(1 << 16):
                    content += block
                    if len(content) > max_bytes:
                        raise ThreatQTooLarge(path, max_bytes, len(content))
            except requests.exceptions.RequestException as exc:
                raise ThreatQConnectionError("GET", path, self._excerpt(_network_reason(exc))) from None
            return bytes(content)

    # -- the seven actions of the InsightConnect ThreatQ plugin ------------------------------

    def _filters(self, field_name: str, given: Mapping[str, Any] | None, allowed: Sequence[str],
                 names: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
        """Query filters from a plugin-style search object; ``names`` maps a name key to (kind, id key)."""
        if given is None:
            return {}
        if not isinstance(given, Mapping):
            raise ThreatQValidationError(field_name, given, reason="a mapping of field → value is required")
        out: dict[str, Any] = {}
        for key, value in given.items():
            if value is None or value == "":
                continue  # the plugin drops empty inputs (komand.helper.clean_dict)
            if key in names:
                kind, id_key = names[key]
                canonical, ident = self._resolve(kind, value)
                out[id_key] = ident if ident is not None else canonical
            elif key in allowed:
                out[key] = value
            else:
                raise ThreatQValidationError(f"{field_name} key", key, [*allowed, *names])
        return out

    def search_indicators(self, indicator: Mapping[str, Any] | None = None, *,
                          limit: int | None = None) -> dict[str, Any]:
        """Search Indicators: ``GET /api/indicators`` filtered by indicator fields.

        :param indicator: filter fields of the plugin's ``indicator`` type (:data:`INDICATOR_FIELDS`);
            ``type``/``status`` names are also accepted and resolved to this instance's ids.
        :param limit: maximum rows (server default if ``None``).
        :return: ``{"total": int, "data": [indicator]}``, each indicator with the plugin's fields.
        """
        params = self._filters("indicator", indicator, INDICATOR_FIELDS,
                               {"type": ("indicator_types", "type_id"), "status": ("statuses", "status_id")})
        payload = self._get("/api/indicators", **params, limit=limit)
        rows = rows_of(payload)
        total = payload.get("total") if isinstance(payload, dict) else None
        return {"total": int(total) if isinstance(total, int) else len(rows),
                "data": [_project(r, INDICATOR_FIELDS) for r in rows]}

    def search(self, query: str, limit: int = 10) -> dict[str, Any]:
        """Search: ThreatQ global search (``GET /api/search``).

        :param query: search text.
        :param limit: maximum results.
        :return: ``{"results": [{"id", "object", "value"}]}``.
        """
        if not isinstance(query, str) or not query.strip():
            raise ThreatQValidationError("query", query, reason="a non-empty search text is required")
        size = _int_id("limit", limit)
        payload = self._get("/api/search", query=query, limit=size)
        return {"results": [_project(r, _SEARCH_RESULT_FIELDS) for r in rows_of(payload)]}

    def list_events(self, event: Mapping[str, Any] | None = None, *, limit: int | None = None) -> dict[str, Any]:
        """List Events: ``GET /api/events`` filtered by event fields.

        :param event: filter fields of the plugin's ``event`` type (:data:`EVENT_FIELDS`); a
            ``type`` name is also accepted.
        :param limit: maximum rows (server default if ``None``).
        :return: ``{"total": int, "data": [event]}``, each event with the plugin's fields.
        """
        params = self._filters("event", event, EVENT_FIELDS, {"type": ("event_types", "type_id")})
        payload = self._get("/api/events", **params, limit=limit)
        rows = rows_of(payload)
        total = payload.get("total") if isinstance(payload, dict) else None
        return {"total": int(total) if isinstance(total, int) else len(rows),
                "data": [_project(r, EVENT_FIELDS) for r in rows]}

    def create_indicator(self, status: str, source: str, type: str, value: str) -> dict[str, Any]:  # noqa: A002
        """Create Indicator: ``POST /api/indicators`` (ThreatQ de-duplicates by type and value).

        :param status: status name (Active, Expired, Indirect, Review, Whitelisted).
        :param source: source name.
        :param type: indicator type name (``"Eamil Attachment"`` accepted).
        :param value: the indicator's value.
        :return: ``{"id": int}`` of the created (or existing) indicator.
        """
        if not isinstance(value, str) or not value.strip():
            raise ThreatQValidationError("value", value, reason="a non-empty indicator value is required")
        if not isinstance(source, str) or not source.strip():
            raise ThreatQValidationError("source", source, reason="a non-empty source name is required")
        type_name, type_id = self._resolve("indicator_types", type)
        status_name, status_id = self._resolve("statuses", status)
        item: dict[str, Any] = {"value": value.strip(), "sources": [{"name": source.strip()}]}
        item.update({"type_id": type_id} if type_id is not None else {"type": type_name})
        item.update({"status_id": status_id} if status_id is not None else {"status": status_name})
        path = "/api/indicators"
        # Idempotent: the server answers an existing (type, value) with that indicator.
        payload = self.request_json("POST", path, json=[item], idempotent=True)
        created = self._data_object("POST", path, payload)
        return {"id": _int_id("id", created.get("id"))}

    def create_event(self, title: str, type: str, date: datetime | str, source: str,  # noqa: A002
                     description: str | None = None) -> dict[str, Any]:
        """Create Event: ``POST /api/events`` (never re-sent once it may have reached the server).

        :param title: event title.
        :param type: event type name.
        :param date: when it happened (datetime or ISO string; naive = UTC).
        :param source: source name.
        :param description: optional description (HTML allowed).
        :return: ``{"id": int}`` of the created event.
        """
        if not isinstance(title, str) or not title.strip():
            raise ThreatQValidationError("title", title, reason="a non-empty title is required")
        if not isinstance(source, str) or not source.strip():
            raise ThreatQValidationError("source", source, reason="a non-empty source name is required")
        happened_at = to_threatq_time(date, "date")
        type_name, type_id = self._resolve("event_types", type)
        body: dict[str, Any] = {"title": title, "happened_at": happened_at, "sources": [{"name": source.strip()}]}
        body.update({"type_id": type_id} if type_id is not None else {"type": type_name})
        if description:
            body["description"] = description
        path = "/api/events"
        created = self._data_object("POST", path, self.request_json("POST", path, json=body, idempotent=False))
        return {"id": _int_id("id", created.get("id"))}

    def find_event(self, title: str, type: str, date: datetime | str,  # noqa: A002
                   source: str | None = None) -> dict[str, Any] | None:
        """The event :meth:`create_event` would have made with these inputs, if ThreatQ has it.

        ``GET /api/events?title=…&happened_at=…&type_id=…&with=type,sources&sort=-id``, then an
        exact check of each row: ThreatQ's list filters ignore case and read ``%`` in a title as a
        wildcard, so the server's answer is only a shortlist. A row matches when its title
        (trimmed), ``happened_at`` (to the second, UTC) and type are the ones given and, when
        ``source`` is given and the row lists its sources, one of them has that name. Used to
        make a retried Create Event safe (ThreatQ has no idempotency key for ``POST /api/events``).

        :param title: event title.
        :param type: event type name.
        :param date: when it happened (datetime or ISO string; naive = UTC).
        :param source: source name the event was created with; ``None`` to ignore sources.
        :return: the newest matching event (the plugin's event fields), or ``None``.
        """
        if not isinstance(title, str) or not title.strip():
            raise ThreatQValidationError("title", title, reason="a non-empty title is required")
        wanted_title = title.strip()
        happened_at = to_threatq_time(date, "date")
        type_name, type_id = self._resolve("event_types", type)
        params: dict[str, Any] = {"title": wanted_title, "happened_at": happened_at, "with": "type,sources",
                                  "sort": "-id", "limit": _FIND_EVENT_LIMIT}
        if type_id is not None:
            params["type_id"] = type_id
        rows = rows_of(self._get("/api/events", **params))

        def same(row: Mapping[str, Any]) -> bool:
            if not isinstance(row.get("title"), str) or row["title"].strip() != wanted_title:
                return False
            try:
                if to_threatq_time(str(row.get("happened_at") or "").replace(" ", "T", 1)[:19]) != happened_at:
                    return False
            except ThreatQValidationError:
                return False
            row_type = row.get("type") if isinstance(row.get("type"), Mapping) else {}
            if type_id is not None and row.get("type_id") is not None:
                if str(row["type_id"]) != str(type_id):
                    return False
            elif str(row_type.get("name", "")).casefold() != type_name.casefold():
                return False
            sources = row.get("sources")
            if source and isinstance(sources, list) and sources:
                names = {str(s.get("name", "")).strip().casefold() for s in sources if isinstance(s, Mapping)}
                if source.strip().casefold() not in names:
                    return False
            return True

        matches = [r for r in rows if isinstance(r, Mapping) and same(r)]
        if not matches:
            return None
        newest = max(matches, key=lambda r: _int_id("id", r.get("id")))
        return _project(newest, EVENT_FIELDS)

    def get_indicator(self, indicator_id: int, with_: Iterable[str] | str | None = None) -> dict[str, Any]:
        """Get Indicator: ``GET /api/indicators/{id}``.

        :param indicator_id: ThreatQ indicator id.
        :param with_: related classes to embed, e.g. ``["adversaries", "attachments"]``.
        :return: ``{"data": {...}}``.
        """
        ident = _int_id("indicator_id", indicator_id)
        path = f"/api/indicators/{ident}"
        return {"data": self._data_object("GET", path, self._get(path, **{"with": _join(with_)}))}

    def get_event(self, event_id: int, with_: Iterable[str] | str | None = None) -> dict[str, Any]:
        """Get Event: ``GET /api/events/{id}``.

        :param event_id: ThreatQ event id.
        :param with_: related classes to embed, e.g. ``["adversaries", "attachments"]``.
        :return: ``{"data": {...}}``.
        """
        ident = _int_id("event_id", event_id)
        path = f"/api/events/{ident}"
        return {"data": self._data_object("GET", path, self._get(path, **{"with": _join(with_)}))}

