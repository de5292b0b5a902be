"""A ThreatQ REST API simulator: a real HTTP/1.1 server on loopback, serving a seeded :class:`Corpus`.

Built from docs/reference/threatq-api.md and the recorded payloads in tests/data/threatq/samples/.
Start it in tests as a context manager, or from the shell with ``threatq-sim``.

Endpoints (all under ``/api``; every one but ``/api/token`` needs ``Authorization: Bearer <token>``
with a capital ``B``: ThreatQ rejects lowercase ``bearer``, elastic/kibana#291383):

==========  ==============================================  =====================================
method      path                                            notes
==========  ==============================================  =====================================
POST        /api/token                                      grants password (JSON, query+JSON,
                                                            form), client_credentials (Basic
                                                            header + query or form), refresh_token
GET         /api/indicators                                 limit/offset/sort/with/fields, filters
                                                            ``?value= ?id= ?type_id= ?status_id=
                                                            ?type_name= ?status_name= ?class=``
POST        /api/indicators/query                           body {criteria, filters, fields};
                                                            limit/offset/sort/with or cursorMark
GET         /api/indicators/query/hash/{hash}               data-collection feed: cursorMark, limit,
                                                            sort (updated_at|id), fields
GET         /api/indicators/{id}[/details]                  with= (detail form)
GET         /api/indicators/{id}/events                     related events (paged)
PUT         /api/indicators/{id}                            edit ``status`` (name, ``{name}`` or id),
                                                            ``status_id`` (body or query string),
                                                            ``description``; ``updated_at`` becomes now;
                                                            ``{data:{...}}`` (detail form, ``with=``)
DELETE      /api/indicators/{id}                            delete (204); gone from every listing after
POST        /api/indicators                                 create; array or object body; 201
                                                            ``{total, data:[...]}`` with ``existing``
GET         /api/indicator/types[/{id}]                     ?name= (``%`` wildcard)
GET         /api/indicator/statuses[/{id}]                  ?name=
GET         /api/event/types[/{id}]                         ?name=
GET         /api/attachments/types[/{id}]
GET         /api/events                                     limit/offset/sort/with, ?title= ?type_id=
                                                            ?id=; windows: POST /api/events/query
POST        /api/events/query                               same grammar as indicators, e.g.
                                                            {"filters":{"updated_at":{"+gte":..,"+lt":..}}}
GET         /api/events/{id}                                with=indicators,attributes,adversaries,
                                                            attachments,sources,type,tags,malware,
                                                            attack_pattern
GET         /api/events/{id}/indicators                     paged indicator rows with ``pivot``
GET         /api/events/{id}/malware                        related Threat Library objects (paged
GET         /api/events/{id}/attack_pattern                 limit/offset, with=attributes,sources,
                                                            events), each with a ``pivot``
POST        /api/events                                     create; 201 ``{data:{...}}``
GET         /api/search                                     ?query=&limit= → {data:[{id,object,value}]}
GET         /api/adversaries                                ?name=
GET         /api/malware[/{id}]                             custom objects ``{id, value, description,
GET         /api/attack_pattern[/{id}]                      object_code, object_name…}``; ?value= ?id=,
                                                            with=attributes,sources,events
GET         /api/investigations[/{id}]                      ?name=; with=events,indicators,attachments
GET         /api/attachments[/{id}]                         ?hash= ?name=
GET         /api/attachments/{id}/download                  the bytes, Content-Disposition filename
GET         /assets/js/config.js                            (no auth) JS holding ``ClientId``
==========  ==============================================  =====================================

Control endpoints (no auth): ``POST /_sim/faults`` (a rule or a list of rules, JSON),
``DELETE /_sim/faults``, ``GET /_sim/faults``, ``POST /_sim/expire-tokens``, ``GET /_sim/stats``,
``DELETE /_sim/stats`` (reset).

Errors. 401 ``{"error":"Unauthenticated.","message":"Unauthenticated."}`` for a missing,
unknown or expired token. 404 ``{"errors":["Not found."]}``. 400 comes in the two recorded forms:

- form 1 ``{"data":{"errors":{"<field>":["msg"]}}}`` for *body* validation: creating an
  indicator or event, the filter grammar of ``/query``, ``/api/search`` without ``query``;
- form 2 ``{"errors":["msg"]}`` for *request-parameter* validation: ``limit`` (1..max_limit),
  ``offset``, ``sort``, ``with``, ``fields``, ``cursorMark``, and a body that is not JSON.

``/api/token`` failures are 400 ``{"error":"invalid_grant"|"invalid_client"|"unsupported_grant_type",
"error_description":..., "message":...}`` (clients only look at the status,
docs/reference/threatq-api.md §1.6).

Paging is stable: lists sort by the requested keys with ``id`` as the final tie-break (default
``id``), so offset pages never repeat or skip while the corpus is unchanged. The cursor feed
encodes the last ``(sort value, id)`` seen; a page after the end is empty (``data: {}`` by default,
``[]`` with ``empty_page="array"``) and carries a cursor that differs from the one sent only in its
first byte (as in Elastic's recording, ``AoJ…`` → ``BoJ…``); sending that cursor again returns it
unchanged, so clients stopping on "empty page" and those stopping on "cursor repeats" both end,
and a cursor saved from the empty page resumes at the right place once data is updated.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import json
import logging
import re
import secrets
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

import orjson

from threatq_simulators._http import BackgroundServer, FaultingHandler
from threatq_simulators._http import Reply as Response
from threatq_simulators.corpus import LIBRARY_COLLECTIONS, Corpus, ValidationError
from threatq_simulators.faults import DEFAULT_NEST_DEPTH, THREATQ, FaultPlan, FaultRule, control
from threatq_simulators.query import QueryError, compile_expr
from threatq_simulators.shaping import (
    EVENT_RELATIONS,
    INDICATOR_RELATIONS,
    LIBRARY_RELATIONS,
    Projection,
    ShapeError,
    parse_fields,
    parse_with,
    shape_indicator,
)

__all__ = [
    "ThreatQSimulator",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_USERNAME",
    "DEFAULT_PASSWORD",
    "DEFAULT_CLIENT_SECRET",
]

log = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "threatq-sim-client"
DEFAULT_USERNAME = "analyst@threatq.local"
DEFAULT_PASSWORD = "threatq-sim-password"
DEFAULT_CLIENT_SECRET = "threatq-sim-secret"

_UNAUTH = {"error": "Unauthenticated.", "message": "Unauthenticated."}
_JSON = "application/json"


class ApiError(Exception):
    """An HTTP error answer: status, JSON body and optional headers."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def form1(field: str, message: str, status: int = 400) -> ApiError:
    """Recorded error form 1: ``{"data":{"errors":{field:[message]}}}``."""
    return ApiError(status, {"data": {"errors": {field: [message]}}})


def form2(message: str, status: int = 400) -> ApiError:
    """Recorded error form 2: ``{"errors":[message]}``."""
    return ApiError(status, {"errors": [message]})


def _dumps(obj: Any) -> bytes:
    # orjson writes the same compact UTF-8 JSON as the standard library below, several times
    # faster: a page of 1,000 indicators is most of the simulator's time after generating it, and
    # in the benchmarks the simulator shares the machine's cores with the client. What orjson
    # refuses (a lone surrogate, an integer beyond 64 bits, a non-str key) the standard library writes.
    try:
        return orjson.dumps(obj)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, _dumps(obj), _JSON, headers)


class Request:
    """The parts of an HTTP request the handlers need."""

    def __init__(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.query_string = query
        self.params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        self.headers = headers
        self.body = body
        self.match: re.Match[str] | None = None
        self.route: str | None = None  # the route template that answered, e.g. "/api/indicators/{id}"

    def json(self, default: Any = None) -> Any:
        if not self.body.strip():
            return default
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise form2("The request body is not valid JSON.") from exc

    def int_param(self, name: str, default: int | None = None) -> int | None:
        raw = self.params.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise form2(f"The {name} must be an integer.") from exc


# ---------------------------------------------------------------------------- cursor
def _encode_cursor(key: int, iid: int, end: bool = False) -> str:
    # Solr-like opaque bytes: marker, sort value, '&', id. The first byte is 0x02 normally and
    # 0x06 after the end was reached, which base64-encodes to "A…" / "B…" as in the recording.
    raw = bytes([0x06 if end else 0x02, 0x82]) + struct.pack(">q", key) + b"&" + str(iid).encode()
    return base64.b64encode(raw).decode()


def _decode_cursor(mark: str) -> tuple[int, int, bool]:
    try:
        raw = base64.b64decode(mark, validate=True)
        if len(raw) < 12 or raw[0] not in (0x02, 0x06) or raw[1] != 0x82 or raw[10:11] != b"&":
            raise ValueError
        key = struct.unpack(">q", raw[2:10])[0]
        return key, int(raw[11:].decode()), raw[0] == 0x06
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise form2("The cursorMark is invalid.") from exc


# ---------------------------------------------------------------------------- simulator
class ThreatQSimulator(BackgroundServer):
    """A local ThreatQ API over real HTTP.

    :param corpus: the data to serve; default ``Corpus()`` (seed 42, 2,000 indicators, 100 events).
    :param host: interface to bind.
    :param port: TCP port; 0 picks a free one.
    :param client_id: OAuth client id expected by the token endpoint.
    :param username: e-mail of the user for the password grant.
    :param password: that user's password.
    :param client_secret: secret for the client_credentials grant (with ``client_id``).
    :param token_ttl_s: ``expires_in`` of issued access tokens.
    :param mode: ``"v6"`` (attributes/sources only on request) or ``"legacy"`` (always included).
    :param faults: fault plan (mutable at run time); default: empty.
    :param max_limit: largest accepted ``limit``; above it → 400.
    :param default_limit: ``limit`` when the client sends none.
    :param empty_page: ``"object"`` (``data: {}``, as recorded) or ``"array"`` (``data: []``) for an
        exhausted cursor page.
    """

    def __init__(
        self,
        corpus: Corpus | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str = DEFAULT_CLIENT_ID,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_ttl_s: int = 3600,
        mode: str = "v6",
        faults: FaultPlan | None = None,
        max_limit: int = 10000,
        default_limit: int = 50,
        empty_page: str = "object",
    ) -> None:
        if mode not in ("v6", "legacy"):
            raise ValueError("mode must be 'v6' or 'legacy'")
        if empty_page not in ("object", "array"):
            raise ValueError("empty_page must be 'object' or 'array'")
        self.corpus = corpus if corpus is not None else Corpus()
        self.host = host
        self.port = port
        self.client_id = client_id
        self.username = username
        self.password = password
        self.client_secret = client_secret
        self.token_ttl_s = int(token_ttl_s)
        self.mode = mode
        # Bound to this server: a rule of another server's extension is refused here, not ignored.
        self.faults = (faults if faults is not None else FaultPlan()).bind(THREATQ)
        self.max_limit = int(max_limit)
        self.default_limit = int(default_limit)
        self.empty_page = empty_page
        self._tokens: dict[str, float] = {}
        self._refresh: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self.reset_stats()
        self._routes = self._build_routes()
        self._tag_ids = {t: k + 1 for k, t in enumerate(self.corpus._seed_data["tags"])}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Bind and serve in a background thread; return the base URL (``http://host:port``)."""
        if self._server is not None:
            return self.url
        handler = type("BoundThreatQHandler", (_Handler,), {"sim": self})
        self._serve(_QuietServer((self.host, self.port), handler), "threatq-sim:{port}", poll_interval=0.1)
        log.info("ThreatQ simulator listening on %s (mode=%s, indicators=%d)", self.url, self.mode,
                 self.corpus.indicator_count)
        return self.url

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent)."""
        server = self._server
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def served(self, updated_since: object = None, updated_until: object = None,
               types: Any = None) -> Iterator[dict[str, Any]]:
        """Ground truth of a window poll (``corpus.iter_indicators``): what a correct client must
        fetch for ``[updated_since, updated_until)``, ascending by updated_at then id."""
        return self.corpus.iter_indicators(updated_since, updated_until, types)

    # ------------------------------------------------------------------ tokens
    def expire_tokens(self) -> int:
        """Expire every issued access token (refresh tokens stay valid); return how many."""
        with self._lock:
            for tok in self._tokens:
                self._tokens[tok] = 0.0
            count = len(self._tokens)
        self._bump("tokens_expired", count)
        return count

    def _issue_token(self, grant: str) -> dict[str, Any]:
        access = secrets.token_urlsafe(32)
        refresh = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[access] = time.monotonic() + self.token_ttl_s
            self._refresh[refresh] = grant
        with self._stats_lock:
            self._stats["tokens_issued"] += 1
            self._stats["grants"][grant] += 1
        return {"access_token": access, "token_type": "Bearer", "expires_in": self.token_ttl_s,
                "refresh_token": refresh}

    def _check_bearer(self, header: str | None) -> None:
        if not header or not header.startswith("Bearer "):
            raise ApiError(401, _UNAUTH)
        token = header[len("Bearer "):].strip()
        with self._lock:
            exp = self._tokens.get(token)
        if exp is None or exp <= time.monotonic():
            raise ApiError(401, _UNAUTH)

    # ------------------------------------------------------------------ stats
    def reset_stats(self) -> None:
        """Zero every counter."""
        with self._stats_lock:
            self._stats: dict[str, Any] = {
                "requests": 0, "by_path": Counter(), "by_route": Counter(), "by_status": Counter(),
                "tokens_issued": 0, "tokens_expired": 0, "grants": Counter(), "unauthorized": 0,
                "faults_triggered": 0, "faults_by_kind": Counter(), "indicators_served": 0, "connections": 0,
            }

    def _bump(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self._stats[key] += n

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters: ``requests``, ``by_path`` (``"GET /api/indicators"`` → n),
        ``by_route`` (requests that got past the fault plan, by route template), ``by_status``, ``tokens_issued``, ``tokens_expired``, ``grants``,
        ``unauthorized``, ``faults_triggered``, ``faults_by_kind``, ``indicators_served``, ``connections``
        (TCP connections accepted: keep-alive clients reuse one)."""
        with self._stats_lock:
            return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self._stats.items()}

    # ------------------------------------------------------------------ routing
    def _build_routes(self) -> list[tuple[str, re.Pattern[str], str, Callable[[Request], Response]]]:
        r = [
            ("POST", r"/api/token", self._h_token),
            ("GET", r"/api/indicators", self._h_indicators_list),
            ("POST", r"/api/indicators", self._h_indicators_create),
            ("POST", r"/api/indicators/query", self._h_indicators_query),
            ("GET", r"/api/indicators/query/hash/(?P<hash>[^/]+)", self._h_collection_feed),
            ("GET", r"/api/indicators/(?P<id>\d+)", self._h_indicator_get),
            ("GET", r"/api/indicators/(?P<id>\d+)/details", self._h_indicator_details),
            ("GET", r"/api/indicators/(?P<id>\d+)/events", self._h_indicator_events),
            ("PUT", r"/api/indicators/(?P<id>\d+)", self._h_indicator_update),
            ("DELETE", r"/api/indicators/(?P<id>\d+)", self._h_indicator_delete),
            ("GET", r"/api/indicator/types", self._h_meta_list("indicator_types")),
            ("GET", r"/api/indicator/types/(?P<id>\d+)", self._h_meta_get("indicator_types")),
            ("GET", r"/api/indicator/statuses", self._h_meta_list("statuses")),
            ("GET", r"/api/indicator/statuses/(?P<id>\d+)", self._h_meta_get("statuses")),
            ("GET", r"/api/event/types", self._h_meta_list("event_types")),
            ("GET", r"/api/event/types/(?P<id>\d+)", self._h_meta_get("event_types")),
            ("GET", r"/api/attachments/types", self._h_meta_list("attachment_types")),
            ("GET", r"/api/attachments/types/(?P<id>\d+)", self._h_meta_get("attachment_types")),
            ("GET", r"/api/events", self._h_events_list),
            ("POST", r"/api/events", self._h_events_create),
            ("POST", r"/api/events/query", self._h_events_query),
            ("GET", r"/api/events/(?P<id>\d+)", self._h_event_get),
            ("GET", r"/api/events/(?P<id>\d+)/indicators", self._h_event_indicators),
            *(("GET", rf"/api/events/(?P<id>\d+)/{code}", self._h_event_library(code))
              for code in LIBRARY_COLLECTIONS),
            ("GET", r"/api/search", self._h_search),
            ("GET", r"/api/adversaries", self._h_adversaries),
            *(("GET", rf"/api/{code}", self._h_library_list(code)) for code in LIBRARY_COLLECTIONS),
            *(("GET", rf"/api/{code}/(?P<id>\d+)", self._h_library_get(code))
              for code in LIBRARY_COLLECTIONS),
            ("GET", r"/api/investigations", self._h_investigations_list),
            ("GET", r"/api/investigations/(?P<id>\d+)", self._h_investigation_get),
            ("GET", r"/api/attachments", self._h_attachments_list),
            ("GET", r"/api/attachments/(?P<id>\d+)", self._h_attachment_get),
            ("GET", r"/api/attachments/(?P<id>\d+)/download", self._h_attachment_download),
            ("GET", r"/assets/js/config.js", self._h_config_js),
        ]
        # the display template ("/api/indicators/{id}") keys the by_route counters
        return [(m, re.compile("^" + p + "/?$"), re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", p), h) for m, p, h in r]

    def _route(self, req: Request) -> tuple[str, Callable[[Request], Response]]:
        path_matched = False
        for method, rx, template, handler in self._routes:
            m = rx.match(req.path)
            if m:
                path_matched = True
                if method == req.method:
                    req.match = m
                    return template, handler
        if path_matched:
            raise ApiError(405, {"errors": [f"The {req.method} method is not supported for this route."]})
        raise ApiError(404, {"errors": ["Not found."]})

    def handle(self, req: Request) -> Response:
        """Answer one API request (after faults): auth, routing, handler, errors → Response."""
        try:
            template, handler = self._route(req)
            req.route = template
            with self._stats_lock:
                self._stats["by_route"][f"{req.method} {template}"] += 1
            if req.path.startswith("/api/") and template != "/api/token":
                self._check_bearer(req.headers.get("Authorization"))
            return handler(req)
        except ApiError as err:
            if err.status == 401:
                self._bump("unauthorized")
            return _json_response(err.body, err.status, err.headers)
        except Exception as exc:  # a simulator bug: answer 500 with the cause instead of dropping the connection
            log.exception("threatq-sim: %s %s failed", req.method, req.path)
            return _json_response({"errors": [f"Internal simulator error: {type(exc).__name__}: {exc}"]}, 500)

    # ------------------------------------------------------------------ helpers
    def _paging(self, req: Request) -> tuple[int, int]:
        limit = req.int_param("limit", self.default_limit)
        offset = req.int_param("offset", 0)
        assert limit is not None and offset is not None
        if limit < 1 or limit > self.max_limit:
            raise form2(f"The limit must be between 1 and {self.max_limit}.")
        if offset < 0:
            raise form2("The offset must be at least 0.")
        return limit, offset

    def _projection(self, req: Request, form: str, body_fields: Any = None, allowed=INDICATOR_RELATIONS) -> Projection:
        try:
            with_ = parse_with(req.params.get("with"), allowed)
            raw_fields = body_fields if body_fields is not None else req.params.get("fields")
            fields = parse_fields(raw_fields)
        except ShapeError as exc:
            raise form2(str(exc)) from exc
        return Projection(form=form, legacy=self.mode == "legacy", with_=with_, fields=fields)

    def _shape(self, iid: int, proj: Projection) -> dict[str, Any]:
        c = self.corpus
        obj = c._full(iid)
        full_type = c.type_by_id(obj["type_id"]) if proj.form != "row" else None
        full_status = c.status_by_id(obj["status_id"]) if proj.form == "detail" else None
        events = None
        if proj.wants("events"):
            events = [self._event_row(c.event_base(eid), Projection(form="row")) for eid in self._events_of(iid)]
        return shape_indicator(obj, proj, full_type=full_type, full_status=full_status,
                               score_object=lambda: c.score_object(iid), events=events, tag_ids=self._tag_ids)

    def _related_row(self, iid: int, proj: Projection, src_type: str, src_id: int) -> dict[str, Any]:
        """Related-list form (tip-marketplace ListRelatedObjects/LinkEntities samples): the raw
        indicator columns incl. nulls, ``sync_hash``, ``deleted_at``, ``expires_needs_calc`` and a
        ``pivot``; relations only when asked with ``with=``."""
        c = self.corpus
        row: dict[str, Any] = dict(c.indicator_row_compact(iid))
        row["expires_needs_calc"] = "N"
        row["sync_hash"] = hashlib.md5(f"sync|{row['hash']}".encode()).hexdigest()
        row["deleted_at"] = None
        if proj.with_ or proj.fields is not None:
            rel_proj = Projection(form="row", legacy=proj.legacy, with_=proj.with_, fields=proj.fields)
            shaped = self._shape(iid, rel_proj)
            for key in ("score", "type", "status", "adversaries", "attributes", "sources", "tags", "events"):
                if key in shaped and (key in proj.with_ or proj.wants(key)):
                    row[key] = shaped[key]
        row["pivot"] = {"id": src_id * 100000 + iid, "src_object_id": src_id, "src_type": src_type,
                        "dest_object_id": iid, "dest_type": "indicator", "created_at": row["created_at"],
                        "updated_at": row["updated_at"]}
        return row

    def _events_of(self, iid: int) -> list[int]:
        return [eid for eid in self.corpus.event_ids() if iid in self.corpus._event_indicators.get(eid, ())]

    def _count_served(self, n: int) -> None:
        self._bump("indicators_served", n)

    def _list_envelope(self, rows: list[Any], total: int, limit: int, offset: int) -> Response:
        return _json_response({"total": total, "data": rows, "limit": limit, "offset": offset})

    # ------------------------------------------------------------------ token
    def _h_token(self, req: Request) -> Response:
        params: dict[str, Any] = dict(req.params)
        ctype = (req.headers.get("Content-Type") or "").lower()
        body = req.body.strip()
        if body:
            if "application/x-www-form-urlencoded" in ctype:
                params.update({k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()})
            else:
                try:
                    data = json.loads(body)
                except ValueError:
                    data = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
                if isinstance(data, Mapping):
                    params.update(data)
        basic_id = basic_secret = None
        auth = req.headers.get("Authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                basic_id, _, basic_secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
                basic_id, basic_secret = unquote(basic_id), unquote(basic_secret)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise ApiError(400, _oauth_error("invalid_client", "Client authentication failed."))
        grant = str(params.get("grant_type") or "").strip()
        if grant == "password":
            email = params.get("email") or params.get("username")
            client_id = params.get("client_id") or basic_id
            if client_id != self.client_id:
                raise ApiError(400, _oauth_error("invalid_client", "Client authentication failed."))
            if email != self.username or params.get("password") != self.password:
                raise ApiError(400, _oauth_error("invalid_grant", "The user credentials were incorrect."))
            return _json_response(self._issue_token("password"))
        if grant == "client_credentials":
            cid = basic_id if basic_id is not None else params.get("client_id")
            secret = basic_secret if basic_id is not None else params.get("client_secret")
            if cid != self.client_id or secret != self.client_secret:
                raise ApiError(400, _oauth_error("invalid_client", "Client authentication failed."))
            return _json_response(self._issue_token("client_credentials"))
        if grant == "refresh_token":
            rt = params.get("refresh_token")
            with self._lock:
                known = isinstance(rt, str) and self._refresh.pop(rt, None) is not None
            if not known:
                raise ApiError(400, _oauth_error("invalid_grant", "The refresh token is invalid."))
            return _json_response(self._issue_token("refresh_token"))
        raise ApiError(400, _oauth_error("unsupported_grant_type",
                                         "The authorization grant type is not supported by the authorization server."))

    # ------------------------------------------------------------------ indicators
    # column filters on GET /api/indicators (plain equality, ``%`` wildcard); other parameters are ignored
    _LIST_FILTERS = ("id", "value", "type_id", "status_id", "type_name", "status_name", "class", "hash", "score",
                     "description", "created_at", "updated_at", "touched_at", "published_at", "expires_at",
                     "expired_at", "last_detected_at")

    def _h_indicators_list(self, req: Request) -> Response:
        limit, offset = self._paging(req)
        proj = self._projection(req, "row")
        extra = {k: req.params[k] for k in self._LIST_FILTERS if k in req.params}
        if "value" in extra and "%" not in extra["value"]:
            # exact value look-ups go through the value index instead of a scan
            ids = self.corpus.find_indicator_ids_by_value(extra.pop("value"))
            extra["id"] = [str(i) for i in ids] or ["0"]
        ids = self._select(None, req.params.get("sort"), extra)
        page = ids[offset: offset + limit]
        rows = [self._shape(i, proj) for i in page]
        self._count_served(len(rows))
        return self._list_envelope(rows, len(ids), limit, offset)

    def _select(self, expr: Any, sort: str | None, extra: Mapping[str, Any] | None = None):
        try:
            return self.corpus.select_indicators(expr, sort, extra)
        except QueryError as exc:
            if exc.field == "sort":
                raise form2(str(exc)) from exc
            raise form1(exc.field, str(exc)) from exc

    def _h_indicators_query(self, req: Request) -> Response:
        body = req.json({})
        if not isinstance(body, Mapping):
            raise form1("criteria", "The query body must be an object.")
        parts = [p for p in (body.get("criteria"), body.get("filters")) if p]
        expr = {"+and": parts} if parts else None
        proj = self._projection(req, "row", body.get("fields"))
        if "cursorMark" in req.params:
            return self._cursor_page(req, expr, proj, with_offset=True)
        limit, offset = self._paging(req)
        ids = self._select(expr, req.params.get("sort"))
        page = ids[offset: offset + limit]
        rows = [self._shape(i, proj) for i in page]
        self._count_served(len(rows))
        return self._list_envelope(rows, len(ids), limit, offset)

    def _h_collection_feed(self, req: Request) -> Response:
        assert req.match is not None
        try:
            coll = self.corpus.collection(req.match["hash"])
        except KeyError:
            raise ApiError(404, {"errors": ["Data collection not found."]}) from None
        proj = self._projection(req, "row")
        return self._cursor_page(req, coll["filters"] or None, proj, with_offset=False)

    def _cursor_page(self, req: Request, expr: Any, proj: Projection, *, with_offset: bool) -> Response:
        sort = req.params.get("sort") or "updated_at"
        if sort not in ("updated_at", "id"):
            raise form2("The sort for cursor paging must be updated_at or id.")
        limit = req.int_param("limit", self.default_limit)
        assert limit is not None
        if limit < 1 or limit > self.max_limit:
            raise form2(f"The limit must be between 1 and {self.max_limit}.")
        ids = self._select(expr, sort)
        mark = req.params.get("cursorMark") or "*"
        c = self.corpus
        if sort == "updated_at":
            def key_of(i: int) -> tuple[int, int]:
                return (c._cheap(i, "updated_at"), i)
        else:
            def key_of(i: int) -> tuple[int, int]:
                return (i, i)
        ended = False
        if mark == "*":
            start = 0
            pos = None
        else:
            key, last_id, ended = _decode_cursor(mark)
            pos = (key, last_id)
            start = bisect.bisect_right(ids, pos, key=key_of)
        page = ids[start: start + limit]
        rows = [self._shape(i, proj) for i in page]
        self._count_served(len(rows))
        if rows:
            k = key_of(page[-1])
            next_mark = _encode_cursor(k[0], k[1])
            data: Any = rows
        else:
            data = {} if self.empty_page == "object" else []
            if ended:
                next_mark = mark
            else:
                p = pos or (0, 0)
                next_mark = _encode_cursor(p[0], p[1], end=True)
        body: dict[str, Any] = {"total": len(ids), "data": data, "nextCursorMark": next_mark, "limit": limit}
        if with_offset:
            body["offset"] = 0
        return _json_response(body)

    def _indicator_id(self, req: Request) -> int:
        assert req.match is not None
        iid = int(req.match["id"])
        if not self.corpus.indicator_exists(iid):
            raise ApiError(404, {"errors": ["Not found."]})
        return iid

    def _h_indicator_get(self, req: Request) -> Response:
        iid = self._indicator_id(req)
        proj = self._projection(req, "detail")
        return _json_response({"data": self._shape(iid, proj)})

    def _h_indicator_update(self, req: Request) -> Response:
        iid = self._indicator_id(req)
        body = req.json({})
        if not isinstance(body, dict):
            raise form1("data", "The request body must be an object.")
        changes = dict(body)
        if req.params.get("status_id") and "status_id" not in changes:  # SIEM sends it in the query string
            changes["status_id"] = req.params["status_id"]
        try:
            self.corpus.update_indicator(iid, changes)
        except ValidationError as exc:
            raise form1(exc.field, str(exc)) from exc
        except KeyError as exc:  # deleted meanwhile
            raise ApiError(404, {"errors": ["Not found."]}) from exc
        return _json_response({"data": self._shape(iid, self._projection(req, "detail"))})

    def _h_indicator_delete(self, req: Request) -> Response:
        self.corpus.delete_indicator(self._indicator_id(req))  # 404 when unknown or deleted already
        return Response(204, b"")

    def _h_indicator_details(self, req: Request) -> Response:
        iid = self._indicator_id(req)
        proj = self._projection(req, "detail")
        proj.with_ |= {"attributes", "sources", "score", "type", "status", "adversaries", "events", "tags",
                       "comments", "watchlist", "signatures", "attachments", "indicators"}
        return _json_response({"data": self._shape(iid, proj)})

    def _h_indicator_events(self, req: Request) -> Response:
        iid = self._indicator_id(req)
        limit, offset = self._paging(req)
        proj = self._projection(req, "row", allowed=EVENT_RELATIONS)
        eids = self._events_of(iid)
        rows = []
        for eid in eids[offset: offset + limit]:
            row = self._event_row(self.corpus.event_base(eid), proj)
            row["pivot"] = {"id": eid * 100000 + iid, "created_at": row["created_at"], "updated_at": row["updated_at"]}
            rows.append(row)
        return self._list_envelope(rows, len(eids), limit, offset)

    def _h_indicators_create(self, req: Request) -> Response:
        body = req.json(None)
        if body is None:
            raise form1("value", "The value field is required.")
        items = body if isinstance(body, list) else [body]
        if not items:
            raise form1("data", "At least one indicator is required.")
        proj = Projection(form="create", legacy=self.mode == "legacy", with_={"attributes", "sources"})
        out = []
        try:
            for item in items:
                obj, existing = self.corpus.create_indicator(item)
                row = self._shape(obj["id"], proj)
                row["existing"] = "Y" if existing else "N"
                out.append(row)
        except ValidationError as exc:
            raise form1(exc.field, str(exc)) from exc
        return _json_response({"total": len(out), "data": out}, 201)

    # ------------------------------------------------------------------ metadata
    def _h_meta_list(self, attr: str) -> Callable[[Request], Response]:
        def handler(req: Request) -> Response:
            limit, offset = self._paging(req)
            items = getattr(self.corpus, attr)
            name = req.params.get("name")
            if name:
                pred = compile_expr({"name": name})
                items = [i for i in items if pred(lambda f, i=i: i.get(f))]
            for key in ("id", "is_parsable"):
                if key in req.params:
                    items = [i for i in items if str(i.get(key)) == req.params[key]]
            page = [dict(i) for i in items[offset: offset + limit]]
            return self._list_envelope(page, len(items), limit, offset)
        return handler

    def _h_meta_get(self, attr: str) -> Callable[[Request], Response]:
        def handler(req: Request) -> Response:
            assert req.match is not None
            wanted = int(req.match["id"])
            for item in getattr(self.corpus, attr):
                if item["id"] == wanted:
                    return _json_response({"data": dict(item)})
            raise ApiError(404, {"errors": ["Not found."]})
        return handler

    # ------------------------------------------------------------------ events
    def _event_row(self, ev: Mapping[str, Any], proj: Projection) -> dict[str, Any]:
        out = {k: ev[k] for k in ("id", "title", "type_id", "happened_at", "description", "hash", "created_at",
                                  "updated_at", "touched_at")}
        legacy = self.mode == "legacy"
        if "type" in proj.with_:
            out["type"] = dict(ev["type"])
        for rel in ("attributes", "sources"):
            if rel in proj.with_ or legacy:
                out[rel] = [dict(x) for x in ev[rel]]
        if "adversaries" in proj.with_:
            out["adversaries"] = [dict(a) for a in ev["adversaries"]]
        if "tags" in proj.with_:
            tag_ids = {t: k + 1 for k, t in enumerate(self.corpus._seed_data["tags"])}
            out["tags"] = [{"id": tag_ids.get(t, 0), "name": t} for t in ev["tags"]]
        if "attachments" in proj.with_:
            out["attachments"] = [self.corpus.attachment(a) for a in ev["attachment_ids"]]
        if "indicators" in proj.with_:
            out["indicators"] = [self.corpus.indicator_row_compact(i) for i in self.corpus.event_indicator_ids(ev["id"])]
        for code in LIBRARY_COLLECTIONS:
            if code in proj.with_:
                out[code] = [self._library_row(code, oid, set(), self._library_pivot(ev, oid))
                             for oid in self.corpus.event_library_ids(ev["id"], code)]
        for rel in ("comments", "spearphish", "watchlist", "events", "signatures"):
            if rel in proj.with_:
                out[rel] = []
        return out

    _EVENT_FILTERS = ("id", "title", "type_id", "type_name", "hash", "description", "happened_at", "created_at",
                      "updated_at", "touched_at")

    def _h_events_list(self, req: Request) -> Response:
        limit, offset = self._paging(req)
        proj = self._projection(req, "row", allowed=EVENT_RELATIONS)
        extra = {k: req.params[k] for k in self._EVENT_FILTERS if k in req.params}
        return self._events_page(None, req.params.get("sort"), extra, proj, limit, offset)

    def _h_events_query(self, req: Request) -> Response:
        body = req.json({})
        if not isinstance(body, Mapping):
            raise form1("criteria", "The query body must be an object.")
        parts = [p for p in (body.get("criteria"), body.get("filters")) if p]
        limit, offset = self._paging(req)
        proj = self._projection(req, "row", allowed=EVENT_RELATIONS)
        return self._events_page({"+and": parts} if parts else None, req.params.get("sort"), None, proj, limit, offset)

    def _events_page(self, expr: Any, sort: str | None, extra: Any, proj: Projection, limit: int, offset: int) -> Response:
        try:
            eids = self.corpus.select_events(expr, sort, extra)
        except QueryError as exc:
            if exc.field == "sort":
                raise form2(str(exc)) from exc
            raise form1(exc.field, str(exc)) from exc
        rows = [self._event_row(self.corpus.event_base(e), proj) for e in eids[offset: offset + limit]]
        return self._list_envelope(rows, len(eids), limit, offset)

    def _event_id(self, req: Request) -> int:
        assert req.match is not None
        eid = int(req.match["id"])
        if not self.corpus.event_exists(eid):
            raise ApiError(404, {"errors": ["Not found."]})
        return eid

    def _h_event_get(self, req: Request) -> Response:
        eid = self._event_id(req)
        proj = self._projection(req, "detail", allowed=EVENT_RELATIONS)
        return _json_response({"data": self._event_row(self.corpus.event_base(eid), proj)})

    def _h_event_indicators(self, req: Request) -> Response:
        eid = self._event_id(req)
        limit, offset = self._paging(req)
        proj = self._projection(req, "row")
        ids = self.corpus.event_indicator_ids(eid)
        rows = [self._related_row(iid, proj, "event", eid) for iid in ids[offset: offset + limit]]
        self._count_served(len(rows))
        return self._list_envelope(rows, len(ids), limit, offset)

    def _h_event_library(self, code: str) -> Callable[[Request], Response]:
        """``GET /api/events/{id}/<code>``: the event's related malware / attack patterns, paged."""
        def handler(req: Request) -> Response:
            eid = self._event_id(req)
            limit, offset = self._paging(req)
            with_ = self._with(req, LIBRARY_RELATIONS)
            ev = self.corpus.event_base(eid)
            ids = self.corpus.event_library_ids(eid, code)
            rows = [self._library_row(code, oid, with_, self._library_pivot(ev, oid))
                    for oid in ids[offset: offset + limit]]
            return self._list_envelope(rows, len(ids), limit, offset)
        return handler

    def _h_events_create(self, req: Request) -> Response:
        body = req.json(None)
        if body is None:
            raise form1("title", "The title field is required.")
        try:
            ev = self.corpus.create_event(body)
        except ValidationError as exc:
            raise form1(exc.field, str(exc)) from exc
        proj = Projection(form="detail", with_={"type"})
        return _json_response({"data": self._event_row(ev, proj)}, 201)

    # ------------------------------------------------------------------ search
    def _h_search(self, req: Request) -> Response:
        text = (req.params.get("query") or "").strip()
        if not text:
            raise form1("query", "The query field is required.")
        limit = req.int_param("limit", 10)
        assert limit is not None
        if limit < 1 or limit > self.max_limit:
            raise form2(f"The limit must be between 1 and {self.max_limit}.")
        needle = text.lower()
        c = self.corpus
        hits: list[dict[str, Any]] = []
        for iid, value in c.search_values(text, limit):
            hits.append({"id": iid, "object": "indicator", "value": value})
        for eid in c.event_ids():
            ev = c.event_base(eid)
            if needle in ev["title"].lower():
                hits.append({"id": eid, "object": "event", "value": ev["title"]})
        for adv in c.adversaries:
            if needle in adv["name"].lower():
                hits.append({"id": adv["id"], "object": "adversary", "value": adv["name"]})
        for att in c.attachments:
            if needle in att["name"].lower() or needle in att["title"].lower():
                hits.append({"id": att["id"], "object": "attachment", "value": f'"{att["title"]}" {att["name"]}'})
        for code in LIBRARY_COLLECTIONS:
            for obj in c.library_objects(code):
                if needle in obj["value"].lower():
                    hits.append({"id": obj["id"], "object": code, "value": obj["value"]})
        return _json_response({"data": hits[:limit]})

    # ------------------------------------------------------------------ threat library
    def _with(self, req: Request, allowed: frozenset[str]) -> set[str]:
        try:
            return parse_with(req.params.get("with"), allowed)
        except ShapeError as exc:
            raise form2(str(exc)) from exc

    @staticmethod
    def _library_pivot(ev: Mapping[str, Any], oid: int) -> dict[str, Any]:
        # recorded related-object pivot (tip-marketplace GetMalwareDetails): {id, created_at, updated_at}
        return {"id": ev["id"] * 100000 + oid, "created_at": ev["created_at"], "updated_at": ev["created_at"]}

    def _library_row(self, code: str, oid: int, with_: set[str],
                     pivot: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A custom object as ThreatQ answers it (docs/reference/threatq-api.md §4.5): base columns;
        ``attributes`` and ``sources`` when asked with ``with=`` (always in legacy mode, as for events); ``events`` as
        event rows; other relations empty (``type``/``status``/``score`` null); ``pivot`` on related lists."""
        c = self.corpus
        row = c.library_row_compact(code, oid)
        legacy = self.mode == "legacy"
        if legacy or with_ & {"attributes", "sources"}:
            full = c.library_object(code, oid)
            for rel in ("attributes", "sources"):
                if rel in with_ or legacy:
                    row[rel] = full[rel]
        for rel in sorted(with_ - {"attributes", "sources"}):
            if rel == "events":
                row["events"] = [self._event_row(c.event_base(e), Projection(form="row"))
                                 for e in c.library_event_ids(code, oid)]
            else:
                row[rel] = None if rel in ("type", "status", "score") else []
        if pivot is not None:
            row["pivot"] = dict(pivot)
        return row

    def _h_library_list(self, code: str) -> Callable[[Request], Response]:
        """``GET /api/<code>``: ``?value=`` (``%`` wildcard) and ``?id=`` filters, paged, ``with=``."""
        def handler(req: Request) -> Response:
            limit, offset = self._paging(req)
            with_ = self._with(req, LIBRARY_RELATIONS)
            items = [self.corpus.library_row_compact(code, o["id"])
                     for o in self.corpus.library_objects(code)]
            for key in ("value", "id"):
                if req.params.get(key):
                    pred = compile_expr({key: req.params[key]})
                    items = [o for o in items if pred(lambda f, o=o: o.get(f))]
            rows = [self._library_row(code, o["id"], with_) for o in items[offset: offset + limit]]
            return self._list_envelope(rows, len(items), limit, offset)
        return handler

    def _h_library_get(self, code: str) -> Callable[[Request], Response]:
        """``GET /api/<code>/{id}``: one object (``with=`` as on the list)."""
        def handler(req: Request) -> Response:
            assert req.match is not None
            oid = int(req.match["id"])
            if not self.corpus.library_exists(code, oid):
                raise ApiError(404, {"errors": ["Not found."]})
            return _json_response({"data": self._library_row(code, oid, self._with(req, LIBRARY_RELATIONS))})
        return handler

    def _h_adversaries(self, req: Request) -> Response:
        limit, offset = self._paging(req)
        items = self.corpus.adversaries
        if req.params.get("name"):
            pred = compile_expr({"name": req.params["name"]})
            items = [a for a in items if pred(lambda f, a=a: a.get(f))]
        return self._list_envelope([dict(a) for a in items[offset: offset + limit]], len(items), limit, offset)

    # ------------------------------------------------------------------ investigations
    def _investigation_row(self, inv: Mapping[str, Any], with_: set[str]) -> dict[str, Any]:
        out = {k: v for k, v in inv.items() if not k.endswith("_ids")}
        c = self.corpus
        if "events" in with_:
            out["events"] = [self._event_row(c.event_base(e), Projection(form="row")) for e in inv["event_ids"]]
        if "indicators" in with_:
            out["indicators"] = [self._related_row(i, Projection(form="row", legacy=self.mode == "legacy"),
                                                   "investigation", inv["id"]) for i in inv["indicator_ids"]]
        if "attachments" in with_:
            out["attachments"] = [c.attachment(a) for a in inv["attachment_ids"]]
        return out

    def _h_investigations_list(self, req: Request) -> Response:
        limit, offset = self._paging(req)
        try:
            with_ = parse_with(req.params.get("with"), frozenset({"events", "indicators", "attachments"}))
        except ShapeError as exc:
            raise form2(str(exc)) from exc
        items = self.corpus.investigations
        if req.params.get("name"):
            pred = compile_expr({"name": req.params["name"]})
            items = [i for i in items if pred(lambda f, i=i: i.get(f))]
        rows = [self._investigation_row(i, with_) for i in items[offset: offset + limit]]
        return self._list_envelope(rows, len(items), limit, offset)

    def _h_investigation_get(self, req: Request) -> Response:
        assert req.match is not None
        try:
            inv = self.corpus.investigation(int(req.match["id"]))
        except KeyError:
            raise ApiError(404, {"errors": ["Not found."]}) from None
        try:
            with_ = parse_with(req.params.get("with"), frozenset({"events", "indicators", "attachments"}))
        except ShapeError as exc:
            raise form2(str(exc)) from exc
        return _json_response({"data": self._investigation_row(inv, with_)})

    # ------------------------------------------------------------------ attachments
    def _h_attachments_list(self, req: Request) -> Response:
        limit, offset = self._paging(req)
        items = self.corpus.attachments
        for key in ("hash", "name", "id"):
            if req.params.get(key):
                pred = compile_expr({key: req.params[key]})
                items = [a for a in items if pred(lambda f, a=a: a.get(f))]
        return self._list_envelope(items[offset: offset + limit], len(items), limit, offset)

    def _attachment_id(self, req: Request) -> int:
        assert req.match is not None
        aid = int(req.match["id"])
        if not self.corpus.attachment_exists(aid):
            raise ApiError(404, {"errors": ["Not found."]})
        return aid

    def _h_attachment_get(self, req: Request) -> Response:
        return _json_response({"data": self.corpus.attachment(self._attachment_id(req))})

    def _h_attachment_download(self, req: Request) -> Response:
        aid = self._attachment_id(req)
        meta = self.corpus.attachment(aid)
        return Response(200, self.corpus.attachment_content(aid), meta["content_type"],
                        {"Content-Disposition": f'attachment; filename="{meta["name"]}"'})

    def _h_config_js(self, req: Request) -> Response:
        js = ("window.ThreatQ = window.ThreatQ || {};\n"
              f'ThreatQ.config = {{"ApiHost": "{self.url}/api", "ClientId": "{self.client_id}"}};\n')
        return Response(200, js.encode(), "application/javascript")

    # ------------------------------------------------------------------ control plane
    def control(self, req: Request) -> Response:
        """``/_sim/...``: faults, token expiry, stats (no auth, no faults)."""
        path = req.path.rstrip("/")
        if path == "/_sim/faults":
            status, body = control(self.faults, req.method, req.body)
            return Response(204, b"") if body is None else _json_response(body, status)
        if path == "/_sim/expire-tokens" and req.method == "POST":
            return _json_response({"data": {"expired": self.expire_tokens()}})
        if path == "/_sim/stats":
            if req.method == "GET":
                return _json_response({"data": self.stats})
            if req.method == "DELETE":
                self.reset_stats()
                return Response(204, b"")
        return _json_response({"errors": ["Not found."]}, 404)


# ---------------------------------------------------------------------------- data faults
# Routes whose ``data`` rows (or object) are indicators: where poison/nest faults apply.
_INDICATOR_ROUTES = re.compile(r"^/api/indicators(/|$)|/indicators$")
# Stands in for a value while the answer is serialised, then is replaced by raw JSON text that the
# encoder could not produce (a lone surrogate, nesting deeper than its recursion limit).
_MARKER = "\x00threatq-sim-fault-{}\x00"
#: Appended to a poisoned description: the high half of U+1F600, without its low half.
POISON_TEXT = " \ud83d"


def _cap_limit(req: Request, rules: list[FaultRule], default_limit: int) -> str | None:
    """Apply the smallest ``page_cap`` of ``rules`` to the request's ``limit``; return what the
    client asked (to echo back), or None when no cap applies."""
    caps = [r.page_cap for r in rules if r.page_cap is not None]
    if not caps:
        return None
    asked = req.params.get("limit")
    try:
        wanted = int(asked) if asked not in (None, "") else default_limit
    except ValueError:
        return None  # the handler answers 400 for it, as without the fault
    if wanted > min(caps):
        req.params["limit"] = str(min(caps))
    return asked


def _apply_data_faults(req: Request, resp: Response, rules: list[FaultRule], asked: str | None) -> Response:
    """The answer with the data faults applied (a JSON 2xx answer; anything else is left alone)."""
    if not 200 <= resp.status < 300 or resp.content_type != _JSON or not resp.body:
        return resp
    body = json.loads(resp.body)
    if not isinstance(body, dict):
        return resp
    if asked is not None and asked.isdigit() and "limit" in body:
        body["limit"] = int(asked)  # silent: the envelope echoes what was asked, not what was served
    raw: dict[str, str] = {}
    if req.route is not None and _INDICATOR_ROUTES.search(req.route):
        data = body.get("data")
        rows = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
        for rule in rules:
            for row in rows:
                if not isinstance(row, dict):
                    continue
                if rule.poison_indicator is not None and row.get("id") == rule.poison_indicator:
                    _poison(row, raw)
                if rule.nest_indicator is not None and row.get("id") == rule.nest_indicator:
                    _nest(row, rule.nest_depth or DEFAULT_NEST_DEPTH, raw)
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    for marker, replacement in raw.items():
        text = text.replace(json.dumps(marker), replacement)
    return Response(resp.status, text.encode("utf-8"), resp.content_type, resp.headers)


def _poison(row: dict[str, Any], raw: dict[str, str]) -> None:
    description = row.get("description")
    marker = _MARKER.format(len(raw))
    # ensure_ascii: the surrogate travels as the escape "\ud83d" (a UTF-8 body cannot carry it raw).
    raw[marker] = json.dumps((description if isinstance(description, str) else "") + POISON_TEXT, ensure_ascii=True)
    row["description"] = marker


def _nest(row: dict[str, Any], depth: int, raw: dict[str, str]) -> None:
    attributes = row.get("attributes")
    if isinstance(attributes, list) and attributes and isinstance(attributes[0], dict):
        target = attributes[0]
    else:
        target = {"name": "Nested", "value": "nested"}
        row["attributes"] = [target, *(attributes if isinstance(attributes, list) else [])]
    marker = _MARKER.format(len(raw))
    raw[marker] = "[" * depth + json.dumps(target.get("value"), ensure_ascii=False) + "]" * depth
    target["value"] = marker


def _oauth_error(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description, "message": description}


# ---------------------------------------------------------------------------- HTTP glue
class _QuietServer(ThreadingHTTPServer):
    """Clients that give up (timeouts, resets) are normal here: log them at debug, not as tracebacks."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            log.debug("threatq-sim: client %s went away: %r", client_address, exc)
            return
        super().handle_error(request, client_address)


class _Handler(FaultingHandler):
    """Thin HTTP/1.1 layer: parse, count, apply faults, delegate to the simulator, write."""

    server_version = "ThreatQSimulator/1.0"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are closed after this
    sim: ThreatQSimulator

    def setup(self) -> None:
        super().setup()
        with self.sim._lock:
            self.sim._conns.add(self.connection)
        self.sim._bump("connections")

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.sim._lock:
                self.sim._conns.discard(self.connection)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # path only: query strings can carry refresh tokens or client secrets (some clients send them there)
        log.debug("threatq-sim %s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("threatq-sim: %s", (format % args).split("?", 1)[0])

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        sim = self.sim
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        req = Request(self.command, parts.path, parts.query, self.headers, body)
        with sim._stats_lock:
            sim._stats["requests"] += 1
            sim._stats["by_path"][f"{self.command} {parts.path}"] += 1
        if parts.path.startswith("/_sim/"):
            self.send_reply(sim.control(req))
            return
        # rules see the decoded query ("cursorMark=*", not "cursorMark=%2A")
        query = unquote_plus(parts.query)
        rule = sim.faults.match(self.command, parts.path, query)
        if rule is not None:
            with sim._stats_lock:
                sim._stats["faults_triggered"] += 1
                sim._stats["faults_by_kind"][rule.kind] += 1

        def handle() -> Response:
            data_rules = sim.faults.data_faults(self.command, parts.path, query)
            if data_rules:
                with sim._stats_lock:
                    sim._stats["faults_triggered"] += len(data_rules)
                    for data_rule in data_rules:
                        for kind in data_rule.data_kinds:
                            sim._stats["faults_by_kind"][kind] += 1
            asked = _cap_limit(req, data_rules, sim.default_limit)
            resp = sim.handle(req)
            return _apply_data_faults(req, resp, data_rules, asked) if data_rules else resp

        self.serve(rule, handle, lambda r: self.error_body(r, lambda status: {"errors": [f"Simulated failure ({status})."]}),
                   hooks={"expire_token": sim.expire_tokens})

    def record(self, status: int, *, faulted: bool) -> None:
        if status:
            with self.sim._stats_lock:
                self.sim._stats["by_status"][str(status)] += 1

    def send_reply(self, reply: Response, *, faulted: bool = False) -> None:
        if reply.content_type == _JSON:
            reply = Response(reply.status, reply.body, _JSON + "; charset=utf-8", reply.headers)
        super().send_reply(reply, faulted=faulted)
