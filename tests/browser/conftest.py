"""A real Airflow UI in a real browser: one api-server + scheduler + dag-processor + triggerer
(``scripts/airflow-services``) for the test module, Debian's Chromium driven by Playwright.

* ``stack`` (module: stopped once the module is done, not at the end of the suite): the
  services on their own SQLite home, the simple auth manager with one known user
  (``ADMIN``/``ADMIN_PASSWORD``), ``AIRFLOW_CONN_*`` connections to a ThreatQ
  simulator (indicators and events updated yesterday), a MISP double and the local
  Elasticsearch node; ``[core] test_connection`` enabled so the UI shows the Test button.
* ``browser`` (module): Chromium from ``CHROMIUM`` (default ``/usr/bin/chromium``), launched
  with ``executable_path``: Playwright's own browser download (``playwright install``) is never
  used. A missing Chromium fails the tests, with the command that installs it (never a skip).
* ``page``: a fresh browser context logged in as ``ADMIN``.
* ``shots``: ``shots("step")`` saves a full-page screenshot of the page as a test artefact
  under ``.artifacts/browser/<test>/`` (git-ignored; the folder is printed at the end of the run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(REPO / ".venv" / "bin" / "airflow")
SERVICES = str(REPO / "scripts" / "airflow-services")
ARTIFACTS = Path(os.environ.get("TQ_BROWSER_ARTIFACTS", REPO / ".artifacts" / "browser"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ADMIN, ADMIN_PASSWORD = "admin", "ui-test-Adm1n"
DAG_IDS = ("threatq_indicators_to_elasticsearch", "threatq_events_to_misp", "threatq_ioc_expiry_sweep",
           "threatq_deletion_reconcile", "example_threatq_actions")
UNPAUSED_AT_START = ("threatq_indicators_to_elasticsearch", "threatq_events_to_misp")

# The simulator's data: indicators and events updated yesterday (UTC). With the indicators DAG on a
# daily cron (THREATQ_INDICATORS_CRON), a manual run's data interval is exactly that day.
TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
YESTERDAY = TODAY - timedelta(days=1)

#: Test steps that produced screenshots, for the summary at the end of the run.
_SHOT_DIRS: list[Path] = []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """/api/v2 with a JWT of ``ADMIN`` (read-back and waiting only: the tests act through the UI)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.http = requests.Session()
        token = self.http.post(f"{self.base}/auth/token", json={"username": ADMIN, "password": ADMIN_PASSWORD},
                               timeout=30)
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        resp = self.http.get(f"{self.base}/api/v2{path}", params=params, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        resp = self.http.patch(f"{self.base}/api/v2{path}", json=body, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.get(f"/dags/{dag_id}/dagRuns", limit=100, order_by="id")["dag_runs"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"] + ("" if ti["map_index"] < 0 else f"[{ti['map_index']}]"): ti["state"] for ti in tis}

    def wait_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.http.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=30).status_code == 200:
                return
            time.sleep(1)
        raise AssertionError(f"DAG {dag_id} not parsed within {timeout}s; import errors: {self.get('/importErrors')}")

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(2)
        raise AssertionError(f"run {run_id} of {dag_id} not finished in {timeout}s: "
                             f"{self.task_states(dag_id, run_id)}")

    def wait_all_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Wait for every run of the DAG (a scheduled one queued behind a manual one included)."""
        return [self.wait_run(dag_id, run["dag_run_id"]) for run in self.runs(dag_id)]

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        entry = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                         map_index=map_index, deserialize=True)
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's Chromium; fails (never skips) when it is missing."""
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if not path:
        pytest.fail(f"Chromium not found at {CHROMIUM} nor on PATH: the browser tests need Debian's chromium "
                    "(apt-get update && apt-get install -y chromium; scripts/test installs it when run as root), "
                    "or set CHROMIUM to a Chromium binary", pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Never pw.chromium.launch() without executable_path: that wants Playwright's own download.
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, es_url: str, es_client: Any) -> Iterator[SimpleNamespace]:
    from tests.fixtures.misp import MISP_CANARY_KEY, MispDouble, misp_connection_json
    from tests.fixtures.threatq import threatq_conn_json
    from tests.integration.dags import helpers
    from tests.integration.dags.conftest import start_simulator

    helpers.wipe_threatq_indices(es_client)
    home = tmp_path_factory.mktemp("airflow-ui")
    sim = start_simulator(seed=14, indicators=400, events=6, start=YESTERDAY, end=TODAY)
    misp = MispDouble(api_key=MISP_CANARY_KEY)
    misp.start()
    port = _free_port()
    (home / "sqlite_settings.py").write_text('CONNECT_ARGS = {"timeout": 60}\n')
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({ADMIN: ADMIN_PASSWORD}))
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
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "TQ_AIRFLOW_PORT": str(port),
        "THREATQ_INDICATORS_CRON": "0 0 * * *",
        "AIRFLOW_CONN_THREATQ_DEFAULT": threatq_conn_json(sim, grant="client_credentials"),
        "AIRFLOW_CONN_MISP_DEFAULT": misp_connection_json(misp.url),
        "AIRFLOW_CONN_ELASTICSEARCH_DEFAULT": json.dumps({"conn_type": "elasticsearch_ecs", "host": es_url,
                                                          "extra": {"allow_insecure_http": True}}),
        "AIRFLOW_VAR_THREATQ_STAGE_ROOT": f"file://{home}/stage",
    })
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=180)
    started = subprocess.run([SERVICES, "start"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, f"airflow-services start failed:\n{started.stdout}\n{started.stderr}"
        api = Api(f"http://127.0.0.1:{port}")
        for dag_id in DAG_IDS:
            api.wait_dag(dag_id)
        # Unpaused now, so the run their schedule starts on unpausing (catchup off: the latest
        # interval) overlaps the first browser steps instead of delaying the first trigger. The
        # sweep, the reconciliation and the actions DAG stay paused: tests unpause them through the UI.
        for dag_id in UNPAUSED_AT_START:
            api.patch(f"/dags/{dag_id}", {"is_paused": False})
        yield SimpleNamespace(url=api.base, api=api, env=env, sim=sim, misp=misp, home=home, es=es_client)
    finally:
        subprocess.run([SERVICES, "stop"], env=env, capture_output=True, timeout=120)
        sim.stop()
        misp.stop()


def login(page: Any, base: str) -> None:
    """Log in through the simple auth manager's form."""
    page.goto(f"{base}/")
    page.get_by_label("Username").fill(ADMIN)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name=re.compile("sign in", re.I)).click()
    page.wait_for_url(lambda url: "/auth/" not in url, timeout=30_000)
    page.get_by_role("link", name="Dags").first.wait_for()  # the UI's navigation: logged in


@pytest.fixture
def page(browser: Any, stack: SimpleNamespace) -> Iterator[Any]:
    # Tall enough for a whole trigger dialog in one screenshot; the clipboard for the XCom Copy button.
    context = browser.new_context(viewport={"width": 1440, "height": 2000}, locale="en-US", timezone_id="UTC",
                                  permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(30_000)
    page = context.new_page()
    login(page, stack.url)
    yield page
    context.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Callable[..., Path]:
    """``shots(page, "step")`` → ``.artifacts/browser/<test>/NN-step.png`` (full page)."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _SHOT_DIRS.append(folder)
    count = 0

    def shot(page: Any, step: str) -> Path:
        nonlocal count
        count += 1
        path = folder / f"{count:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', step)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return shot


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SHOT_DIRS:
        terminalreporter.write_line(f"browser tests: screenshots of each step under {ARTIFACTS}/ "
                                    f"({len(_SHOT_DIRS)} tests)")
