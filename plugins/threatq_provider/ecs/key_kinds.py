"""Key kinds of ThreatQ objects, and the copy that converts each key by its kind.

Each kind of ThreatQ object (the indicator itself, a source, an attribute…) has a key → kind table
(:class:`ObjectKinds`): a key is a :data:`DATE`, a :data:`LONG`, a string id (:data:`STR`), a
:data:`NESTED` object its own section of the transform converts, or anything else (copied, empty
values dropped, nested containers pruned). The copy applies Elastic's ``convert``/``date``
processors and its final clean-up in one pass: a value that does not convert is removed and the
reason appended to ``errors``; the document is kept.

The tables are defined once, in ``transform.py``; the native engine receives them as data
(``native.tables_json``) and applies the same rules (``native/src/lib.rs``, ``ObjectKinds``).
"""

from __future__ import annotations

from typing import Any

from threatq_provider.ecs.dates import to_ecs_date

__all__ = ["DATE", "LONG", "NESTED", "STR", "ObjectKinds", "prune", "short", "to_long"]

#: Key kinds. Keys not in a table are copied (empties dropped, containers pruned).
DATE, STR, LONG, NESTED = 1, 2, 3, 4
_NUMBERS = frozenset({int, float, bool})
_SHORT = 80


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
    """Drop ``None``, ``""``, ``{}`` and ``[]`` recursively (pipeline step 25). Returns ``None`` if empty.

    One stack frame per nesting level (no helper call in between): values nested up to
    ``_jsonscan.MAX_DEPTH`` levels are mapped, not lost to a ``RecursionError``.
    """
    if isinstance(value, dict):
        entries: Any = value.items()
    elif isinstance(value, list):
        entries = enumerate(value)
    else:
        return value
    kept = []
    for key, item in entries:
        if item is None or item == "":
            continue
        if isinstance(item, (dict, list)):
            item = prune(item)
            if item is None:
                continue
        kept.append((key, item))
    if not kept:
        return None
    return dict(kept) if isinstance(value, dict) else [item for _, item in kept]


def _where(where: str, index: int) -> str:
    return where if index < 0 else f"{where}.{index}"


class ObjectKinds:
    """The key → kind table of one kind of ThreatQ object, and its converting copy.

    :param name: the kind of object (``indicator``, ``source``…), as the native engine names it.
    :param kinds: key → :data:`DATE` / :data:`STR` / :data:`LONG` / :data:`NESTED`.
    """

    def __init__(self, name: str, kinds: dict[str, int]) -> None:
        self.name = name
        self.kinds = kinds

    def copy(self, obj: dict[str, Any], where: str, errors: list[str], index: int = -1) -> dict[str, Any]:
        """One ThreatQ object, converted (dates, longs, string ids) and without empty values.

        One pass, branches ordered by how often each kind occurs, error text built only on the
        error path: this is the transform's hot loop (~75 keys per indicator).

        :param obj: the raw object (not modified).
        :param where: dotted location for error messages (``threatq.sources``).
        :param errors: receives one message per value removed, in key order.
        :param index: position in its list, or -1.
        :return: the converted copy, keys in the input's order.
        """
        out: dict[str, Any] = {}
        get_kind = self.kinds.get
        for key, value in obj.items():
            kind = get_kind(key)
            if kind is None:
                if value:
                    kind_of_value = type(value)
                    if kind_of_value is dict or kind_of_value is list:
                        value = prune(value)
                        if value is None:
                            continue
                    out[key] = value
                elif type(value) in _NUMBERS:
                    out[key] = value
            elif kind == DATE:
                if type(value) is str:
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
        for i, item in enumerate(items):
            if type(item) is dict:
                converted = self.copy(item, where, errors, i)
                if converted:
                    out.append(converted)
            elif item is not None and item != "":
                out.append(item)
        return out or None
