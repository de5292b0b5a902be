"""Test-wide set-up.

Airflow reads its configuration when first imported, so AIRFLOW_HOME and the DAGs folder are set
here, before any test module imports airflow. Fixtures for the real services live in
``tests/fixtures/`` and are registered as plugins below.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

_airflow_home = Path(tempfile.mkdtemp(prefix="tq-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_airflow_home)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO_ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__TEST_CONNECTION"] = "Enabled"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_airflow_home / 'airflow.db'}"

pytest_plugins = [
    "tests.fixtures.airflow",
    "tests.fixtures.threatq",
    "tests.fixtures.elasticsearch",
    "tests.fixtures.opensearch",
    "tests.fixtures.misp",
]
