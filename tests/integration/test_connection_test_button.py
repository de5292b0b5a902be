"""What the UI's connection Test button gets from Airflow 3.3's real API route, in process.

The route (``POST /api/v2/connections/test``, Airflow's FastAPI app through ``TestClient``) tests
a copy of the connection under a random id; our hooks' messages still name the connection the
user tested (``threatq_provider._conn_test``). For a stored connection the UI posts
``"port": 0`` when Port is empty, which Airflow 3.3.2 refuses (apache/airflow#73298); our forms
show Port, and a stored Port makes the same request pass. ``tests/browser`` clicks the button.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.misp import MISP_CANARY_KEY

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.component]

PORT_REFUSAL = "The host or port to test differs from the stored connection"


@pytest.fixture(scope="module")
def api(airflow_db: None) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
        env.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
        from airflow.api_fastapi.app import create_app

        with TestClient(create_app("core")) as client:
            yield client


def _test(api: Any, body: dict[str, Any]) -> Any:
    return api.post("/api/v2/connections/test", json=body)


def test_messages_name_the_tested_connection_not_airflows_temporary_copy(api, threatq_sim_factory, misp_double,
                                                                         es_url):
    sim = threatq_sim_factory(indicators=5, events=1)
    bodies = {
        # plain http without the opt-in: refused before any request, naming the connection
        "tq_ui_named": {"conn_type": "threatq", "host": sim.url, "password": sim.client_secret,
                        "extra": json.dumps({"client_id": sim.client_id})},
        # MISP answers 403 to a wrong key
        "misp_ui_named": {"conn_type": "misp", "host": misp_double.url, "password": "not-the-key",
                          "extra": json.dumps({"allow_insecure_http": True})},
        "es_ui_named": {"conn_type": "elasticsearch_ecs", "host": es_url, "password": "id:key"},
    }
    for conn_id, body in bodies.items():
        resp = _test(api, {"connection_id": conn_id, **body})
        assert resp.status_code == 200, resp.text
        result = resp.json()
        assert result["status"] is False, result
        assert repr(conn_id) in result["message"], result["message"]
    assert MISP_CANARY_KEY not in json.dumps(bodies)


def test_the_ui_port_zero_is_refused_unless_the_connection_stores_its_port(api, threatq_sim_factory):
    """The Test button's request (stored values, masked password, ``"port": 0`` for no port)."""
    sim = threatq_sim_factory(indicators=5, events=1)
    port = int(sim.url.rsplit(":", 1)[1])
    stored = {"conn_type": "threatq", "host": "http://127.0.0.1", "password": sim.client_secret,
              "extra": json.dumps({"client_id": sim.client_id, "allow_insecure_http": True})}
    button = {**stored, "password": "***", "login": "", "schema": "", "description": ""}

    created = api.post("/api/v2/connections", json={"connection_id": "tq_no_port", **stored})
    assert created.status_code == 201, created.text
    refused = _test(api, {"connection_id": "tq_no_port", **button, "port": 0})
    assert refused.status_code == 400 and PORT_REFUSAL in refused.text, (
        "Airflow no longer refuses port 0 (apache/airflow#73298 released?): the Port field and the "
        f"Test-button note of docs/connections.md can go. Answer: {refused.status_code} {refused.text}")

    created = api.post("/api/v2/connections", json={"connection_id": "tq_with_port", **stored, "port": port})
    assert created.status_code == 201, created.text
    passed = _test(api, {"connection_id": "tq_with_port", **button, "port": port})
    assert passed.status_code == 200, passed.text
    assert passed.json() == {"status": True, "message": passed.json()["message"]}
    assert passed.json()["message"].startswith(f"Connected to ThreatQ at http://127.0.0.1:{port} as ")
