"""Fault plans: one schema for both simulators (``threatq-sim`` and ``misp-double``), as data.

A :class:`FaultPlan` is an ordered list of :class:`FaultRule`. For each request the server asks
the plan for the first rule that matches and still has triggers left; that rule decides what goes
wrong. Each rule counts the requests that reach it: one answered by an earlier rule is not counted
by the rules after it. The "Fault plans" section of docs/simulators.md documents the same keys as one table (a
test keeps the two equal).

Match (every key optional; an empty rule matches every request):

- ``method``: HTTP method, case-insensitive;
- ``path_regex``: regex *searched* in ``/path?query`` with the query URL-decoded (just ``/path``
  when there is no query string), so ``"^/api/indicators$"`` does not match
  ``/api/indicators?limit=5``, ``"cursorMark=\\*"`` matches a first cursor page and
  ``"^/events/add"`` a MISP event creation;
- ``nth``: fire from the n-th matching request on (1-based; default the first);
- ``times``: how many times it fires (default 1; ``null`` = every time).

Answer (what a firing rule does; the shared transport faults):

- ``status`` (+ ``headers``, ``body``): answer with that status instead of the real response
  (the request is not handled); ``body`` is a string sent as is (``text/html`` when it starts
  with ``<``) or any JSON value, by default the product's own error body;
- ``delay_s``: sleep first (alone: a slow but correct answer);
- ``action``: one of :data:`ACTIONS` (below), or an action of the server's extension.

Extensions add what only one product has (:data:`THREATQ`, :data:`MISP`): the ThreatQ simulator
adds the ``expire_token`` action and the *data faults*, which change what a correct answer
contains rather than whether it arrives (``page_cap``, ``poison_indicator``, ``nest_indicator``
with ``nest_depth``; see :data:`THREATQ`). Every firing data rule applies, together with the
transport rule chosen above, so a poisoned record can sit behind a 429. A data rule carries no
``status``/``action``/``body``/``headers``/``delay_s``.

A rule is checked when built (unknown keys, bad values) and again when its plan is given to a
server (:meth:`FaultPlan.bind`): a key or action of another server's extension is refused there,
so a plan never silently does nothing.

Plans load from JSON (a list of rules, or ``{"rules": [...]}``), e.g.::

    [{"path_regex": "^/api/indicators/query", "nth": 2, "times": 1, "status": 429,
      "headers": {"Retry-After": "1"}},
     {"method": "POST", "path_regex": "^/events/add", "times": null, "action": "reset"},
     {"path_regex": "^/api/indicators", "times": null, "delay_s": 0.2},
     {"path_regex": "^/api/indicators", "times": null, "page_cap": 100}]
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["ACTIONS", "DATA_FAULTS", "DEFAULT_NEST_DEPTH", "Extension", "FaultPlan", "FaultRule", "MISP",
           "SCHEMA_KEYS", "THREATQ", "control"]

#: The shared actions, with what each does (both servers).
ACTIONS: Mapping[str, str] = MappingProxyType({
    "reset": "close the connection with a TCP RST before the request is handled: no answer",
    "close": "close the connection (FIN) before the request is handled: no answer, as a server that hung up",
    "commit_then_reset": "handle the request (a write takes effect), then RST instead of answering: "
                         "the answer of a committed write is lost",
    "truncate": "handle the request, announce the full Content-Length, send half the body, close",
    "malformed": "handle the request, answer 200 with the first third of the body followed by a proxy's HTML "
                 "error page (not JSON)",
})
#: The shared keys: match, then answer.
SCHEMA_KEYS = ("method", "path_regex", "nth", "times", "status", "headers", "body", "delay_s", "action")
_TRANSPORT_KEYS = ("status", "action", "body", "headers", "delay_s")
#: Keys of an earlier MISP double schema, with what replaces them (named in the error).
_RENAMED = MappingProxyType({
    "path": 'path_regex (searched in "/path?query": add the leading slash, e.g. "^/events/add")',
    "skip": "nth (skip: k is nth: k + 1)",
    "delay": "delay_s",
    "non_json": 'action "malformed"',
    "drop": 'action "close" (or "reset" for a TCP RST)',
})


@dataclass(frozen=True)
class Extension:
    """What one server adds to the shared schema.

    :param server: the server's name, for errors (``threatq-sim``).
    :param actions: further actions, with what each does.
    :param data_faults: keys of data faults: a rule setting one changes an answer's content.
    :param keys: further keys that qualify a data fault.
    """

    server: str
    actions: Mapping[str, str] = field(default_factory=dict)
    data_faults: Mapping[str, str] = field(default_factory=dict)
    keys: Mapping[str, str] = field(default_factory=dict)

    @property
    def all_keys(self) -> tuple[str, ...]:
        return (*SCHEMA_KEYS, *self.data_faults, *self.keys)


DEFAULT_NEST_DEPTH = 1000

THREATQ = Extension(
    "threatq-sim",
    actions={"expire_token": "expire every issued access token, then handle the request normally (so it gets "
                             "a 401 if it carries a bearer token)"},
    data_faults={
        "page_cap": "serve at most this many rows per page whatever limit asks, with a correct total and the "
                    "asked limit echoed, as a proxy or server maximum that truncates silently (cursor and offset "
                    "move by the rows actually sent)",
        "poison_indicator": "the indicator with this id, wherever it is a row (or the object) of the answer's "
                            "data, gets a lone UTF-16 surrogate at the end of its description, escaped in the "
                            'JSON ("… \\ud83d": valid JSON and UTF-8, half an emoji)',
        "nest_indicator": "that indicator's first attribute value is wrapped in nest_depth JSON arrays (an "
                          "attribute is added when the row has none)",
    },
    keys={"nest_depth": f"how deep nest_indicator wraps (default {DEFAULT_NEST_DEPTH})"},
)
#: The MISP double serves the shared schema alone.
MISP = Extension("misp-double")
_EXTENSIONS = (THREATQ, MISP)
#: Keys of the data faults of every extension; a rule with one of them is a data rule.
DATA_FAULTS = tuple(k for ext in _EXTENSIONS for k in ext.data_faults)
_ALL_ACTIONS = {*ACTIONS, *(a for ext in _EXTENSIONS for a in ext.actions)}
_ALL_KEYS = {k for ext in _EXTENSIONS for k in ext.all_keys}


@dataclass
class FaultRule:
    """One fault: where it applies and what happens (keys as in the module docstring).

    :param method: HTTP method to match (case-insensitive); None = any.
    :param path_regex: regex searched in ``/path?query`` (query URL-decoded); None = any.
    :param nth: fire from the n-th matching request on (1-based); None = from the first.
    :param times: how many times it fires; None = always.
    :param status: HTTP status to answer instead of the real response.
    :param headers: extra response headers (with ``status``), e.g. ``{"Retry-After": "2"}``.
    :param body: response body with ``status``: a str, or any JSON value; default: the product's error.
    :param delay_s: seconds to sleep before answering.
    :param action: a shared action (:data:`ACTIONS`) or one of the server's extension.
    :param page_cap: ThreatQ data fault: at most this many rows per page, whatever ``limit`` says.
    :param poison_indicator: ThreatQ data fault: id of the indicator whose description gets a lone
        surrogate.
    :param nest_indicator: ThreatQ data fault: id of the indicator whose first attribute value is nested.
    :param nest_depth: how many arrays deep ``nest_indicator``'s value is wrapped (default 1000).
    """

    method: str | None = None
    path_regex: str | None = None
    nth: int | None = None
    times: int | None = 1
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay_s: float = 0.0
    action: str | None = None
    page_cap: int | None = None
    poison_indicator: int | None = None
    nest_indicator: int | None = None
    nest_depth: int | None = None
    # runtime counters (not part of the rule's identity)
    matched: int = field(default=0, compare=False)
    triggered: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.action is not None and self.action not in _ALL_ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; expected one of {sorted(_ALL_ACTIONS)}")
        if self.nth is not None and (not isinstance(self.nth, int) or self.nth < 1):
            raise ValueError("nth is 1-based")
        if self.times is not None and (not isinstance(self.times, int) or self.times < 0):
            raise ValueError("times must be >= 0 or null")
        if self.status is not None and not 100 <= int(self.status) <= 599:
            raise ValueError(f"bad status {self.status}")
        if not isinstance(self.delay_s, int | float) or self.delay_s < 0:
            raise ValueError(f"delay_s must be a number >= 0; got {self.delay_s!r}")
        if not isinstance(self.headers, Mapping):
            raise ValueError("headers must be an object of header names to values")
        if self.action is not None and self.status is not None:
            raise ValueError(f"a rule answers with a status or takes an action ({self.action}), not both; "
                             "use two rules")
        for key in (*DATA_FAULTS, "nest_depth"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{key} must be an integer >= 1; got {value!r}")
        if self.nest_depth is not None and self.nest_indicator is None:
            raise ValueError("nest_depth goes with nest_indicator")
        if self.is_data_fault:
            mixed = [k for k in _TRANSPORT_KEYS if getattr(self, k) not in (None, {}, 0, 0.0)]
            if mixed:
                raise ValueError(f"a data fault ({', '.join(self.data_kinds)}) cannot also set {', '.join(mixed)}; "
                                 "use a second rule")
        try:
            self._regex = re.compile(self.path_regex) if self.path_regex else None
        except re.error as exc:
            raise ValueError(f"path_regex {self.path_regex!r} is not a regular expression: {exc}") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from its JSON form; unknown keys are an error (typos would silently do nothing)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a fault rule is a JSON object; got {type(data).__name__}")
        renamed = [f"{k} (now {_RENAMED[k]})" for k in data if k in _RENAMED]
        if renamed:
            raise ValueError(f"fault rule keys of the old MISP double schema: {'; '.join(renamed)}")
        unknown = set(data) - _ALL_KEYS
        if unknown:
            raise ValueError(f"unknown fault rule keys: {sorted(unknown)}; known: {sorted(_ALL_KEYS)}")
        return cls(**dict(data))

    def to_dict(self, extension: Extension | None = None) -> dict[str, Any]:
        """The JSON form plus the runtime counters ``matched`` and ``triggered``: the shared keys,
        then the keys of ``extension`` (None: of every extension)."""
        out = {k: getattr(self, k) for k in SCHEMA_KEYS}
        out["headers"] = dict(self.headers)
        for ext in _EXTENSIONS if extension is None else (extension,):
            for key in (*ext.data_faults, *ext.keys):
                out[key] = getattr(self, key)
        return {**out, "matched": self.matched, "triggered": self.triggered}

    @property
    def is_data_fault(self) -> bool:
        """True for a rule that changes an answer's content rather than its delivery."""
        return any(getattr(self, key) is not None for key in DATA_FAULTS)

    @property
    def data_kinds(self) -> list[str]:
        """The data faults this rule sets, e.g. ``["page_cap"]``."""
        return [key for key in DATA_FAULTS if getattr(self, key) is not None]

    @property
    def kind(self) -> str:
        """What fires, for statistics: the action, the status, ``delay``, or the data faults."""
        if self.is_data_fault:
            return "+".join(self.data_kinds)
        return self.action or (str(self.status) if self.status else "delay")

    def check_for(self, extension: Extension) -> None:
        """Raise ValueError when this rule uses a key or action ``extension``'s server does not serve."""
        foreign = [k for k in _ALL_KEYS - set(extension.all_keys) if getattr(self, k) is not None]
        if foreign:
            raise ValueError(f"{extension.server} does not serve {', '.join(sorted(foreign))} "
                             f"(an extension of {self._owner(foreign[0])})")
        if self.action is not None and self.action not in ACTIONS and self.action not in extension.actions:
            raise ValueError(f"{extension.server} does not serve the action {self.action!r} "
                             f"(an extension of {self._owner(self.action)})")

    @staticmethod
    def _owner(name: str) -> str:
        return next(e.server for e in _EXTENSIONS if name in (*e.data_faults, *e.keys, *e.actions))

    def _matches(self, method: str, target: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return self._regex is None or bool(self._regex.search(target))


class FaultPlan:
    """Ordered, thread-safe, mutable list of fault rules.

    :param rules: initial rules (``FaultRule`` or their dict form).
    :param extension: the server the plan is for; None until a server binds it (:meth:`bind`).
    """

    def __init__(self, rules: Iterable[FaultRule | Mapping[str, Any]] | None = None,
                 extension: Extension | None = None) -> None:
        self._lock = threading.Lock()
        self.extension: Extension | None = None
        self._rules: list[FaultRule] = [self._coerce(r) for r in rules or []]
        if extension is not None:
            self.bind(extension)

    def _coerce(self, rule: FaultRule | Mapping[str, Any]) -> FaultRule:
        coerced = rule if isinstance(rule, FaultRule) else FaultRule.from_dict(rule)
        if self.extension is not None:
            coerced.check_for(self.extension)
        return coerced

    def bind(self, extension: Extension) -> FaultPlan:
        """Tie the plan to one server: its rules, and every rule added later, must be ones that
        server serves. :return: the plan itself."""
        with self._lock:
            for rule in self._rules:
                rule.check_for(extension)
            self.extension = extension
        return self

    @classmethod
    def from_json(cls, path_or_str: str | Path) -> FaultPlan:
        """Load a plan from a JSON file path or a JSON string (list of rules or ``{"rules": [...]}``)."""
        text = str(path_or_str)
        candidate = Path(text) if not text.lstrip().startswith(("[", "{")) else None
        if candidate is not None:
            text = candidate.read_text(encoding="utf-8")
        data = json.loads(text)
        if isinstance(data, Mapping):
            data = data.get("rules", [])
        if not isinstance(data, list):
            raise ValueError("a fault plan is a JSON list of rules or {\"rules\": [...]}")
        return cls(data)

    def add(self, rule: FaultRule | Mapping[str, Any]) -> FaultRule:
        """Append a rule (takes effect on the next request) and return it."""
        coerced = self._coerce(rule)
        with self._lock:
            self._rules.append(coerced)
        return coerced

    def extend(self, rules: Iterable[FaultRule | Mapping[str, Any]]) -> list[FaultRule]:
        """Append several rules; none is added when one is refused."""
        coerced = [self._coerce(r) for r in rules]
        with self._lock:
            self._rules.extend(coerced)
        return coerced

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        """A snapshot of the rules (the objects themselves, so counters can be read)."""
        with self._lock:
            return list(self._rules)

    def __len__(self) -> int:
        with self._lock:
            return len(self._rules)

    def match(self, method: str, path: str, query: str = "") -> FaultRule | None:
        """Find the transport rule that fires for this request and count it; None when none fires.

        Each rule counts the requests it matches; it fires from its ``nth`` match on, until it
        has fired ``times`` times. The first firing rule wins. Data rules are not considered here
        (see :meth:`data_faults`).
        """
        fired = self._fire(method, path, query, data=False, first_only=True)
        return fired[0] if fired else None

    def data_faults(self, method: str, path: str, query: str = "") -> list[FaultRule]:
        """Every data rule that fires for this request (each counted as :meth:`match` counts)."""
        return self._fire(method, path, query, data=True, first_only=False)

    def _fire(self, method: str, path: str, query: str, *, data: bool, first_only: bool) -> list[FaultRule]:
        target = f"{path}?{query}" if query else path
        fired: list[FaultRule] = []
        with self._lock:
            for rule in self._rules:
                if rule.is_data_fault != data or not rule._matches(method, target):
                    continue
                rule.matched += 1
                if rule.nth is not None and rule.matched < rule.nth:
                    continue
                if rule.times is not None and rule.triggered >= rule.times:
                    continue
                rule.triggered += 1
                fired.append(rule)
                if first_only:
                    break
        return fired

    def to_list(self) -> list[dict[str, Any]]:
        """Every rule in JSON form with its counters (the keys of the server it is bound to)."""
        return [r.to_dict(self.extension) for r in self.rules]


def control(plan: FaultPlan, method: str, body: bytes) -> tuple[int, Any]:
    """The ``/_sim/faults`` control endpoint, the same on both servers.

    ``POST`` adds a rule, a list of rules or ``{"rules": [...]}`` (all or none; 400 naming the
    bad rule), ``GET`` lists the rules with their counters, ``DELETE`` removes them.

    :return: (status, JSON-able body or None for an empty answer).
    """
    if method == "GET":
        return 200, {"data": plan.to_list()}
    if method == "DELETE":
        plan.clear()
        return 204, None
    if method != "POST":
        return 405, {"errors": [f"{method} is not served here: GET, POST or DELETE"]}
    try:
        data = json.loads(body) if body.strip() else []
    except ValueError:
        return 400, {"errors": ["Bad fault rule: the body is not JSON"]}
    rules = data.get("rules", []) if isinstance(data, Mapping) and "rules" in data else data
    if isinstance(rules, Mapping):
        rules = [rules]
    if not isinstance(rules, list):
        return 400, {"errors": ["Bad fault rule: send a rule, a list of rules or {\"rules\": [...]}"]}
    try:
        added = plan.extend(rules)
    except (TypeError, ValueError) as exc:
        return 400, {"errors": [f"Bad fault rule: {exc}"]}
    return 201, {"data": [r.to_dict(plan.extension) for r in added]}
