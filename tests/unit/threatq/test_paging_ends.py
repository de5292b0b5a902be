"""Paging ends on the server's own signals, never on a short page alone (issue #18, item 1).

A server or proxy that serves fewer rows than ``limit`` asks for (a silent cap, or a page size
above the server's maximum) used to end the window after its first page: a green run with 300 of
20,000 indicators. These fakes serve a window of rows through a cap and check that every row
arrives once, that the end costs no extra request where the server's ``total`` already says it,
and that a server ending short of its own ``total`` raises a typed error naming both counts.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from threatq_provider.threatq.client import PasswordGrant, RetryPolicy, ThreatQClient
from threatq_provider.threatq.errors import ThreatQIncompleteError, ThreatQResponseError

BASE = "https://tq.example.test"
TOKEN = {"access_token": "acc-1", "token_type": "Bearer", "expires_in": 3600}
QUERY = f"{BASE}/api/indicators/query"
TS = "2026-01-01 00:00:00"


def make_client() -> ThreatQClient:
    return ThreatQClient(BASE, auth=PasswordGrant("cid", "analyst@example.com", "pw"),
                         retry=RetryPolicy(total=0, backoff_factor=0, jitter=0))


@pytest.fixture
def tq(requests_mock):
    requests_mock.post(f"{BASE}/api/token", json=TOKEN)
    return requests_mock


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "updated_at": TS, "value": f"v{i}"} for i in range(1, n + 1)]


def _after_id(body: dict[str, Any]) -> int:
    """The id of a keyset filter's ``(updated_at = ts AND id > n)`` branch, 0 on the first page."""
    clauses = body["filters"]["+and"]
    if len(clauses) < 3:
        return 0
    branch = clauses[-1]["+and"][1]["+or"][1]["+and"][1]
    return int(branch["id"]["+gt"])


class CappedServer:
    """A window of ``n`` rows served at most ``cap`` per page, whatever ``limit`` says.

    :param cursor: answer with ``nextCursorMark`` (cursor paging) or without (keyset paging,
        where ``total`` counts the rows the filter matches: those after the last one received).
    :param lose_after: stop serving rows after this many (a server that counts rows it never
        hands out); ``None`` serves them all.
    :param total: send ``total`` at all.
    """

    def __init__(self, n: int, cap: int, *, cursor: bool, lose_after: int | None = None, total: bool = True):
        self.rows = _rows(n)
        self.cap = cap
        self.cursor = cursor
        self.lose_after = lose_after
        self.total = total
        self.limits: list[int] = []

    def __call__(self, request, context) -> str:
        limit = int(request.qs["limit"][0])
        self.limits.append(limit)
        if self.cursor:
            mark = request.qs["cursormark"][0]
            start = 0 if mark == "*" else int(mark)
            matching = self.rows
        else:
            start = _after_id(json.loads(request.body))
            matching = self.rows[start:]
            start = 0
        end = start + min(limit, self.cap)
        if self.lose_after is not None:
            end = min(end, self.lose_after - (len(self.rows) - len(matching)))
        page = matching[start:max(start, end)]
        body: dict[str, Any] = {"data": page if page else {}}
        if self.total:
            body["total"] = len(matching)
        if self.cursor:
            body["nextCursorMark"] = str(start + len(page)) if page else f"end-{start}"
        return json.dumps(body)


@pytest.mark.parametrize("cursor", [True, False], ids=["cursor", "keyset"])
def test_a_silent_page_cap_still_pages_to_every_row(tq, caplog, cursor):
    server = CappedServer(20, cap=3, cursor=cursor)
    tq.post(QUERY, text=server)
    with caplog.at_level(logging.WARNING, logger="threatq_provider.threatq.client"):
        pages = list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=8))
    ids = [r["id"] for page in pages for r in page]
    assert ids == list(range(1, 21)), "rows lost or repeated behind a page cap"
    assert all(len(page) <= 3 for page in pages)
    warnings = [r.getMessage() for r in caplog.records if "caps pages" in r.getMessage()]
    assert len(warnings) == 1 and "served 3 rows for limit=8" in warnings[0]


def test_the_cap_is_seen_on_the_window_paging_of_events_too(tq):
    server = CappedServer(10, cap=4, cursor=False)
    tq.post(f"{BASE}/api/events/query", text=server)
    events = list(make_client().iter_events("2026-01-01", "2026-01-02", page_size=10))
    assert [e["id"] for e in events] == list(range(1, 11))


@pytest.mark.parametrize("cursor", [True, False], ids=["cursor", "keyset"])
def test_a_short_last_page_with_the_total_reached_costs_no_extra_request(tq, cursor):
    server = CappedServer(7, cap=100, cursor=cursor)
    tq.post(QUERY, text=server)
    pages = list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=5))
    assert [len(p) for p in pages] == [5, 2]
    assert len(server.limits) == 2


@pytest.mark.parametrize("cursor", [True, False], ids=["cursor", "keyset"])
def test_without_a_total_short_pages_go_on_until_the_empty_page(tq, cursor):
    server = CappedServer(7, cap=2, cursor=cursor, total=False)
    tq.post(QUERY, text=server)
    ids = [r["id"] for p in make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=5) for r in p]
    assert ids == list(range(1, 8))
    assert len(server.limits) == 5  # four pages of at most 2 rows, then the empty page


@pytest.mark.parametrize("cursor", [True, False], ids=["cursor", "keyset"])
def test_a_server_ending_short_of_its_total_is_a_typed_error_naming_both_counts(tq, cursor):
    server = CappedServer(20, cap=3, cursor=cursor, lose_after=9)
    tq.post(QUERY, text=server)
    received = []
    with pytest.raises(ThreatQIncompleteError) as err:
        for page in make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=8):
            received.extend(r["id"] for r in page)
    assert received == list(range(1, 10))
    assert (err.value.expected, err.value.received) == (20, 9)
    assert "paging ended after 9 rows but the server's total is 20" in str(err.value)
    assert "/api/indicators/query" in str(err.value) and "id 9" in str(err.value)
    assert isinstance(err.value, ThreatQResponseError)  # callers catching the family still do


def test_a_full_cursor_page_reaching_the_total_asks_once_more(tq):
    """Rows updated mid-run come back at the end of the sort and count once in ``total``: a full
    cursor page that reaches it cannot tell the end from such repeats, so it asks on."""
    server = CappedServer(6, cap=100, cursor=True)
    tq.post(QUERY, text=server)
    pages = list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=3))
    assert [len(p) for p in pages] == [3, 3]
    assert len(server.limits) == 3


class OffsetServer:
    """``GET /api/events/5/indicators``: ``n`` related rows, at most ``cap`` per page."""

    def __init__(self, n: int, cap: int, *, serve: int | None = None):
        self.n, self.cap, self.serve = n, cap, n if serve is None else serve
        self.calls = 0

    def __call__(self, request, context) -> str:
        self.calls += 1
        limit, offset = int(request.qs["limit"][0]), int(request.qs["offset"][0])
        end = min(offset + min(limit, self.cap), self.serve)
        rows = [{"id": i + 1} for i in range(offset, max(offset, end))]
        return json.dumps({"total": self.n, "data": rows, "limit": limit, "offset": offset})


def test_offset_paging_of_related_indicators_pages_through_a_cap(tq):
    server = OffsetServer(11, cap=4)
    tq.get(f"{BASE}/api/events/5/indicators", text=server)
    rows = list(make_client().iter_event_indicators(5, page_size=10))
    assert [r["id"] for r in rows] == list(range(1, 12))
    assert server.calls == 3  # 4 + 4 + 3: the total is reached, no extra request


def test_offset_paging_ending_short_of_the_total_is_a_typed_error(tq):
    server = OffsetServer(11, cap=4, serve=6)
    tq.get(f"{BASE}/api/events/5/indicators", text=server)
    with pytest.raises(ThreatQIncompleteError) as err:
        list(make_client().iter_event_indicators(5, page_size=10))
    assert (err.value.expected, err.value.received) == (11, 6)
    assert "/api/events/5/indicators" in str(err.value)


# -- pages nested too deeply to parse whole (issue #18, item 7) ----------------------------------

def _deep_row(ident: int, depth: int = 3_000) -> str:
    return (f'{{"id": {ident}, "updated_at": "{TS}", "attributes": [{{"value": '
            + "[" * depth + '"x"' + "]" * depth + "}]}")


def _page_text(rows: list[str], **envelope: Any) -> str:
    head = json.dumps(envelope)[1:-1]
    return "{" + head + (", " if head else "") + '"data": [' + ", ".join(rows) + "]}"


def test_a_deep_row_is_a_typed_error_naming_it_and_its_page_by_default(tq):
    tq.post(QUERY, text=_page_text(['{"id": 1, "updated_at": "%s"}' % TS, _deep_row(2)], total=2,
                                   nextCursorMark="m1"))
    with pytest.raises(ThreatQResponseError) as err:
        list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=5))
    assert "page cursorMark=*: row id 2 is nested too deeply to parse" in str(err.value)
    assert err.value.path == "/api/indicators/query" and err.value.status == 200


@pytest.mark.parametrize("cursor", [True, False], ids=["cursor", "keyset"])
def test_kept_unparsed_rows_come_back_in_place_and_paging_moves_past_them(tq, cursor):
    from threatq_provider.threatq.paging import UnparsedRow

    first = _page_text(['{"id": 1, "updated_at": "%s"}' % TS, _deep_row(2)], total=3,
                       **({"nextCursorMark": "m1"} if cursor else {}))
    second = _page_text(['{"id": 3, "updated_at": "%s"}' % TS], total=3 if cursor else 1,
                        **({"nextCursorMark": "m2"} if cursor else {}))
    tq.post(QUERY, [{"text": first}, {"text": second}])
    pages = list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=2, keep_unparsed=True))
    rows = [r for p in pages for r in p]
    assert [r["id"] for r in rows] == [1, 2, 3]
    bad = rows[1]
    assert isinstance(bad, UnparsedRow) and dict(bad) == {"id": 2, "updated_at": TS}
    assert bad.text == _deep_row(2) and not isinstance(rows[0], UnparsedRow)
    if not cursor:  # the keyset filter of the next page starts after the unparsed row
        after = json.loads(tq.request_history[-1].body)["filters"]["+and"][-1]
        assert after["+and"][1]["+or"][1]["+and"][1] == {"id": {"+gt": 2}}


def test_collection_pages_keep_the_envelope_cursor_of_a_deep_page(tq):
    url = f"{BASE}/api/indicators/query/hash/abc"
    tq.get(url, [{"text": _page_text([_deep_row(7), '{"id": 8}'], total=2, nextCursorMark="c1")},
                 {"json": {"total": 2, "data": {}, "nextCursorMark": "c2"}}])
    pages = list(make_client().iter_collection_pages("abc", keep_unparsed=True))
    assert [(len(p.indicators), p.next_cursor) for p in pages] == [(2, "c1")]
    assert pages[0].indicators[0].text.startswith('{"id": 7')


@pytest.mark.parametrize("body", [
    '{"total": 1, "data": {"deep": ' + "[" * 3000 + "]" * 3000 + "}}",  # no rows to tell apart
    '{"total": 1, "meta": ' + "[" * 3000 + "]" * 3000 + ', "data": [{"id": 1}]}',  # the envelope is deep
])
def test_a_page_too_deep_to_split_is_a_typed_error_naming_the_page(tq, body):
    tq.post(QUERY, text=body)
    with pytest.raises(ThreatQResponseError) as err:
        list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", keep_unparsed=True))
    assert "page cursorMark=*: body nested too deeply to parse, and its rows cannot be told apart" in str(err.value)


def test_deep_related_rows_and_objects_are_typed_errors(tq):
    tq.get(f"{BASE}/api/events/5/indicators", text=_page_text([_deep_row(9)], total=1))
    tq.get(f"{BASE}/api/indicators/9", text='{"data": ' + _deep_row(9) + "}")
    client = make_client()
    with pytest.raises(ThreatQResponseError, match="page offset=0: row id 9 is nested too deeply to parse"):
        list(client.iter_event_indicators(5))
    with pytest.raises(ThreatQResponseError, match="body nested too deeply to parse"):
        client.get_indicator(9)
