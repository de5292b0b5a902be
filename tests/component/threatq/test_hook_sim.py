"""ThreatQHook against the simulator, and ``airflow connections test`` run as users run it (real CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.threatq import threatq_conn_json
from threatq_provider.threatq.hook import ThreatQHook

pytestmark = pytest.mark.component

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CANARY = "canary-S3CRET-cli-31d2"


@pytest.mark.parametrize("grant, identity", [
    ("password", "analyst@threatq.local (password grant)"),
    ("client_credentials", "OAuth client (client-credentials grant)"),
])
def test_test_connection_succeeds_with_either_grant(monkeypatch, threatq_sim, grant, identity):
    monkeypatch.setenv("AIRFLOW_CONN_THREATQ_DEFAULT", threatq_conn_json(threatq_sim, grant))
    ok, message = ThreatQHook().test_connection()
    assert (ok, message) == (True, f"Connected to ThreatQ at {threatq_sim.url} as {identity}")


def test_hook_client_runs_actions(threatq_conn, threatq_sim):
    hook = ThreatQHook()
    try:
        assert hook.get_client().get_indicator(3)["data"]["id"] == 3
        assert hook.get_client() is hook.get_client()
    finally:
        hook.close()


def test_test_connection_with_wrong_secret_is_readable_and_secret_free(monkeypatch, threatq_sim):
    conn = json.loads(threatq_conn_json(threatq_sim, "client_credentials"))
    conn["password"] = CANARY
    monkeypatch.setenv("AIRFLOW_CONN_THREATQ_DEFAULT", json.dumps(conn))
    ok, message = ThreatQHook().test_connection()
    assert ok is False
    assert "credentials refused" in message and "HTTP 400" in message and threatq_sim.url in message
    assert CANARY not in message


def _cli_test(conn_json: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRFLOW_CONN_THREATQ_DEFAULT": conn_json, "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
    return subprocess.run([AIRFLOW, "connections", "test", "threatq_default"], capture_output=True, text=True,
                          timeout=180, env=env)


def test_airflow_connections_test_cli_succeeds_against_the_simulator(threatq_sim):
    result = _cli_test(threatq_conn_json(threatq_sim))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-2000:]
    assert "Connection success!" in out


def test_airflow_connections_test_cli_fails_readably(threatq_sim):
    conn = json.loads(threatq_conn_json(threatq_sim))
    conn["password"] = CANARY
    result = _cli_test(json.dumps(conn))
    out = result.stdout + result.stderr
    assert "Connection failed!" in out
    assert "credentials refused" in out
    assert CANARY not in out


def test_airflow_connections_test_cli_unreachable_host():
    conn = {"conn_type": "threatq", "host": "http://127.0.0.1:9", "login": "a@b.c", "password": CANARY,
            "extra": {"client_id": "cid", "timeout": 2, "allow_insecure_http": True}}
    result = _cli_test(json.dumps(conn))
    out = result.stdout + result.stderr
    assert "Connection failed!" in out and "Cannot connect to ThreatQ at http://127.0.0.1:9" in out
    assert CANARY not in out
