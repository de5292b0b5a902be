"""Token grants in every request shape public clients use, and bearer checks
(docs/reference/threatq-api.md §1)."""

from __future__ import annotations

import base64

import pytest
import requests

from threatq_simulators.threatq_sim import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    ThreatQSimulator,
)

pytestmark = pytest.mark.component

BASIC = "Basic " + base64.b64encode(f"{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}".encode()).decode()
PW = {"email": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD, "grant_type": "password", "client_id": DEFAULT_CLIENT_ID}


def _token_call(sim: ThreatQSimulator, shape: str) -> requests.Response:
    url = f"{sim.url}/api/token"
    if shape == "password-json":
        return requests.post(url, json=PW, timeout=10)
    if shape == "password-query-json":
        return requests.post(url, params={"grant_type": "password", "client_id": DEFAULT_CLIENT_ID},
                             json={"email": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD}, timeout=10)
    if shape == "password-form":
        return requests.post(url, data=PW, timeout=10)
    if shape == "client-credentials-basic-query":
        return requests.post(url, params={"grant_type": "client_credentials"}, headers={"Authorization": BASIC},
                             data={}, timeout=10)
    if shape == "client-credentials-basic-form":
        return requests.post(url, data={"grant_type": "client_credentials"},
                             headers={"Authorization": BASIC, "Accept": "application/json"}, timeout=10)
    if shape == "client-credentials-form-and-basic":
        return requests.post(url, data={"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
                                        "client_secret": DEFAULT_CLIENT_SECRET}, headers={"Authorization": BASIC},
                             timeout=10)
    if shape == "client-credentials-form-only":
        return requests.post(url, data={"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
                                        "client_secret": DEFAULT_CLIENT_SECRET}, timeout=10)
    raise AssertionError(shape)


@pytest.mark.parametrize(
    "shape",
    ["password-json", "password-query-json", "password-form", "client-credentials-basic-query",
     "client-credentials-basic-form", "client-credentials-form-and-basic", "client-credentials-form-only"],
)
def test_every_grant_shape_issues_a_working_token(threatq_sim: ThreatQSimulator, shape: str) -> None:
    resp = _token_call(threatq_sim, shape)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    api = requests.get(f"{threatq_sim.url}/api/indicator/statuses",
                       headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=10)
    assert api.status_code == 200 and len(api.json()["data"]) == 5


def test_refresh_token_grant_rotates_the_refresh_token(threatq_sim: ThreatQSimulator) -> None:
    first = _token_call(threatq_sim, "password-json").json()
    url = f"{threatq_sim.url}/api/token"
    refreshed = requests.post(url, params={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                              headers={"Authorization": f"Bearer {first['access_token']}"}, timeout=10)
    assert refreshed.status_code == 200
    assert refreshed.json()["access_token"] != first["access_token"]
    reused = requests.post(url, params={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                           timeout=10)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({**PW, "password": "wrong"}, "invalid_grant"),
        ({**PW, "email": "nobody@example.com"}, "invalid_grant"),
        ({**PW, "client_id": "other"}, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": "nope"}, "invalid_client"),
        ({"grant_type": "implicit"}, "unsupported_grant_type"),
        ({}, "unsupported_grant_type"),
    ],
)
def test_bad_credentials_get_400_oauth_body(threatq_sim: ThreatQSimulator, body: dict, error: str) -> None:
    resp = requests.post(f"{threatq_sim.url}/api/token", json=body, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"] == error and resp.json()["message"]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer not-a-token", "bearer {token}", "Basic {token}", "Bearer"],
)
def test_api_calls_without_a_valid_bearer_get_401(threatq_sim: ThreatQSimulator, header: str | None) -> None:
    token = _token_call(threatq_sim, "password-json").json()["access_token"]
    headers = {} if header is None else {"Authorization": header.format(token=token)}
    resp = requests.get(f"{threatq_sim.url}/api/indicators", headers=headers, timeout=10)
    assert resp.status_code == 401
    assert resp.json() == {"error": "Unauthenticated.", "message": "Unauthenticated."}


def test_expired_tokens_get_401_and_a_new_token_works(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=20, events=2)
    token = _token_call(sim, "password-json").json()["access_token"]
    hdr = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{sim.url}/api/indicators", headers=hdr, timeout=10).status_code == 200
    assert sim.expire_tokens() >= 1
    assert requests.get(f"{sim.url}/api/indicators", headers=hdr, timeout=10).status_code == 401
    fresh = _token_call(sim, "client-credentials-basic-query").json()["access_token"]
    assert requests.get(f"{sim.url}/api/indicators", headers={"Authorization": f"Bearer {fresh}"},
                        timeout=10).status_code == 200
    assert sim.stats["unauthorized"] == 1 and sim.stats["tokens_issued"] == 2


def test_token_ttl_zero_expires_immediately(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=5, events=1, token_ttl_s=0)
    body = _token_call(sim, "password-json").json()
    assert body["expires_in"] == 0
    resp = requests.get(f"{sim.url}/api/indicators", headers={"Authorization": f"Bearer {body['access_token']}"},
                        timeout=10)
    assert resp.status_code == 401


def test_custom_credentials(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=5, events=1, username="soc@example.org", password="s3cret",
                              client_id="cid-9")
    ok = requests.post(f"{sim.url}/api/token", json={"email": "soc@example.org", "password": "s3cret",
                                                     "grant_type": "password", "client_id": "cid-9"}, timeout=10)
    assert ok.status_code == 200
    default = requests.post(f"{sim.url}/api/token", json=PW, timeout=10)
    assert default.status_code == 400


def test_config_js_exposes_client_id_without_auth(threatq_sim: ThreatQSimulator) -> None:
    resp = requests.get(f"{threatq_sim.url}/assets/js/config.js", timeout=10)
    assert resp.status_code == 200 and f'"ClientId": "{DEFAULT_CLIENT_ID}"' in resp.text


def test_simulator_logs_never_carry_credentials(threatq_sim_factory, caplog) -> None:
    import logging

    sim = threatq_sim_factory(indicators=5, events=1, client_secret="canary-SECRET-in-query-77")
    with caplog.at_level(logging.DEBUG):
        tok = requests.post(f"{sim.url}/api/token", timeout=10, params={
            "grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
            "client_secret": "canary-SECRET-in-query-77"}).json()
        requests.post(f"{sim.url}/api/token", params={"grant_type": "refresh_token",
                                                      "refresh_token": tok["refresh_token"]}, timeout=10)
        requests.get(f"{sim.url}/api/nothing", headers={"Authorization": f"Bearer {tok['access_token']}"}, timeout=10)
    # only the simulator's own records (urllib3 on the client side logs full URLs by itself)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("threatq_simulators"))
    assert "/api/token" in text
    for secret in ("canary-SECRET-in-query-77", tok["refresh_token"], tok["access_token"]):
        assert secret not in text
