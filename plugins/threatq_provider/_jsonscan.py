"""JSON text scanning without recursion: nesting depth, top-level scalars, array members.

Python's JSON parsers (``json``, ``msgspec``) recurse once per nesting level and raise
``RecursionError`` somewhere near 1,000 levels, at a depth that also varies with how deep the
caller's own stack is. ThreatQ records are about five levels deep, so anything near that limit
is a broken record; these helpers let the poll and the transform turn it into a reject with a
reason (and the indicator id) at one fixed depth, :data:`MAX_DEPTH`, instead of crashing, and
let the client pick the rows out of a page too deep to parse whole.

Pure and dependency-free (no Airflow): used by ``threatq/`` (paging), ``ecs/`` (the transform)
and the poll operator, so they apply the same limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_DEPTH", "SplitPage", "depth_exceeds", "split_member", "top_level_scalars"]

#: Deepest nesting accepted (objects and arrays). ThreatQ records are ~5 levels deep; Python's
#: parsers give up near 1,000 minus the caller's stack, so 512 leaves room on both sides.
MAX_DEPTH = 512

# A JSON token: a string (escapes included), one structural character, or a bare literal
# (number, true, false, null). Whitespace between tokens is skipped by finditer.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+', re.DOTALL)
_OPEN = frozenset("[{")
_CLOSE = frozenset("]}")


def _tokens(text: str) -> Iterator[re.Match[str]]:
    return _TOKEN.finditer(text)


def depth_exceeds(text: str | bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON text nests objects/arrays deeper than ``limit`` levels.

    Cheap for ordinary records: the number of ``[`` and ``{`` bounds the depth, and only a text
    with more of them than ``limit`` is scanned token by token (brackets inside strings do not
    count there).

    :param text: one JSON value (a staged line, a row).
    :param limit: deepest nesting allowed.
    :return: ``True`` when deeper than ``limit``.
    """
    if isinstance(text, bytes):
        if text.count(b"[") + text.count(b"{") <= limit:
            return False
        text = text.decode("utf-8", "replace")
    elif text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _tokens(text):
        token = match.group()
        if token in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif token in _CLOSE:
            depth -= 1
    return False


def _scalar(token: str) -> Any:
    try:
        return json.loads(token)
    except ValueError:
        return None


def top_level_scalars(text: str, keys: tuple[str, ...] = ("id", "updated_at")) -> dict[str, Any]:
    """Scalar members of a JSON object text's top level (e.g. the ``id`` of a record too deep to
    parse), read without parsing the rest.

    :param text: a JSON object.
    :param keys: the members wanted.
    :return: ``{key: value}`` for each of ``keys`` found with a string, number, boolean or null value.
    """
    found: dict[str, Any] = {}
    depth = 0
    key: str | None = None
    expect_value = False
    for match in _tokens(text):
        token = match.group()
        if token in _OPEN:
            depth += 1
            expect_value = False
        elif token in _CLOSE:
            depth -= 1
            if depth <= 0:
                break
        elif depth != 1 or token == ",":
            expect_value = False
        elif token == ":":
            expect_value = key is not None
        elif expect_value:
            if key in keys and key not in found:
                found[key] = _scalar(token)
            expect_value, key = False, None
        elif token.startswith('"'):
            key = _scalar(token)
    return found


@dataclass(frozen=True)
class SplitPage:
    """A page split without parsing it whole.

    :ivar envelope: the top-level object's text with the member's array replaced by ``[]``.
    :ivar members: the text of each element of the array, in order.
    """

    envelope: str
    members: list[str]


def split_member(text: str, member: str = "data") -> SplitPage | None:
    """Split a JSON object text into its envelope and the elements of one array member.

    :param text: a JSON object, e.g. a list page ``{"total": n, "data": [...], ...}``.
    :param member: the array to split out.
    :return: the split, or ``None`` when ``text`` is not an object holding ``member`` as an array
        (the caller then cannot tell rows apart).
    """
    depth = 0
    key: str | None = None
    after_colon = False
    start = end = -1  # the member's '[' and ']'
    members: list[str] = []
    element_start = -1
    for match in _tokens(text):
        token = match.group()
        if depth == 0 and token != "{" and start < 0:
            return None
        if start >= 0 and end < 0 and depth >= 2:
            # inside the member's array: element boundaries at depth 2
            if depth == 2 and token in (",", "]"):
                if element_start >= 0:
                    members.append(text[element_start:match.start()])
                element_start = -1
                if token == "]":
                    end = match.start()
                    depth -= 1
                continue
            if depth == 2 and element_start < 0:
                element_start = match.start()
        if token in _OPEN:
            if depth == 1 and after_colon and key == member:
                if token != "[":
                    return None
                start = match.start()
            depth += 1
            after_colon = False
        elif token in _CLOSE:
            depth -= 1
        elif depth == 1:
            if token == ":":
                after_colon = True
            elif token == ",":
                after_colon, key = False, None
            elif not after_colon and token.startswith('"'):
                key = _scalar(token)
            else:
                after_colon = False
    if start < 0 or end < 0:
        return None
    return SplitPage(envelope=text[:start] + "[]" + text[end + 1:], members=[m.strip() for m in members])
