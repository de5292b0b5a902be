"""The scale-out set-up of ``scripts/cluster`` for the fault tests, and a small /api/v2 client.

The set-up is used when ``scripts/cluster status`` says it runs (CI starts it before the tests);
otherwise this module starts it and stops it afterwards. Its start failing fails the tests: they
are never skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[3]
CLUSTER = REPO / "scripts" / "cluster"


def cluster_cmd(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``scripts/cluster`` without the test process's own Airflow/Elasticsearch settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TQ_ES_"))}
    done = subprocess.run([str(CLUSTER), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"scripts/cluster {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


class Api:
    """Airflow's /api/v2 (SimpleAuthManager with every user admin: no token needed)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.http = requests.Session()

    def get(self, path: str, **params: Any) -> Any:
        resp = self.http.get(f"{self.base}/api/v2{path}", params=params, timeout=60)
        resp.raise_for_status()
        return resp.json()

    def post(self, path: str, body: dict) -> requests.Response:
        return self.http.post(f"{self.base}/api/v2{path}", json=body, timeout=60)

    def patch(self, path: str, body: dict) -> Any:
        resp = self.http.patch(f"{self.base}/api/v2{path}", json=body, timeout=60)
        resp.raise_for_status()
        return resp.json()

    def put_connection(self, conn_id: str, conn: dict[str, Any]) -> None:
        body = {"connection_id": conn_id, **{k: v for k, v in conn.items() if k != "extra"},
                "extra": json.dumps(conn.get("extra") or {})}
        self.http.delete(f"{self.base}/api/v2/connections/{conn_id}", timeout=60)
        resp = self.post("/connections", body)
        assert resp.status_code == 201, resp.text

    def put_variable(self, key: str, value: str) -> None:
        self.http.delete(f"{self.base}/api/v2/variables/{key}", timeout=60)
        resp = self.post("/variables", {"key": key, "value": value})
        assert resp.status_code == 201, resp.text

    def wait_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.http.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=60).status_code == 200:
                return
            time.sleep(2)
        raise AssertionError(f"DAG {dag_id} not parsed within {timeout}s: {self.get('/importErrors')}")

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", limit=100, order_by="id")["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")

    def wait_runs(self, dag_id: str, run_ids: set[str], timeout: float = 900) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = {r["dag_run_id"]: r for r in self.runs(dag_id) if r["dag_run_id"] in run_ids}
            if len(runs) == len(run_ids) and all(r["state"] in ("success", "failed") for r in runs.values()):
                return runs
            time.sleep(3)
        raise AssertionError(f"runs of {dag_id} not finished in {timeout}s: "
                             f"{[(r['dag_run_id'], r['state']) for r in self.runs(dag_id)]}")

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict]:
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti for ti in tis}

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict]:
        """Every try of a task instance (the current one included), oldest first."""
        got = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")["task_instances"]
        return sorted(got, key=lambda t: t["try_number"])

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        resp = self.http.get(f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
                             "/xcomEntries/return_value", params={"deserialize": True}, timeout=60)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        value = resp.json()["value"]
        return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value


@pytest.fixture(scope="session")
def cluster() -> Iterator[SimpleNamespace]:
    """The running set-up (started here when it is not): its addresses, an API client, and
    ``AIRFLOW_CONN_AWS_DEFAULT`` in this process so the test reads stage files as the tasks do."""
    started_here = cluster_cmd("status", check=False).returncode != 0
    if started_here:
        cluster_cmd("start", timeout=1200)
    info = json.loads(cluster_cmd("env", "--json").stdout)
    saved = os.environ.get("AIRFLOW_CONN_AWS_DEFAULT")
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = info["airflow_env"]["AIRFLOW_CONN_AWS_DEFAULT"]
    try:
        yield SimpleNamespace(**info, api=Api(info["api_url"]), started_here=started_here)
    finally:
        if saved is None:
            os.environ.pop("AIRFLOW_CONN_AWS_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = saved
        if started_here:
            cluster_cmd("stop", timeout=600, check=False)
