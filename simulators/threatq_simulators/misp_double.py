"""A stateful MISP double: a real HTTP server that answers as MISP 2.5 does for PyMISP.

A real MISP cannot be installed from the registries this project reaches (docs/reference/misp.md §4),
so the real PyMISP client is tested against this server. It reproduces, from MISP's source, what
the exporter relies on:

* API-key check (``Authorization`` or ``X-MISP-AUTH``) → 403 JSON, as MISP's AuthComponent;
* ``servers/getVersion``, ``users/view/me``, ``attributes/describeTypes.json`` (PyMISP's
  constructor calls all three);
* events: add (duplicate UUID → 404 + ``Location``, blocklisted UUID → 403, empty published
  event refused, invalid attributes dropped and listed in ``errors``), edit (attributes matched by
  UUID, updated in place or added, never deleted; stale ``timestamp`` refused; unpublished unless
  ``published`` is true), view (GET/HEAD/POST), restSearch, publish/unpublish, delete (UUID goes
  to the blocklist);
* attributes: add (one or a list, ``breakOnDuplicate:0``), edit, delete, restSearch, with MISP's
  validation — type/category pairs from describeTypes, values through PyMISP's port of MISP's
  validator, per-event (type, category, value) uniqueness, instance-wide UUID uniqueness;
  ``malware-sample`` with ``encrypt`` gets the value ``filename|md5`` (the content is kept as
  sent, not zipped);
* tags attach/remove on events and attributes (global attach unpublishes; an attribute edit
  attaches the ``Tag`` entries it carries and never removes others), galaxies (clusters from the
  misp-galaxy data that pymispgalaxies ships; a ``misp-galaxy:`` tag of a known cluster shows
  under ``Galaxy``),
  sharing groups, event blocklist;
* event reports (``eventReports/add|edit|view|index|delete``, as EventReportsController answers
  REST calls): UUID unique instance-wide (deleted reports included), distribution 0–5, add/edit/
  delete unpublish the event, the full event view lists the live ones under ``EventReport``;
* faults as data: the fault plan both simulators share (:mod:`threatq_simulators.faults`: match
  method, regex on ``/path?query``, nth/times → status with headers and body, delay, reset, close,
  commit_then_reset, truncate, malformed), also at run time through ``/_sim/faults``; a 429 gets
  MISP's ``X-Rate-Limit-*`` headers unless the rule sets them.

It imports nothing from the provider's MISP mapping, hook or exporter, so one bug cannot hide on
both sides. Ground truth: ``events()``, ``requests()`` (a log without bodies).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import re
import threading
import time
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from http.server import ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from pymisp.abstract import describe_types as _DESCRIBE_TYPES
from pymisp.tools.attributevalidationtool import AttributeValidationTool

from threatq_simulators._http import BackgroundServer, FaultingHandler, Reply
from threatq_simulators.faults import MISP, FaultPlan, FaultRule, control

log = logging.getLogger(__name__)

DEFAULT_API_KEY = "misp-double-0123456789abcdefghijklmnopqrstuv"
MISP_VERSION = "2.5.1"
PYMISP_RECOMMENDED_VERSION = "2.5.1"
AUTH_FAILED = ("Authentication failed. Please make sure you pass the API key of an API enabled user along in "
               "the Authorization header.")
DEFAULT_SHARING_GROUPS: tuple[str, ...] = ("ThreatQ partners", "National CERT network")
_ORG = {"id": "1", "name": "ORGNAME", "uuid": "c5de83b4-36ba-49d6-9530-2a315caeece6", "local": True}


@dataclass(frozen=True)
class RequestRecord:
    """One request as the double saw it (no headers, no bodies: the log never holds the key).

    :param method: HTTP method.
    :param path: request path without the leading slash.
    :param status: status answered.
    :param attributes: number of attributes in the request body (0 when none).
    :param body_bytes: size of the request body.
    :param fault: True when a fault rule answered.
    """

    method: str
    path: str
    status: int
    attributes: int = 0
    body_bytes: int = 0
    fault: bool = False


class _Reply(Exception):
    """Raised inside handlers to answer with a status and JSON body."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _exception_body(status: int, message: str, url: str) -> _Reply:
    return _Reply(status, {"name": message, "message": message, "url": url})


def _save_fail(name: str, url: str, errors: Any) -> _Reply:
    # RestResponseComponent::saveFailResponse: always 403
    return _Reply(403, {"saved": False, "name": name, "message": name, "url": url, "errors": errors})


def _save_success(name: str, url: str, obj_id: Any = None, message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"saved": True, "success": True, "name": name, "message": message or name, "url": url}
    if obj_id is not None:
        body["id"] = str(obj_id)
    return body


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


@lru_cache(maxsize=1)
def _galaxy_catalogue() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Galaxies (id order = file name order) and a cluster index by tag name, from misp-galaxy data."""
    root = files("pymispgalaxies").joinpath("data", "misp-galaxy")
    galaxies: list[dict[str, Any]] = []
    clusters: dict[str, dict[str, Any]] = {}
    names = sorted(p.name for p in root.joinpath("galaxies").iterdir() if p.name.endswith(".json"))
    for gid, name in enumerate(names, start=1):
        g = json.loads(root.joinpath("galaxies", name).read_text("utf-8"))
        gal = {"id": str(gid), "uuid": g.get("uuid"), "name": g.get("name"), "type": g.get("type"),
               "description": g.get("description", ""), "version": str(g.get("version", "1")),
               "namespace": g.get("namespace", "misp"), "icon": g.get("icon", "")}
        galaxies.append(gal)
    return galaxies, clusters


@lru_cache(maxsize=64)
def _clusters_of(galaxy_type: str) -> list[dict[str, Any]]:
    path = files("pymispgalaxies").joinpath("data", "misp-galaxy", "clusters", f"{galaxy_type}.json")
    try:
        data = json.loads(path.read_text("utf-8"))
    except (FileNotFoundError, OSError):
        return []
    galaxies, _ = _galaxy_catalogue()
    gal = next((g for g in galaxies if g["type"] == galaxy_type), None)
    base = int(gal["id"]) * 100000 if gal else 0
    out = []
    for n, v in enumerate(data.get("values", []), start=1):
        out.append({"id": str(base + n), "uuid": v.get("uuid"), "type": galaxy_type, "value": v["value"],
                    "tag_name": f'misp-galaxy:{galaxy_type}="{v["value"]}"', "description": v.get("description", ""),
                    "galaxy_id": gal["id"] if gal else "0", "meta": v.get("meta", {}),
                    "synonyms": [str(s) for s in (v.get("meta") or {}).get("synonyms", []) or []]})
    return out


_GALAXY_TAG = re.compile(r'^misp-galaxy:([^=]+)="(.*)"$')


def _cluster_for_tag(tag_name: str) -> dict[str, Any] | None:
    m = _GALAXY_TAG.match(tag_name)
    if not m:
        return None
    return next((c for c in _clusters_of(m.group(1)) if c["value"] == m.group(2)), None)


class _State:
    """Everything the double stores; every access holds ``lock``."""

    def __init__(self, sharing_groups: tuple[str, ...]) -> None:
        self.lock = threading.RLock()
        self.events: dict[int, dict[str, Any]] = {}
        self.attr_index: dict[str, tuple[int, dict[str, Any]]] = {}  # uuid → (event id, attribute)
        self.tags: dict[str, dict[str, Any]] = {}
        self.blocklist: set[str] = set()
        self.reports: dict[int, dict[str, Any]] = {}  # id → event report (deleted ones stay, as in MISP)
        self.next_report = 1
        self.next_event = 1
        self.next_attr = 1
        self.sharing_groups = [
            {"id": str(i), "uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"misp-double:sg:{name}")),
             "name": name, "releasability": "", "description": "", "organisation_uuid": _ORG["uuid"],
             "org_id": "1", "active": True, "local": True, "roaming": False}
            for i, name in enumerate(sharing_groups, start=1)
        ]
        self.log: list[RequestRecord] = []

    def tag(self, name: str) -> dict[str, Any]:
        if name not in self.tags:
            cluster = _cluster_for_tag(name)
            self.tags[name] = {"id": str(len(self.tags) + 1), "name": name, "colour": "#0088cc", "exportable": True,
                               "user_id": "0", "hide_tag": False, "numerical_value": None,
                               "is_galaxy": name.startswith("misp-galaxy:"), "is_custom_galaxy": False,
                               "local_only": False, "_cluster": cluster}
        return self.tags[name]

    def find_event(self, ref: str) -> dict[str, Any] | None:
        if ref.isdigit():
            return self.events.get(int(ref))
        return next((e for e in self.events.values() if e["uuid"] == ref.lower()), None)


class MispDouble(BackgroundServer):
    """A MISP server double on loopback, for the real PyMISP client.

    :param host: interface to bind.
    :param port: TCP port; 0 picks a free one.
    :param api_key: the only API key accepted.
    :param faults: the fault plan (a ``FaultPlan`` or its rules, as ``FaultRule`` or dicts; the
        schema both simulators share, :mod:`threatq_simulators.faults`); ``add_fault`` adds more later.
    :param sharing_groups: names of the sharing groups the user may use (ids 1, 2, …).
    :param version: MISP version reported by ``servers/getVersion``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: str = DEFAULT_API_KEY, *,
                 faults: FaultPlan | list[FaultRule | dict[str, Any]] | tuple[FaultRule, ...] = (),
                 sharing_groups: tuple[str, ...] = DEFAULT_SHARING_GROUPS, version: str = MISP_VERSION) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.version = version
        # Bound to this server: a ThreatQ-only rule (data faults, expire_token) is refused here.
        self.faults = (faults if isinstance(faults, FaultPlan) else FaultPlan(faults)).bind(MISP)
        self._state = _State(tuple(sharing_groups))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Start serving in a background thread. :return: the base URL, e.g. ``http://127.0.0.1:8481``."""
        if self._server is None:
            handler = type("Handler", (_Handler,), {"double": self})
            self._serve(ThreadingHTTPServer((self.host, self.port), handler), "misp-double")
        return self.url

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ------------------------------------------------------------------ ground truth
    def events(self) -> list[dict[str, Any]]:
        """Deep copies of every stored event (MISP's ``Event`` shape with ``Attribute`` and ``Tag``)."""
        with self._state.lock:
            return [copy.deepcopy(self._render_event(e, metadata=False)) for e in self._state.events.values()]

    def event(self, uuid: str) -> dict[str, Any] | None:
        """One stored event by UUID, or None."""
        with self._state.lock:
            ev = self._state.find_event(uuid)
            return copy.deepcopy(self._render_event(ev, metadata=False)) if ev else None

    def requests(self) -> list[RequestRecord]:
        """Every request seen so far, oldest first."""
        with self._state.lock:
            return list(self._state.log)

    def clear_requests(self) -> None:
        """Forget the request log (state is kept)."""
        with self._state.lock:
            self._state.log.clear()

    def reset(self) -> None:
        """Drop every event, tag, blocklist entry, fault and logged request."""
        with self._state.lock:
            groups = tuple(g["name"] for g in self._state.sharing_groups)
            self._state = _State(groups)
            self.faults.clear()

    def add_fault(self, rule: FaultRule | dict[str, Any]) -> FaultRule:
        """Append a fault rule (a ``FaultRule`` or its dict form). :return: the rule."""
        return self.faults.add(rule)

    def sharing_group_id(self, name: str) -> str:
        """Id of a sharing group by name."""
        return next(g["id"] for g in self._state.sharing_groups if g["name"] == name)

    # ------------------------------------------------------------------ rendering
    def _render_attribute(self, a: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in a.items() if not k.startswith("_")}
        out["Tag"] = [self._render_tag(self._state.tag(t)) for t in a["_tags"]]
        return out  # fresh dict of scalars: safe to serialise outside the lock

    @staticmethod
    def _render_tag(tag: dict[str, Any], local: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in tag.items() if not k.startswith("_")}
        out.update({"local": 1 if local else 0, "relationship_type": None})
        return out

    def _render_event(self, ev: dict[str, Any], *, metadata: bool) -> dict[str, Any]:
        out = {k: v for k, v in ev.items() if not k.startswith("_")}
        live = [a for a in ev["_attributes"] if not a["deleted"]]
        out["attribute_count"] = str(len(live))
        out["Org"] = dict(_ORG)
        out["Orgc"] = dict(_ORG)
        out["Tag"] = [self._render_tag(self._state.tag(t), local=loc) for t, loc in ev["_tags"].items()]
        galaxies: dict[str, dict[str, Any]] = {}
        catalogue, _ = _galaxy_catalogue()
        for name in ev["_tags"]:
            cluster = self._state.tag(name)["_cluster"]
            if cluster:
                gal = next((g for g in catalogue if g["type"] == cluster["type"]), None)
                if gal:
                    entry = galaxies.setdefault(gal["id"], {**gal, "GalaxyCluster": []})
                    entry["GalaxyCluster"].append({k: v for k, v in cluster.items() if k != "synonyms"})
        out["Galaxy"] = list(galaxies.values())
        if ev["sharing_group_id"] != "0":
            sg = next((g for g in self._state.sharing_groups if g["id"] == ev["sharing_group_id"]), None)
            if sg:
                out["SharingGroup"] = dict(sg)
        if not metadata:
            out["Attribute"] = [self._render_attribute(a) for a in live]
            out["Object"] = []
            out["ShadowAttribute"] = []
            out["RelatedEvent"] = []
            out["EventReport"] = [self._render_report(r) for r in self._state.reports.values()
                                  if r["event_id"] == ev["id"] and not r["deleted"]]
        return out

    # ------------------------------------------------------------------ attribute rules
    def _validate_attribute(self, ev: dict[str, Any], raw: dict[str, Any], *, existing: dict[str, Any] | None = None,
                            break_on_duplicate: bool = True) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
        """MISP's MispAttribute validation. :return: (normalised fields, errors)."""
        dt = _DESCRIBE_TYPES
        errors: dict[str, list[str]] = {}
        a_type = raw.get("type", existing["type"] if existing else None)
        if a_type not in dt["types"]:
            return None, {"type": ["Options depend on the selected category."]}
        category = raw.get("category") or (existing["category"] if existing and existing["type"] == a_type
                                           else dt["sane_defaults"][a_type]["default_category"])
        if category not in dt["categories"]:
            return None, {"category": ["Options : " + ", ".join(dt["categories"])]}
        if a_type not in dt["category_type_mappings"][category]:
            return None, {"type": ["Options depend on the selected category."]}
        value = raw.get("value", existing["value"] if existing else None)
        if value is None or str(value).strip() == "":
            return None, {"value": ["Please fill in this field"]}
        value = str(value).strip()
        data = raw.get("data")
        if a_type == "malware-sample" and data and _bool(raw.get("encrypt")) and "|" not in value:
            # MispAttribute::onDemandEncrypt: value becomes filename|md5 of the content
            value = f"{value}|{hashlib.md5(base64.b64decode(data)).hexdigest()}"  # noqa: S324
        value = str(AttributeValidationTool.modifyBeforeValidation(a_type, value))
        verdict = AttributeValidationTool.validate(a_type, value)
        if verdict is not True:
            errors["value"] = [str(verdict)]
            return None, errors
        live_dup = ev["_values"].get((a_type, category, value))
        if live_dup is not None and (live_dup["deleted"] or (existing is not None and live_dup is existing)):
            live_dup = None
        fields = {"type": a_type, "category": category, "value": value,
                  "to_ids": _bool(raw["to_ids"]) if "to_ids" in raw else (
                      existing["to_ids"] if existing else bool(dt["sane_defaults"][a_type]["to_ids"])),
                  "comment": str(raw.get("comment", existing["comment"] if existing else "") or ""),
                  "distribution": str(raw.get("distribution", existing["distribution"] if existing else "5")),
                  "sharing_group_id": str(raw.get("sharing_group_id", existing["sharing_group_id"] if existing else "0")),
                  "disable_correlation": _bool(raw.get("disable_correlation", False)),
                  "first_seen": raw.get("first_seen"), "last_seen": raw.get("last_seen")}
        if data:
            fields["data"] = data
        if live_dup is not None:
            if break_on_duplicate:
                return None, {"value": ["A similar attribute already exists for this event."]}
            fields["_update"] = live_dup
        return fields, errors

    def _new_attribute(self, ev: dict[str, Any], fields: dict[str, Any], raw: dict[str, Any], now: int) -> dict[str, Any]:
        st = self._state
        a_uuid = str(raw.get("uuid") or uuidlib.uuid4()).lower()
        attr = {"id": str(st.next_attr), "event_id": ev["id"], "object_id": "0", "object_relation": None,
                "uuid": a_uuid, "timestamp": str(now), "deleted": False, **fields, "_tags": []}
        st.next_attr += 1
        for tag in raw.get("Tag") or []:
            name = tag.get("name") if isinstance(tag, dict) else tag
            if name:
                st.tag(name)
                attr["_tags"].append(name)
        ev["_attributes"].append(attr)
        ev["_values"][(attr["type"], attr["category"], attr["value"])] = attr
        st.attr_index[a_uuid] = (int(ev["id"]), attr)
        return attr

    def _add_attribute(self, ev: dict[str, Any], raw: dict[str, Any], now: int, *, break_on_duplicate: bool = True,
                       silent_uuid_clash: bool = False) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
        st = self._state
        a_uuid = str(raw.get("uuid") or "").lower()
        if a_uuid and a_uuid in st.attr_index:
            if silent_uuid_clash:
                log.info("Duplicate UUID found in attribute %s; dropped (MISP logs and drops it)", a_uuid)
                return None, {}
            return None, {"uuid": ["The UUID provided is not unique"]}
        fields, errors = self._validate_attribute(ev, raw, break_on_duplicate=break_on_duplicate)
        if fields is None:
            return None, errors
        dup = fields.pop("_update", None)
        if dup is not None:  # breakOnDuplicate:0 → update the existing attribute instead
            self._reindex(ev, dup, fields)
            dup.update(fields)
            dup["timestamp"] = str(now)
            return dup, {}
        return self._new_attribute(ev, fields, raw, now), {}

    def _edit_attribute(self, ev: dict[str, Any], existing: dict[str, Any], raw: dict[str, Any],
                        now: int) -> dict[str, list[str]]:
        if raw.get("timestamp") and int(raw["timestamp"]) <= int(existing["timestamp"]):
            return {}  # MISP skips attributes that are not newer than its copy
        fields, errors = self._validate_attribute(ev, raw, existing=existing)
        if fields is None:
            return errors
        fields.pop("_update", None)
        self._reindex(ev, existing, fields)
        existing.update(fields)
        existing["deleted"] = _bool(raw.get("deleted", False))
        existing["timestamp"] = str(now)
        # AttributeTag::handleAttributeTag: a Tag in the edit attaches it, one marked deleted detaches it;
        # tags missing from the payload stay.
        for tag in raw.get("Tag") or []:
            name = tag.get("name") if isinstance(tag, dict) else tag
            if not name:
                continue
            if isinstance(tag, dict) and _bool(tag.get("deleted", False)):
                if name in existing["_tags"]:
                    existing["_tags"].remove(name)
            elif name not in existing["_tags"]:
                self._state.tag(name)
                existing["_tags"].append(name)
        return {}

    @staticmethod
    def _reindex(ev: dict[str, Any], attr: dict[str, Any], fields: dict[str, Any]) -> None:
        """Keep the per-event (type, category, value) index in step with an in-place change."""
        old = (attr["type"], attr["category"], attr["value"])
        if ev["_values"].get(old) is attr:
            del ev["_values"][old]
        ev["_values"][(fields["type"], fields["category"], fields["value"])] = attr

    # ------------------------------------------------------------------ event rules
    def _apply_tags(self, ev: dict[str, Any], tags: Any) -> None:
        for tag in tags or []:
            name = tag.get("name") if isinstance(tag, dict) else tag
            if name:
                self._state.tag(name)
                ev["_tags"].setdefault(name, bool(tag.get("local", False)) if isinstance(tag, dict) else False)

    def _event_fields(self, body: dict[str, Any], current: dict[str, Any] | None, url: str) -> dict[str, Any]:
        def pick(key: str, default: Any) -> Any:
            return body.get(key, current[key] if current else default)

        info = pick("info", None)
        if not info:
            raise _save_fail("The event could not be saved.", url, {"info": ["Info cannot be empty."]})
        distribution = str(pick("distribution", "1"))
        threat = str(pick("threat_level_id", "4"))
        analysis = str(pick("analysis", "0"))
        if distribution not in {"0", "1", "2", "3", "4"}:
            raise _save_fail("The event could not be saved.", url, {"distribution": ["Options: 0, 1, 2, 3, 4"]})
        if threat not in {"1", "2", "3", "4"} or analysis not in {"0", "1", "2"}:
            raise _save_fail("The event could not be saved.", url, {"threat_level_id": ["Options: 1, 2, 3, 4"]})
        sg = str(pick("sharing_group_id", "0") or "0")
        if distribution == "4" and sg not in {g["id"] for g in self._state.sharing_groups}:
            raise _exception_body(403, "Invalid Sharing Group or not authorised.", url)
        if distribution != "4":
            sg = "0"
        return {"info": str(info), "date": str(pick("date", time.strftime("%Y-%m-%d", time.gmtime()))),
                "distribution": distribution, "threat_level_id": threat, "analysis": analysis,
                "sharing_group_id": sg, "extends_uuid": str(pick("extends_uuid", "") or ""),
                "disable_correlation": _bool(pick("disable_correlation", False))}

    def add_event(self, body: dict[str, Any], metadata: bool, url: str) -> dict[str, Any]:
        st = self._state
        body = body.get("Event", body)
        ev_uuid = str(body.get("uuid") or uuidlib.uuid4()).lower()
        if ev_uuid in st.blocklist:
            raise _exception_body(403, "Event blocked by event blocklist.", url)
        existing = st.find_event(ev_uuid)
        if existing is not None:
            raise _Reply(404, {"name": "Event already exists, if you would like to edit it, use the url in the "
                                       "location header.",
                               "message": "Event already exists, if you would like to edit it, use the url in the "
                                          "location header.", "url": url},
                         {"Location": f"/events/{existing['id']}"})
        published = _bool(body.get("published", False))
        if published and not body.get("Attribute") and not body.get("Object") and not body.get("EventReport"):
            raise _exception_body(403, "Received a published event that was empty. Event add process blocked.", url)
        now = int(time.time())
        ev = {"id": str(st.next_event), "uuid": ev_uuid, "org_id": "1", "orgc_id": "1",
              **self._event_fields(body, None, url), "published": False, "timestamp": str(now),
              "publish_timestamp": "0", "locked": False, "proposal_email_lock": False,
              "event_creator_email": "admin@admin.test", "_attributes": [], "_tags": {}, "_values": {}}
        st.next_event += 1
        st.events[int(ev["id"])] = ev
        self._apply_tags(ev, body.get("Tag"))
        errors: dict[str, Any] = {}
        for k, raw in enumerate(body.get("Attribute") or []):
            _, errs = self._add_attribute(ev, raw, now, silent_uuid_clash=True)
            if errs:
                errors[f"attribute_{k}"] = errs
        if published:
            self._publish(ev, now)
        result: dict[str, Any] = {"Event": self._render_event(ev, metadata=metadata)}
        if errors:
            result["errors"] = {"Attribute": errors}
        return result

    def edit_event(self, ref: str, body: dict[str, Any], metadata: bool, url: str) -> dict[str, Any]:
        st = self._state
        ev = st.find_event(ref)
        if ev is None:
            raise _exception_body(404, "Invalid event", url)
        body = body.get("Event", body)
        if body.get("timestamp") and int(body["timestamp"]) <= int(ev["timestamp"]):
            raise _save_fail("Event could not be saved: Event in the request not newer than the local copy.", url,
                             "Event in the request not newer than the local copy.")
        now = max(int(time.time()), int(ev["timestamp"]))
        ev.update(self._event_fields(body, ev, url))
        self._apply_tags(ev, body.get("Tag"))
        errors: dict[str, Any] = {}
        for k, raw in enumerate(body.get("Attribute") or []):
            a_uuid = str(raw.get("uuid") or "").lower()
            hit = st.attr_index.get(a_uuid) if a_uuid else None
            if hit is not None and hit[0] != int(ev["id"]):
                log.info("Attempt to edit an attribute (%s) of another event; skipped", a_uuid)
                continue
            if hit is not None:
                errs = self._edit_attribute(ev, hit[1], raw, now)
            else:
                _, errs = self._add_attribute(ev, raw, now)
            if errs:
                errors[f"attribute_{k}"] = errs
        ev["timestamp"] = str(now)
        # Event::_edit: published defaults to 0, so any edit unpublishes unless the payload says otherwise
        if _bool(body.get("published", False)):
            self._publish(ev, now)
        else:
            ev["published"] = False
        result: dict[str, Any] = {"Event": self._render_event(ev, metadata=metadata)}
        if errors:
            result["errors"] = {"Attribute": errors}
        return result

    @staticmethod
    def _publish(ev: dict[str, Any], now: int) -> None:
        ev["published"] = True
        ev["publish_timestamp"] = str(now)

    def add_attributes(self, ref: str, body: Any, break_on_duplicate: bool, url: str) -> dict[str, Any]:
        st = self._state
        ev = st.find_event(ref)
        if ev is None:
            raise _exception_body(404, "Invalid event.", url)
        now = int(time.time())
        if isinstance(body, dict) and "Attribute" in body:
            body = body["Attribute"]
        if isinstance(body, dict):
            attr, errs = self._add_attribute(ev, body, now, break_on_duplicate=break_on_duplicate)
            if attr is None:
                raise _save_fail("Could not add Attribute", url, errs)
            ev["published"] = False
            ev["timestamp"] = str(now)
            return {"Attribute": self._render_attribute(attr)}
        saved: list[dict[str, Any]] = []
        fails: dict[str, Any] = {}
        for k, raw in enumerate(body):
            attr, errs = self._add_attribute(ev, raw, now, break_on_duplicate=break_on_duplicate)
            if attr is None:
                fails[f"attribute_{k}"] = errs
            else:
                saved.append(attr)
        if not saved:
            raise _save_fail("Could not add Attributes", url, fails)
        ev["published"] = False
        ev["timestamp"] = str(now)
        rendered = [self._render_attribute(a) for a in saved]
        result: dict[str, Any] = {"Attribute": rendered[0] if len(body) == 1 else rendered}
        if fails:
            result["errors"] = fails
        return result

    def edit_attribute(self, ref: str, body: dict[str, Any], url: str) -> dict[str, Any]:
        st = self._state
        body = body.get("Attribute", body)
        hit = self._find_attribute(ref)
        if hit is None:
            raise _exception_body(404, "Invalid attribute", url)
        ev = st.events[hit[0]]
        now = int(time.time())
        errs = self._edit_attribute(ev, hit[1], body, now)
        if errs:
            raise _save_fail("Could not edit Attribute", url, errs)
        ev["published"] = False
        ev["timestamp"] = str(now)
        return {"Attribute": self._render_attribute(hit[1])}

    def _find_attribute(self, ref: str) -> tuple[int, dict[str, Any]] | None:
        st = self._state
        if ref.isdigit():
            for eid, ev in st.events.items():
                for a in ev["_attributes"]:
                    if a["id"] == ref:
                        return eid, a
            return None
        return st.attr_index.get(ref.lower())

    def rest_search_events(self, body: dict[str, Any], url: str) -> dict[str, Any]:
        st = self._state
        uuids = body.get("uuid")
        uuids = {u.lower() for u in ([uuids] if isinstance(uuids, str) else uuids or [])}
        info = body.get("eventinfo")
        tags = body.get("tags")
        tags = [tags] if isinstance(tags, str) else tags or []
        published = body.get("published")
        metadata = _bool(body.get("metadata", False))
        out = []
        for ev in st.events.values():
            if uuids and ev["uuid"] not in uuids and not any(a["uuid"] in uuids for a in ev["_attributes"]):
                continue
            if info is not None:
                pattern = "^" + re.escape(str(info)).replace("%", ".*") + "$"
                if not re.match(pattern, ev["info"], re.IGNORECASE):
                    continue
            if tags and not any(t in ev["_tags"] for t in tags):
                continue
            if published is not None and _bool(published) != ev["published"]:
                continue
            out.append({"Event": self._render_event(ev, metadata=metadata)})
        limit = body.get("limit")
        if limit:
            page = int(body.get("page") or 1)
            out = out[(page - 1) * int(limit): page * int(limit)]
        return {"response": out}

    def rest_search_attributes(self, body: dict[str, Any]) -> dict[str, Any]:
        uuids = body.get("uuid")
        uuids = {u.lower() for u in ([uuids] if isinstance(uuids, str) else uuids or [])}
        value = body.get("value")
        out = []
        for ev in self._state.events.values():
            for a in ev["_attributes"]:
                if a["deleted"] or (uuids and a["uuid"] not in uuids) or (value is not None and a["value"] != value):
                    continue
                out.append(self._render_attribute(a))
        return {"response": {"Attribute": out}}

    def tag_object(self, body: dict[str, Any], attach: bool, url: str) -> dict[str, Any]:
        st = self._state
        ref = str(body.get("uuid", "")).lower()
        name = body.get("tag")
        if not ref or not name:
            raise _exception_body(403, "Invalid object or tag.", url)
        ev = st.find_event(ref)
        local = _bool(body.get("local", False))
        if ev is not None:
            if attach:
                st.tag(name)
                ev["_tags"].setdefault(name, local)
            else:
                ev["_tags"].pop(name, None)
            if not local:
                ev["published"] = False
                ev["timestamp"] = str(max(int(time.time()), int(ev["timestamp"])))
            kind = "event"
        else:
            hit = st.attr_index.get(ref)
            if hit is None:
                raise _exception_body(404, "Invalid target.", url)
            attr = hit[1]
            if attach and name not in attr["_tags"]:
                st.tag(name)
                attr["_tags"].append(name)
            elif not attach and name in attr["_tags"]:
                attr["_tags"].remove(name)
            st.events[hit[0]]["published"] = False
            kind = "attribute"
        verb = "attached to" if attach else "removed from"
        return _save_success(f"{'Local' if local else 'Global'} tag {name} successfully {verb} {kind}.", url)

    # ------------------------------------------------------------------ routing
    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        """Route one authenticated request. :return: (status, JSON-able body, headers)."""
        url = "/" + path
        segments = [s for s in path.split("/") if s]
        named = dict(s.split(":", 1) for s in segments if ":" in s)
        segments = [s for s in segments if ":" not in s]
        route = "/".join(segments[:2])
        arg = segments[2] if len(segments) > 2 else None
        st = self._state
        with st.lock:
            if route in ("servers/getVersion", "servers/getVersion.json"):
                return 200, {"version": self.version, "pymisp_recommended_version": PYMISP_RECOMMENDED_VERSION,
                             "perm_sync": False, "perm_sighting": True, "perm_galaxy_editor": True,
                             "perm_analyst_data": True, "uuid": _ORG["uuid"], "request_encoding": ["gzip", "br"],
                             "filter_sightings": True}, {}
            if route == "servers/getPyMISPVersion.json":
                return 200, {"version": PYMISP_RECOMMENDED_VERSION}, {}
            if route == "users/view" and arg == "me":
                return 200, self._me(), {}
            if route == "attributes/describeTypes.json":
                return 200, {"result": _DESCRIBE_TYPES}, {}
            if route == "events/view" and arg:
                ev = st.find_event(arg)
                if ev is None:
                    raise _exception_body(404, "Invalid event.", url)
                return 200, {"Event": self._render_event(ev, metadata=False)}, {}
            if method != "POST":
                return self._get_routes(route, arg, url, named)
            return self._post_routes(route, arg, named, body if body is not None else {}, url)

    def _get_routes(self, route: str, arg: str | None, url: str,
                    named: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if route == "sharingGroups/index" or route == "sharing_groups/index":
            return 200, {"response": [{"SharingGroup": dict(g), "Organisation": dict(_ORG),
                                       "SharingGroupOrg": [{"id": "1", "sharing_group_id": g["id"], "org_id": "1",
                                                            "extend": True, "Organisation": dict(_ORG)}],
                                       "SharingGroupServer": [], "editable": True, "deletable": True}
                                      for g in self._state.sharing_groups]}, {}
        if route == "eventReports/view" and arg:
            return 200, {"EventReport": self._render_report(self._find_report(arg, url))}, {}
        if route == "eventReports/index":
            return 200, self.index_reports(named), {}
        if route == "galaxies/index" or route == "galaxies":
            galaxies, _ = _galaxy_catalogue()
            return 200, [{"Galaxy": dict(g)} for g in galaxies], {}
        raise _exception_body(404, "Not Found", url)

    def _post_routes(self, route: str, arg: str | None, named: dict[str, str], body: Any,
                     url: str) -> tuple[int, Any, dict[str, str]]:
        st = self._state
        metadata = named.get("metadata") == "1"
        if route == "events/add":
            return 200, self.add_event(body, metadata, url), {}
        if route == "events/edit" and arg:
            return 200, self.edit_event(arg, body, metadata, url), {}
        if route == "events/restSearch":
            return 200, self.rest_search_events(body, url), {}
        if route in ("events/publish", "events/alert", "events/unpublish", "events/delete") and arg:
            ev = st.find_event(arg)
            if ev is None:
                raise _exception_body(404, "Invalid event.", url)
            if route == "events/unpublish":
                ev["published"] = False
                return 200, _save_success("Event unpublished.", url, ev["id"]), {}
            if route == "events/delete":
                del st.events[int(ev["id"])]
                for rid in [rid for rid, r in st.reports.items() if r["event_id"] == ev["id"]]:
                    del st.reports[rid]
                for a in ev["_attributes"]:
                    st.attr_index.pop(a["uuid"], None)
                st.blocklist.add(ev["uuid"])
                return 200, _save_success("Event deleted.", url, ev["id"]), {}
            self._publish(ev, max(int(time.time()), int(ev["timestamp"])))
            return 200, _save_success("Job queued", url, ev["id"]), {}
        if route == "attributes/add" and arg:
            return 200, self.add_attributes(arg, body, named.get("breakOnDuplicate") != "0", url), {}
        if route == "attributes/edit" and arg:
            return 200, self.edit_attribute(arg, body, url), {}
        if route == "attributes/delete" and arg:
            hit = self._find_attribute(arg)
            if hit is None:
                raise _exception_body(404, "Invalid attribute", url)
            hit[1]["deleted"] = True
            st.events[hit[0]]["published"] = False
            return 200, _save_success("Attribute deleted.", url, hit[1]["id"]), {}
        if route == "attributes/restSearch":
            return 200, self.rest_search_attributes(body), {}
        if route in ("tags/attachTagToObject", "tags/removeTagFromObject"):
            return 200, self.tag_object(body, route.endswith("attachTagToObject"), url), {}
        if route == "galaxy_clusters/index" and arg:
            return 200, self._search_clusters(arg, body), {}
        if route == "galaxies/attachCluster" and arg:
            return 200, self._attach_cluster(arg, body, url), {}
        if route == "eventReports/add":
            return 200, self.add_report(arg, body, url), {}
        if route == "eventReports/edit" and arg:
            return 200, self.edit_report(arg, body, url), {}
        if route == "eventReports/delete" and arg:
            return 200, self.delete_report(arg, body, url), {}
        if route == "eventBlocklists/delete" and arg:
            st.blocklist.discard(arg.lower())
            return 200, _save_success("Blocklist entry removed", url), {}
        raise _exception_body(404, "Not Found", url)

    # ------------------------------------------------------------------ event reports
    @staticmethod
    def _render_report(report: dict[str, Any]) -> dict[str, Any]:
        return dict(report)

    def _find_report(self, ref: str, url: str) -> dict[str, Any]:
        st = self._state
        found = st.reports.get(int(ref)) if ref.isdigit() else next(
            (r for r in st.reports.values() if r["uuid"] == ref.lower()), None)
        if found is None:
            raise _exception_body(404, "Invalid Event Report", url)
        return found

    def _report_fields(self, raw: dict[str, Any], current: dict[str, Any] | None, action: str,
                       url: str) -> dict[str, Any]:
        """EventReport validation (name, uuid, distribution, sharing group); a failure is a 403 saveFail."""
        def pick(key: str, default: Any) -> Any:
            return raw[key] if raw.get(key) is not None else (current[key] if current else default)

        problems: list[str] = []
        name = str(pick("name", "") or "").strip()
        if not name:
            problems.append("A report needs a name.")
        distribution = str(pick("distribution", "5"))
        if distribution not in {"0", "1", "2", "3", "4", "5"}:
            problems.append("Options: Your organisation only, This community only, Connected communities, "
                            "All communities, Sharing group, Inherit event")
        sg = str(pick("sharing_group_id", "0") or "0") if distribution == "4" else "0"
        if distribution == "4" and sg not in {g["id"] for g in self._state.sharing_groups}:
            problems.append("Invalid Sharing Group or not authorised.")
        fields = {"name": name, "content": str(pick("content", "") or ""), "distribution": distribution,
                  "sharing_group_id": sg}
        if current is None:
            report_uuid = str(raw.get("uuid") or uuidlib.uuid4()).lower()
            try:
                uuidlib.UUID(report_uuid)
            except ValueError:
                problems.append("Please provide a valid RFC 4122 UUID")
            if any(r["uuid"] == report_uuid for r in self._state.reports.values()):
                problems.append("The UUID provided is not unique")
            fields["uuid"] = report_uuid
        if problems:  # EventReportsController implodes the messages into one string
            raise _save_fail(f"Could not {action} EventReport", f"/eventReports/{action}", ", ".join(problems))
        return fields

    def add_report(self, event_ref: str | None, body: Any, url: str) -> dict[str, Any]:
        st = self._state
        if not event_ref:
            raise _exception_body(405, "No event ID set.", url)
        ev = st.find_event(event_ref)
        if ev is None:
            raise _exception_body(404, "Invalid event", url)
        raw = body.get("EventReport", body) if isinstance(body, dict) else {}
        fields = self._report_fields(raw, None, "add", url)
        report = {"id": str(st.next_report), "uuid": fields.pop("uuid"), "event_id": ev["id"], **fields,
                  "timestamp": str(int(time.time())), "deleted": False}
        st.next_report += 1
        st.reports[int(report["id"])] = report
        ev["published"] = False  # EventReport::addReport → Event::unpublishEvent
        return {"EventReport": self._render_report(report)}

    def edit_report(self, ref: str, body: Any, url: str) -> dict[str, Any]:
        report = self._find_report(ref, url)
        raw = body.get("EventReport", body) if isinstance(body, dict) else {}
        report.update(self._report_fields(raw, report, "edit", url))
        report["timestamp"] = str(max(int(time.time()), int(report["timestamp"])))
        self._state.events[int(report["event_id"])]["published"] = False
        return {"EventReport": self._render_report(report)}

    def delete_report(self, ref: str, body: Any, url: str) -> dict[str, Any]:
        st = self._state
        report = self._find_report(ref, url)
        hard = isinstance(body, dict) and _bool(body.get("hard", False))
        st.events[int(report["event_id"])]["published"] = False
        if hard:
            del st.reports[int(report["id"])]
            return _save_success(f"Event Report {ref} hard deleted", url, report["id"])
        report["deleted"] = True
        return {"EventReport": self._render_report(report)}

    def index_reports(self, named: dict[str, str]) -> list[dict[str, Any]]:
        st = self._state
        context = named.get("context", "default")
        event_id = named.get("event_id")
        if event_id and not event_id.isdigit():
            ev = st.find_event(event_id)
            event_id = ev["id"] if ev else "-1"
        out = []
        for r in st.reports.values():
            if event_id and r["event_id"] != event_id:
                continue
            if (context == "default" and r["deleted"]) or (context == "deleted" and not r["deleted"]):
                continue
            ev = st.events.get(int(r["event_id"]))
            out.append({"EventReport": self._render_report(r),
                        "Event": {"id": r["event_id"], "info": ev["info"] if ev else "", "org_id": "1",
                                  "orgc_id": "1", "date": ev["date"] if ev else ""}})
        return out

    def _search_clusters(self, galaxy_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        galaxies, _ = _galaxy_catalogue()
        gal = next((g for g in galaxies if g["id"] == galaxy_id), None)
        if gal is None:
            return []
        needle = str(body.get("searchall") or "").lower()
        hits = [c for c in _clusters_of(gal["type"])
                if not needle or needle in c["value"].lower() or any(needle in s.lower() for s in c["synonyms"])]
        return [{"GalaxyCluster": {k: v for k, v in c.items() if k != "synonyms"}} for c in hits]

    def _attach_cluster(self, target_id: str, body: dict[str, Any], url: str) -> dict[str, Any]:
        # URL: galaxies/attachCluster/{target id}/{event|attribute}/local:{0|1}; the type is the 4th segment
        cluster_id = str((body.get("Galaxy") or {}).get("target_id", ""))
        galaxies, _ = _galaxy_catalogue()
        cluster = None
        for g in galaxies:
            if cluster_id.startswith(g["id"]) and len(cluster_id) > 5 and int(cluster_id) // 100000 == int(g["id"]):
                cluster = next((c for c in _clusters_of(g["type"]) if c["id"] == cluster_id), None)
                break
        if cluster is None:
            raise _exception_body(404, "Invalid Galaxy cluster.", url)
        ev = self._state.events.get(int(target_id)) if target_id.isdigit() else None
        if ev is not None:
            self._state.tag(cluster["tag_name"])
            ev["_tags"].setdefault(cluster["tag_name"], False)
            ev["published"] = False
            return {"saved": True, "success": "Cluster attached.", "check_publish": True}
        hit = self._find_attribute(target_id)
        if hit is None:
            raise _exception_body(404, "Invalid target.", url)
        if cluster["tag_name"] not in hit[1]["_tags"]:
            self._state.tag(cluster["tag_name"])
            hit[1]["_tags"].append(cluster["tag_name"])
        return {"saved": True, "success": "Cluster attached.", "check_publish": True}

    def _me(self) -> dict[str, Any]:
        perms = {p: True for p in ("perm_add", "perm_modify", "perm_modify_org", "perm_publish", "perm_delegate",
                                   "perm_sync", "perm_admin", "perm_audit", "perm_auth", "perm_site_admin",
                                   "perm_regexp_access", "perm_tagger", "perm_template", "perm_sharing_group",
                                   "perm_tag_editor", "perm_sighting", "perm_object_template",
                                   "perm_publish_zmq", "perm_publish_kafka", "perm_decaying", "perm_galaxy_editor",
                                   "perm_warninglist", "perm_view_feed_correlations", "perm_analyst_data")}
        return {"User": {"id": "1", "org_id": "1", "server_id": "0", "email": "admin@admin.test", "autoalert": False,
                         "authkey": None, "invited_by": "0", "gpgkey": None, "certif_public": "", "nids_sid": "4000000",
                         "termsaccepted": True, "newsread": "0", "role_id": "1", "change_pw": False,
                         "contactalert": False, "disabled": False, "expiration": None, "current_login": "0",
                         "last_login": "0", "force_logout": False, "date_created": None, "date_modified": "0"},
                "Role": {"id": "1", "name": "admin", "enforce_rate_limit": False, "rate_limit_count": "0",
                         "default_role": False, "restricted_to_site_admin": False, "memory_limit": "",
                         "max_execution_time": "", "permission": "3", "permission_description": "publish", **perms},
                "UserSetting": [], "Organisation": dict(_ORG)}


def _count_attributes(body: Any) -> int:
    if isinstance(body, list):
        return len(body)
    if isinstance(body, dict):
        inner = body.get("Event", body)
        if isinstance(inner.get("Attribute"), list):
            return len(inner["Attribute"])
        if "type" in inner and "value" in inner:
            return 1
    return 0


class _Handler(FaultingHandler):
    double: MispDouble  # set on the per-server subclass
    server_version = "Apache"  # MISP usually sits behind Apache or nginx
    sys_version = ""
    _logged: tuple[str, str, bytes] | None = None  # (method, path, body) of the request being answered

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("misp-double: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib names
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        d = self.double
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        path = parts.path.lstrip("/")
        if path.rstrip("/") == "_sim/faults":  # control plane: no auth, no faults, not logged
            self._logged = None
            status, body = control(d.faults, method, raw)
            self.send_reply(Reply(status, b"" if body is None else json.dumps(body).encode()))
            return
        self._logged = (method, path, raw)
        # Rules see "/path?query" (query decoded), as on the ThreatQ simulator.
        rule = d.faults.match(method, parts.path, unquote_plus(parts.query))
        self.serve(rule, lambda: self._answer(method, path, raw), lambda r: self._fault_reply(r, path))

    def _fault_reply(self, rule: FaultRule, path: str) -> Reply:
        def misp_error(status: int) -> dict[str, str]:
            message = "Rate limit exceeded." if status == 429 else "Injected fault"
            return {"name": message, "message": message, "url": "/" + path}

        reply = self.error_body(rule, misp_error)
        if reply.status == 429:  # as MISP's rate limiter answers
            reply.headers.setdefault("X-Rate-Limit-Limit", "5000")
            reply.headers.setdefault("X-Rate-Limit-Remaining", "0")
            reply.headers.setdefault("X-Rate-Limit-Reset", "900")
        return reply

    def _answer(self, method: str, path: str, raw: bytes) -> Reply:
        """The real answer: API-key check, JSON body, routing."""
        d = self.double
        key = self.headers.get("Authorization") or self.headers.get("X-MISP-AUTH") or ""
        try:
            if key.strip() != d.api_key:
                raise _exception_body(403, AUTH_FAILED, "/" + path)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise _exception_body(400, "Invalid JSON in the request body.", "/" + path) from None
            try:
                status, payload, headers = d.handle(method, path, body)
            except _Reply:
                raise
            except Exception:  # a bug in the double must answer like MISP's 500, not hang the client
                log.exception("misp-double: internal error on %s %s", method, path)
                raise _exception_body(500, "An Internal Error Has Occurred.", "/" + path) from None
        except _Reply as reply:
            status, payload, headers = reply.status, reply.body, reply.headers
        return Reply(status, json.dumps(payload).encode(), "application/json", headers)

    def record(self, status: int, *, faulted: bool) -> None:
        # Recorded before the answer leaves: a client that has its answer must find its request
        # in the log (tests read it right after the call returns).
        if self._logged is None:
            return
        method, path, raw = self._logged
        try:
            count = _count_attributes(json.loads(raw)) if raw else 0
        except ValueError:
            count = 0
        with self.double._state.lock:
            self.double._state.log.append(RequestRecord(method, path, status, count, len(raw), faulted))


def record_as_dict(record: RequestRecord) -> dict[str, Any]:
    """A request record as a JSON-able dict."""
    return asdict(record)
