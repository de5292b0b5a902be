"""A deterministic, seeded ThreatQ corpus: indicators, events, attachments, investigations, collections,
and Threat Library objects (malware, attack patterns) linked to events.

The corpus is the simulator's ground truth. Indicators are generated lazily from ``(seed, id)``:
only four small per-id arrays (updated_at, type, status, score) stay in memory, so a million
indicators fit in a few tens of megabytes. Events, attachments and investigations are few and
built up front, as are the malware and attack-pattern objects (from the seed vocabulary, each
kind from its own random stream, so they change nothing else). Objects created through the API (``create_indicator``/``create_event``) are kept
as full dicts and are visible to every read path.

Shapes follow the recorded payloads in tests/data/threatq/samples/ (see the simulator module for
which endpoint returns which shape). ``Corpus.indicator(id)`` returns the *full* object: every
relation, every date key (``None`` when unset), ``score`` as an int.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import heapq
import json
import random
import re
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from importlib.resources import files
from typing import Any

from threatq_simulators.query import (
    canonical_field,
    compile_expr,
    parse_sort,
    updated_at_bounds,
)
from threatq_simulators.timefmt import fmt, to_epoch
from threatq_simulators.values import generate_value

__all__ = ["Corpus", "ValidationError", "LIBRARY_COLLECTIONS", "load_enumerations", "load_seed_data"]

DAY = 86400
DEFAULT_START = datetime(2026, 1, 1, tzinfo=timezone.utc)
DEFAULT_END = datetime(2026, 1, 8, tzinfo=timezone.utc)
# Fixed metadata timestamps, as on a real instance where defaults were seeded at install time.
_META_CREATED = "2025-06-02 09:14:11"

# Relative weights of indicator types (by name); anything not listed weighs 1.
_TYPE_WEIGHTS = {
    "IP Address": 22,
    "FQDN": 14,
    "URL": 14,
    "MD5": 8,
    "SHA-256": 9,
    "SHA-1": 5,
    "Email Address": 5,
    "CIDR Block": 2,
    "IPv6 Address": 2,
    "Filename": 2,
    "CVE": 2,
}
# Status name → weight. Expired ones get expired_at; the others may carry expires_at.
_STATUS_WEIGHTS = {"Active": 55, "Expired": 15, "Indirect": 10, "Review": 12, "Whitelisted": 8}
_TLP_WEIGHTS = {"RED": 5, "AMBER": 30, "GREEN": 40, "WHITE": 25}
INDICATOR_SORT_FIELDS = frozenset(
    {"id", "value", "score", "class", "hash", "type_id", "status_id", "type_name", "status_name", "created_at",
     "updated_at", "touched_at", "published_at", "expires_at", "expired_at", "last_detected_at", "type", "status"}
)
EVENT_SORT_FIELDS = frozenset({"id", "title", "type_id", "created_at", "updated_at", "touched_at", "happened_at"})
#: Threat Library ("custom object") collections the corpus holds: object code (the API path,
#: ``/api/malware``) → (``object_id``, ``object_name``, ``object_name_plural``, seed-vocabulary key,
#: name of the seed field that becomes an attribute, that attribute's name). ``object_id`` 9 and 6
#: are the ids in the recorded tip-marketplace payloads (GetMalwareDetails, CreateObject).
LIBRARY_COLLECTIONS: dict[str, tuple[int, str, str, str, str, str]] = {
    "malware": (9, "Malware", "Malware", "malware", "type", "Malware Type"),
    "attack_pattern": (6, "Attack Pattern", "Attack Patterns", "attack_patterns", "tactic", "Tactic"),
}
# Base columns of a custom object, in the order ThreatQ answers them (docs/reference/threatq-api.md §4.5).
_LIBRARY_COLUMNS = ("id", "value", "description", "type_id", "status_id", "object_id", "object_code",
                    "object_name", "object_name_plural", "created_at", "updated_at", "touched_at")


class ValidationError(ValueError):
    """A create request is invalid; ``field`` is the key used in the 400 body."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@lru_cache(maxsize=1)
def _enumerations_text() -> str:
    # The simulators' own copy of ThreatQ's default enumerations: they import nothing of the
    # provider. tests/unit/test_packaging.py keeps it identical to the provider's table.
    return files(__package__ or __name__).joinpath("data", "threatq_enumerations.json").read_text(encoding="utf-8")


def load_enumerations() -> dict[str, Any]:
    """The default ThreatQ enumerations (``data/threatq_enumerations.json`` of this package, the same
    table as the provider's ``threatq/enumerations.json``), a fresh copy."""
    return json.loads(_enumerations_text())


@lru_cache(maxsize=1)
def _seed_text() -> str:
    # Package data of the simulators themselves (``data/`` beside this module), so it travels with them.
    return files(__package__ or __name__).joinpath("data", "threatq_seed.json").read_text(encoding="utf-8")


def load_seed_data() -> dict[str, Any]:
    """The simulator vocabulary (``data/threatq_seed.json`` of this package), a fresh copy."""
    return json.loads(_seed_text())


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _weighted(names: list[str], weights: Mapping[str, int]) -> tuple[list[str], list[int]]:
    cum: list[int] = []
    total = 0
    for name in names:
        total += weights.get(name, 1)
        cum.append(total)
    return names, cum


class Corpus:
    """Deterministic ThreatQ data: the simulator serves it, tests compare against it.

    :param seed: everything derives from it; same seed and sizes → same corpus.
    :param indicators: number of generated indicators (ids 1..N).
    :param events: number of generated events (ids 1..N).
    :param start: ``updated_at`` of indicators and events is spread uniformly over ``[start, end)``.
    :param end: see ``start``.
    :param investigations: number of investigations.
    :param id_offset: added to every enumeration id (indicator types, statuses, event types,
        attachment types), to mimic an older instance whose ids differ from the defaults.
    """

    def __init__(
        self,
        seed: int = 42,
        indicators: int = 2000,
        events: int = 100,
        start: datetime | str = DEFAULT_START,
        end: datetime | str = DEFAULT_END,
        investigations: int = 5,
        id_offset: int = 0,
    ) -> None:
        if indicators < 0 or events < 0 or investigations < 0:
            raise ValueError("corpus sizes must be >= 0")
        self.seed = int(seed)
        self.n_indicators = int(indicators)
        self.n_events = int(events)
        self.start_epoch = to_epoch(start)
        self.end_epoch = to_epoch(end)
        if self.end_epoch <= self.start_epoch:
            raise ValueError("corpus end must be after start")
        self.id_offset = int(id_offset)
        self._seed_data = load_seed_data()
        self._lock = threading.RLock()
        self.version = 0  # bumped on every create; caches key on it
        self._load_enumerations()
        self._build_indicator_arrays()
        self._created: dict[int, dict[str, Any]] = {}
        self._deleted: set[int] = set()  # ids deleted through the API (DELETE /api/indicators/{id})
        self._created_order: list[tuple[int, int]] = []  # (updated_at, id), ascending
        # Generated indicators edited through the API (PUT /api/indicators/{id}): their full object,
        # and (updated_at, id) ascending; the arrays keep the generated values, these win.
        self._edited: dict[int, dict[str, Any]] = {}
        self._edited_order: list[tuple[int, int]] = []
        self._value_index: dict[tuple[int, str], int] | None = None
        self._select_cache: OrderedDict[tuple[Any, ...], tuple[array[int], int]] = OrderedDict()
        self._build_sources_and_adversaries()
        self._build_events()
        self._build_library()
        self._build_investigations(investigations)
        self._build_collections()

    # ------------------------------------------------------------------ enumerations
    def _load_enumerations(self) -> None:
        enums = load_enumerations()
        off = self.id_offset
        self.indicator_types: list[dict[str, Any]] = [
            {"id": t["id"] + off, "name": t["name"], "class": t["class"], "score": None,
             "wildcard_matching": "Y", "created_at": _META_CREATED, "updated_at": _META_CREATED}
            for t in enums["indicator_types"]
        ]
        self.type_aliases: dict[str, str] = dict(enums.get("indicator_type_aliases", {}))
        self.statuses: list[dict[str, Any]] = [
            {"id": s["id"] + off, "name": s["name"], "description": s["description"], "user_editable": "N",
             "visible": "Y", "include_in_export": "Y", "protected": "Y",
             "created_at": _META_CREATED, "updated_at": _META_CREATED}
            for s in enums["indicator_statuses"]
        ]
        self.event_types: list[dict[str, Any]] = [
            {"id": e["id"] + off, "name": e["name"], "user_editable": "N",
             "created_at": _META_CREATED, "updated_at": _META_CREATED}
            for e in enums["event_types"]
        ]
        self.attachment_types: list[dict[str, Any]] = [
            {"id": a["id"] + off, "name": a["name"], "is_parsable": "N", "parser_class": None,
             "created_at": _META_CREATED, "updated_at": _META_CREATED}
            for a in enums["attachment_types"]
        ]
        self.tlps: list[dict[str, Any]] = [dict(t) for t in enums["tlp"]]
        self._type_by_name = {t["name"].lower(): i for i, t in enumerate(self.indicator_types)}
        for alias, target in self.type_aliases.items():
            self._type_by_name[alias.lower()] = self._type_by_name[target.lower()]
        self._type_by_id = {t["id"]: i for i, t in enumerate(self.indicator_types)}
        self._status_by_name = {s["name"].lower(): i for i, s in enumerate(self.statuses)}
        self._status_by_id = {s["id"]: i for i, s in enumerate(self.statuses)}
        self._event_type_by_name = {e["name"].lower(): i for i, e in enumerate(self.event_types)}
        self._event_type_by_id = {e["id"]: i for i, e in enumerate(self.event_types)}
        self._tlp_by_name = {t["name"].lower(): t for t in self.tlps}
        self._tlp_by_id = {t["id"]: t for t in self.tlps}
        # compact embedded forms, built once
        self._type_compact = [{"id": t["id"], "name": t["name"], "class": t["class"]} for t in self.indicator_types]
        self._status_compact = [
            {"id": s["id"], "name": s["name"], "description": s["description"]} for s in self.statuses
        ]

    # ------------------------------------------------------------------ indicators: arrays
    def _build_indicator_arrays(self) -> None:
        n = self.n_indicators
        rng = random.Random(self.seed)
        type_names = [t["name"] for t in self.indicator_types]
        _, type_cum = _weighted(type_names, _TYPE_WEIGHTS)
        status_names = [s["name"] for s in self.statuses]
        _, status_cum = _weighted(status_names, _STATUS_WEIGHTS)
        span = self.end_epoch - self.start_epoch
        n_types = len(type_names)
        upd = array("q", bytes(8 * n))
        types = bytearray(n)
        statuses = bytearray(n)
        scores = bytearray(n)
        rand = rng.random
        tmax, smax = type_cum[-1], status_cum[-1]
        for i in range(n):
            upd[i] = self.start_epoch + int(rand() * span)
            # the first ids cover every type, so even a small corpus has all 34
            types[i] = i if i < n_types else bisect.bisect_right(type_cum, rand() * tmax)
            statuses[i] = bisect.bisect_right(status_cum, rand() * smax)
            scores[i] = int(rand() * 11)
        self._upd = upd
        self._types = types
        self._statuses = statuses
        self._scores = scores
        order = sorted(range(n), key=upd.__getitem__)  # stable: ties stay in id order
        self._order = array("i", (i + 1 for i in order))
        self._order_upd = array("q", (upd[i] for i in order))

    # cheap per-id accessors (no generation)
    def _is_created(self, iid: int) -> bool:
        return iid > self.n_indicators

    def _cheap(self, iid: int, field: str) -> Any:
        """Fields answered from the arrays without generating the indicator; KeyError otherwise."""
        obj = self._created.get(iid) if self._is_created(iid) else self._edited.get(iid)
        if obj is not None:
            if field in ("type_name", "status_name"):
                return obj["type" if field == "type_name" else "status"]["name"]
            if field == "updated_at":
                return to_epoch(obj["updated_at"])
            return obj[field] if field in ("id", "type_id", "status_id", "score", "class") else _raise_key(field)
        i = iid - 1
        if field == "id":
            return iid
        if field == "updated_at":
            return self._upd[i]
        if field == "type_name":
            return self.indicator_types[self._types[i]]["name"]
        if field == "type_id":
            return self.indicator_types[self._types[i]]["id"]
        if field == "class":
            return self.indicator_types[self._types[i]]["class"]
        if field == "status_name":
            return self.statuses[self._statuses[i]]["name"]
        if field == "status_id":
            return self.statuses[self._statuses[i]]["id"]
        if field == "score":
            return self._scores[i]
        raise KeyError(field)

    def indicator_exists(self, iid: int) -> bool:
        """Whether an indicator id exists (generated or created)."""
        return (1 <= iid <= self.n_indicators or iid in self._created) and iid not in self._deleted

    @property
    def indicator_count(self) -> int:
        """Generated plus created indicators, less the deleted ones."""
        return self.n_indicators + len(self._created) - len(self._deleted)

    def delete_indicator(self, iid: int) -> bool:
        """Delete an indicator, as ThreatQ's ``DELETE /api/indicators/{id}`` does: gone from every
        listing, query, collection and look-up (ids are never reused). :return: False if it did not exist."""
        with self._lock:
            if not self.indicator_exists(iid):
                return False
            self._deleted.add(iid)
            self.version += 1  # invalidates the query caches
        return True

    # ------------------------------------------------------------------ sources, adversaries
    def _build_sources_and_adversaries(self) -> None:
        self.sources: list[dict[str, Any]] = []
        for i, s in enumerate(self._seed_data["sources"]):
            self.sources.append(
                {"id": i + 5, "name": s["name"], "source_type": s["source_type"], "expire_days": s["expire_days"],
                 "reference_id": (i % 7) + 1}
            )
        self._source_by_name = {s["name"].lower(): s for s in self.sources}
        self.adversaries: list[dict[str, Any]] = []
        rng = random.Random(self.seed * 7 + 3)
        for i, name in enumerate(self._seed_data["adversaries"]):
            created = self.start_epoch - rng.randrange(30, 900) * DAY
            self.adversaries.append(
                {"id": i + 1, "name": name, "created_at": fmt(created), "updated_at": fmt(created + rng.randrange(0, 20) * DAY),
                 "touched_at": fmt(self.start_epoch - rng.randrange(0, 30) * DAY)}
            )
        self._attr_names = list(self._seed_data["attributes"].keys())
        self._attr_ids = {name: i + 1 for i, name in enumerate(self._attr_names)}
        self._event_attr_names = list(self._seed_data["event_attributes"].keys())

    def _source_for_name(self, name: str) -> dict[str, Any]:
        with self._lock:
            src = self._source_by_name.get(name.lower())
            if src is None:
                src = {"id": len(self.sources) + 5, "name": name, "source_type": "other_sources",
                       "expire_days": None, "reference_id": 1}
                self.sources.append(src)
                self._source_by_name[name.lower()] = src
            return src

    def _pick_tlp(self, rng: random.Random) -> dict[str, Any] | None:
        if rng.random() < 0.12:
            return None  # many real sources carry no TLP
        if not hasattr(self, "_tlp_cum"):
            names, cum = _weighted([t["name"] for t in self.tlps], _TLP_WEIGHTS)
            self._tlp_pick = [self._tlp_by_name[n.lower()] for n in names]
            self._tlp_cum = cum
        return self._tlp_pick[bisect.bisect_right(self._tlp_cum, rng.random() * self._tlp_cum[-1])]

    # ------------------------------------------------------------------ indicators: full objects
    def _rng(self, kind: int, oid: int) -> random.Random:
        return random.Random((self.seed * 1_000_003 + oid) * 16 + kind)

    def _generate(self, iid: int) -> dict[str, Any]:
        i = iid - 1
        rng = self._rng(1, iid)
        r = rng.random
        tinfo = self.indicator_types[self._types[i]]
        sidx = self._statuses[i]
        status = self.statuses[sidx]
        upd = self._upd[i]
        created = upd - int(r() * 120 * DAY) if r() < 0.7 else upd - int(r() * 3600)
        touched = upd + int(r() * 2 * DAY)
        value = generate_value(tinfo["name"], rng, iid, self._seed_data)
        expires_at = expired_at = None
        if status["name"] == "Expired":
            expired_at = upd
            expires_at = upd if r() < 0.5 else None
        elif r() < 0.45:
            # before or after any reference "now": the sweeper must handle both
            expires_at = upd + int((r() * 125 - 5) * DAY)
        last_detected = upd - int(r() * 5 * DAY) if r() < 0.2 else None
        description = f"<p>{rng.choice(self._seed_data['attributes']['Description'])}</p>" if r() < 0.3 else None
        s_upd, s_created, s_touched = fmt(upd), fmt(created), fmt(touched)
        srcs = rng.sample(self.sources, 1 + int(r() * 2.4))
        sources = []
        for k, src in enumerate(srcs):
            tlp = self._pick_tlp(rng)
            s_pub = fmt(created + int(r() * 60))
            sources.append(
                {"id": iid * 4 + k, "indicator_id": iid, "source_id": src["id"], "creator_source_id": src["id"],
                 "indicator_status_id": status["id"], "indicator_type_id": tinfo["id"],
                 "reference_id": src["reference_id"], "source_type": src["source_type"], "name": src["name"],
                 "published_at": s_pub, "created_at": s_pub, "updated_at": s_upd,
                 "source_expire_days": src["expire_days"], "source_score": int(r() * 3),
                 "tlp_id": tlp["id"] if tlp else None, "tlp_name": f"TLP:{tlp['name']}" if tlp else None}
            )
        attributes = []
        s_attr = fmt(created + 3)
        for k, name in enumerate(rng.sample(self._attr_names, int(r() * 4.6))):
            attributes.append(
                {"id": iid * 8 + k, "indicator_id": iid, "attribute_id": self._attr_ids[name], "name": name,
                 "value": rng.choice(self._seed_data["attributes"][name]), "created_at": s_attr,
                 "updated_at": s_upd, "touched_at": s_touched}
            )
        # shared, never mutated: indicator() deep-copies and the response shaping copies
        adversaries = rng.sample(self.adversaries, 1 + int(r() * 1.5)) if r() < 0.25 else []
        tags = rng.sample(self._seed_data["tags"], 1 + int(r() * 2)) if r() < 0.3 else []
        comments = self._comments(rng, iid, upd)
        return {
            "id": iid,
            "value": value,
            "class": tinfo["class"],
            "type_id": tinfo["id"],
            "status_id": status["id"],
            "hash": _md5(f"{tinfo['name']}|{value}"),
            "score": self._scores[i],
            "description": description,
            "created_at": s_created,
            "updated_at": s_upd,
            "touched_at": s_touched,
            "published_at": s_created,
            "expires_at": fmt(expires_at),
            "expired_at": fmt(expired_at),
            "expires_calculated_at": fmt(upd + 300 + int(r() * 600)),
            "last_detected_at": fmt(last_detected),
            "type": self._type_compact[self._types[i]],
            "status": self._status_compact[sidx],
            "adversaries": adversaries,
            "attributes": attributes,
            "sources": sources,
            "tags": tags,
            "comments": comments,
        }

    def _comments(self, rng: random.Random, iid: int, upd: int) -> list[dict[str, Any]]:
        # drawn last from the indicator's stream, so adding comments left every other field unchanged
        if rng.random() >= 0.12:
            return []
        analyst = self._source_by_name.get("analyst@threatq.local") or self.sources[0]
        out = []
        for k in range(1 + int(rng.random() * 1.5)):
            at = fmt(upd - int(rng.random() * DAY))
            out.append({"id": iid * 2 + k, "indicator_id": iid, "value": rng.choice(self._seed_data["comments"]),
                        "source_name": analyst["name"], "creator_source_id": analyst["id"],
                        "created_at": at, "updated_at": at})
        return out

    def _full(self, iid: int) -> dict[str, Any]:
        """Internal: the full object, shared for created and edited ones (callers must not mutate)."""
        if iid in self._created:
            return self._created[iid]
        if iid in self._edited:
            return self._edited[iid]
        if not 1 <= iid <= self.n_indicators:
            raise KeyError(iid)
        return self._generate(iid)

    def indicator(self, iid: int) -> dict[str, Any]:
        """The full indicator object with every relation (a fresh copy).

        :param iid: the indicator id.
        :return: the indicator dict; ``score`` is an int, dates are ThreatQ strings or None.
        :raises KeyError: when no such indicator exists.
        """
        return copy.deepcopy(self._full(int(iid)))

    def score_object(self, iid: int) -> dict[str, Any]:
        """The ``with=score`` form of an indicator's score (recorded shape: decimal-string
        ``generated_score``, string-or-null ``manual_score``); ``int(score)`` follows the rule
        manual if set, else floor(generated)."""
        obj = self._full(iid)
        rng = self._rng(2, iid)
        score = int(obj["score"])
        if rng.random() < 0.3:
            manual: str | None = str(score)
            generated = f"{rng.random() * 10:.2f}"
        else:
            manual = None
            generated = f"{min(score + rng.random() * 0.99, 10.0):.2f}" if score < 10 else "10.00"
        return {"indicator_id": iid, "generated_score": generated, "manual_score": manual,
                "score_config_hash": _md5(f"score-config-{self.seed}") + "0f1e2d3c",
                "created_at": obj["created_at"], "updated_at": obj["updated_at"]}

    # ------------------------------------------------------------------ indicator iteration
    def _iter_ids_window(self, lo: int | None, hi: int | None) -> Iterator[int]:
        """Ids with updated_at in [lo, hi), ascending by (updated_at, id)."""
        a = 0 if lo is None else bisect.bisect_left(self._order_upd, lo)
        b = len(self._order) if hi is None else bisect.bisect_left(self._order_upd, hi)
        with self._lock:
            edited = set(self._edited)  # their generated updated_at no longer holds: skipped below
            moved = [c for c in heapq.merge(self._created_order, self._edited_order)
                     if (lo is None or c[0] >= lo) and (hi is None or c[0] < hi)]
        base = ((self._order_upd[k], self._order[k]) for k in range(a, b))
        if edited:
            base = (c for c in base if c[1] not in edited)
        deleted = self._deleted
        for _, iid in heapq.merge(base, moved):
            if iid not in deleted:
                yield iid

    def _types_filter(self, types: Iterable[str] | None) -> set[str] | None:
        if types is None:
            return None
        out = set()
        for name in types:
            idx = self._type_by_name.get(str(name).lower())
            if idx is None:
                raise ValueError(f"unknown indicator type {name!r}")
            out.add(self.indicator_types[idx]["name"])
        return out

    def iter_indicators(
        self,
        updated_since: object = None,
        updated_until: object = None,
        types: Iterable[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Ground truth of a window poll: indicators with ``updated_since <= updated_at < updated_until``.

        :param updated_since: window start (inclusive); datetime, ThreatQ/ISO string or epoch; None = open.
        :param updated_until: window end (exclusive); None = open.
        :param types: optional type names to keep.
        :return: full indicator dicts, ascending by ``updated_at`` then ``id``.
        """
        lo = None if updated_since is None else to_epoch(updated_since)
        hi = None if updated_until is None else to_epoch(updated_until)
        keep = self._types_filter(types)
        for iid in self._iter_ids_window(lo, hi):
            if keep is not None and self._cheap(iid, "type_name") not in keep:
                continue
            yield self.indicator(iid)

    def indicator_ids(self, updated_since: object = None, updated_until: object = None) -> list[int]:
        """Ids of :meth:`iter_indicators` (same window and order), without building objects."""
        lo = None if updated_since is None else to_epoch(updated_since)
        hi = None if updated_until is None else to_epoch(updated_until)
        return list(self._iter_ids_window(lo, hi))

    # ------------------------------------------------------------------ indicator queries
    def _getter(self, iid: int) -> Any:
        cache: dict[str, Any] = {}

        def get(field: str) -> Any:
            try:
                return self._cheap(iid, field)
            except KeyError:
                pass
            if "full" not in cache:
                cache["full"] = self._full(iid)
            return _field_of(cache["full"], field)

        return get

    def select_indicators(
        self,
        expr: Any = None,
        sort: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> array[int]:
        """Ids of indicators matching a filter expression, in sort order (cached per corpus version).

        :param expr: a filter expression (see :mod:`query`), e.g. ``{"+and": [criteria, filters]}``.
        :param sort: ``updated_at``, ``-id``, ``-created_at,id``…; default ``id``. Ties → id ascending.
        :param extra: plain equality filters (``?value=``, ``?type_id=`` on list endpoints).
        :return: an array of ids (do not mutate).
        :raises QueryError: on a bad expression or sort field.
        """
        key = (json.dumps(expr, sort_keys=True, default=str), sort or "",
               json.dumps(extra or {}, sort_keys=True, default=str))
        with self._lock:
            hit = self._select_cache.get(key)
            if hit is not None and hit[1] == self.version:
                self._select_cache.move_to_end(key)
                return hit[0]
            version = self.version
        combined: list[Any] = [expr] if expr else []
        for field, value in (extra or {}).items():
            combined.append({field: value})
        full_expr = {"+and": combined} if combined else None
        pred = compile_expr(full_expr)
        sort_keys = parse_sort(sort, INDICATOR_SORT_FIELDS) or [("id", False)]
        lo, hi = updated_at_bounds(full_expr)
        ids = [iid for iid in self._iter_ids_window(lo, hi) if pred(self._getter(iid))]
        ids = self._sort_ids(ids, sort_keys, already_by_updated=True)
        result = array("i", ids)
        with self._lock:
            self._select_cache[key] = (result, version)
            while len(self._select_cache) > 32:
                self._select_cache.popitem(last=False)
        return result

    def _sort_ids(self, ids: list[int], keys: list[tuple[str, bool]], already_by_updated: bool) -> list[int]:
        if keys in ([("updated_at", False)], [("updated_at", False), ("id", False)]) and already_by_updated:
            return ids  # the window scan already yields (updated_at, id) order
        ids = sorted(ids)
        for field, desc in reversed(keys):
            field = canonical_field(field)
            if field == "id":
                ids.sort(reverse=desc)
                continue

            def key(iid: int, field: str = field) -> tuple[int, Any]:
                v = self._getter(iid)(field)
                if field in ("updated_at",) and isinstance(v, int):
                    return (1, v)
                if v is None:
                    return (0, "")
                return (1, v.lower() if isinstance(v, str) else v)

            ids.sort(key=key, reverse=desc)
        return ids

    def find_indicator_ids_by_value(self, value: str, type_name: str | None = None) -> list[int]:
        """Exact (case-insensitive) value look-up, optionally restricted to a type.

        Builds a value index on first use: instant for thousands of indicators, tens of seconds
        for a million (each value is generated once).
        """
        index = self._ensure_value_index()
        val = value.strip().lower()
        if type_name is not None:
            tidx = self._type_by_name.get(type_name.lower())
            if tidx is None:
                return []
            hit = index.get((tidx, val))
            return [hit] if hit is not None and hit not in self._deleted else []
        found = sorted(iid for (t, v), iid in index.items() if v == val) if len(index) < 50000 else [
            iid for t in range(len(self.indicator_types)) if (iid := index.get((t, val))) is not None
        ]
        return [iid for iid in found if iid not in self._deleted]

    def _ensure_value_index(self) -> dict[tuple[int, str], int]:
        with self._lock:
            if self._value_index is None:
                index: dict[tuple[int, str], int] = {}
                for iid in range(1, self.n_indicators + 1):
                    index.setdefault((self._types[iid - 1], self._generate(iid)["value"].lower()), iid)
                for iid, obj in self._created.items():
                    index.setdefault((self._type_by_id[obj["type_id"]], obj["value"].lower()), iid)
                self._value_index = index
            return self._value_index

    def search_values(self, text: str, limit: int) -> list[tuple[int, str]]:
        """Indicators whose value contains ``text`` (case-insensitive), id ascending, at most ``limit``."""
        needle = text.strip().lower()
        index = self._ensure_value_index()
        hits = sorted((iid, v) for (_, v), iid in index.items() if needle in v and iid not in self._deleted)
        return [(iid, self._full(iid)["value"]) for iid, _ in hits[:limit]]

    # ------------------------------------------------------------------ creation
    def resolve_indicator_type(self, spec: Any) -> dict[str, Any]:
        """Type given as name, ``{"name"}``, ``{"id"}`` or id → the full type; ValidationError if unknown."""
        idx = self._resolve(spec, self._type_by_name, self._type_by_id)
        if idx is None:
            raise ValidationError("type", "The selected type is invalid.")
        return self.indicator_types[idx]

    def resolve_status(self, spec: Any) -> dict[str, Any]:
        """Status given as name, ``{"name"}``, ``{"id"}`` or id → the full status; ValidationError if unknown."""
        idx = self._resolve(spec, self._status_by_name, self._status_by_id)
        if idx is None:
            raise ValidationError("status", "The selected status is invalid.")
        return self.statuses[idx]

    def resolve_event_type(self, spec: Any) -> dict[str, Any]:
        """Event type by name, ``{"name"}``, ``{"id"}`` or id; ValidationError if unknown."""
        idx = self._resolve(spec, self._event_type_by_name, self._event_type_by_id)
        if idx is None:
            raise ValidationError("type", "The selected type is invalid.")
        return self.event_types[idx]

    @staticmethod
    def _resolve(spec: Any, by_name: Mapping[str, int], by_id: Mapping[int, int]) -> int | None:
        if isinstance(spec, Mapping):
            if "id" in spec:
                spec = spec["id"]
            elif "name" in spec:
                spec = spec["name"]
            else:
                return None
        if isinstance(spec, bool):
            return None
        if isinstance(spec, int):
            return by_id.get(spec)
        if isinstance(spec, str):
            if spec.isdigit():
                return by_id.get(int(spec))
            return by_name.get(spec.strip().lower())
        return None

    def _tlp_from(self, item: Mapping[str, Any]) -> dict[str, Any] | None:
        if item.get("tlp_id") is not None:
            return self._tlp_by_id.get(int(item["tlp_id"]))
        tlp = item.get("tlp") or item.get("tlp_name")
        if isinstance(tlp, Mapping):
            tlp = tlp.get("name")
        if isinstance(tlp, str):
            return self._tlp_by_name.get(tlp.upper().replace("TLP:", "").strip().lower())
        return None

    def _now(self, last: int) -> int:
        return max(int(time.time()), last)

    def create_indicator(self, item: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create (or find) one indicator as ``POST /api/indicators`` does.

        :param item: ``{value, type|type_id, status|status_id?, description?, sources?, attributes?,
            published_at?}`` in any of the spellings public clients send.
        :return: ``(full object, existing)``; ``existing`` is True when value+type already existed.
        :raises ValidationError: missing value, unknown type or status, value invalid for its type.
        """
        if not isinstance(item, Mapping):
            raise ValidationError("data", "Each indicator must be an object.")
        value = item.get("value")
        if not isinstance(value, str) or not value.strip():
            raise ValidationError("value", "The value field is required.")
        value = value.strip()
        type_spec = next((item[k] for k in ("type", "type_id", "indicator_type") if item.get(k) is not None), None)
        if type_spec is None:
            raise ValidationError("type", "The type field is required.")
        tinfo = self.resolve_indicator_type(type_spec)
        _check_value(tinfo["name"], value)
        status_spec = item.get("status") if item.get("status") is not None else item.get("status_id")
        sinfo = self.resolve_status(status_spec if status_spec is not None else "Review")
        with self._lock:
            existing = self.find_indicator_ids_by_value(value, tinfo["name"])
            if existing:
                return self._full(existing[0]), True
            last = self._created_order[-1][0] if self._created_order else 0
            now = self._now(last)
            iid = self.n_indicators + len(self._created) + 1
            sources = []
            for k, src_item in enumerate(item.get("sources") or []):
                name = src_item.get("name") if isinstance(src_item, Mapping) else str(src_item)
                if not name:
                    raise ValidationError("sources", "Each source needs a name.")
                src = self._source_for_name(name)
                tlp = self._tlp_from(src_item) if isinstance(src_item, Mapping) else None
                pub = src_item.get("published_at") if isinstance(src_item, Mapping) else None
                sources.append(
                    {"id": iid * 4 + k, "indicator_id": iid, "source_id": src["id"], "creator_source_id": src["id"],
                     "indicator_status_id": sinfo["id"], "indicator_type_id": tinfo["id"],
                     "reference_id": src["reference_id"], "source_type": src["source_type"], "name": src["name"],
                     "published_at": fmt(to_epoch(pub)) if pub else fmt(now), "created_at": fmt(now),
                     "updated_at": fmt(now), "source_expire_days": src["expire_days"], "source_score": 0,
                     "tlp_id": tlp["id"] if tlp else None, "tlp_name": f"TLP:{tlp['name']}" if tlp else None}
                )
            attributes = []
            for k, attr in enumerate(item.get("attributes") or []):
                if not isinstance(attr, Mapping) or not attr.get("name") or attr.get("value") is None:
                    raise ValidationError("attributes", "Each attribute needs a name and a value.")
                attributes.append(
                    {"id": iid * 8 + k, "indicator_id": iid,
                     "attribute_id": self._attr_ids.setdefault(attr["name"], len(self._attr_ids) + 1),
                     "name": attr["name"], "value": str(attr["value"]), "created_at": fmt(now),
                     "updated_at": fmt(now), "touched_at": fmt(now)}
                )
            published = item.get("published_at")
            obj = {
                "id": iid, "value": value, "class": tinfo["class"], "type_id": tinfo["id"], "status_id": sinfo["id"],
                "hash": _md5(f"{tinfo['name']}|{value}"), "score": 0,
                "description": item.get("description"), "created_at": fmt(now), "updated_at": fmt(now),
                "touched_at": fmt(now), "published_at": fmt(to_epoch(published)) if published else fmt(now),
                "expires_at": None, "expired_at": None, "expires_calculated_at": None, "last_detected_at": None,
                "type": {"id": tinfo["id"], "name": tinfo["name"], "class": tinfo["class"]},
                "status": {"id": sinfo["id"], "name": sinfo["name"], "description": sinfo["description"]},
                "adversaries": [], "attributes": attributes, "sources": sources,
                "tags": [t if isinstance(t, str) else t.get("name") for t in item.get("tags") or []],
                "comments": [],
            }
            self._created[iid] = obj
            self._created_order.append((now, iid))
            if self._value_index is not None:
                self._value_index[(self._type_by_id[tinfo["id"]], value.lower())] = iid
            self.version += 1
            return obj, False

    #: What ``update_indicator`` edits (ThreatQ's ``PUT /api/indicators/{id}`` takes more; the
    #: simulator refuses the rest by name rather than ignoring it).
    EDITABLE_FIELDS = ("status", "status_id", "description")

    def update_indicator(self, iid: int, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Edit one indicator as ``PUT /api/indicators/{id}`` does: its ``updated_at`` and ``touched_at``
        become now, so window polls find it again in the interval of the edit.

        Now is the wall clock, but never earlier than the indicator's current ``updated_at`` (a corpus
        dated in the future must not move an indicator back). Setting status ``Expired`` sets
        ``expired_at`` (now) when unset; another status clears it.

        :param iid: the indicator id.
        :param changes: any of ``status`` (name, ``{"name": ...}`` or id), ``status_id``, ``description``.
        :return: the updated full object (a copy).
        :raises KeyError: no such indicator (or deleted).
        :raises ValidationError: nothing to change, an unknown status, a field the simulator does not edit.
        """
        if not isinstance(changes, Mapping) or not changes:
            raise ValidationError("data", "Nothing to update: send status, status_id or description.")
        unknown = sorted(k for k in changes if k not in self.EDITABLE_FIELDS)
        if unknown:
            raise ValidationError(unknown[0], f"The simulator does not edit {unknown[0]!r} "
                                  f"(it edits {', '.join(self.EDITABLE_FIELDS)}).")
        status_spec = changes.get("status") if changes.get("status") is not None else changes.get("status_id")
        sinfo = self.resolve_status(status_spec) if status_spec is not None else None
        with self._lock:
            if not self.indicator_exists(iid):
                raise KeyError(iid)
            obj = copy.deepcopy(self._full(iid))
            old = to_epoch(obj["updated_at"])
            now = max(int(time.time()), old)
            if sinfo is not None:
                obj["status_id"] = sinfo["id"]
                obj["status"] = {"id": sinfo["id"], "name": sinfo["name"], "description": sinfo["description"]}
                for src in obj["sources"]:
                    src["indicator_status_id"] = sinfo["id"]
                if sinfo["name"] == "Expired":
                    obj["expired_at"] = obj["expired_at"] or fmt(now)
                else:
                    obj["expired_at"] = None
            if "description" in changes:
                obj["description"] = changes["description"]
            obj["updated_at"] = fmt(now)
            obj["touched_at"] = fmt(max(now, to_epoch(obj["touched_at"]) if obj["touched_at"] else now))
            if self._is_created(iid):
                order, store = self._created_order, self._created
            else:
                order, store = self._edited_order, self._edited
            if iid in store:
                order.remove((old, iid))
            bisect.insort(order, (now, iid))
            store[iid] = obj
            self.version += 1  # invalidates the query caches
            return copy.deepcopy(obj)

    # ------------------------------------------------------------------ events
    def _build_events(self) -> None:
        self._events: dict[int, dict[str, Any]] = {}
        self._event_indicators: dict[int, list[int]] = {}
        self._attachments: dict[int, dict[str, Any]] = {}
        self._attachment_content: dict[int, bytes] = {}
        sd = self._seed_data
        span = self.end_epoch - self.start_epoch
        next_attachment = 1
        for eid in range(1, self.n_events + 1):
            rng = self._rng(3, eid)
            r = rng.random
            etype = self.event_types[int(r() * len(self.event_types))]
            upd = self.start_epoch + int(r() * span)
            happened = upd - int(r() * 10 * DAY)
            created = happened + int(r() * 3600)
            created = min(created, upd)
            family = rng.choice(sd["attributes"]["Malware Family"])
            adv = rng.choice(self.adversaries)
            title = rng.choice(sd["event_title_templates"]).format(
                adv=adv["name"], sector=rng.choice(sd["event_attributes"]["Targeted Sector"]), family=family,
                country=rng.choice(sd["attributes"]["Country"]), domain=f"{rng.choice(sd['words'])}-{eid}.{rng.choice(sd['tlds'])}",
                subject=rng.choice(sd["email_subjects"]),
            )
            attributes = []
            names = rng.sample(self._event_attr_names, int(r() * 3))
            if r() < 0.6 and "Threat Level" not in names:
                names.append("Threat Level")
            if r() < 0.5 and "Analysis Level" not in names:
                names.append("Analysis Level")
            for k, name in enumerate(names):
                attributes.append(
                    {"id": eid * 8 + k, "event_id": eid, "attribute_id": 100 + self._event_attr_names.index(name),
                     "name": name, "value": rng.choice(sd["event_attributes"][name]), "created_at": fmt(created),
                     "updated_at": fmt(upd), "touched_at": fmt(upd)}
                )
            sources = []
            for k, src in enumerate(rng.sample(self.sources, 1 + int(r() * 1.6))):
                tlp = self._pick_tlp(rng)
                sources.append(
                    {"id": src["id"], "name": src["name"], "type": src["source_type"], "reference_id": src["reference_id"],
                     "tlp_id": tlp["id"] if tlp else None, "tlp_name": f"TLP:{tlp['name']}" if tlp else None,
                     "created_at": fmt(created), "updated_at": fmt(upd), "published_at": fmt(created),
                     "pivot": {"id": eid * 4 + k, "event_id": eid, "source_id": src["id"], "creator_source_id": src["id"]}}
                )
            adversaries = [dict(a) for a in rng.sample(self.adversaries, int(r() * 2.5))]
            n_ind = min(self.n_indicators, 1 + int(r() * 25))
            ind_ids = sorted(rng.sample(range(1, self.n_indicators + 1), n_ind)) if n_ind else []
            att_ids = []
            for _ in range(int(r() * 2.4)):
                aid = next_attachment
                next_attachment += 1
                self._make_attachment(aid, eid, rng, created, upd, ind_ids)
                att_ids.append(aid)
            tags = rng.sample(sd["tags"], int(r() * 2.5))
            self._events[eid] = {
                "id": eid, "title": title, "type_id": etype["id"], "type": dict(etype),
                "happened_at": fmt(happened), "description": f"<p>{title}. Observed by {sources[0]['name']}.</p>",
                "hash": _md5(f"event|{self.seed}|{eid}|{title}"), "created_at": fmt(created), "updated_at": fmt(upd),
                "touched_at": fmt(upd), "attributes": attributes, "sources": sources, "adversaries": adversaries,
                "attachment_ids": att_ids, "tags": tags,
            }
            self._event_indicators[eid] = ind_ids

    def _make_attachment(self, aid: int, eid: int, rng: random.Random, created: int, upd: int, ind_ids: list[int]) -> None:
        kind = rng.random()
        if kind < 0.7:
            lines = [f"ThreatQ simulator report {aid} for event {eid}", ""]
            lines += [f"IOC {i}: {self._generate(i)['value']}" if i <= self.n_indicators else f"IOC {i}" for i in ind_ids[:10]]
            content = ("\n".join(lines) + "\n").encode()
            name, ctype, ftype = f"report-{eid}-{aid}.txt", "text/plain", "Generic Text"
            content_type_id = 1
        else:
            body = hashlib.sha512(f"{self.seed}-{aid}".encode()).digest() * 8
            content = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + body + b"\n%%EOF\n"
            name, ctype, ftype = f"analysis-{eid}-{aid}.pdf", "application/pdf", "PDF"
            content_type_id = 2
        atype = next(a for a in self.attachment_types if a["name"] == ftype)
        self._attachment_content[aid] = content
        self._attachments[aid] = {
            "id": aid, "name": name, "title": f"Attachment {aid} ({ftype})", "type_id": atype["id"],
            "type": {"id": atype["id"], "name": atype["name"]}, "file_size": len(content),
            "hash": hashlib.md5(content).hexdigest(), "content_type_id": content_type_id, "content_type": ctype,
            "malware_locked": 0, "description": None, "created_at": fmt(created), "updated_at": fmt(upd),
            "event_ids": [eid],
        }

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event (generated and created) as full objects, id ascending (copies)."""
        with self._lock:
            ids = sorted(self._events)
        return [self.event(i) for i in ids]

    def event_ids(self) -> list[int]:
        """All event ids, ascending."""
        with self._lock:
            return sorted(self._events)

    def event(self, eid: int) -> dict[str, Any]:
        """The full event: relations ``attributes``, ``sources`` (with TLP), ``adversaries``,
        ``attachments``, ``tags``, ``indicators`` (compact indicator rows), ``indicator_ids``, and
        ``malware`` / ``attack_pattern`` (base columns of the related Threat Library objects).

        :raises KeyError: when no such event exists.
        """
        ev = self._events[int(eid)]
        out = copy.deepcopy(ev)
        out.pop("attachment_ids")
        out["attachments"] = [self.attachment(a) for a in ev["attachment_ids"]]
        ids = self._event_indicators[int(eid)]
        out["indicator_ids"] = list(ids)
        out["indicators"] = [self.indicator_row_compact(i) for i in ids]
        for code in LIBRARY_COLLECTIONS:
            out[code] = [self.library_row_compact(code, oid) for oid in self._event_library[code][int(eid)]]
        return out

    def event_exists(self, eid: int) -> bool:
        return int(eid) in self._events

    def event_base(self, eid: int) -> dict[str, Any]:
        """Internal: the stored event (no copies; callers must not mutate)."""
        return self._events[int(eid)]

    def event_indicator_ids(self, eid: int) -> list[int]:
        """Ids of the indicators related to an event, ascending."""
        return list(self._event_indicators[int(eid)])

    def indicator_row_compact(self, iid: int) -> dict[str, Any]:
        """The raw indicator row used in related lists (no embedded relations)."""
        obj = self._full(iid)
        return {k: obj[k] for k in ("id", "value", "class", "type_id", "status_id", "hash", "description",
                                    "created_at", "updated_at", "touched_at", "expires_at", "expired_at",
                                    "expires_calculated_at", "last_detected_at")}

    def iter_events(self, updated_since: object = None, updated_until: object = None) -> Iterator[dict[str, Any]]:
        """Events with ``updated_since <= updated_at < updated_until``, ascending by updated_at then id."""
        lo = None if updated_since is None else to_epoch(updated_since)
        hi = None if updated_until is None else to_epoch(updated_until)
        with self._lock:
            keyed = sorted((to_epoch(e["updated_at"]), eid) for eid, e in self._events.items())
        for upd, eid in keyed:
            if (lo is None or upd >= lo) and (hi is None or upd < hi):
                yield self.event(eid)

    def select_events(self, expr: Any = None, sort: str | None = None, extra: Mapping[str, Any] | None = None) -> list[int]:
        """Event ids matching an expression (fields: id, title, type/type_name, type_id, dates,
        source_name, adversary_name, tags), sorted (default id)."""
        combined: list[Any] = [expr] if expr else []
        for field, value in (extra or {}).items():
            combined.append({field: value})
        pred = compile_expr({"+and": combined} if combined else None)
        keys = parse_sort(sort, EVENT_SORT_FIELDS) or [("id", False)]
        with self._lock:
            events = dict(self._events)
        matched = [eid for eid in sorted(events) if pred(lambda f, e=events[eid]: _event_field(e, f))]
        for field, desc in reversed(keys):
            field = canonical_field(field)

            def key(eid: int, field: str = field) -> tuple[int, Any]:
                v = _event_field(events[eid], field)
                if v is None:
                    return (0, "")
                return (1, v.lower() if isinstance(v, str) else v)

            matched.sort(key=key, reverse=desc)
        return matched

    def create_event(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an event as ``POST /api/events`` does.

        :param body: ``{title, type|type_id, happened_at, description?, sources?, attributes?}``.
        :return: the stored event (full form).
        :raises ValidationError: missing title/type/happened_at, unknown type, bad date.
        """
        if not isinstance(body, Mapping):
            raise ValidationError("data", "The event must be an object.")
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ValidationError("title", "The title field is required.")
        type_spec = body.get("type") if body.get("type") is not None else body.get("type_id")
        if type_spec is None:
            raise ValidationError("type", "The type field is required.")
        etype = self.resolve_event_type(type_spec)
        happened_raw = body.get("happened_at")
        if happened_raw in (None, ""):
            raise ValidationError("happened_at", "The happened at field is required.")
        try:
            happened = to_epoch(happened_raw)
        except ValueError as exc:
            raise ValidationError("happened_at", "The happened at is not a valid date.") from exc
        with self._lock:
            eid = max(self._events, default=0) + 1
            now = int(time.time())
            sources = []
            for k, src_item in enumerate(body.get("sources") or []):
                name = src_item.get("name") if isinstance(src_item, Mapping) else str(src_item)
                src = self._source_for_name(name)
                tlp = self._tlp_from(src_item) if isinstance(src_item, Mapping) else None
                sources.append(
                    {"id": src["id"], "name": src["name"], "type": src["source_type"], "reference_id": src["reference_id"],
                     "tlp_id": tlp["id"] if tlp else None, "tlp_name": f"TLP:{tlp['name']}" if tlp else None,
                     "created_at": fmt(now), "updated_at": fmt(now), "published_at": fmt(now),
                     "pivot": {"id": eid * 4 + k, "event_id": eid, "source_id": src["id"], "creator_source_id": src["id"]}}
                )
            attributes = [
                {"id": eid * 8 + k, "event_id": eid, "attribute_id": 200 + k, "name": a["name"], "value": str(a["value"]),
                 "created_at": fmt(now), "updated_at": fmt(now), "touched_at": fmt(now)}
                for k, a in enumerate(body.get("attributes") or []) if isinstance(a, Mapping) and a.get("name")
            ]
            event = {
                "id": eid, "title": title.strip(), "type_id": etype["id"], "type": dict(etype),
                "happened_at": fmt(happened), "description": body.get("description"),
                "hash": _md5(f"event|created|{eid}|{title}"), "created_at": fmt(now), "updated_at": fmt(now),
                "touched_at": fmt(now), "attributes": attributes, "sources": sources, "adversaries": [],
                "attachment_ids": [], "tags": [],
            }
            self._events[eid] = event
            self._event_indicators[eid] = []
            for code in LIBRARY_COLLECTIONS:
                self._event_library[code][eid] = []
            self.version += 1
            return event

    # ------------------------------------------------------------------ attachments
    def attachment(self, aid: int) -> dict[str, Any]:
        """Attachment metadata (``name``, ``content_type``, ``hash`` = MD5 of the bytes, ``file_size``…)."""
        out = dict(self._attachments[int(aid)])
        out.pop("event_ids", None)
        out["type"] = dict(out["type"])
        return out

    def attachment_exists(self, aid: int) -> bool:
        return int(aid) in self._attachments

    def attachment_content(self, aid: int) -> bytes:
        """The attachment's bytes (deterministic from the seed)."""
        return self._attachment_content[int(aid)]

    @property
    def attachments(self) -> list[dict[str, Any]]:
        """Every attachment's metadata, id ascending."""
        return [self.attachment(a) for a in sorted(self._attachments)]

    # ------------------------------------------------------------------ threat library
    def _build_library(self) -> None:
        """Malware and attack-pattern objects from the seed vocabulary, and their links to events.

        Each kind draws from its own stream and each event's links from ``_rng(5, eid)``, so the
        library changes no indicator, event or attachment of a corpus built before it existed.
        A malware named in an event's title ("Emotet campaign observed") is linked to that event;
        some other events get one or two more. Attack patterns go to events whose type is in the
        pattern's ``event_types`` (a spearphish gets T1566.001…), now and then one at random.
        """
        self._library: dict[str, dict[int, dict[str, Any]]] = {}
        for kind, (code, spec) in enumerate(LIBRARY_COLLECTIONS.items()):
            object_id, name, plural, seed_key, attr_field, attr_name = spec
            rng = random.Random(self.seed * 13 + 101 + kind)
            objects: dict[int, dict[str, Any]] = {}
            for k, item in enumerate(self._seed_data.get(seed_key, [])):
                oid = k + 1
                created = self.start_epoch - rng.randrange(60, 1200) * DAY - rng.randrange(DAY)
                upd = created + rng.randrange(0, 40) * DAY
                touched = max(upd, self.start_epoch - rng.randrange(0, 30 * DAY))
                sources = []
                for j, src in enumerate(rng.sample(self.sources, 1 + int(rng.random() * 1.5))):
                    tlp = self._pick_tlp(rng)
                    sources.append(
                        {"id": src["id"], "name": src["name"], "type": src["source_type"],
                         "reference_id": src["reference_id"], "tlp_id": tlp["id"] if tlp else None,
                         "tlp_name": f"TLP:{tlp['name']}" if tlp else None, "created_at": fmt(created),
                         "updated_at": fmt(upd), "published_at": fmt(created),
                         "pivot": {"id": oid * 4 + j, f"{code}_id": oid, "source_id": src["id"],
                                   "creator_source_id": src["id"]}}
                    )
                attributes = []
                if item.get(attr_field):
                    attr_id = self._attr_ids.setdefault(attr_name, len(self._attr_ids) + 1)
                    attributes.append(
                        {"id": oid * 8, f"{code}_id": oid, "attribute_id": attr_id, "name": attr_name,
                         "value": str(item[attr_field]), "created_at": fmt(created), "updated_at": fmt(upd),
                         "touched_at": fmt(touched)}
                    )
                description = item.get("description")
                objects[oid] = {
                    "id": oid, "value": item["name"], "description": f"<p>{description}</p>" if description else None,
                    "type_id": None, "status_id": None, "object_id": object_id, "object_code": code,
                    "object_name": name, "object_name_plural": plural, "created_at": fmt(created),
                    "updated_at": fmt(upd), "touched_at": fmt(touched), "attributes": attributes, "sources": sources,
                    "event_types": tuple(item.get("event_types", ())),
                }
            self._library[code] = objects
        self._event_library: dict[str, dict[int, list[int]]] = {code: {} for code in LIBRARY_COLLECTIONS}
        malware = self._library["malware"]
        patterns = self._library["attack_pattern"]
        by_event_type: dict[str, list[int]] = {}
        for oid, obj in patterns.items():
            for type_name in obj["event_types"]:
                by_event_type.setdefault(type_name.lower(), []).append(oid)
        named = {oid: re.compile(r"(?<![\w-])" + re.escape(m["value"]) + r"(?![\w-])", re.I)
                 for oid, m in malware.items()}
        for eid in sorted(self._events):
            ev = self._events[eid]
            rng = self._rng(5, eid)
            linked = {oid for oid, rx in named.items() if rx.search(ev["title"])}
            if malware and rng.random() < (0.2 if linked else 0.35):
                linked.update(rng.sample(sorted(malware), min(len(malware), 1 + int(rng.random() * 1.5))))
            self._event_library["malware"][eid] = sorted(linked)
            fitting = by_event_type.get(ev["type"]["name"].lower(), [])
            chosen: set[int] = set()
            if fitting and rng.random() < 0.75:
                chosen.update(rng.sample(fitting, min(len(fitting), 1 + int(rng.random() * 2.5))))
            if patterns and rng.random() < 0.1:
                chosen.add(rng.choice(sorted(patterns)))
            self._event_library["attack_pattern"][eid] = sorted(chosen)

    def library_objects(self, code: str) -> list[dict[str, Any]]:
        """Every object of a Threat Library collection (``malware``, ``attack_pattern``), id ascending.

        :param code: the object code, a key of :data:`LIBRARY_COLLECTIONS`.
        :return: full objects (base columns, ``attributes``, ``sources``), fresh copies.
        :raises KeyError: for an unknown code.
        """
        return [self.library_object(code, oid) for oid in sorted(self._library[code])]

    def library_object(self, code: str, oid: int) -> dict[str, Any]:
        """One Threat Library object with ``attributes`` and ``sources`` (a copy); KeyError if unknown."""
        out = copy.deepcopy(self._library[code][int(oid)])
        out.pop("event_types")
        return out

    def library_exists(self, code: str, oid: int) -> bool:
        return int(oid) in self._library.get(code, {})

    def library_row_compact(self, code: str, oid: int) -> dict[str, Any]:
        """The base columns of a Threat Library object (no relations)."""
        obj = self._library[code][int(oid)]
        return {k: obj[k] for k in _LIBRARY_COLUMNS}

    def event_library_ids(self, eid: int, code: str) -> list[int]:
        """Ids of the ``code`` objects (``malware``, ``attack_pattern``) related to an event, ascending."""
        return list(self._event_library[code][int(eid)])

    def library_event_ids(self, code: str, oid: int) -> list[int]:
        """Ids of the events a Threat Library object is related to, ascending."""
        with self._lock:
            links = dict(self._event_library[code])
        return [eid for eid in sorted(links) if int(oid) in links[eid]]

    @property
    def malware(self) -> list[dict[str, Any]]:
        """The malware objects (see :meth:`library_objects`)."""
        return self.library_objects("malware")

    @property
    def attack_patterns(self) -> list[dict[str, Any]]:
        """The attack-pattern objects (see :meth:`library_objects`)."""
        return self.library_objects("attack_pattern")

    # ------------------------------------------------------------------ investigations
    def _build_investigations(self, count: int) -> None:
        names = self._seed_data["investigation_names"]
        self._investigations: dict[int, dict[str, Any]] = {}
        for k in range(1, count + 1):
            rng = self._rng(4, k)
            ev_ids = sorted(rng.sample(sorted(self._events), min(len(self._events), 2 + int(rng.random() * 4))))
            ind: set[int] = set()
            att: list[int] = []
            for eid in ev_ids:
                ind.update(self._event_indicators[eid][:5])
                att.extend(self._events[eid]["attachment_ids"])
            name = names[(k - 1) % len(names)] + ("" if k <= len(names) else f" {k}")
            created = self.start_epoch - int(rng.random() * 20 * DAY)
            self._investigations[k] = {
                "id": k, "name": name, "description": f"<p>{name}</p>", "priority_id": 1 + (k % 2), "status_id": 1,
                "visible": 1, "created_at": fmt(created), "updated_at": fmt(self.start_epoch + int(rng.random() * DAY)),
                "event_ids": ev_ids, "indicator_ids": sorted(ind), "attachment_ids": sorted(att),
            }

    @property
    def investigations(self) -> list[dict[str, Any]]:
        """Investigations: ``{id, name, description, priority_id, status_id, visible, created_at,
        updated_at, event_ids, indicator_ids, attachment_ids}``."""
        return [copy.deepcopy(self._investigations[k]) for k in sorted(self._investigations)]

    def investigation(self, inv_id: int) -> dict[str, Any]:
        """One investigation (see :attr:`investigations`); KeyError if unknown."""
        return copy.deepcopy(self._investigations[int(inv_id)])

    # ------------------------------------------------------------------ data collections
    def _build_collections(self) -> None:
        specs: list[tuple[str, dict[str, Any]]] = [
            ("All indicators", {}),
            ("All active", {"status_name": "Active"}),
        ]
        for tname in ("IP Address", "FQDN", "URL", "SHA-256"):
            specs.append((f"Active {tname}", {"+and": [{"status_name": "Active"}, {"type_name": tname}]}))
        specs.append(("High score", {"score": {"+gte": 7}}))
        self.collections: list[dict[str, Any]] = [
            {"id": k + 1, "name": name, "hash": _md5(f"collection|{self.seed}|{name}"), "filters": filt}
            for k, (name, filt) in enumerate(specs)
        ]
        self._collection_by_hash = {c["hash"]: c for c in self.collections}

    def collection(self, hash_or_name: str) -> dict[str, Any]:
        """A data collection by hash or name: ``{id, name, hash, filters}``; KeyError if unknown."""
        if hash_or_name in self._collection_by_hash:
            return dict(self._collection_by_hash[hash_or_name])
        for c in self.collections:
            if c["name"].lower() == hash_or_name.lower():
                return dict(c)
        raise KeyError(hash_or_name)

    def iter_collection(self, hash_or_name: str) -> Iterator[dict[str, Any]]:
        """Ground truth of a collection feed: its indicators ascending by updated_at then id."""
        coll = self.collection(hash_or_name)
        for iid in self.select_indicators(coll["filters"], sort="updated_at"):
            yield self.indicator(iid)

    # ------------------------------------------------------------------ metadata look-ups
    def type_by_id(self, type_id: int) -> dict[str, Any] | None:
        idx = self._type_by_id.get(int(type_id))
        return None if idx is None else self.indicator_types[idx]

    def status_by_id(self, status_id: int) -> dict[str, Any] | None:
        idx = self._status_by_id.get(int(status_id))
        return None if idx is None else self.statuses[idx]

    def event_type_by_id(self, type_id: int) -> dict[str, Any] | None:
        idx = self._event_type_by_id.get(int(type_id))
        return None if idx is None else self.event_types[idx]

    def adversary_names(self) -> list[str]:
        return [a["name"] for a in self.adversaries]


# ---------------------------------------------------------------------- helpers
def _raise_key(field: str) -> Any:
    raise KeyError(field)


def _field_of(obj: Mapping[str, Any], field: str) -> Any:
    """Field getter over a full indicator (canonical names, list fields for relations)."""
    if field == "type_name":
        return obj["type"]["name"]
    if field == "status_name":
        return obj["status"]["name"]
    if field == "source_name":
        return [s["name"] for s in obj.get("sources", [])]
    if field == "adversary_name":
        return [a["name"] for a in obj.get("adversaries", [])]
    if field == "attribute_name":
        return [a["name"] for a in obj.get("attributes", [])]
    if field == "attribute_value":
        return [a["value"] for a in obj.get("attributes", [])]
    if field == "tags":
        return list(obj.get("tags", []))
    if field == "tlp_name":
        return [s.get("tlp_name") for s in obj.get("sources", [])]
    if "." in field:
        cur: Any = obj
        for part in field.split("."):
            if isinstance(cur, list):
                return [c.get(part) for c in cur if isinstance(c, Mapping)]
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(part)
        return cur
    return obj.get(field)


def _event_field(ev: Mapping[str, Any], field: str) -> Any:
    field = canonical_field(field)
    if field == "type_name":
        return ev["type"]["name"]
    if field == "value":
        return ev["title"]
    return _field_of(ev, field)


def _check_value(type_name: str, value: str) -> None:
    """Reject values that cannot be of the given type (the checks ThreatQ's normaliser makes)."""
    import ipaddress
    import re

    def bad() -> None:
        raise ValidationError("value", f"The value is not a valid {type_name}.")

    try:
        if type_name == "IP Address":
            ipaddress.IPv4Address(value)
        elif type_name == "IPv6 Address":
            ipaddress.IPv6Address(value)
        elif type_name == "CIDR Block":
            ipaddress.ip_network(value, strict=False)
            if "/" not in value:
                bad()
    except ValueError:
        bad()
    hex_len = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-384": 96, "SHA-512": 128}
    if type_name in hex_len and not re.fullmatch(f"[0-9a-fA-F]{{{hex_len[type_name]}}}", value):
        bad()
    if type_name == "Email Address" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        bad()
    if type_name == "CVE" and not re.fullmatch(r"CVE-\d{4}-\d{4,}", value, flags=re.I):
        bad()

