"""A small KQL → Elasticsearch query DSL translator, for exactly the KQL the five prebuilt
threat-intel indicator-match rules use (``tests/data/detection/elastic_threat_intel_rules.json``).

Supported, with the query DSL Kibana's KQL compiler (``@kbn/es-query``) produces for it:

==============================  ================================================================
KQL                             query DSL
==============================  ================================================================
``a and b``                     ``{"bool": {"filter": [A, B]}}``
``a or b``                      ``{"bool": {"should": [A, B], "minimum_should_match": 1}}``
``not a``                       ``{"bool": {"must_not": A}}``
``( … )``                       grouping
``field:*``                     ``{"exists": {"field": field}}`` (a field name with ``*`` is a
                                pattern: Kibana expands it over the data view's fields into one
                                ``exists`` each; Elasticsearch's ``exists`` expands the same
                                pattern over the mapped fields)
``field:value``                 ``{"match": {field: value}}``
``field:"value"``               ``{"match_phrase": {field: value}}``
``field:val*``                  ``{"query_string": {"fields": [field], "query": "val*"}}``
``field:(a or b)``              ``{"bool": {"should": [is(a), is(b)], "minimum_should_match": 1}}``
``field >= "x"`` (> < <=)       ``{"range": {field: {"gte": "x"}}}``
==============================  ================================================================

Anything else (nested ``{}`` queries, escapes, ``and``/``not`` inside a value list…) raises
:class:`KqlError` naming the position: a form the translator does not know must not be guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["KqlError", "to_dsl"]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lpar>\() | (?P<rpar>\)) | (?P<colon>:) |
        (?P<range>>=|<=|>|<) |
        "(?P<quoted>[^"\\]*)" |
        (?P<word>[^\s():<>"\\{}]+)
    )""",
    re.VERBOSE,
)
_RANGE_OPS = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}
_KEYWORDS = {"and", "or", "not"}


class KqlError(ValueError):
    """A KQL text outside the supported subset, or malformed."""


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise KqlError(f"unsupported KQL at position {pos}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup
        assert kind is not None
        value = m.group(kind)
        start = m.start(kind) - (1 if kind == "quoted" else 0)
        if kind == "word" and value.lower() in _KEYWORDS:
            kind = value.lower()
        out.append(_Tok(kind, value, start))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str) -> _Tok:
        tok = self.peek()
        if tok is None or tok.kind != kind:
            where = "end of query" if tok is None else f"{tok.text!r} at position {tok.pos}"
            raise KqlError(f"expected {kind} but found {where} in {self.text!r}")
        self.i += 1
        return tok

    def parse(self) -> dict[str, Any]:
        query = self.or_expr()
        tok = self.peek()
        if tok is not None:
            raise KqlError(f"unexpected {tok.text!r} at position {tok.pos} in {self.text!r}")
        return query

    def or_expr(self) -> dict[str, Any]:
        parts = [self.and_expr()]
        while (tok := self.peek()) is not None and tok.kind == "or":
            self.i += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else {"bool": {"should": parts, "minimum_should_match": 1}}

    def and_expr(self) -> dict[str, Any]:
        parts = [self.not_expr()]
        while (tok := self.peek()) is not None and tok.kind == "and":
            self.i += 1
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else {"bool": {"filter": parts}}

    def not_expr(self) -> dict[str, Any]:
        tok = self.peek()
        if tok is not None and tok.kind == "not":
            self.i += 1
            return {"bool": {"must_not": self.not_expr()}}
        if tok is not None and tok.kind == "lpar":
            self.i += 1
            inner = self.or_expr()
            self.take("rpar")
            return inner
        return self.field_expr()

    def field_expr(self) -> dict[str, Any]:
        field = self.take("word").text
        tok = self.peek()
        if tok is not None and tok.kind == "range":
            self.i += 1
            value = self.value_token()
            return {"range": {field: {_RANGE_OPS[tok.text]: value.text}}}
        self.take("colon")
        tok = self.peek()
        if tok is not None and tok.kind == "lpar":
            self.i += 1
            values = [self.is_query(field, self.value_token())]
            while (nxt := self.peek()) is not None and nxt.kind == "or":
                self.i += 1
                values.append(self.is_query(field, self.value_token()))
            self.take("rpar")
            return values[0] if len(values) == 1 else {"bool": {"should": values, "minimum_should_match": 1}}
        return self.is_query(field, self.value_token())

    def value_token(self) -> _Tok:
        tok = self.peek()
        if tok is None or tok.kind not in ("word", "quoted"):
            where = "end of query" if tok is None else f"{tok.text!r} at position {tok.pos}"
            raise KqlError(f"expected a value but found {where} in {self.text!r}")
        self.i += 1
        return tok

    @staticmethod
    def is_query(field: str, value: _Tok) -> dict[str, Any]:
        if value.kind == "quoted":
            return {"match_phrase": {field: value.text}}
        if value.text == "*":
            return {"exists": {"field": field}}
        if "*" in field:
            raise KqlError(f"a field pattern ({field!r}) with a value other than * is not supported")
        if "*" in value.text:
            return {"query_string": {"fields": [field], "query": value.text}}
        return {"match": {field: value.text}}


def to_dsl(kql: str) -> dict[str, Any]:
    """Translate one KQL query of the supported subset.

    :param kql: the query text (line breaks are whitespace).
    :return: the query DSL object.
    :raises KqlError: a form outside the subset, or malformed text.
    """
    if not kql.strip():
        raise KqlError("empty KQL query")
    return _Parser(kql).parse()
