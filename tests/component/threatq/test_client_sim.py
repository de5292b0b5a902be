"""ThreatQClient against the ThreatQ simulator over real HTTP: every method, both grants, every fault.

Retries are asserted through the simulator's counters (``sim.stats``), never through timing; the
client's sleep is replaced by a recorder so Retry-After is checked as a value, not waited for.
"""

from __future__ import annotations

import logging
import socket

import pytest

from threatq_simulators.corpus import Corpus
from threatq_simulators.faults import FaultRule
from threatq_simulators.threatq_sim import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
)
from threatq_provider.threatq.client import INDICATOR_FIELDS, ClientCredentials, PasswordGrant, RetryPolicy, ThreatQClient
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

pytestmark = pytest.mark.component

CANARY = "canary-S3CRET-component-77c1"
WINDOW = ("2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z")


def client_for(sim, grant: str = "password", **kwargs) -> ThreatQClient:
    auth = (PasswordGrant(DEFAULT_CLIENT_ID, DEFAULT_USERNAME, DEFAULT_PASSWORD) if grant == "password"
            else ClientCredentials(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
    kwargs.setdefault("retry", RetryPolicy(total=3, backoff_factor=0.01, jitter=0))
    client = ThreatQClient(sim.url, auth=kwargs.pop("auth", auth), timeout=(2, 10), **kwargs)
    client.sleeps = []
    client._sleep = client.sleeps.append  # record waits instead of sleeping
    return client


@pytest.fixture
def sim(threatq_sim_factory):
    """A fresh simulator per test (faults and created objects do not leak between tests)."""
    return threatq_sim_factory()


def _path_count(sim, key: str) -> int:
    return sim.stats["by_path"].get(key, 0)


# -- grants ------------------------------------------------------------------------------------

@pytest.mark.parametrize("grant, counted", [("password", "password"), ("client", "client_credentials")])
def test_both_grants_authenticate(sim, grant, counted):
    with client_for(sim, grant) as client:
        assert client.get_indicator(1)["data"]["id"] == 1
    assert sim.stats["grants"] == {counted: 1}


@pytest.mark.parametrize("grant", ["password", "client"])
def test_token_renewal_uses_refresh_grant(sim, grant):
    with client_for(sim, grant) as client:
        client.get_indicator(1)
        client.invalidate_token()  # as if expires_in ran out
        client.get_indicator(2)
    assert sim.stats["grants"].get("refresh_token") == 1
    assert sim.stats["unauthorized"] == 0


def test_token_renewal_is_scheduled_from_expires_in(threatq_sim_factory):
    import time

    sim = threatq_sim_factory(token_ttl_s=120)
    with client_for(sim) as client:
        before = time.monotonic()
        client.get_indicator(1)
        # renewed a tenth of the lifetime (capped at 60 s) before expires_in runs out
        assert before + 107 <= client._token.renew_at <= time.monotonic() + 108
        client.invalidate_token()
        client.get_indicator(2)
    assert sim.stats["unauthorized"] == 0 and sim.stats["grants"].get("refresh_token") == 1


def test_wrong_password_is_an_auth_error_without_the_password(sim, caplog):
    caplog.set_level(logging.DEBUG)
    client = client_for(sim, auth=PasswordGrant(DEFAULT_CLIENT_ID, DEFAULT_USERNAME, CANARY))
    with pytest.raises(ThreatQAuthError) as err:
        client.search("x")
    assert err.value.status == 400 and err.value.path == "/api/token"
    assert CANARY not in str(err.value) and CANARY not in caplog.text


def test_wrong_client_secret_is_an_auth_error_without_the_secret(sim, caplog):
    caplog.set_level(logging.DEBUG)
    client = client_for(sim, auth=ClientCredentials(DEFAULT_CLIENT_ID, CANARY))
    with pytest.raises(ThreatQAuthError) as err:
        client.get_indicator(1)
    assert CANARY not in str(err.value) and CANARY not in caplog.text


def test_token_expiry_mid_run_reauthenticates_and_pages_stay_exact(sim):
    sim.faults.add(FaultRule(method="POST", path_regex="^/api/indicators/query", nth=3, times=1,
                             action="expire_token"))
    with client_for(sim, page_size=250) as client:
        ids = [r["id"] for page in client.iter_indicator_pages(*WINDOW) for r in page]
    assert ids == sim.corpus.indicator_ids(*WINDOW)
    assert sim.stats["unauthorized"] == 1
    assert sim.stats["grants"].get("refresh_token") == 1


def test_tokens_expired_by_the_server_are_renewed(sim):
    with client_for(sim) as client:
        client.get_indicator(1)
        sim.expire_tokens()
        assert client.get_indicator(2)["data"]["id"] == 2
    assert sim.stats["unauthorized"] == 1


# -- faults recovered --------------------------------------------------------------------------

def test_429_retried_honouring_retry_after(sim):
    sim.faults.add(FaultRule(method="GET", path_regex="^/api/indicators/5$", times=1, status=429,
                             headers={"Retry-After": "3"}))
    with client_for(sim) as client:
        assert client.get_indicator(5)["data"]["id"] == 5
        assert client.sleeps == [3.0]
    assert _path_count(sim, "GET /api/indicators/5") == 2
    assert sim.stats["faults_triggered"] == 1


def test_429_on_every_attempt_raises_rate_limited(sim):
    sim.faults.add(FaultRule(path_regex="^/api/search", times=None, status=429, headers={"Retry-After": "1"}))
    with client_for(sim) as client, pytest.raises(ThreatQRateLimited) as err:
        client.search("evil")
    assert err.value.retry_after == 1.0
    assert _path_count(sim, "GET /api/search") == 4  # first try + 3 retries


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_statuses_retried_on_reads(sim, status):
    sim.faults.add(FaultRule(path_regex="^/api/events/3$", times=2, status=status))
    with client_for(sim) as client:
        assert client.get_event(3)["data"]["id"] == 3
    assert _path_count(sim, "GET /api/events/3") == 3


def test_500_is_not_retried_and_names_the_path(sim):
    sim.faults.add(FaultRule(path_regex="^/api/events/3$", times=1, status=500))
    with client_for(sim) as client, pytest.raises(ThreatQServerError) as err:
        client.get_event(3)
    assert err.value.status == 500 and err.value.path == "/api/events/3" and err.value.method == "GET"
    assert _path_count(sim, "GET /api/events/3") == 1


def test_connection_reset_on_get_is_retried(sim):
    sim.faults.add(FaultRule(method="GET", path_regex="^/api/indicators/7$", times=1, action="reset"))
    with client_for(sim) as client:
        assert client.get_indicator(7)["data"]["id"] == 7
    assert _path_count(sim, "GET /api/indicators/7") == 2


def test_connection_reset_on_create_event_is_not_resent(sim):
    sim.faults.add(FaultRule(method="POST", path_regex="^/api/events$", times=1, action="reset"))
    events_before = len(sim.corpus.event_ids())
    with client_for(sim) as client, pytest.raises(ThreatQConnectionError) as err:
        client.create_event(title="x", type="Malware", date="2026-01-01", source="s")
    assert err.value.attempts == 1
    assert _path_count(sim, "POST /api/events") == 1
    assert len(sim.corpus.event_ids()) <= events_before + 1


def test_faults_mid_paging_lose_and_duplicate_nothing(sim):
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query", nth=2, times=1, status=503))
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query", nth=4, times=1, action="reset"))
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query", nth=6, times=1, status=429,
                             headers={"Retry-After": "0"}))
    with client_for(sim, page_size=200) as client:
        pages = list(client.iter_indicator_pages(*WINDOW))
    ids = [r["id"] for p in pages for r in p]
    assert ids == sim.corpus.indicator_ids(*WINDOW) and len(ids) == len(set(ids))
    assert sim.stats["faults_triggered"] == 3


def test_slow_page_beyond_the_read_timeout_is_retried_on_reads(sim):
    sim.faults.add(FaultRule(method="GET", path_regex="^/api/events/4$", times=1, delay_s=2.5))
    with client_for(sim) as client:
        client.timeout = (2, 1)
        assert client.get_event(4)["data"]["id"] == 4
    assert _path_count(sim, "GET /api/events/4") == 2


def test_slow_page_within_the_timeout_is_just_slow(sim):
    sim.faults.add(FaultRule(method="GET", path_regex="^/api/events/4$", times=1, delay_s=0.3))
    with client_for(sim) as client:
        assert client.get_event(4)["data"]["id"] == 4
        assert client.sleeps == []


def test_truncated_body_once_is_retried(sim):
    sim.faults.add(FaultRule(method="GET", path_regex="^/api/indicators/9$", times=1, action="truncate"))
    with client_for(sim) as client:
        assert client.get_indicator(9)["data"]["id"] == 9


# -- faults failed cleanly ---------------------------------------------------------------------

def test_truncated_body_every_time_is_a_response_error(sim):
    sim.faults.add(FaultRule(method="GET", path_regex="^/api/indicators/9$", times=None, action="truncate"))
    with client_for(sim) as client, pytest.raises(ThreatQResponseError, match="truncated"):
        client.get_indicator(9)


def test_malformed_json_is_a_response_error_with_the_first_bytes(sim):
    sim.faults.add(FaultRule(method="GET", path_regex="^/api/indicators/9$", times=1, action="malformed"))
    with client_for(sim) as client, pytest.raises(ThreatQResponseError) as err:
        client.get_indicator(9)
    assert err.value.status == 200 and "not valid JSON" in str(err.value) and err.value.body_excerpt
    assert _path_count(sim, "GET /api/indicators/9") == 1


def test_unreachable_server_is_a_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        client = ThreatQClient(f"http://127.0.0.1:{port}", auth=ClientCredentials("id", CANARY),
                               retry=RetryPolicy(total=2, backoff_factor=0, jitter=0), timeout=(1, 1))
        client._sleep = lambda s: None
        with pytest.raises(ThreatQConnectionError) as err:
            client.get_indicator(1)
    assert err.value.attempts == 3 and err.value.path == "/api/token"
    assert CANARY not in str(err.value)


def test_invalid_indicator_value_is_a_bad_request_with_field_errors(sim):
    with client_for(sim) as client, pytest.raises(ThreatQBadRequest) as err:
        client.create_indicator(status="Active", source="s", type="IP Address", value="not-an-ip")
    assert err.value.status == 400 and "value" in err.value.errors


def test_unknown_object_is_not_found(sim):
    with client_for(sim) as client, pytest.raises(ThreatQNotFound):
        client.get_event(999_999)


# -- paging vs ground truth --------------------------------------------------------------------

def test_every_window_page_exactly_once_against_corpus_truth(sim):
    corpus = sim.corpus
    since, until = "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"
    truth = [i["id"] for i in corpus.iter_indicators(since, until)]
    with client_for(sim, page_size=97) as client:
        pages = list(client.iter_indicator_pages(since, until))
    assert truth and [r["id"] for p in pages for r in p] == truth
    assert all(len(p) <= 97 for p in pages)


def test_adjacent_windows_partition_the_corpus(sim):
    with client_for(sim, page_size=500) as client:
        a = [r["id"] for r in client.iter_indicators("2000-01-01", "2026-01-02T12:00:00Z")]
        b = [r["id"] for r in client.iter_indicators("2026-01-02T12:00:00Z", "2100-01-01")]
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(sim.corpus.indicator_ids(*WINDOW))


def test_window_pages_carry_attributes_and_sources_in_v6_mode(sim):
    with client_for(sim, page_size=50) as client:
        first = next(iter(client.iter_indicator_pages(*WINDOW)))
    assert all("attributes" in r and "sources" in r and "type" in r for r in first)


def test_type_filter_matches_truth(sim):
    with client_for(sim, page_size=100) as client:
        ids = [r["id"] for r in client.iter_indicators(*WINDOW, types=["FQDN", "ip address"])]
    assert ids == [i["id"] for i in sim.corpus.iter_indicators(*WINDOW[:2], types=["FQDN", "IP Address"])]


def test_indicator_created_mid_run_appears_at_most_once(sim):
    with client_for(sim, page_size=300) as client:
        pages = client.iter_indicator_pages(*WINDOW)
        ids = [r["id"] for r in next(pages)]
        client.create_indicator(status="Active", source="mid-run", type="FQDN", value="mid-run.example.org")
        ids += [r["id"] for p in pages for r in p]
    assert len(ids) == len(set(ids))
    assert set(sim.corpus.indicator_ids(*WINDOW)) - set(ids) <= {max(sim.corpus.indicator_ids(*WINDOW))}


@pytest.mark.parametrize("empty_page", ["object", "array"])
def test_collection_pages_exactly_once_with_either_empty_page_quirk(threatq_sim_factory, empty_page):
    sim = threatq_sim_factory(empty_page=empty_page)
    coll = sim.corpus.collections[1]
    truth = [i["id"] for i in sim.corpus.iter_collection(coll["hash"])]
    with client_for(sim, page_size=150) as client:
        pages = list(client.iter_collection_pages(coll["hash"]))
    assert [r["id"] for p in pages for r in p.indicators] == truth
    assert all(p.next_cursor for p in pages)


def test_collection_resumes_from_a_saved_cursor(sim):
    coll = sim.corpus.collections[0]
    truth = [i["id"] for i in sim.corpus.iter_collection(coll["hash"])]
    with client_for(sim, page_size=400) as client:
        first = next(iter(client.iter_collection_pages(coll["hash"])))
        rest = list(client.iter_collection_pages(coll["hash"], cursor=first.next_cursor))
    assert [r["id"] for r in first.indicators] + [r["id"] for p in rest for r in p.indicators] == truth


# -- the other methods -------------------------------------------------------------------------

def test_events_iteration_and_related_indicators_match_truth(sim):
    with client_for(sim, page_size=30) as client:
        events = list(client.iter_events())
        assert [e["id"] for e in events] == [e["id"] for e in sorted(sim.corpus.events,
                                                                     key=lambda e: (e["updated_at"], e["id"]))]
        related = [r["id"] for r in client.iter_event_indicators(events[0]["id"], page_size=3)]
    assert related == sim.corpus.event_indicator_ids(events[0]["id"])


def test_event_window(sim):
    since, until = "2026-01-03T00:00:00Z", "2026-01-10T00:00:00Z"
    with client_for(sim) as client:
        got = [e["id"] for e in client.iter_events(since, until)]
    assert got == [e["id"] for e in sim.corpus.iter_events(since, until)]


def test_investigation_by_id_and_name_and_attachment_download(sim):
    inv = sim.corpus.investigations[0]
    att = sim.corpus.attachments[0]
    with client_for(sim) as client:
        assert client.get_investigation(inv["id"])["name"] == inv["name"]
        assert client.get_investigation(inv["name"])["id"] == inv["id"]
        with pytest.raises(ThreatQNotFound):
            client.get_investigation("no such investigation")
        assert client.download_attachment(att["id"]) == sim.corpus.attachment_content(att["id"])


def test_seven_actions_round_trip(sim):
    with client_for(sim) as client:
        created = client.create_indicator(status="Review", source="Airflow", type="Eamil Attachment",
                                          value="invoice-2026.docm")
        again = client.create_indicator(status="Review", source="Airflow", type="Email Attachment",
                                        value="invoice-2026.docm")
        assert again == created  # ThreatQ de-duplicates by type and value
        got = client.get_indicator(created["id"], with_=["sources", "type"])["data"]
        assert got["value"] == "invoice-2026.docm" and got["type"]["name"] == "Email Attachment"
        assert [s["name"] for s in got["sources"]] == ["Airflow"]
        found = client.search_indicators({"value": "invoice-2026.docm"})
        assert found["total"] == 1 and found["data"][0]["id"] == created["id"]
        assert set(found["data"][0]) <= set(INDICATOR_FIELDS)
        assert {"id": created["id"], "object": "indicator", "value": "invoice-2026.docm"} in \
            client.search("invoice-2026", limit=5)["results"]
        event = client.create_event(title="Macro dropper", type="Malware", date="2026-02-01T10:00:00Z",
                                    source="Airflow", description="<p>seen</p>")
        assert client.get_event(event["id"])["data"]["happened_at"] == "2026-02-01 10:00:00"
        listed = client.list_events({"title": "Macro dropper"})
        assert listed["total"] == 1 and listed["data"][0]["id"] == event["id"]


def test_ids_are_resolved_per_instance(threatq_sim_factory):
    sim = threatq_sim_factory(corpus=Corpus(seed=7, indicators=50, events=5, id_offset=100))
    with client_for(sim) as client:
        assert client.indicator_type_id("IP Address") == 115
        assert client.status_id("Active") == 101
        assert client.event_type_id("Malware") == 105
        created = client.create_indicator(status="Whitelisted", source="s", type="FQDN", value="ok.example.net")
        got = client.get_indicator(created["id"], with_=["type", "status"])["data"]
    assert got["type"]["name"] == "FQDN" and got["status"]["name"] == "Whitelisted"
    assert got["type_id"] == 111


def test_unknown_names_list_the_instance_values(sim):
    with client_for(sim) as client, pytest.raises(ThreatQValidationError) as err:
        client.create_event(title="t", type="Phishing", date="2026-01-01", source="s")
    assert "Spearphish" in err.value.valid


def test_no_credential_reaches_logs_during_a_faulty_run(sim, caplog):
    caplog.set_level(logging.DEBUG)
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query", nth=2, times=1, action="expire_token"))
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query", nth=3, times=1, status=503))
    with client_for(sim, page_size=500) as client:
        list(client.iter_indicator_pages(*WINDOW))
        token = client._token
    assert DEFAULT_PASSWORD not in caplog.text
    assert token.access_token not in caplog.text and token.refresh_token not in caplog.text
