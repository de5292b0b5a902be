"""Requests per second of one keep-alive client against each simulator (TCP_NODELAY, issue #17).

    python bench/simulators_keepalive.py --requests 500
    python bench/simulators_keepalive.py --requests 100 --nagle     # Nagle back on, for comparison

Starts the ThreatQ simulator and the MISP double in this process (server threads), then sends
``--requests`` small authenticated GETs, one at a time, over one ``requests.Session`` (one
keep-alive connection) to each: ``GET /api/indicator/statuses`` and ``GET /servers/getVersion``.
Both servers write headers and body in two ``send`` calls; with Nagle on, the second waits for
the client's delayed ACK of the first (~40 ms on Linux) on every request after the first few.
Prints one human line per server and one JSON line; the client and the servers share this
process (and its GIL), so the rates include both ends.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import requests

from threatq_simulators._http import FaultingHandler
from threatq_simulators.corpus import Corpus
from threatq_simulators.misp_double import DEFAULT_API_KEY, MispDouble
from threatq_simulators.threatq_sim import ThreatQSimulator


def measure(session: requests.Session, url: str, n: int) -> dict[str, float]:
    """Time ``n`` sequential GETs of ``url`` on one session (after one warm-up request)."""
    session.get(url, timeout=30).raise_for_status()
    latencies = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        resp = session.get(url, timeout=30)
        latencies.append(time.perf_counter() - t0)
        resp.raise_for_status()
    wall = time.perf_counter() - start
    latencies.sort()
    return {"requests": n, "seconds": round(wall, 3), "requests_per_s": round(n / wall, 1),
            "median_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per server")
    parser.add_argument("--nagle", action="store_true", help="turn Nagle back on (TCP_NODELAY off) in both servers")
    args = parser.parse_args()
    if args.nagle:
        FaultingHandler.disable_nagle_algorithm = False  # both servers' handlers inherit it

    results = {}
    with ThreatQSimulator(Corpus(seed=1, indicators=100, events=2)) as sim, MispDouble() as double:
        with requests.Session() as tq:
            token = tq.post(f"{sim.url}/api/token", json={"email": sim.username, "password": sim.password,
                                                          "grant_type": "password", "client_id": sim.client_id},
                            timeout=30).json()["access_token"]
            tq.headers["Authorization"] = f"Bearer {token}"
            results["threatq-sim"] = measure(tq, f"{sim.url}/api/indicator/statuses", args.requests)
        with requests.Session() as misp:
            misp.headers.update({"Authorization": DEFAULT_API_KEY, "Accept": "application/json"})
            results["misp-double"] = measure(misp, f"{double.url}/servers/getVersion", args.requests)

    nodelay = "off (Nagle on)" if args.nagle else "on"
    for name, r in results.items():
        print(f"{name}: {r['requests_per_s']:,.0f} requests/s over one keep-alive connection "
              f"(median {r['median_ms']} ms, p99 {r['p99_ms']} ms, {r['requests']} requests; TCP_NODELAY {nodelay})")
    print(json.dumps({"bench": "simulators_keepalive", "tcp_nodelay": not args.nagle, "results": results,
                      "python": platform.python_version(), "machine": platform.machine()}))


if __name__ == "__main__":
    main()
