"""ThreatQClient against requests_mock: request shapes, token handling, retry rules, paging."""

from __future__ import annotations

import base64
import json
import logging

import pytest
import requests

from threatq_provider.threatq.client import (
    ClientCredentials,
    PasswordGrant,
    RetryPolicy,
    ThreatQClient,
)
from threatq_provider.threatq.errors import (
    ThreatQAuthError,
    ThreatQBadRequest,
    ThreatQConnectionError,
    ThreatQNotFound,
    ThreatQRateLimited,
    ThreatQResponseError,
    ThreatQServerError,
    ThreatQValidationError,
)

BASE = "https://tq.example.test"
CANARY = "canary-S3CRET-9f8e7d"
TOKEN = {"access_token": "acc-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "ref-1"}


def make_client(auth=None, **kwargs) -> ThreatQClient:
    client = ThreatQClient(
        BASE,
        auth=auth or PasswordGrant("cid", "analyst@example.com", CANARY),
        retry=kwargs.pop("retry", RetryPolicy(total=3, backoff_factor=0, jitter=0)),
        **kwargs,
    )
    client.sleeps = []
    client._sleep = client.sleeps.append
    return client


@pytest.fixture
def tq(requests_mock):
    requests_mock.post(f"{BASE}/api/token", json=TOKEN)
    return requests_mock


def test_password_grant_sends_json_body_with_email_password_grant_type_and_client_id(tq):
    tq.get(f"{BASE}/api/indicators/7", json={"data": {"id": 7}})
    assert make_client().get_indicator(7) == {"data": {"id": 7}}
    token_call = tq.request_history[0]
    assert token_call.json() == {
        "email": "analyst@example.com", "password": CANARY, "grant_type": "password", "client_id": "cid",
    }
    assert tq.request_history[1].headers["Authorization"] == "Bearer acc-1"


def test_client_credentials_send_basic_header_and_grant_type_in_query(tq):
    tq.get(f"{BASE}/api/indicators/7", json={"data": {"id": 7}})
    make_client(auth=ClientCredentials("cid", CANARY)).get_indicator(7)
    token_call = tq.request_history[0]
    assert token_call.qs == {"grant_type": ["client_credentials"]}
    assert token_call.headers["Authorization"] == "Basic " + base64.b64encode(f"cid:{CANARY}".encode()).decode()


def test_token_is_cached_across_calls(tq):
    tq.get(f"{BASE}/api/indicators/7", json={"data": {"id": 7}})
    client = make_client()
    client.get_indicator(7)
    client.get_indicator(7)
    assert [r.path for r in tq.request_history].count("/api/token") == 1


def test_token_renewed_with_refresh_grant_before_expiry(tq):
    tq.post(f"{BASE}/api/token", [
        {"json": {**TOKEN, "expires_in": 0}},
        {"json": {**TOKEN, "access_token": "acc-2", "refresh_token": "ref-2"}},
    ])
    tq.get(f"{BASE}/api/indicators/7", json={"data": {"id": 7}})
    client = make_client()
    client.get_indicator(7)
    client.get_indicator(7)
    refresh = tq.request_history[2]
    assert refresh.qs["grant_type"] == ["refresh_token"] and refresh.qs["refresh_token"] == ["ref-1"]
    assert tq.request_history[3].headers["Authorization"] == "Bearer acc-2"


def test_401_reauthenticates_once_then_succeeds(tq):
    tq.get(f"{BASE}/api/indicators/7", [{"status_code": 401, "json": {"message": "Unauthenticated."}},
                                        {"json": {"data": {"id": 7}}}])
    assert make_client().get_indicator(7)["data"]["id"] == 7


def test_second_401_raises_auth_error(tq):
    tq.get(f"{BASE}/api/indicators/7", status_code=401, json={"message": "Unauthenticated."})
    with pytest.raises(ThreatQAuthError) as err:
        make_client().get_indicator(7)
    assert err.value.status == 401
    assert len([r for r in tq.request_history if r.path == "/api/indicators/7"]) == 2


def test_bad_credentials_raise_auth_error_without_the_password(requests_mock):
    requests_mock.post(f"{BASE}/api/token", status_code=400,
                       json={"error": "invalid_grant", "message": "The user credentials were incorrect.",
                             "password": CANARY})
    with pytest.raises(ThreatQAuthError) as err:
        make_client().get_indicator(1)
    assert CANARY not in str(err.value)
    assert "analyst@example.com" in str(err.value)


def test_token_response_without_access_token_is_an_auth_error(requests_mock):
    requests_mock.post(f"{BASE}/api/token", json={"token_type": "bearer"})
    with pytest.raises(ThreatQAuthError, match="no access_token"):
        make_client().get_indicator(1)


def test_429_retried_honouring_retry_after(tq):
    tq.get(f"{BASE}/api/indicators/7", [{"status_code": 429, "headers": {"Retry-After": "7"}},
                                        {"json": {"data": {"id": 7}}}])
    client = make_client()
    assert client.get_indicator(7)["data"]["id"] == 7
    assert client.sleeps == [7.0]


def test_429_exhausting_retries_raises_rate_limited(tq):
    tq.get(f"{BASE}/api/indicators/7", status_code=429, headers={"Retry-After": "1"})
    client = make_client()
    with pytest.raises(ThreatQRateLimited) as err:
        client.get_indicator(7)
    assert err.value.retry_after == 1.0
    assert len(client.sleeps) == 3


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_and_unavailable_statuses_retried_on_get(tq, status):
    tq.get(f"{BASE}/api/indicators/7", [{"status_code": status}, {"json": {"data": {"id": 7}}}])
    assert make_client().get_indicator(7)["data"]["id"] == 7


def test_500_not_retried_by_default(tq):
    tq.get(f"{BASE}/api/indicators/7", [{"status_code": 500, "text": "boom"}, {"json": {"data": {"id": 7}}}])
    with pytest.raises(ThreatQServerError) as err:
        make_client().get_indicator(7)
    assert err.value.status == 500 and err.value.path == "/api/indicators/7"


def test_other_4xx_not_retried(tq):
    tq.get(f"{BASE}/api/indicators/7", status_code=404, json={"message": "not found"})
    client = make_client()
    with pytest.raises(ThreatQNotFound):
        client.get_indicator(7)
    assert client.sleeps == []


def test_400_parses_both_error_forms(tq):
    tq.post(f"{BASE}/api/events", status_code=400, json={"data": {"errors": {"title": ["required"]}}})
    tq.get(f"{BASE}/api/event/types", json={"data": [{"id": 5, "name": "Malware"}], "total": 1})
    with pytest.raises(ThreatQBadRequest) as err:
        make_client().create_event("t", "Malware", "2026-01-01", "src")
    assert err.value.errors == {"title": ["required"]}


def test_502_on_create_event_is_not_resent(tq):
    tq.get(f"{BASE}/api/event/types", json={"data": [{"id": 5, "name": "Malware"}], "total": 1})
    tq.post(f"{BASE}/api/events", [{"status_code": 502}, {"json": {"data": {"id": 1}}}])
    with pytest.raises(ThreatQServerError):
        make_client().create_event("t", "Malware", "2026-01-01", "src")
    assert len([r for r in tq.request_history if r.path == "/api/events"]) == 1


def test_503_on_create_event_is_resent(tq):
    tq.get(f"{BASE}/api/event/types", json={"data": [{"id": 5, "name": "Malware"}], "total": 1})
    tq.post(f"{BASE}/api/events", [{"status_code": 503}, {"json": {"data": {"id": 11}}}])
    assert make_client().create_event("t", "Malware", "2026-01-01", "src") == {"id": 11}


def test_read_error_on_get_retried(tq):
    tq.get(f"{BASE}/api/indicators/7", [{"exc": requests.exceptions.ConnectionError("reset")},
                                        {"json": {"data": {"id": 7}}}])
    assert make_client().get_indicator(7)["data"]["id"] == 7


def test_read_error_on_create_event_not_resent(tq):
    tq.get(f"{BASE}/api/event/types", json={"data": [{"id": 5, "name": "Malware"}], "total": 1})
    tq.post(f"{BASE}/api/events", exc=requests.exceptions.ConnectionError("reset"))
    with pytest.raises(ThreatQConnectionError) as err:
        make_client().create_event("t", "Malware", "2026-01-01", "src")
    assert err.value.attempts == 1


def test_malformed_json_raises_response_error_with_status_and_excerpt(tq):
    tq.get(f"{BASE}/api/indicators/7", text='{"data": {"id": 7,,,')
    with pytest.raises(ThreatQResponseError) as err:
        make_client().get_indicator(7)
    assert err.value.status == 200 and '{"data"' in err.value.body_excerpt


def test_token_in_error_body_is_masked(tq):
    tq.get(f"{BASE}/api/indicators/7", status_code=404,
           text='{"message":"nope","access_token":"acc-1","echo":"Bearer acc-1"}')
    with pytest.raises(ThreatQNotFound) as err:
        make_client().get_indicator(7)
    assert "acc-1" not in str(err.value)


def test_type_and_status_resolved_by_name_at_run_time(tq):
    tq.get(f"{BASE}/api/indicator/types", json={"total": 2, "data": [{"id": 115, "name": "IP Address"},
                                                                    {"id": 106, "name": "Email Attachment"}]})
    tq.get(f"{BASE}/api/indicator/statuses", json={"total": 1, "data": [{"id": 101, "name": "Active"}]})
    tq.post(f"{BASE}/api/indicators", json={"total": 1, "data": [{"id": 9, "existing": "N"}]})
    client = make_client()
    assert client.create_indicator(status="active", source="ops", type="Eamil Attachment", value="x.doc") == {"id": 9}
    body = tq.last_request.json()
    assert body == [{"value": "x.doc", "sources": [{"name": "ops"}], "type_id": 106, "status_id": 101}]
    client.indicator_type_id("IP Address")
    assert [r.path for r in tq.request_history].count("/api/indicator/types") == 1


def test_unknown_type_lists_valid_names(tq):
    tq.get(f"{BASE}/api/indicator/types", json={"total": 1, "data": [{"id": 15, "name": "IP Address"}]})
    with pytest.raises(ThreatQValidationError, match="IP Address"):
        make_client().indicator_type_id("IP Adress")


def test_non_admin_empty_metadata_falls_back_to_names(tq):
    tq.get(f"{BASE}/api/indicator/types", json={})
    tq.get(f"{BASE}/api/indicator/statuses", json={})
    tq.post(f"{BASE}/api/indicators", json={"total": 1, "data": [{"id": 9}]})
    make_client().create_indicator(status="Review", source="ops", type="fqdn", value="a.example")
    assert tq.last_request.json()[0]["type"] == "FQDN" and tq.last_request.json()[0]["status"] == "Review"


def _rows(n, start=0, ts="2026-01-01 00:00:00"):
    return [{"id": start + i, "updated_at": ts, "value": f"v{start + i}"} for i in range(n)]


def _cursor_pages(n_full, size=2):
    """Answers for n_full full cursor pages of ``size`` rows, then a short one; total counts all."""
    total = n_full * size + 1
    pages = [{"json": {"total": total, "data": _rows(size, 1 + k * size), "nextCursorMark": f"m{k + 1}"}}
             for k in range(n_full)]
    return pages + [{"json": {"total": total, "data": _rows(1, 1 + n_full * size), "nextCursorMark": f"m{n_full + 1}"}}]


def test_the_next_cursor_page_is_asked_for_while_a_full_page_is_parsed_and_each_is_asked_once(tq):
    tq.post(f"{BASE}/api/indicators/query", _cursor_pages(3))

    pages = list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=2))

    assert [[r["id"] for r in p] for p in pages] == [[1, 2], [3, 4], [5, 6], [7]]
    calls = [r.qs["cursormark"][0] for r in tq.request_history if r.path == "/api/indicators/query"]
    assert calls == ["*", "m1", "m2", "m3"]  # the short last page asks for nothing ahead


def test_a_read_ahead_page_that_paging_never_reaches_is_dropped_with_its_error(tq):
    # The first page holds the whole window (total 2): paging ends there, as it did one request at
    # a time; the page asked for ahead (m1) failed, and nobody sees that.
    tq.post(f"{BASE}/api/indicators/query", [
        {"json": {"total": 2, "data": _rows(2, 1), "nextCursorMark": "m1"}},
        {"status_code": 400, "json": {"errors": ["cursor expired"]}},
    ])

    pages = list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=2))

    assert [[r["id"] for r in p] for p in pages] == [[1, 2]]


def test_an_error_of_a_read_ahead_page_that_paging_reaches_is_raised_after_the_pages_before_it(tq):
    tq.post(f"{BASE}/api/indicators/query", [
        {"json": {"total": 9, "data": _rows(2, 1), "nextCursorMark": "m1"}},
        {"status_code": 400, "json": {"errors": ["cursor expired"]}},
    ])
    got = []

    with pytest.raises(ThreatQBadRequest):
        for page in make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=2):
            got.append([r["id"] for r in page])

    assert got == [[1, 2]]


def test_leaving_the_pages_early_leaves_no_read_ahead_behind(tq):
    import threading

    tq.post(f"{BASE}/api/indicators/query", _cursor_pages(5))
    pages = make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=2)

    first = next(pages)
    pages.close()

    assert [r["id"] for r in first] == [1, 2]
    assert not [t for t in threading.enumerate() if t.name.startswith("tq-page-ahead")]
    calls = [r.qs["cursormark"][0] for r in tq.request_history if r.path == "/api/indicators/query"]
    assert calls == ["*", "m1"]  # the one asked for ahead, waited for and dropped


def test_window_paging_follows_the_cursor_when_the_server_offers_one(tq):
    tq.post(f"{BASE}/api/indicators/query", [
        {"json": {"total": 3, "data": _rows(2, 1), "nextCursorMark": "m1"}},
        {"json": {"total": 3, "data": _rows(1, 3), "nextCursorMark": "m2"}},
    ])
    pages = list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=2))
    assert [[r["id"] for r in p] for p in pages] == [[1, 2], [3]]
    calls = [r for r in tq.request_history if r.path == "/api/indicators/query"]
    assert [c.qs["cursormark"] for c in calls] == [["*"], ["m1"]]
    assert calls[0].json() == calls[1].json()  # same window filter: the cursor carries the position
    assert calls[0].qs["sort"] == ["updated_at"]


def test_window_paging_falls_back_to_keyset_without_cursor(tq):
    # A keyset page's total counts the rows its filter matches: those after the last one received.
    tq.post(f"{BASE}/api/indicators/query", [{"json": {"total": 3, "data": _rows(2, 1)}},
                                             {"json": {"total": 1, "data": _rows(1, 3)}}])
    pages = list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=2))
    assert [[r["id"] for r in p] for p in pages] == [[1, 2], [3]]
    first, second = [r.json() for r in tq.request_history if r.path == "/api/indicators/query"]
    assert first["filters"]["+and"] == [{"updated_at": {"+gte": "2026-01-01 00:00:00"}},
                                        {"updated_at": {"+lt": "2026-01-02 00:00:00"}}]
    assert second["filters"]["+and"][-1] == {"+and": [
        {"updated_at": {"+gte": "2026-01-01 00:00:00"}},
        {"+or": [
            {"updated_at": {"+gt": "2026-01-01 00:00:00"}},
            {"+and": [{"updated_at": "2026-01-01 00:00:00"}, {"id": {"+gt": 2}}]},
        ]},
    ]}
    assert tq.request_history[-1].qs["sort"] == ["updated_at,id"]
    assert "cursormark" not in tq.request_history[-1].qs


@pytest.mark.parametrize("empty", [[], {}])
def test_empty_last_page_quirk_ends_paging(tq, empty):
    # Two full cursor pages: the second could be followed by rows updated mid-run, so the client
    # asks once more and the empty page (either shape) ends the paging.
    tq.post(f"{BASE}/api/indicators/query", [{"json": {"total": 4, "data": _rows(2, 1), "nextCursorMark": "m1"}},
                                             {"json": {"total": 4, "data": _rows(2, 3), "nextCursorMark": "m2"}},
                                             {"json": {"total": 4, "data": empty, "nextCursorMark": "m3"}}])
    pages = list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=2))
    assert sum(len(p) for p in pages) == 4
    assert len([r for r in tq.request_history if r.path == "/api/indicators/query"]) == 3


def test_server_ignoring_keyset_is_an_error_not_a_loop(tq):
    tq.post(f"{BASE}/api/indicators/query", json={"total": 4, "data": _rows(2, 1)})
    with pytest.raises(ThreatQResponseError, match="paging ignored"):
        list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=2))


def test_window_end_before_start_is_rejected(tq):
    with pytest.raises(ThreatQValidationError):
        list(make_client().iter_indicator_pages("2026-01-02", "2026-01-01"))


def test_collection_pages_follow_cursor_and_stop_on_empty_object(tq):
    url = f"{BASE}/api/indicators/query/hash/abc"
    tq.get(url, [{"json": {"total": 3, "data": _rows(2, 1), "nextCursorMark": "c1", "limit": 2}},
                 {"json": {"total": 3, "data": _rows(1, 3), "nextCursorMark": "c2", "limit": 2}},
                 {"json": {"total": 3, "data": {}, "nextCursorMark": "c3", "limit": 2}}])
    pages = list(make_client().iter_collection_pages("abc", page_size=2))
    assert [(len(p.indicators), p.next_cursor) for p in pages] == [(2, "c1"), (1, "c2")]
    calls = [r for r in tq.request_history if r.path == "/api/indicators/query/hash/abc"]
    assert [c.qs["cursormark"] for c in calls] == [["*"], ["c1"], ["c2"]]
    assert calls[0].qs["fields"] == ["*,sources,attributes,adversaries"]


def test_collection_stops_when_cursor_repeats(tq):
    tq.get(f"{BASE}/api/indicators/query/hash/abc",
           json={"total": 1, "data": _rows(1, 1), "nextCursorMark": "same"})
    pages = list(make_client().iter_collection_pages("abc", cursor="same"))
    assert len(pages) == 1


def test_search_and_list_shapes_follow_the_plugin(tq):
    tq.get(f"{BASE}/api/search", json={"data": [{"id": 1, "object": "indicator", "value": "x", "extra": 1}]})
    tq.get(f"{BASE}/api/events", json={"total": 5, "data": [{"id": 2, "title": "t", "type": {"id": 1}}]})
    client = make_client()
    assert client.search("x", limit=3) == {"results": [{"id": 1, "object": "indicator", "value": "x"}]}
    assert tq.last_request.qs == {"query": ["x"], "limit": ["3"]}
    assert client.list_events({"title": "t", "hash": None}) == {"total": 5, "data": [{"id": 2, "title": "t"}]}
    assert tq.last_request.qs == {"title": ["t"]}


def test_search_indicators_rejects_unknown_filter_keys(tq):
    with pytest.raises(ThreatQValidationError, match="last_detected_at"):
        make_client().search_indicators({"colour": "red"})


def test_retry_policy_validated_when_built():
    with pytest.raises(ThreatQValidationError):
        RetryPolicy(total=-1)
    with pytest.raises(ThreatQValidationError):
        RetryPolicy(statuses=(200,))


def test_grants_validated_and_repr_hides_secrets():
    with pytest.raises(ThreatQValidationError):
        PasswordGrant("cid", "user", "")
    with pytest.raises(ThreatQValidationError):
        ClientCredentials("", "secret")
    assert CANARY not in repr(PasswordGrant("cid", "u", CANARY))
    assert CANARY not in repr(ClientCredentials("cid", CANARY))


def test_canary_never_logged_during_retries_and_failures(tq, caplog):
    caplog.set_level(logging.DEBUG)
    tq.get(f"{BASE}/api/indicators/7", [{"status_code": 503}, {"status_code": 401},
                                        {"status_code": 400, "text": json.dumps({"password": CANARY})}])
    with pytest.raises(ThreatQBadRequest) as err:
        make_client().get_indicator(7)
    assert CANARY not in caplog.text and CANARY not in str(err.value)
    assert "acc-1" not in caplog.text


def test_token_request_repr_hides_every_credential():
    # TokenRequest carries the password, the Basic header and the refresh token: repr shows none.
    for req in (PasswordGrant("cid", "analyst@example.com", CANARY).token_request(),
                ClientCredentials("cid", CANARY).token_request(),
                ClientCredentials("cid", CANARY).refresh_request(CANARY + "-rt", CANARY + "-at"),
                PasswordGrant("cid", "a@example.com", CANARY).refresh_request(CANARY + "-rt", CANARY + "-at")):
        text = repr(req)
        assert CANARY not in text
        assert base64.b64encode(f"cid:{CANARY}".encode()).decode() not in text


def test_received_tokens_are_reported_to_on_secret(tq):
    # The refresh grant puts the refresh token in the query string (urllib3 logs it at DEBUG):
    # every token must reach the log masker as soon as it arrives.
    tq.post(f"{BASE}/api/token", [
        {"json": {**TOKEN, "expires_in": 0}},
        {"json": {**TOKEN, "access_token": "acc-2", "refresh_token": "ref-2"}},
    ])
    tq.get(f"{BASE}/api/indicators/7", json={"data": {"id": 7}})
    seen: list[str] = []
    client = make_client(on_secret=seen.append)
    client.get_indicator(7)
    client.get_indicator(7)
    assert seen == ["acc-1", "ref-1", "acc-2", "ref-2"]


@pytest.mark.parametrize(("bad_page", "detail"), [
    ({"total": 4, "message": "Query timed out"}, "page has no data list"),
    ({"total": 4, "data": "oops"}, "page has no data list"),
    ({"total": 4, "data": [{"id": 3}, "not-a-row"]}, "rows are not all objects"),
    ({"total": 4, "data": [{"id": "x3", "updated_at": "2026-01-01 00:00:00"}]}, "no integer id"),
])
def test_malformed_middle_page_is_an_error_not_the_end_of_the_window(tq, bad_page, detail):
    # Treating a malformed 200 page as "no more rows" would drop the rest of the window silently.
    tq.post(f"{BASE}/api/indicators/query", [{"json": {"total": 4, "data": _rows(2, 1)}}, {"json": bad_page}])
    with pytest.raises(ThreatQResponseError, match=detail):
        list(make_client().iter_indicator_pages("2026-01-01", "2026-01-02", page_size=2))


def test_malformed_collection_and_related_pages_are_errors(tq):
    tq.get(f"{BASE}/api/indicators/query/hash/abc", json={"error": "collection is rebuilding"})
    tq.get(f"{BASE}/api/events/5/indicators", json={"total": 3, "rows": []})
    client = make_client()
    with pytest.raises(ThreatQResponseError, match="no data list") as err:
        list(client.iter_collection_pages("abc"))
    assert err.value.path == "/api/indicators/query/hash/abc"
    with pytest.raises(ThreatQResponseError, match="no data list"):
        list(client.iter_event_indicators(5))


def test_explicit_null_data_ends_paging(tq):
    tq.get(f"{BASE}/api/indicators/query/hash/abc", json={"total": 0, "data": None})
    assert list(make_client().iter_collection_pages("abc")) == []


def test_download_over_max_bytes_is_abandoned_with_a_typed_error(tq):
    from threatq_provider.threatq.errors import ThreatQTooLarge

    tq.get(f"{BASE}/api/attachments/4/download", content=b"x" * 5000)
    client = make_client()
    assert client.download_attachment(4, max_bytes=5000) == b"x" * 5000
    with pytest.raises(ThreatQTooLarge, match="over the limit of 4999 bytes") as err:
        client.download_attachment(4, max_bytes=4999)
    assert err.value.path == "/api/attachments/4/download" and err.value.size >= 5000
    assert client.download_attachment(4) == b"x" * 5000  # no limit: unchanged behaviour


def test_download_with_a_declared_length_over_the_limit_stops_before_reading(tq):
    from threatq_provider.threatq.errors import ThreatQTooLarge

    tq.get(f"{BASE}/api/attachments/5/download", content=b"y" * 10, headers={"Content-Length": "999999999"})
    with pytest.raises(ThreatQTooLarge) as err:
        make_client().download_attachment(5, max_bytes=1024)
    assert err.value.size == 999999999


def test_find_event_sends_list_filters_and_checks_each_row_exactly(tq):
    tq.get(f"{BASE}/api/event/types", json={"data": [{"id": 5, "name": "Malware"}], "total": 1})
    rows = [
        # newest first, as asked; only rows 12 and 9 are the same event
        {"id": 14, "title": "Dropper X", "type_id": 5, "happened_at": "2026-02-01 10:00:00",
         "sources": [{"name": "src"}]},                                              # case differs
        {"id": 13, "title": "Dropper", "type_id": 5, "happened_at": "2026-02-01 10:00:00",
         "sources": [{"name": "src"}]},                                              # '%' matched it
        {"id": 12, "title": " Dropper x ", "type_id": 5, "happened_at": "2026-02-01 10:00:00.000",
         "sources": [{"name": "other"}, {"name": "SRC"}]},
        {"id": 11, "title": "Dropper x", "type_id": 6, "happened_at": "2026-02-01 10:00:00"},  # type
        {"id": 10, "title": "Dropper x", "type_id": 5, "happened_at": "2026-02-01 10:00:01"},  # second
        {"id": 9, "title": "Dropper x", "type_id": 5, "happened_at": "2026-02-01 10:00:00"},   # no sources
    ]
    tq.get(f"{BASE}/api/events", json={"total": len(rows), "data": rows})

    found = make_client().find_event("Dropper x", "Malware", "2026-02-01T11:00:00+01:00", "src")

    assert found["id"] == 12 and set(found) <= {"id", "title", "type_id", "description", "hash", "happened_at",
                                                "created_at", "updated_at"}
    from urllib.parse import parse_qs, urlsplit

    query = parse_qs(urlsplit(tq.request_history[-1].url).query)  # .qs would lower-case the values
    assert query["title"] == ["Dropper x"]
    assert query["happened_at"] == ["2026-02-01 10:00:00"] and query["type_id"] == ["5"]
    assert query["sort"] == ["-id"] and query["with"] == ["type,sources"]


def test_find_event_returns_none_when_nothing_matches(tq):
    tq.get(f"{BASE}/api/event/types", json={"data": [{"id": 5, "name": "Malware"}], "total": 1})
    tq.get(f"{BASE}/api/events", json={"total": 0, "data": {}})
    assert make_client().find_event("t", "Malware", "2026-01-01", "src") is None
