"""Helpers for the ThreatQ simulator component tests (plain ``requests`` over real HTTP)."""

from __future__ import annotations

import pytest
import requests

from threatq_simulators.threatq_sim import ThreatQSimulator


def token_for(sim: ThreatQSimulator) -> str:
    """A fresh access token through the password grant (JSON body)."""
    resp = requests.post(
        f"{sim.url}/api/token",
        json={"email": sim.username, "password": sim.password, "grant_type": "password", "client_id": sim.client_id},
        timeout=10,
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def api_session(sim: ThreatQSimulator) -> requests.Session:
    """A keep-alive session carrying a valid bearer token."""
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token_for(sim)}"
    s.headers["Accept"] = "application/json"
    return s


@pytest.fixture
def api(threatq_sim: ThreatQSimulator) -> requests.Session:
    """An authenticated session to the session simulator (faults cleared first)."""
    threatq_sim.faults.clear()
    with api_session(threatq_sim) as s:
        yield s
