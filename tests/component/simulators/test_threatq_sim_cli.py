"""The ``threatq-sim`` console script: help text with defaults, start-up output, clean stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest
import requests

from threatq_simulators.threatq_cli import build_parser
from threatq_simulators.threatq_sim import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
)

pytestmark = pytest.mark.component


def test_help_lists_every_flag_with_its_default() -> None:
    out = subprocess.run([sys.executable, "-m", "threatq_simulators.threatq_cli", "--help"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    flat = " ".join(out.split())
    for flag in ("--port", "--host", "--indicators", "--events", "--seed", "--start", "--end", "--mode", "--faults",
                 "--token-ttl", "--id-offset", "--client-id", "--username", "--password", "--client-secret"):
        assert flag in flat
    for default in ("8480", "127.0.0.1", "2000", "(default: 100)", "(default: 42)", "2026-01-01", "2026-01-08",
                    "(default: v6)", "3600", DEFAULT_CLIENT_ID, DEFAULT_USERNAME, DEFAULT_PASSWORD, DEFAULT_CLIENT_SECRET):
        assert default in flat, default
    actions = [a for a in build_parser()._actions if a.dest != "help"]
    assert all(a.help for a in actions)


def test_runs_serves_and_stops_on_sigterm(tmp_path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"path_regex": "^/api/indicator/statuses", "status": 503, "times": 1}]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "threatq_simulators.threatq_cli", "--port", "0", "--indicators", "50",
         "--events", "3", "--mode", "legacy", "--faults", str(plan), "--id-offset", "10", "--token-ttl", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        info = None
        lines = []
        for _ in range(40):
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("{"):
                info = json.loads(line)
                break
        assert info is not None, textwrap.shorten("".join(lines), 500)
        text = "".join(lines)
        assert DEFAULT_PASSWORD in text and DEFAULT_CLIENT_SECRET in text and "/api/indicators/query/hash/" in text
        url = info["url"]
        tok = requests.post(f"{url}/api/token", json={"email": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD,
                                                      "grant_type": "password", "client_id": DEFAULT_CLIENT_ID},
                            timeout=10).json()
        assert tok["expires_in"] == 120
        hdr = {"Authorization": f"Bearer {tok['access_token']}"}
        assert requests.get(f"{url}/api/indicator/statuses", headers=hdr, timeout=10).status_code == 503
        statuses = requests.get(f"{url}/api/indicator/statuses", headers=hdr, timeout=10).json()["data"]
        assert statuses[0]["id"] == 11
        rows = requests.get(f"{url}/api/indicators", headers=hdr, params={"limit": 5}, timeout=10).json()["data"]
        assert all("attributes" in r and "sources" in r for r in rows)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
        proc.stdout.close()
        proc.stderr.close()
    assert rc == 0


def test_a_chosen_password_and_client_secret_are_not_printed() -> None:
    canary_pw, canary_secret = "canary-PW-cli-5c1d", "canary-SECRET-cli-8e2f"
    proc = subprocess.Popen(
        [sys.executable, "-m", "threatq_simulators.threatq_cli", "--port", "0", "--indicators", "5",
         "--events", "1", "--password", canary_pw, "--client-secret", canary_secret],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        for _ in range(40):
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("{"):
                break
        text = "".join(lines)
        assert text.rstrip().endswith("}"), textwrap.shorten(text, 500)
        assert "<from --password>" in text and "<from --client-secret>" in text
        assert canary_pw not in text and canary_secret not in text
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
        proc.stdout.close()
        proc.stderr.close()
    assert rc == 0
