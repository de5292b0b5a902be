"""Layer boundaries, checked in a fresh interpreter (this pytest process has imported everything).

The mapping layers import no Airflow and no network client, so they run in any Python and stay
cheap to test; the operators import their client library only inside ``execute``, so a DAG file
(and the scheduler parsing it) never pays for it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.component

REPO = Path(__file__).resolve().parents[2]

CASES = {
    "ecs": (["threatq_provider.ecs.transform", "threatq_provider.ecs.expiry", "threatq_provider.ecs.tables"],
            ["airflow", "requests", "urllib3", "elasticsearch"]),
    "misp mapping": (["threatq_provider.misp.mapping", "threatq_provider.misp.exporter"], ["airflow"]),
    "coercion": (["threatq_provider.coerce"], ["airflow", "requests", "elasticsearch"]),
    "load and sweep operators": (["threatq_provider.operators.load", "threatq_provider.operators.sweep"],
                                 ["elasticsearch"]),
}


@pytest.mark.parametrize("modules, forbidden", CASES.values(), ids=CASES.keys())
def test_importing_the_layer_pulls_in_none_of_the_forbidden_packages(modules, forbidden):
    code = (f"import sys\nimport {', '.join(modules)}\n"
            f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})))\n")
    # Only the provider's folder on the path: nothing of the test session leaks in.
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1:] in ([], [""]), f"{modules} imported {result.stdout.strip()}"
