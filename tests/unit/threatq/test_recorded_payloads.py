"""The client consumes every recorded ThreatQ response it has a method for (tests/data/threatq/samples).

Each recording is served by requests_mock at the endpoint it was recorded from; the client's
answer must carry the recorded values through unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from threatq_provider.threatq.client import ClientCredentials, PasswordGrant, RetryPolicy, ThreatQClient
from threatq_provider.threatq.errors import ThreatQBadRequest

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "threatq" / "samples"
BASE = "https://tq.example.test"


def sample(name: str) -> dict:
    (path,) = SAMPLES.glob(f"*/{name}")
    return json.loads(path.read_text("utf-8"))


def client(auth=None) -> ThreatQClient:
    return ThreatQClient(BASE, auth=auth or PasswordGrant("cid", "u@example.com", "pw"),
                         retry=RetryPolicy(total=0))


@pytest.mark.parametrize("token_file", [
    "ThreatQ_v2_test.py.MOCK_ACCESS_TOKEN.json",  # no refresh_token, no token_type
    "config.yml.rule1-POST-api-token.response.json",
])
def test_recorded_token_responses_are_usable(requests_mock, token_file):
    token = sample(token_file)
    requests_mock.post(f"{BASE}/api/token", json=token)
    requests_mock.get(f"{BASE}/api/indicators/2019", json=sample("ThreatQ_v2_test.py.MOCK_GET_INDICATOR_RESPONSE.json"))
    got = client(ClientCredentials("test", "test")).get_indicator(2019)
    assert got == sample("ThreatQ_v2_test.py.MOCK_GET_INDICATOR_RESPONSE.json")
    assert requests_mock.last_request.headers["Authorization"] == f"Bearer {token['access_token']}"


@pytest.fixture
def tq(requests_mock):
    requests_mock.post(f"{BASE}/api/token", json=sample("config.yml.rule1-POST-api-token.response.json"))
    return requests_mock


def test_recorded_collection_feed_with_empty_object_last_page(tq):
    first = sample("config.yml.rule2-GET-indicators-query-hash-cursorMark-star.response.json")
    last = sample("config.yml.rule3-GET-indicators-query-hash-next-cursor.response.json")
    tq.get(f"{BASE}/api/indicators/query/hash/someid", [{"json": first}, {"json": last}])
    pages = list(client().iter_collection_pages("someid", page_size=100))
    assert [p.indicators for p in pages] == [first["data"]]
    assert pages[0].next_cursor == first["nextCursorMark"]


def test_recorded_get_event(tq):
    recorded = sample("ThreatQ_v2_test.py.MOCK_GET_EVENT_RESPONSE.json")
    tq.get(f"{BASE}/api/events/2019", json=recorded)
    assert client().get_event(2019, with_=["attributes", "sources"]) == recorded
    assert tq.last_request.qs["with"] == ["attributes,sources"]


def test_recorded_indicator_creation_array_envelope(tq):
    tq.get(f"{BASE}/api/indicator/types", json={"data": [sample("ThreatQ_v2_test.py.MOCK_GET_INDICATOR_TYPE_RESPONSE_1.json")["data"]]})
    tq.get(f"{BASE}/api/indicator/statuses", json={"data": [sample("ThreatQ_v2_test.py.MOCK_GET_INDICATOR_STATUS_RESPONSE_1.json")["data"]]})
    tq.post(f"{BASE}/api/indicators", json=sample("ThreatQ_v2_test.py.MOCK_INDICATOR_CREATION_RESPONSE.json"))
    created = client().create_indicator(status="Active", source="test_source1", type="Email Address",
                                        value="foo@demisto.com")
    assert created == {"id": 2019}
    assert tq.last_request.json()[0]["type_id"] == 4  # the recorded instance's id, not the default 5


def test_recorded_search_results(tq):
    tq.get(f"{BASE}/api/search", json=sample("ThreatQ_v2_test.py.MOCK_SEARCH_BY_NAME_RESPONSE.json"))
    assert client().search("foo@demisto.com") == {"results": sample("ThreatQ_v2_test.py.MOCK_SEARCH_BY_NAME_RESPONSE.json")["data"]}


def test_recorded_indicator_list_without_total(tq):
    recorded = sample("ThreatQ_v2_test.py.MOCK_INDICATOR_LIST_RESPONSE.json")
    tq.get(f"{BASE}/api/indicators", json=recorded)
    assert client().search_indicators({"value": "8.8.8.8"}) == {"total": 3, "data": recorded["data"]}


def test_recorded_query_rows_page_by_keyset(tq):
    recorded = sample("ThreatQ_v2_test.py.MOCK_SEARCH_BY_EMAIL_RESPONSE.json")
    tq.post(f"{BASE}/api/indicators/query", json=recorded)
    rows = list(client().iter_indicators("2019-11-20", "2019-11-21"))
    assert rows == recorded["data"]


def test_recorded_stix_shifter_query_rows(tq):
    recorded = sample("test_threat_q_json_to_stix.py.transmitQueryData.report.json")
    tq.post(f"{BASE}/api/indicators/query", json=recorded)
    rows = list(client().iter_indicators("2000-01-01", "2100-01-01", page_size=len(recorded["data"]) + 1))
    assert rows == recorded["data"]  # recorded in (updated_at, id) order, as the client requires


@pytest.mark.parametrize("error_file, field", [
    ("ThreatQ_v2_test.py.MOCK_ERROR_RESPONSES.0.json", "name"),
    ("ThreatQ_v2_test.py.MOCK_ERROR_RESPONSES.1.json", "_"),
])
def test_recorded_error_forms_become_field_errors(tq, error_file, field):
    tq.get(f"{BASE}/api/event/types", json={"data": [sample("ThreatQ_v2_test.py.MOCK_GET_EVENT_TYPE_RESPONSE.json")["data"]]})
    tq.post(f"{BASE}/api/events", status_code=400, json=sample(error_file))
    with pytest.raises(ThreatQBadRequest) as err:
        client().create_event(title="t", type="Spearphish", date="2019-03-01", source="s")
    assert field in err.value.errors and err.value.errors[field]
