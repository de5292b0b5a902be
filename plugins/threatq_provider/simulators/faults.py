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

Plans load from JSON (a list of rules, or ``{"rules": [...]}``), e.g.::

    [{"path_regex": "^/api/indicators/query", "nth": 2, "times": 1, "status": 429,
      "headers": {"Retry-After": "1"}},
     {"path_regex": "^/api/indicators", "times": null, "delay_s": 0.2}]
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FaultRule", "FaultPlan", "ACTIONS"]

ACTIONS = frozenset({"reset", "commit_then_reset", "truncate", "malformed", "expire_token"})


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
        self._regex = re.compile(self.path_regex) if self.path_regex else None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from its JSON form; unknown keys are an error (typos would silently do nothing)."""
        allowed = {"method", "path_regex", "nth", "times", "status", "headers", "body", "delay_s", "action"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault rule keys: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items()})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form plus the runtime counters ``matched`` and ``triggered``."""
        return {"method": self.method, "path_regex": self.path_regex, "nth": self.nth, "times": self.times,
                "status": self.status, "headers": dict(self.headers), "body": self.body, "delay_s": self.delay_s,
                "action": self.action, "matched": self.matched, "triggered": self.triggered}

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
        """Find the rule that fires for this request and count it; None when nothing fires.

        Each rule counts the requests it matches; it fires from its ``nth`` match on, until it
        has fired ``times`` times. The first firing rule wins.
        """
        target = f"{path}?{query}" if query else path
        with self._lock:
            for rule in self._rules:
                if not rule._matches(method, target):
                    continue
                rule.matched += 1
                if rule.nth is not None and rule.matched < rule.nth:
                    continue
                if rule.times is not None and rule.triggered >= rule.times:
                    continue
                rule.triggered += 1
                return rule
        return None

    def to_list(self) -> list[dict[str, Any]]:
        """Every rule in JSON form with its counters."""
        return [r.to_dict() for r in self.rules]
