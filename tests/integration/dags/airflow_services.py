"""A running Airflow for the scheduler tests: scheduler + api-server + dag-processor + triggerer
(``scripts/airflow-services``) as subprocesses on their own SQLite home, LocalExecutor with
parallelism 4, connections from ``AIRFLOW_CONN_*`` in their environment — as a user runs it.

``running(home, sim=..., es_url=..., extra_env=...)`` migrates the database, starts the services,
yields a :class:`Services` (the REST client, the environment, per-service stop/start for outage
tests) and stops everything on exit. Start-up costs ~20 s, so modules share one (module fixture).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[3]
AIRFLOW = str(REPO / ".venv" / "bin" / "airflow")
SCRIPT = str(REPO / "scripts" / "airflow-services")
FINISHED = ("success", "failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """Thin /api/v2 client (SimpleAuthManager with all users admin: no token needed)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.http = requests.Session()
        #: Appended to a timeout's message (the scheduler's last log lines: did it die?).
        self.diagnostics: Callable[[], str] = lambda: ""

    def get(self, path: str, **params: Any) -> Any:
        resp = self.http.get(f"{self.base}/api/v2{path}", params=params, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def post(self, path: str, body: dict) -> requests.Response:
        return self.http.post(f"{self.base}/api/v2{path}", json=body, timeout=30)

    def patch(self, path: str, body: dict) -> dict:
        resp = self.http.patch(f"{self.base}/api/v2{path}", json=body, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def wait_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            resp = self.http.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=30)
            if resp.status_code == 200:
                return
            time.sleep(1)
        errors = self.get("/importErrors")
        raise AssertionError(f"DAG {dag_id} not parsed within {timeout}s; import errors: {errors}")

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", limit=100, order_by="id")["dag_runs"]

    def wait_runs(self, dag_id: str, run_ids: set[str], timeout: float = 240) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = {r["dag_run_id"]: r for r in self.runs(dag_id) if r["dag_run_id"] in run_ids}
            if len(runs) == len(run_ids) and all(r["state"] in FINISHED for r in runs.values()):
                return runs
            time.sleep(2)
        raise AssertionError(f"runs of {dag_id} not finished in {timeout}s: {self.runs(dag_id)}\n"
                             f"{self.diagnostics()}")

    def wait_idle(self, dag_id: str, timeout: float = 180, at_least: int = 0) -> None:
        """Wait until the DAG has ``at_least`` runs and none is queued or running (e.g. the one
        unpausing creates: ``at_least=1`` also waits for the scheduler to create it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            if len(runs) >= at_least and all(r["state"] in FINISHED for r in runs):
                return
            time.sleep(2)
        raise AssertionError(f"{dag_id} still busy (or fewer than {at_least} runs) after {timeout}s: "
                             f"{self.runs(dag_id)}\n{self.diagnostics()}")

    def busy_task_instances(self) -> list[dict]:
        """Task instances of any DAG that are queued or running (sent to the executor)."""
        return self.get("/dags/~/dagRuns/~/taskInstances", state=["queued", "running"], limit=100)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        entry = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                         deserialize=True)
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in tis}

    def variable(self, key: str) -> str | None:
        resp = self.http.get(f"{self.base}/api/v2/variables/{key}", timeout=30)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()["value"]


@dataclass
class Services:
    """Running services: their REST client, the environment they (and the CLI) run with, their home."""

    api: Api
    env: dict[str, str]
    home: Path

    def stop(self, *services: str) -> None:
        """Stop some services (``"scheduler"``) or, with none named, all of them."""
        done = subprocess.run([SCRIPT, "stop", *services], env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"airflow-services stop failed:\n{done.stdout}\n{done.stderr}"

    def start(self) -> None:
        """Start whatever is not running (after :meth:`stop` of some) and wait until healthy."""
        done = subprocess.run([SCRIPT, "start"], env=self.env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"airflow-services start failed:\n{done.stdout}\n{done.stderr}"

    def log(self, service: str, lines: int = 40) -> str:
        """The last lines of a service's log (for failure messages)."""
        path = self.home / "services" / f"{service}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@contextmanager
def running(home: Path, *, sim: Any, es_url: str, extra_env: Mapping[str, str] | None = None) -> Iterator[Services]:
    """Airflow services on ``home`` with ``threatq_default`` pointing at ``sim`` and
    ``elasticsearch_default`` at ``es_url``; stopped on exit, whatever happened."""
    from tests.fixtures.threatq import threatq_conn_json

    port = free_port()
    # SQLite's default 5 s busy timeout is too short when the scheduler, the api-server, the
    # dag-processor, four workers and the backfill CLI write at once on a 2-core box.
    (home / "sqlite_settings.py").write_text('CONNECT_ARGS = {"timeout": 60}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "sqlite_settings.CONNECT_ARGS",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "sqlite_settings.CONNECT_ARGS",
        "PYTHONPATH": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "TQ_AIRFLOW_PORT": str(port),
        "AIRFLOW_CONN_THREATQ_DEFAULT": threatq_conn_json(sim, grant="client_credentials"),
        "AIRFLOW_CONN_ELASTICSEARCH_DEFAULT": json.dumps({"conn_type": "elasticsearch_ecs", "host": es_url}),
        "AIRFLOW_VAR_THREATQ_STAGE_ROOT": f"file://{home}/stage",
    })
    env.update(extra_env or {})
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=180)
    services = Services(api=Api(f"http://127.0.0.1:{port}"), env=env, home=home)
    services.api.diagnostics = lambda: "scheduler log (last lines):\n" + services.log("scheduler", 30)
    try:
        services.start()
        yield services
    finally:
        subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, timeout=120)
