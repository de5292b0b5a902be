"""Airflow's audit log after ``airflow connections add --conn-json``: where each secret ends up.

The real CLI runs in subprocesses on a fresh SQLite ``AIRFLOW_HOME``; the ``log`` table is then read
directly. Airflow masks the top-level ``password`` of the JSON it records, never a value inside
``extra``, so the recommended forms keep every secret in Password, and the stored connections are
shown to work (``airflow connections test`` against the ThreatQ simulator and the MISP double).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.component]

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
TQ_SECRET = "canary-tq-client-secret-audit-81f3"
TQ_PASSWORD = "canary-tq-password-audit-2b6e"
MISP_KEY = "canary-misp-key-audit-0123456789abcdef"
ES_API_KEY = "canary-es-id:canary-es-api-key-audit-77a0"
LEGACY_SECRET = "canary-legacy-extra-secret-audit-5d19"


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    """A migrated, empty Airflow home for the CLI (no connections, no test-mode settings)."""
    home = tmp_path_factory.mktemp("audit-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"})
    done = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return home, env


def airflow(env: dict, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    done = subprocess.run([AIRFLOW, *args], env={**env, **extra_env}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    return done


def audit_log(home: Path) -> list[str]:
    """The ``extra`` of every ``connections add`` row of Airflow's ``log`` table."""
    with sqlite3.connect(home / "airflow.db") as db:
        return [row[0] for row in db.execute("SELECT extra FROM log WHERE event = 'cli_connections_add'")]


def test_the_recommended_forms_keep_every_secret_out_of_the_audit_log_and_work(
        airflow_home, threatq_sim_factory, misp_double_factory):
    home, env = airflow_home
    sim = threatq_sim_factory(indicators=20, events=1, client_secret=TQ_SECRET, password=TQ_PASSWORD)
    double = misp_double_factory(api_key=MISP_KEY)
    lab = {"verify_tls": False, "allow_insecure_http": True}  # the simulators speak plain http
    connections = {
        # Client-credentials grant: Login empty, the client secret in Password.
        "tq_client": {"conn_type": "threatq", "host": sim.url, "password": TQ_SECRET,
                      "extra": {"client_id": sim.client_id, **lab}},
        "tq_user": {"conn_type": "threatq", "host": sim.url, "login": sim.username, "password": TQ_PASSWORD,
                    "extra": {"client_id": sim.client_id, **lab}},
        "misp_rec": {"conn_type": "misp", "host": double.url, "password": MISP_KEY, "extra": lab},
        # API key: Login empty, the key in Password.
        "es_rec": {"conn_type": "elasticsearch_ecs", "host": "https://es.example:9200", "password": ES_API_KEY},
    }
    for conn_id, conn in connections.items():
        airflow(env, "connections", "add", conn_id, "--conn-json", json.dumps(conn))

    rows = audit_log(home)
    assert len(rows) == len(connections) and all('\\"password\\": \\"********\\"' in r for r in rows)
    for secret in (TQ_SECRET, TQ_PASSWORD, MISP_KEY, ES_API_KEY, *ES_API_KEY.split(":")):
        assert not [r for r in rows if secret in r], f"{secret} is in Airflow's log table"
    for conn_id in ("tq_client", "misp_rec"):  # the stored connections work as they are
        out = airflow(env, "connections", "test", conn_id).stdout
        assert "Connection success!" in out, out[-1000:]
    assert sim.stats["by_path"]["POST /api/token"] == 1  # the client-credentials grant, accepted


def test_a_secret_in_extra_reaches_the_audit_log_unless_extra_is_a_sensitive_name(airflow_home):
    # Airflow's own behaviour, which docs/connections.md documents: the legacy form leaks into the log
    # table, and [core] sensitive_var_conn_names = extra masks the whole extra in that record.
    home, env = airflow_home
    legacy = {"conn_type": "threatq", "host": "https://tq.example", "extra": {"client_id": "cid",
                                                                             "client_secret": LEGACY_SECRET}}
    airflow(env, "connections", "add", "tq_legacy", "--conn-json", json.dumps(legacy))
    (plain,) = [r for r in audit_log(home) if "tq_legacy" in r]
    assert LEGACY_SECRET in plain

    airflow(env, "connections", "add", "tq_legacy_masked", "--conn-json", json.dumps(legacy),
            AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES="extra")
    (masked,) = [r for r in audit_log(home) if "tq_legacy_masked" in r]
    assert LEGACY_SECRET not in masked and '\\"extra\\": \\"********\\"' in masked
