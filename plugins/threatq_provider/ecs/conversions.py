"""Copy one ThreatQ object with Elastic's conversions (``convert``/``date`` processors) and the
final clean-up (empty values dropped), in one pass.

Each kind of ThreatQ object (the indicator itself, a source, an attribute…) has a key → kind table
(:class:`ObjectKinds`): a key is a date, a long, a string id, a nested object its section converts,
or anything else (copied, empties dropped, nested containers pruned). A value that does not convert
is removed and the reason appended to ``errors``; the document is kept.

Why compiled: this copy is the hot loop of the transform (~75 keys per indicator). ThreatQ returns
every object of a kind with the same keys in the same order, so for each key sequence seen (its
*shape*) we generate, once, a straight-line function that handles exactly those keys, each with the
snippet of its kind (:data:`_SNIPPETS`); :func:`ObjectKinds.source` shows the code. Against the
generic loop (:func:`copy_generic`, kept as the reference and the fallback for unusual objects) it
saves the per-key kind lookup and branch chain. Output, key order and error order are the generic
loop's, which ``tests/unit/ecs/test_conversions.py`` checks shape by shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from threatq_provider.ecs.dates import CACHE as _DATE_CACHE
from threatq_provider.ecs.dates import convert_uncached, to_ecs_date

__all__ = ["DATE", "LONG", "NESTED", "STR", "ObjectKinds", "copy_generic", "prune", "short", "to_long"]

#: Key kinds. Keys not in a table are copied (empties dropped, containers pruned).
DATE, STR, LONG, NESTED = 1, 2, 3, 4
_NUMBERS = frozenset({int, float, bool})
_SHORT = 80
#: Shapes compiled per kind of object; past this, unusual objects take the generic loop (bounded
#: memory whatever the input).
MAX_SHAPES = 64

CopyFunction = Callable[[dict[str, Any], str, list[str], int], dict[str, Any]]


def short(value: object) -> str:
    """A value for an error message, shortened (messages never carry a whole indicator)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _SHORT else f"{text[:_SHORT]}… ({len(text)} characters)"


def to_long(value: object) -> int | None:
    """Elastic's ``convert`` to long: an int, or a string of decimal digits (sign allowed)."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in ("-", "+") else text
        if digits.isdigit() and digits.isascii():
            return int(text)
    return None


def prune(value: Any) -> Any:
    """Drop ``None``, ``""``, ``{}`` and ``[]`` recursively (pipeline step 25). Returns ``None`` if empty."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v is None or v == "":
                continue
            if isinstance(v, (dict, list)):
                v = prune(v)
                if v is None:
                    continue
            out[k] = v
        return out or None
    if isinstance(value, list):
        items = []
        for v in value:
            if v is None or v == "":
                continue
            if isinstance(v, (dict, list)):
                v = prune(v)
                if v is None:
                    continue
            items.append(v)
        return items or None
    return value


def _where(where: str, index: int) -> str:
    return where if index < 0 else f"{where}.{index}"


def copy_generic(obj: dict[str, Any], kinds: dict[Any, int], where: str, errors: list[str], index: int = -1) -> dict[str, Any]:
    """One ThreatQ object, converted (dates, longs, string ids) and without empty values.

    The reference semantics of every compiled copy: one pass, branches ordered by frequency,
    error text built only on the error path.

    :param obj: the raw object (not modified).
    :param kinds: key → kind table.
    :param where: dotted location for error messages (``threatq.sources``).
    :param errors: receives one message per value removed.
    :param index: position in its list, or -1.
    :return: the converted copy.
    """
    out: dict[str, Any] = {}
    get_kind = kinds.get
    cache_get = _DATE_CACHE.get
    for key, value in obj.items():
        kind = get_kind(key)
        if kind == DATE:
            if type(value) is str:
                converted = cache_get(value)
                if converted is None:
                    if not value:
                        continue
                    converted = to_ecs_date(value)
                    if converted is None:
                        errors.append(f"{_where(where, index)}.{key}: unparsable date {short(value)}")
                        continue
                out[key] = converted
            elif value is not None:
                errors.append(f"{_where(where, index)}.{key}: unparsable date {short(value)}")
        elif kind == STR:
            kind_of_value = type(value)
            if kind_of_value is int or kind_of_value is float:
                out[key] = str(value)
            elif value or kind_of_value is bool:
                out[key] = value
        elif kind is None:
            if value:
                kind_of_value = type(value)
                if kind_of_value is dict or kind_of_value is list:
                    value = prune(value)
                    if value is None:
                        continue
                out[key] = value
            elif type(value) in _NUMBERS:
                out[key] = value
        elif kind == LONG:
            if type(value) is int:
                out[key] = value
            elif value is not None and value != "":
                converted_long = to_long(value)
                if converted_long is None:
                    errors.append(f"{_where(where, index)}.{key}: not an integer {short(value)}")
                else:
                    out[key] = converted_long
        elif value or type(value) in _NUMBERS:
            out[key] = value  # NESTED: converted by its section
    return out


def _date_error(errors: list[str], where: str, index: int, key: str, value: object) -> None:
    errors.append(f"{_where(where, index)}.{key}: unparsable date {short(value)}")


def _long_slow(out: dict[str, Any], key: str, value: object, errors: list[str], where: str, index: int) -> None:
    """A long that is not an int already (``"7"`` converts; anything else is removed and explained)."""
    if value is not None and value != "":
        converted = to_long(value)
        if converted is None:
            errors.append(f"{_where(where, index)}.{key}: not an integer {short(value)}")
        else:
            out[key] = converted


# The body of each key's step in a compiled copy, by kind; ``KEY`` is the key (a literal). Each is
# the matching branch of copy_generic, with the common case first (strings, for copied keys) and
# the rare ones in a helper.
_SNIPPETS: dict[int | None, str] = {
    DATE: """\
    v = obj[KEY]
    if type(v) is str:
        if (c := cache_get(v) or convert_uncached(v)) is not None:
            out[KEY] = c
        elif v:
            date_error(errors, where, index, KEY, v)
    elif v is not None:
        date_error(errors, where, index, KEY, v)
""",
    STR: """\
    v = obj[KEY]
    t = type(v)
    if t is int or t is float:
        out[KEY] = str(v)
    elif v or t is bool:
        out[KEY] = v
""",
    LONG: """\
    v = obj[KEY]
    if type(v) is int:
        out[KEY] = v
    else:
        long_slow(out, KEY, v, errors, where, index)
""",
    None: """\
    v = obj[KEY]
    t = type(v)
    if t is str:
        if v:
            out[KEY] = v
    elif v:
        if t is dict or t is list:
            v = prune(v)
        if v is not None:
            out[KEY] = v
    elif t in NUMBERS:
        out[KEY] = v
""",
    NESTED: """\
    v = obj[KEY]
    if v or type(v) in NUMBERS:
        out[KEY] = v
""",
}
_GLOBALS = {
    "cache_get": _DATE_CACHE.get,
    "convert_uncached": convert_uncached,  # a converted date is never "", so `or` means "missed"
    "date_error": _date_error,
    "long_slow": _long_slow,
    "prune": prune,
    "NUMBERS": _NUMBERS,
}


class ObjectKinds:
    """The key → kind table of one kind of ThreatQ object, and its compiled copies by shape.

    :param name: shown in the generated code's filename and first comment (``<ecs copy source>``).
    :param kinds: key → :data:`DATE` / :data:`STR` / :data:`LONG` / :data:`NESTED`.
    """

    def __init__(self, name: str, kinds: dict[str, int]) -> None:
        self.name = name
        self.kinds = kinds
        self._plans: dict[tuple[Any, ...], CopyFunction] = {}

    def copy(self, obj: dict[str, Any], where: str, errors: list[str], index: int = -1) -> dict[str, Any]:
        """Same result as ``copy_generic(obj, self.kinds, where, errors, index)``, faster.

        :param obj: the raw object (not modified).
        :param where: dotted location for error messages.
        :param errors: receives one message per value removed.
        :param index: position in its list, or -1.
        :return: the converted copy, keys in the input's order.
        """
        if type(obj) is not dict:
            return copy_generic(obj, self.kinds, where, errors, index)
        shape = tuple(obj)
        plan = self._plans.get(shape)
        if plan is None:
            plan = self._compile(shape)
            if plan is None:
                return copy_generic(obj, self.kinds, where, errors, index)
        return plan(obj, where, errors, index)

    def copy_list(self, items: object, where: str, errors: list[str]) -> list[Any] | None:
        """A list of these objects, each copied; empty entries dropped.

        :param items: the raw list (anything else gives ``None``).
        :param where: dotted location of the list for error messages (items add ``.<index>``).
        :param errors: receives one message per value removed.
        :return: the converted list, or ``None`` when nothing is left.
        """
        if type(items) is not list or not items:
            return None
        out: list[Any] = []
        plans_get = self._plans.get  # the shape look-up of copy(), inlined: ~2 objects per list
        for i, item in enumerate(items):
            if type(item) is dict:
                plan = plans_get(tuple(item))
                converted = plan(item, where, errors, i) if plan is not None else self.copy(item, where, errors, i)
                if converted:
                    out.append(converted)
            elif item is not None and item != "":
                out.append(item)
        return out or None

    def _compile(self, shape: tuple[Any, ...]) -> CopyFunction | None:
        if len(self._plans) >= MAX_SHAPES or not all(type(key) is str for key in shape):
            return None
        namespace: dict[str, Any] = dict(_GLOBALS)
        exec(compile(self.source(shape), f"<ecs copy {self.name}>", "exec"), namespace)  # noqa: S102 - source built from our own snippets; keys enter only as repr() literals
        plan: CopyFunction = namespace["copy"]
        self._plans[shape] = plan
        return plan

    def source(self, shape: tuple[str, ...]) -> str:
        """Python source of the compiled copy for objects with exactly these keys, in this order.

        :param shape: the object's keys.
        :return: source of ``def copy(obj, where, errors, index)``.
        """
        lines = ["def copy(obj, where, errors, index):", f"    # {self.name}: {len(shape)} keys", "    out = {}"]
        for key in shape:
            kind = self.kinds.get(key)
            lines.append(_SNIPPETS[kind].replace("KEY", repr(key)).rstrip("\n"))
        lines.append("    return out")
        return "\n".join(lines) + "\n"
