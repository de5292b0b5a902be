"""Simulator-side paging throughput: how fast the ThreatQ simulator serves indicators.

Pages through the data-collection feed (cursorMark, ``fields=*,sources,attributes``) and the
``POST /api/indicators/query`` window (offset paging, ``with=attributes,sources``) with a plain
``requests.Session`` (keep-alive), no provider code, so the number is the simulator's ceiling for
the client benchmark. The simulator runs as its own process (``threatq-sim``), as users run it;
the client (parsing every page with ``json``) runs in this one.

    .venv/bin/python bench/threatq_paging_server.py --n 100000 --page-size 1000 --repeats 3

Prints one human line and one JSON line per figure. No assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
sys.path.insert(0, str(PLUGINS))

from threatq_simulators.corpus import Corpus  # noqa: E402
from threatq_simulators.threatq_sim import (  # noqa: E402
    DEFAULT_CLIENT_ID,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
)


def _session(url: str) -> requests.Session:
    s = requests.Session()
    tok = s.post(f"{url}/api/token", json={"email": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD,
                                          "grant_type": "password", "client_id": DEFAULT_CLIENT_ID}, timeout=30)
    tok.raise_for_status()
    s.headers["Authorization"] = f"Bearer {tok.json()['access_token']}"
    return s


def run_feed(s: requests.Session, url: str, coll_hash: str, page: int) -> tuple[int, int]:
    mark, count, nbytes = "*", 0, 0
    while True:
        r = s.get(f"{url}/api/indicators/query/hash/{coll_hash}", timeout=120, params={
            "cursorMark": mark, "limit": page, "sort": "updated_at",
            "fields": "*,sources,attributes,attributes.name,attributes.value"})
        r.raise_for_status()
        body = r.json()
        nbytes += len(r.content)
        if not body["data"]:
            return count, nbytes
        count += len(body["data"])
        mark = body["nextCursorMark"]


def run_window(s: requests.Session, url: str, page: int, since: str, until: str) -> tuple[int, int]:
    offset, count, nbytes = 0, 0, 0
    body = {"filters": {"+and": [{"updated_at": {"+gte": since}}, {"updated_at": {"+lt": until}}]}}
    while True:
        r = s.post(f"{url}/api/indicators/query", json=body, timeout=120, params={
            "limit": page, "offset": offset, "sort": "updated_at", "with": "attributes,sources"})
        r.raise_for_status()
        data = r.json()
        nbytes += len(r.content)
        count += len(data["data"])
        offset += page
        if offset >= data["total"]:
            return count, nbytes


def _start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "threatq_simulators.threatq_cli", "--port", "0", "--indicators",
           str(args.n), "--events", "10", "--seed", str(args.seed), "--mode", args.mode,
           "--max-limit", str(max(args.page_size, 1000))]
    env = {**os.environ, "PYTHONPATH": str(PLUGINS) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            return proc, json.loads(line)["url"]
    raise RuntimeError("threatq-sim did not start")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="indicators in the corpus")
    p.add_argument("--page-size", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--mode", choices=("v6", "legacy"), default="v6")
    args = p.parse_args(argv)

    coll = Corpus(seed=args.seed, indicators=0, events=0).collection("All indicators")["hash"]
    t0 = time.perf_counter()
    proc, url = _start_server(args)
    start_s = time.perf_counter() - t0
    server = psutil.Process(proc.pid)
    peak = 0.0
    results = {}
    try:
        s = _session(url)
        for name, fn in (("feed_cursor", lambda: run_feed(s, url, coll, args.page_size)),
                         ("query_window", lambda: run_window(s, url, args.page_size, "2026-01-01", "2026-01-08"))):
            rates = []
            count = nbytes = 0
            for _ in range(args.repeats):
                t = time.perf_counter()
                count, nbytes = fn()
                rates.append(count / (time.perf_counter() - t))
                peak = max(peak, server.memory_info().rss / 2**20)
            results[name] = {"indicators": count, "per_s_median": round(statistics.median(rates)),
                             "per_s_runs": [round(r) for r in rates], "bytes_per_indicator": round(nbytes / max(count, 1))}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    for name, r in results.items():
        print(f"threatq-sim {name}: {r['per_s_median']:,} indicators/s (median of {args.repeats}, n={args.n:,}, "
              f"page {args.page_size}, {r['bytes_per_indicator']} B/indicator, mode {args.mode}); "
              f"server up in {start_s:.2f}s, server RSS {peak:.0f} MiB, load avg {os.getloadavg()[0]:.1f}")
        print(json.dumps({"bench": f"threatq_sim_{name}", "n": args.n, "page_size": args.page_size, "mode": args.mode,
                          "repeats": args.repeats, **r, "server_start_s": round(start_s, 3),
                          "server_rss_mib": round(peak), "client_peak_rss_mib": round(_peak_rss_mb()),
                          "load_avg_1m": round(os.getloadavg()[0], 2)}))
    return 0


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    sys.exit(main())
