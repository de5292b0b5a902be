"""Fault injection for the ThreatQ simulator, as data.

A :class:`FaultPlan` is an ordered list of :class:`FaultRule`. For each request the simulator asks
the plan for the first rule that matches (method, regex on ``path?query``, the n-th matching
call) and still has triggers left; that rule decides what goes wrong:

- ``status`` (+ ``headers``, ``body``): answer with that status instead of the real response,
  e.g. 429 with ``{"Retry-After": "1"}``, or 500/502/503/504;
- ``delay_s``: sleep first (alone: a slow but correct page);
- ``action``: ``"reset"`` (close the socket with a TCP RST, no response; the request is *not*
  handled), ``"commit_then_reset"`` (handle the request, so a create takes effect, then close
  with a TCP RST instead of answering: the answer of a committed write is lost, as when a proxy
  or the network drops it), ``"truncate"`` (announce the full Content-Length, send half the body,
  close), ``"malformed"`` (200 with a broken JSON body), ``"expire_token"`` (expire every issued
  token, then handle the request normally, which therefore gets a 401 if it carries a bearer
  token).

Data faults change what a correct answer *contains* rather than whether it arrives. They are
rules too (same ``method``/``path_regex``/``nth``/``times``), but every firing data rule applies,
together with the transport rule chosen above, so a poisoned record can sit behind a 429:

- ``page_cap``: serve at most this many rows per page whatever ``limit`` asks, with a correct
  ``total`` and the requested ``limit`` echoed, as a proxy or a server maximum that truncates
  silently would (cursor and offset move by the rows actually sent);
- ``poison_indicator``: the indicator with this id, wherever it is a row (or the object) of the
  answer's ``data``, gets a lone UTF-16 surrogate at the end of its description, escaped in the
  JSON (``"… \\ud83d"``: valid JSON, valid UTF-8, half an emoji, as a text cut in UTF-16 units);
- ``nest_indicator`` (+ ``nest_depth``, default 1000): that indicator's first attribute value is
  wrapped in ``nest_depth`` JSON arrays (an attribute is added when the row has none).

A data rule carries no ``status``/``action``/``body``/``headers``/``delay_s``.

Plans load from JSON (a list of rules, or ``{"rules": [...]}``), e.g.::

    [{"path_regex": "^/api/indicators/query", "nth": 2, "times": 1, "status": 429,
      "headers": {"Retry-After": "1"}},
     {"path_regex": "^/api/indicators", "times": null, "delay_s": 0.2},
     {"path_regex": "^/api/indicators", "times": null, "page_cap": 100},
     {"path_regex": "^/api/indicators", "times": null, "poison_indicator": 17}]
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FaultRule", "FaultPlan", "ACTIONS", "DATA_FAULTS"]

ACTIONS = frozenset({"reset", "commit_then_reset", "truncate", "malformed", "expire_token"})
#: Keys of the data faults (see the module docstring); a rule with one of them is a data rule.
DATA_FAULTS = ("page_cap", "poison_indicator", "nest_indicator")
_TRANSPORT_KEYS = ("status", "action", "body", "headers", "delay_s")
DEFAULT_NEST_DEPTH = 1000


@dataclass
class FaultRule:
    """One fault: where it applies and what happens.

    :param method: HTTP method to match (case-insensitive); None = any.
    :param path_regex: regex searched in ``path?query`` with the query URL-decoded (just ``path``
        when there is no query string), so ``"^/api/indicators$"`` does not match
        ``/api/indicators?limit=5`` and ``"cursorMark=\\*"`` matches a first cursor page; None = any.
    :param nth: trigger from the n-th matching request on (1-based); None = from the first.
    :param times: how many times it triggers; None = always.
    :param status: HTTP status to answer instead of the real response.
    :param headers: extra response headers (with ``status``), e.g. ``{"Retry-After": "2"}``.
    :param body: response body with ``status``: a str, or any JSON value; default: a JSON error.
    :param delay_s: seconds to sleep before answering.
    :param action: one of ``reset``, ``commit_then_reset``, ``truncate``, ``malformed``,
        ``expire_token``.
    :param page_cap: data fault: at most this many rows per page, whatever ``limit`` says.
    :param poison_indicator: data fault: id of the indicator whose description gets a lone
        surrogate.
    :param nest_indicator: data fault: id of the indicator whose first attribute value is nested.
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
        if self.action is not None and self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; expected one of {sorted(ACTIONS)}")
        if self.nth is not None and self.nth < 1:
            raise ValueError("nth is 1-based")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or null")
        if self.status is not None and not 100 <= int(self.status) <= 599:
            raise ValueError(f"bad status {self.status}")
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
        self._regex = re.compile(self.path_regex) if self.path_regex else None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from its JSON form; unknown keys are an error (typos would silently do nothing)."""
        allowed = {"method", "path_regex", "nth", "times", "status", "headers", "body", "delay_s", "action",
                   *DATA_FAULTS, "nest_depth"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault rule keys: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items()})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form plus the runtime counters ``matched`` and ``triggered``."""
        return {"method": self.method, "path_regex": self.path_regex, "nth": self.nth, "times": self.times,
                "status": self.status, "headers": dict(self.headers), "body": self.body, "delay_s": self.delay_s,
                "action": self.action, "page_cap": self.page_cap, "poison_indicator": self.poison_indicator,
                "nest_indicator": self.nest_indicator, "nest_depth": self.nest_depth,
                "matched": self.matched, "triggered": self.triggered}

    @property
    def is_data_fault(self) -> bool:
        """True for a rule that changes an answer's content (``page_cap``, ``poison_indicator``,
        ``nest_indicator``) rather than its delivery."""
        return any(getattr(self, key) is not None for key in DATA_FAULTS)

    @property
    def data_kinds(self) -> list[str]:
        """The data faults this rule sets, e.g. ``["page_cap"]``."""
        return [key for key in DATA_FAULTS if getattr(self, key) is not None]

    def _matches(self, method: str, target: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return self._regex is None or bool(self._regex.search(target))


class FaultPlan:
    """Ordered, thread-safe, mutable list of fault rules.

    :param rules: initial rules (``FaultRule`` or their dict form).
    """

    def __init__(self, rules: Iterable[FaultRule | Mapping[str, Any]] | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = [self._coerce(r) for r in rules or []]

    @staticmethod
    def _coerce(rule: FaultRule | Mapping[str, Any]) -> FaultRule:
        return rule if isinstance(rule, FaultRule) else FaultRule.from_dict(rule)

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

    def extend(self, rules: Iterable[FaultRule | Mapping[str, Any]]) -> None:
        """Append several rules."""
        for r in rules:
            self.add(r)

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        """A snapshot of the rules (the objects themselves, so counters can be read)."""
        with self._lock:
            return list(self._rules)

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
        """Every rule in JSON form with its counters."""
        return [r.to_dict() for r in self.rules]
