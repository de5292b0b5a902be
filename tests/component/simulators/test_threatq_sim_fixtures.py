"""The ThreatQ pytest fixtures: the connection JSON works for both grants against the simulator."""

from __future__ import annotations

import json
import os

import pytest
import requests

from tests.fixtures.threatq import THREATQ_CONN_ID, threatq_conn_json
from threatq_simulators.threatq_sim import (
    DEFAULT_CLIENT_ID,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    ThreatQSimulator,
)

pytestmark = pytest.mark.component


def _token(conn: dict) -> requests.Response:
    extra = conn["extra"]
    if not conn.get("login"):  # client-credentials grant: the secret is in password
        return requests.post(f"{conn['host']}/api/token", params={"grant_type": "client_credentials"},
                             auth=(extra["client_id"], conn["password"]), timeout=10)
    return requests.post(f"{conn['host']}/api/token", timeout=10, json={
        "email": conn["login"], "password": conn["password"], "grant_type": "password", "client_id": extra["client_id"]})


def test_threatq_conn_sets_the_airflow_connection(threatq_conn: str, threatq_sim: ThreatQSimulator) -> None:
    assert threatq_conn == THREATQ_CONN_ID == "threatq_default"
    conn = json.loads(os.environ["AIRFLOW_CONN_THREATQ_DEFAULT"])
    assert conn == {"conn_type": "threatq", "host": threatq_sim.url, "login": DEFAULT_USERNAME,
                    "password": DEFAULT_PASSWORD,
                    "extra": {"client_id": DEFAULT_CLIENT_ID, "verify_tls": False, "allow_insecure_http": True}}
    assert _token(conn).status_code == 200


@pytest.mark.parametrize("grant", ["password", "client_credentials"])
def test_conn_json_works_for_both_grants(threatq_sim_factory, grant: str) -> None:
    sim = threatq_sim_factory(indicators=10, events=1, client_secret="another-secret")
    conn = json.loads(threatq_conn_json(sim, grant=grant))
    assert conn["conn_type"] == "threatq" and conn["extra"]["verify_tls"] is False
    assert ("login" in conn) is (grant == "password")
    assert _token(conn).status_code == 200


def test_factory_builds_corpus_from_sizes_or_takes_one(threatq_sim_factory) -> None:
    sim = threatq_sim_factory(indicators=33, events=2, seed=5, mode="legacy")
    assert sim.corpus.indicator_count == 33 and sim.corpus.seed == 5 and sim.mode == "legacy"
    other = threatq_sim_factory(corpus=sim.corpus)
    assert other.corpus is sim.corpus and other.url != sim.url
    with pytest.raises(TypeError):
        threatq_sim_factory(corpus=sim.corpus, indicators=3)


def test_session_simulator_is_the_documented_corpus(threatq_sim: ThreatQSimulator) -> None:
    c = threatq_sim.corpus
    assert (c.seed, c.n_indicators, c.n_events) == (42, 2000, 100)
    assert threatq_sim.url.startswith("http://127.0.0.1:")
