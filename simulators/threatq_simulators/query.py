"""The Threat Library filter grammar the simulator understands (``POST /api/<collection>/query``).

Public clients send ``{"criteria": {...}, "filters": {...}}`` (docs/reference/threatq-api.md §2).
An expression is a dict; several keys in one dict are ANDed. Keys are either:

- ``+and`` / ``+or``: a list of expressions (freely nested); ``+not``: one expression;
- a field name (``value``, ``type``/``type_name``, ``status``/``status_name``, ``score``, ``id``,
  ``updated_at``, ``class``, ``source_name``, ``adversary_name``, ``tags``, ``title``…; dotted
  paths such as ``type.name`` reach nested objects) whose value is a scalar (equality; ``%``
  is a wildcard), a list (any of), ``null`` (is null), or a dict of operators:
  ``+eq +ne +gt +gte +lt +lte +contains +ncontains +like +in +nin +is`` (``is`` also accepted).

String comparisons ignore case (ThreatQ runs on a case-insensitive collation). Date fields
compare as datetimes whatever format the client used (ThreatQ form, ISO 8601, bare date).
Date-range operators on ``updated_at`` are not seen in public clients; they follow the grammar
(docs/reference/threatq-api.md §2, marked [A]).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from threatq_simulators.timefmt import TimeParseError, to_epoch

__all__ = ["QueryError", "DATE_FIELDS", "compile_expr", "updated_at_bounds", "parse_sort"]

DATE_FIELDS = frozenset(
    {
        "created_at",
        "updated_at",
        "touched_at",
        "published_at",
        "expires_at",
        "expired_at",
        "expires_calculated_at",
        "last_detected_at",
        "happened_at",
    }
)
NUMERIC_FIELDS = frozenset({"id", "score", "type_id", "status_id"})
FIELD_ALIASES = {
    "type": "type_name",
    "type.name": "type_name",
    "status": "status_name",
    "status.name": "status_name",
    "indicator_type": "type_name",
    "source": "source_name",
    "sources.name": "source_name",
    "adversary": "adversary_name",
    "adversaries.name": "adversary_name",
    "tag": "tags",
    "tags.name": "tags",
    "attributes.name": "attribute_name",
    "attributes.value": "attribute_value",
}
_OPS = {"+eq", "+ne", "+gt", "+gte", "+lt", "+lte", "+contains", "+ncontains", "+like", "+in", "+nin", "+is", "is"}

Getter = Callable[[str], Any]
Predicate = Callable[[Getter], bool]


class QueryError(ValueError):
    """The filter expression is not valid; ``field`` names the offending part for the 400 body."""

    def __init__(self, message: str, field: str = "filters") -> None:
        super().__init__(message)
        self.field = field


def canonical_field(name: str) -> str:
    """Map a client field spelling to the simulator's canonical name."""
    return FIELD_ALIASES.get(name, name)


def _norm_scalar(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field in DATE_FIELDS:
        try:
            return to_epoch(value)
        except TimeParseError as exc:
            raise QueryError(f"The {field} value {value!r} is not a valid date.", field) from exc
    if field in NUMERIC_FIELDS:
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise QueryError(f"The {field} value {value!r} must be a number.", field) from exc
    if isinstance(value, str):
        return value.lower()
    return value


def _norm_actual(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field in DATE_FIELDS:
        try:
            return to_epoch(value)
        except TimeParseError:
            return None
    if field in NUMERIC_FIELDS:
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if isinstance(value, str):
        return value.lower()
    return value


def _like(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in pattern.split("%")]
    return re.compile("^" + ".*".join(parts) + "$", re.DOTALL)


def _cmp(op: str, actual: Any, expected: Any) -> bool:
    if op in ("+eq", "+is", "is"):
        if expected is None:
            return actual is None
        if isinstance(expected, str) and "%" in expected:
            return isinstance(actual, str) and bool(_like(expected).match(actual))
        return actual == expected
    if op == "+ne":
        return actual != expected
    if op == "+contains":
        return isinstance(actual, str) and str(expected) in actual
    if op == "+ncontains":
        return not (isinstance(actual, str) and str(expected) in actual)
    if op == "+like":
        return isinstance(actual, str) and bool(_like(str(expected)).match(actual))
    if actual is None or expected is None:
        return False
    try:
        if op == "+gt":
            return bool(actual > expected)
        if op == "+gte":
            return bool(actual >= expected)
        if op == "+lt":
            return bool(actual < expected)
        if op == "+lte":
            return bool(actual <= expected)
    except TypeError:
        return False
    raise QueryError(f"Unknown operator {op}.")


def _field_predicate(field: str, spec: Any) -> Predicate:
    field = canonical_field(field)
    if isinstance(spec, Mapping):
        if not spec:
            raise QueryError(f"Empty condition for {field}.", field)
        checks: list[tuple[str, Any]] = []
        for op, raw in spec.items():
            if op not in _OPS:
                raise QueryError(f"Unknown operator {op} on {field}.", field)
            if op in ("+in", "+nin"):
                if not isinstance(raw, list):
                    raise QueryError(f"{op} on {field} needs a list.", field)
                checks.append((op, [_norm_scalar(field, v) for v in raw]))
            else:
                checks.append((op, _norm_scalar(field, raw)))
        return _make_ops(field, checks)
    if isinstance(spec, list):
        values = [_norm_scalar(field, v) for v in spec]
        return _make_ops(field, [("+in", values)])
    return _make_ops(field, [("+eq", _norm_scalar(field, spec))])


def _make_ops(field: str, checks: list[tuple[str, Any]]) -> Predicate:
    def one(actual: Any) -> bool:
        for op, expected in checks:
            if op == "+in":
                if not any(_cmp("+eq", actual, e) for e in expected):
                    return False
            elif op == "+nin":
                if any(_cmp("+eq", actual, e) for e in expected):
                    return False
            elif not _cmp(op, actual, expected):
                return False
        return True

    negative = all(op in ("+ne", "+ncontains", "+nin") for op, _ in checks)

    def pred(get: Getter) -> bool:
        raw = get(field)
        if isinstance(raw, list):
            # list-valued fields (source names, tags...): "any element matches", and for
            # negative operators "no element violates"
            vals = [_norm_actual(field, v) for v in raw]
            if negative:
                return all(one(v) for v in vals)
            return any(one(v) for v in vals)
        return one(_norm_actual(field, raw))

    return pred


def compile_expr(expr: Any, where: str = "filters") -> Predicate:
    """Compile an expression into a predicate over a field getter.

    :param expr: the ``criteria`` or ``filters`` value (dict; ``None``/``{}``/``[]`` match all).
    :param where: name used in error messages (``criteria`` or ``filters``).
    :return: ``pred(get) -> bool`` where ``get(field)`` returns the record's value.
    :raises QueryError: on an unknown operator or a malformed expression.
    """
    if expr is None or expr == {} or expr == []:
        return lambda get: True
    if isinstance(expr, list):
        # a bare list is read as an AND of its items (what some clients send for filters)
        preds = [compile_expr(e, where) for e in expr]
        return lambda get: all(p(get) for p in preds)
    if not isinstance(expr, Mapping):
        raise QueryError(f"The {where} must be an object.", where)
    parts: list[Predicate] = []
    for key, val in expr.items():
        if key in ("+and", "+or"):
            if not isinstance(val, list):
                raise QueryError(f"{key} needs a list of conditions.", where)
            subs = [compile_expr(v, where) for v in val]
            if key == "+and":
                parts.append(lambda get, subs=subs: all(p(get) for p in subs))
            else:
                parts.append(lambda get, subs=subs: any(p(get) for p in subs) if subs else True)
        elif key == "+not":
            sub = compile_expr(val, where)
            parts.append(lambda get, sub=sub: not sub(get))
        elif key.startswith("+"):
            raise QueryError(f"Unknown operator {key}.", where)
        else:
            parts.append(_field_predicate(key, val))
    if len(parts) == 1:
        return parts[0]
    return lambda get: all(p(get) for p in parts)


def updated_at_bounds(expr: Any) -> tuple[int | None, int | None]:
    """A conservative ``[lo, hi)`` epoch range on ``updated_at`` implied by an expression.

    Only conjunctions are followed (``+or``/``+not`` give no bound), so every matching record
    lies inside the range; the range only narrows the scan, the predicate still decides.

    :return: ``(lo, hi)``; either may be None (unbounded). ``hi`` is exclusive.
    """
    lo: int | None = None
    hi: int | None = None

    def tighten(new_lo: int | None, new_hi: int | None) -> None:
        nonlocal lo, hi
        if new_lo is not None and (lo is None or new_lo > lo):
            lo = new_lo
        if new_hi is not None and (hi is None or new_hi < hi):
            hi = new_hi

    def walk(e: Any) -> None:
        if isinstance(e, list):
            for item in e:
                walk(item)
            return
        if not isinstance(e, Mapping):
            return
        for key, val in e.items():
            if key == "+and" and isinstance(val, list):
                for item in val:
                    walk(item)
            elif canonical_field(key) == "updated_at":
                try:
                    if isinstance(val, Mapping):
                        for op, raw in val.items():
                            t = to_epoch(raw)
                            if op == "+gte":
                                tighten(t, None)
                            elif op == "+gt":
                                tighten(t + 1, None)
                            elif op == "+lt":
                                tighten(None, t)
                            elif op == "+lte":
                                tighten(None, t + 1)
                            elif op in ("+eq", "+is", "is"):
                                tighten(t, t + 1)
                    elif val is not None and not isinstance(val, list):
                        t = to_epoch(val)
                        tighten(t, t + 1)
                except TimeParseError:
                    continue

    walk(expr)
    return lo, hi


def parse_sort(sort: str | None, allowed: frozenset[str] | None = None) -> list[tuple[str, bool]]:
    """Parse ``sort=updated_at`` / ``-id`` / ``-created_at,id`` into ``[(field, descending)]``.

    :param sort: the raw parameter (None or empty → no explicit sort).
    :param allowed: when given, fields outside this set raise :class:`QueryError`.
    :return: the list of sort keys, in priority order.
    """
    if not sort:
        return []
    keys: list[tuple[str, bool]] = []
    for part in str(sort).split(","):
        part = part.strip()
        if not part:
            continue
        desc = part.startswith("-")
        name = part.lstrip("+-")
        if name == "created":
            name = "created_at"
        if allowed is not None and name not in allowed:
            raise QueryError(f"The sort field {name} is not sortable.", "sort")
        keys.append((name, desc))
    return keys
