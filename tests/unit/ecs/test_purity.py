"""The ECS package is pure: importing it pulls in no Airflow and no network client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_ecs_package_imports_no_airflow_or_http_client() -> None:
    code = (
        "import sys\n"
        "import threatq_provider.ecs.transform, threatq_provider.ecs.expiry, threatq_provider.ecs.tables\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'requests', 'urllib3', 'elasticsearch'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPATH": str(REPO_ROOT / "plugins"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
