"""Benchmark: ThreatQ client paging throughput (indicators/s) and peak RSS against the simulator.

The simulator runs in a subprocess (``threatq-sim``), so client and server do not share a GIL;
the figure is what one client process pulls from one simulator over loopback HTTP.

    python bench/threatq_paging.py --indicators 100000 --page-size 1000 --repeats 3
    python bench/threatq_paging.py --mode collection

Prints one human line and one JSON line; no assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from threatq_provider.threatq.client import ClientCredentials, RetryPolicy, ThreatQClient  # noqa: E402

# A window wide enough to cover the whole seeded corpus.
WINDOW = ("2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"simulator exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("simulator did not start listening in time")


def _sim_defaults() -> tuple[str, str]:
    from threatq_simulators import threatq_sim

    return threatq_sim.DEFAULT_CLIENT_ID, threatq_sim.DEFAULT_CLIENT_SECRET


def _rss_kib(pid: int) -> int | None:
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss // 1024)
    except Exception:  # psutil missing or process gone: the figure is optional
        return None


def _page_once(client: ThreatQClient, mode: str, collection: str, page_size: int) -> tuple[int, int, float]:
    started = time.perf_counter()
    count = pages = 0
    if mode == "window":
        for page in client.iter_indicator_pages(*WINDOW, page_size=page_size):
            pages += 1
            count += len(page)
    else:
        for cpage in client.iter_collection_pages(collection, page_size=page_size):
            pages += 1
            count += len(cpage.indicators)
    return count, pages, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--indicators", type=int, default=100_000, help="corpus size (default 100000)")
    parser.add_argument("--page-size", type=int, default=1000, help="rows per request (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default 3)")
    parser.add_argument("--seed", type=int, default=42, help="corpus seed (default 42)")
    parser.add_argument("--mode", choices=("window", "collection"), default="window",
                        help="window: keyset paging of POST /api/indicators/query; collection: cursorMark feed")
    parser.add_argument("--collection", default=None,
                        help="collection hash (collection mode; default: the simulator's 'All indicators')")
    args = parser.parse_args()

    if args.mode == "collection" and not args.collection:
        from threatq_simulators.corpus import Corpus

        # Collection hashes depend on the seed only; an empty corpus is enough to read them.
        args.collection = Corpus(seed=args.seed, indicators=0, events=0).collections[0]["hash"]
    port = _free_port()
    cmd = [sys.executable, "-m", "threatq_simulators.threatq_cli", "--port", str(port),
           "--indicators", str(args.indicators), "--seed", str(args.seed)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(port, proc)
        client_id, secret = _sim_defaults()
        with ThreatQClient(f"http://127.0.0.1:{port}", auth=ClientCredentials(client_id, secret),
                           retry=RetryPolicy(total=2), timeout=(5, 120), page_size=args.page_size) as client:
            _page_once(client, args.mode, args.collection, args.page_size)  # warm-up (token, caches)
            runs = [_page_once(client, args.mode, args.collection, args.page_size) for _ in range(args.repeats)]
        server_rss = _rss_kib(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    counts = {c for c, _, _ in runs}
    seconds = statistics.median(s for _, _, s in runs)
    indicators = runs[0][0]
    rate = indicators / seconds if seconds else 0.0
    peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {
        "bench": "threatq_paging",
        "mode": args.mode,
        "indicators": indicators,
        "pages": runs[0][1],
        "page_size": args.page_size,
        "repeats": args.repeats,
        "median_s": round(seconds, 3),
        "indicators_per_s": round(rate, 1),
        "client_peak_rss_mib": round(peak_rss_kib / 1024, 1),
        "server_rss_mib": round(server_rss / 1024, 1) if server_rss else None,
        "consistent_counts": len(counts) == 1,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    print(f"threatq_paging ({args.mode}): {indicators} indicators in {result['pages']} pages of "
          f"{args.page_size}, median {seconds:.2f}s over {args.repeats} runs → {rate:,.0f} indicators/s; "
          f"client peak RSS {result['client_peak_rss_mib']} MiB, server RSS {result['server_rss_mib']} MiB")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
