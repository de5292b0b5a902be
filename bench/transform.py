"""Throughput of the ThreatQ → ECS transform, single process.

Generates a seeded corpus of raw ThreatQ indicators of every default type, with attributes and
sources (the simulator's corpus when ``threatq_simulators.corpus`` exists, else the
generator below), then times, after a warm-up, the median of ``--repeats`` runs of:

* ``indicator_to_ecs``: the mapping alone, on parsed dicts;
* ``transform_stream``: NDJSON bytes in → NDJSON out, as the operator runs it, once on the native
  engine (``native/``, Rust; lines it hands back take the Python path) and once on the Python
  engine alone (JSON decode + mapping + encode);
* ``codec_baseline``: msgspec decode + encode of each line and nothing else.

Prints one human line and one JSON line per figure, plus peak RSS. No assertions.

    python bench/transform.py --n 200000 --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from threatq_provider.ecs import native
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import _codec, indicator_to_ecs, transform_stream

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


def _value(rng: random.Random, type_name: str) -> str:
    hexs = "0123456789abcdef"
    n = rng.randrange(1 << 30)
    generators: dict[str, Callable[[], str]] = {
        "ASN": lambda: f"AS{n % 400000}",
        "CIDR Block": lambda: f"{n % 223 + 1}.{n % 256}.{(n >> 8) % 256}.0/24",
        "CVE": lambda: f"CVE-20{n % 25:02d}-{n % 99999}",
        "Email Address": lambda: f"user{n}@example{n % 97}.com",
        "FQDN": lambda: f"host{n}.evil{n % 89}.example",
        "IP Address": lambda: f"{n % 223 + 1}.{(n >> 8) % 256}.{(n >> 16) % 256}.{n % 254 + 1}",
        "IPv6 Address": lambda: f"2001:db8:{n % 65535:x}::{(n >> 16) % 65535:x}",
        "MD5": lambda: "".join(rng.choice(hexs) for _ in range(32)),
        "SHA-1": lambda: "".join(rng.choice(hexs) for _ in range(40)),
        "SHA-256": lambda: "".join(rng.choice(hexs) for _ in range(64)),
        "SHA-384": lambda: "".join(rng.choice(hexs) for _ in range(96)),
        "SHA-512": lambda: "".join(rng.choice(hexs) for _ in range(128)),
        "URL": lambda: f"https://evil{n % 89}.example/path/{n}/payload.exe?id={n}",
        "Registry Key": lambda: f"HKEY_LOCAL_MACHINE\\SOFTWARE\\Vendor{n % 50}\\Run",
    }
    return generators.get(type_name, lambda: f"{type_name.lower().replace(' ', '-')}-{n}")()


def _date(base: datetime, seconds: int) -> str:
    return (base + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


def generate(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """Raw ThreatQ indicators shaped like the API's (and Elastic's fixtures)."""
    enums = ROOT / "plugins" / "threatq_provider" / "data" / "threatq" / "enumerations.json"
    types = json.loads(enums.read_text())["indicator_types"]
    statuses = [(1, "Active"), (1, "Active"), (1, "Active"), (2, "Expired"), (4, "Review")]
    sources = ["AlienVault OTX", "Abuse.ch URLhaus", "CrowdStrike", "Internal SOC", "MISP"]
    tlps = [None, "TLP:WHITE", "TLP:GREEN", "TLP:AMBER", "RED"]
    attrs = ["Description", "Country", "City", "Malware Family", "AlienVault Threat Level", "Confidence"]
    rng = random.Random(seed)
    base = datetime(2026, 1, 1)
    for i in range(1, n + 1):
        t = types[i % len(types)]
        status_id, status = rng.choice(statuses)
        created = rng.randrange(0, 20_000_000)
        updated = created + rng.randrange(0, 3_000_000)
        raw: dict[str, Any] = {
            "id": i,
            "value": _value(rng, t["name"]),
            "class": t["class"],
            "hash": f"{rng.getrandbits(128):032x}",
            "type": {"id": t["id"], "name": t["name"], "class": t["class"]},
            "type_id": t["id"],
            "status": {"id": status_id, "name": status, "description": "status"},
            "status_id": status_id,
            "score": rng.randrange(0, 11),
            "description": "Observed in campaign traffic" if i % 3 else "",
            "created_at": _date(base, created),
            "updated_at": _date(base, updated),
            "published_at": _date(base, created),
            "touched_at": _date(base, updated),
            "expires_calculated_at": _date(base, updated + 86400),
            "adversaries": [{"id": i % 40, "name": f"APT {i % 40}"}] if i % 5 == 0 else [],
            "attributes": [
                {
                    "id": i * 10 + k,
                    "attribute_id": k + 1,
                    "indicator_id": i,
                    "name": rng.choice(attrs),
                    "value": f"value {rng.randrange(1000)}",
                    "created_at": _date(base, created),
                    "updated_at": _date(base, updated),
                    "touched_at": _date(base, updated),
                }
                for k in range(rng.randrange(1, 6))
            ],
            "sources": [
                {
                    "id": i * 10 + k,
                    "source_id": k + 1,
                    "indicator_id": i,
                    "name": rng.choice(sources),
                    "source_type": "connectors",
                    "indicator_status_id": status_id,
                    "indicator_type_id": t["id"],
                    "reference_id": 1,
                    "creator_source_id": k + 1,
                    "source_score": rng.randrange(0, 5),
                    "tlp_id": 2,
                    "tlp_name": rng.choice(tlps),
                    "created_at": _date(base, created),
                    "published_at": _date(base, created),
                    "updated_at": _date(base, updated),
                }
                for k in range(rng.randrange(1, 4))
            ],
        }
        if i % 7 == 0:
            raw["expires_at"] = _date(base, updated + 30 * 86400)
        if status == "Expired" and i % 2:
            raw["expired_at"] = raw["updated_at"]
        yield raw


def corpus(n: int, seed: int) -> tuple[list[dict[str, Any]], str]:
    try:
        from threatq_simulators.corpus import Corpus
    except ImportError:
        return list(generate(n, seed)), "bench generator (simulators.corpus not available)"
    return list(Corpus(seed, indicators=n).iter_indicators()), "simulator corpus (threatq_simulators.corpus)"


class _Sink(io.StringIO):
    """Counts what is written and keeps nothing, so RSS shows the transform, not the output."""

    def write(self, text: str) -> int:
        return len(text)


def _median_seconds(run: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Median CPU seconds and median wall seconds of ``repeats`` runs.

    CPU time (``time.process_time``) is the per-core figure: on a shared machine other
    processes stretch wall time without changing the work this process does.
    """
    cpu, wall = [], []
    for _ in range(repeats):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        run()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return statistics.median(cpu), statistics.median(wall)


def _report(name: str, n: int, seconds: tuple[float, float], source: str, repeats: int, extra: dict[str, Any]) -> None:
    cpu, wall = seconds
    rate = n / cpu
    us = cpu / n * 1e6
    extra = {**extra, "median_wall_s": round(wall, 4), "wall_indicators_per_s": round(n / wall)}
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name}: {rate:,.0f} indicators/s per core, {us:.2f} µs/indicator (CPU time; wall {n / wall:,.0f}/s), single process "
          f"({n:,} indicators, median of {repeats}, peak RSS {rss_mib:.0f} MiB, {source}, "
          f"Python {platform.python_version()}, {platform.processor() or platform.machine()})")
    print(json.dumps({"bench": f"transform.{name}", "indicators": n, "repeats": repeats,
                      "median_cpu_s": round(cpu, 4), "indicators_per_s": round(rate), "us_per_indicator": round(us, 3),
                      "peak_rss_mib": round(rss_mib, 1), "corpus": source, "python": platform.python_version(), **extra}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="indicators in the corpus")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=("map", "stream", "native", "codec"), default=None)
    args = parser.parse_args(argv)

    raws, source = corpus(args.n, args.seed)
    # Bytes, as the operator reads the poll stage's file ("rb").
    lines = [json.dumps(r, separators=(",", ":")).encode() for r in raws]
    options = EcsOptions()
    mean_bytes = sum(map(len, lines)) / len(lines)
    extra = {"mean_input_bytes": round(mean_bytes)}

    def run_map() -> None:
        for raw in raws:
            indicator_to_ecs(raw, now=NOW, options=options)

    native_share: dict[str, Any] = {}

    def run_stream(engine: str) -> None:
        counts = transform_stream(lines, _Sink(), _Sink(), now=NOW, options=options, engine=engine)
        native_share.update(engine=counts.engine, native_lines=counts.native_lines)

    # The corpus itself (millions of objects) is input, not part of the work: keep the cyclic GC
    # from rescanning it on every collection, as it would not exist in the operator's process.
    gc.collect()
    gc.freeze()
    def run_codec() -> None:
        # Same-process baseline: only decode and re-encode each line (no mapping). The stream
        # figure divided by this one is the mapping's cost relative to touching the JSON at all.
        decode, encode = _codec()
        sink = _Sink()
        for line in lines:
            sink.write(encode(decode(line)))

    warm = raws[: min(len(raws), 5000)]
    for raw in warm:  # warm-up: table load, date cache, code paths
        indicator_to_ecs(raw, now=NOW, options=options)
    transform_stream(lines[:5000], io.StringIO(), io.StringIO(), now=NOW, options=options, engine="python")
    if args.only in (None, "map"):
        _report("indicator_to_ecs", len(raws), _median_seconds(run_map, args.repeats), source, args.repeats, extra)
    if args.only in (None, "native") and native.available():
        seconds = _median_seconds(lambda: run_stream("native"), args.repeats)
        _report("transform_stream[native]", len(raws), seconds, source, args.repeats, {**extra, **native_share})
    elif args.only == "native":
        print("transform_stream[native]: threatq_ecs_native is not installed (scripts/bootstrap builds it)")
    if args.only in (None, "stream"):
        seconds = _median_seconds(lambda: run_stream("python"), args.repeats)
        _report("transform_stream[python]", len(raws), seconds, source, args.repeats, {**extra, **native_share})
    if args.only in (None, "codec"):
        _report("codec_baseline", len(raws), _median_seconds(run_codec, args.repeats), source, args.repeats, extra)


if __name__ == "__main__":
    main()
