"""``threatq-sim --start now-<n>d --end now``: a corpus dated up to start-up (docker-compose.yaml uses it,
so scheduled runs after ``docker compose up`` find indicators in their window)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
import requests

from threatq_simulators.threatq_cli import corpus_bounds
from threatq_simulators.threatq_sim import DEFAULT_CLIENT_ID, DEFAULT_PASSWORD, DEFAULT_USERNAME

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("now-7d", "now", (NOW - timedelta(days=7), NOW)),
        ("NOW-36h", " now ", (NOW - timedelta(hours=36), NOW)),
        ("now-90m", "now", (NOW - timedelta(minutes=90), NOW)),
        ("2026-01-01", "2026-01-08", ("2026-01-01", "2026-01-08")),  # absolute: passed on as given
        ("2026-01-01", "now", ("2026-01-01", NOW)),
    ],
)
def test_relative_bounds_count_back_from_start_up(start, end, expected) -> None:
    assert corpus_bounds(start, end, now=NOW) == expected


def test_a_misspelt_relative_bound_reaches_the_corpus_and_is_refused() -> None:
    # "now-7w" is not a relative form, so the corpus parses it as a date and says it cannot.
    result = subprocess.run(
        [sys.executable, "-m", "threatq_simulators.threatq_cli", "--port", "0", "--start", "now-7w"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert "now-7w" in result.stderr


@pytest.mark.component
def test_served_indicators_end_at_start_up() -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "threatq_simulators.threatq_cli", "--port", "0", "--indicators", "200",
         "--events", "2", "--start", "now-2d", "--end", "now"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        info = None
        for _ in range(40):
            line = proc.stdout.readline()
            if line.startswith("{"):
                info = json.loads(line)
                break
        assert info is not None, proc.stderr.read() if proc.poll() is not None else "no URL line"
        after = datetime.now(timezone.utc)
        url = info["url"]
        token = requests.post(f"{url}/api/token", json={"email": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD,
                                                        "grant_type": "password", "client_id": DEFAULT_CLIENT_ID},
                              timeout=10).json()["access_token"]
        rows = requests.get(f"{url}/api/indicators", headers={"Authorization": f"Bearer {token}"},
                            params={"limit": 500}, timeout=10).json()["data"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        proc.stdout.close()
        proc.stderr.close()
    assert len(rows) == 200
    stamps = sorted(datetime.fromisoformat(r["updated_at"]).replace(tzinfo=timezone.utc) for r in rows)
    assert before - timedelta(days=2) <= stamps[0]
    assert stamps[-1] < after
    # Spread over the two days up to start-up: the newest is recent, not days old.
    assert after - stamps[-1] < timedelta(hours=6)
