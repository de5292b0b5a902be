"""Attributes per second for sharing one big ThreatQ event to MISP (mapping + real PyMISP → MISP double).

    python bench/misp_share.py --attributes 10000 --repeats 3 --chunk-size 1000

Input: one generated ThreatQ event with N indicators of mixed types (seeded). Each repeat starts
from an empty double and times ``event_to_misp`` then ``MispExporter.share`` (create + chunked
adds + publish), then a second share of the same event (the "nothing changed" path). Prints one
human line and one JSON line; the median of the repeats after one warm-up. The double runs in
this process, so the figure includes both sides of the HTTP exchange on this machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import psutil  # noqa: E402
from pymisp import PyMISP  # noqa: E402

from threatq_provider.misp.exporter import MispExporter  # noqa: E402
from threatq_provider.misp.mapping import event_to_misp  # noqa: E402
from threatq_provider.misp.options import ShareOptions  # noqa: E402
from threatq_simulators.misp_double import DEFAULT_API_KEY, MispDouble  # noqa: E402


def generate(n: int, seed: int) -> tuple[dict, list[dict]]:
    rng = random.Random(seed)
    kinds = [
        ("IP Address", lambda i: f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"),
        ("FQDN", lambda i: f"host{i}-{rng.randrange(10**6)}.example.com"),
        ("URL", lambda i: f"http://bad{i}.example.net/p/{rng.randrange(10**6)}"),
        ("MD5", lambda i: f"{rng.getrandbits(128):032x}"),
        ("SHA-256", lambda i: f"{rng.getrandbits(256):064x}"),
        ("Email Address", lambda i: f"user{i}@mail{rng.randrange(100)}.example.org"),
    ]
    indicators = []
    for i in range(n):
        name, make = kinds[i % len(kinds)]
        indicators.append({"id": i + 1, "value": make(i), "type": {"name": name}, "status": {"name": "Active"}})
    event = {"id": 424242, "title": f"Bench event ({n} indicators)", "type": {"name": "Watchlist"},
             "happened_at": "2024-05-01 00:00:00", "sources": [{"name": "bench", "tlp_id": 3}]}
    return event, indicators


def one_run(client: PyMISP, double: MispDouble, event: dict, indicators: list[dict], options: ShareOptions) -> dict:
    double.reset()
    t0 = time.perf_counter()
    mapping = event_to_misp(event, indicators, threatq_host="https://bench.threatq", options=options)
    t1 = time.perf_counter()
    created = MispExporter(client, options=options).share(mapping)
    t2 = time.perf_counter()
    again = MispExporter(client, options=options).share(
        event_to_misp(event, indicators, threatq_host="https://bench.threatq", options=options))
    t3 = time.perf_counter()
    assert created.added == len(indicators) and again.unchanged == len(indicators)
    return {"map_s": t1 - t0, "create_s": t2 - t1, "reshare_s": t3 - t2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attributes", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    event, indicators = generate(args.attributes, args.seed)
    options = ShareOptions(chunk_size=args.chunk_size)
    with MispDouble(api_key=DEFAULT_API_KEY) as double:
        client = PyMISP(double.url, DEFAULT_API_KEY, ssl=False, timeout=(5, 300), tool="bench")
        one_run(client, double, event, indicators, options)  # warm-up
        runs = [one_run(client, double, event, indicators, options) for _ in range(args.repeats)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    n = args.attributes
    first = n / (med["map_s"] + med["create_s"])
    reshare = n / (med["map_s"] + med["reshare_s"])
    rss_mb = psutil.Process().memory_info().rss / 2**20
    print(f"misp_share: {n} attributes, chunk {args.chunk_size}: first share {first:,.0f} attributes/s "
          f"(map {med['map_s']:.2f}s + MISP {med['create_s']:.2f}s), unchanged re-share {reshare:,.0f} attributes/s, "
          f"peak RSS {rss_mb:.0f} MB, median of {args.repeats} on {platform.processor() or platform.machine()}, "
          f"{psutil.cpu_count()} CPUs (MISP double in-process)")
    print(json.dumps({"bench": "misp_share", "attributes": n, "chunk_size": args.chunk_size, "repeats": args.repeats,
                      "first_share_attributes_per_s": round(first, 1),
                      "reshare_attributes_per_s": round(reshare, 1),
                      "median_s": {k: round(v, 4) for k, v in med.items()}, "peak_rss_mb": round(rss_mb, 1),
                      "cpus": psutil.cpu_count(), "python": platform.python_version()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
