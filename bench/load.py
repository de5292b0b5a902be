"""Benchmark: our idempotent loader versus a plain ``helpers.bulk`` of the same ECS documents.

Usage::

    scripts/elasticsearch start
    .venv/bin/python bench/load.py --n 200000            # the published figure
    .venv/bin/python bench/load.py --n 20000 --repeats 1 # a quick look

Documents: the simulator corpus (``Corpus(seed=42, indicators=n)``) through the real ECS
transform, written once to a temporary NDJSON file by a child process (so the generator's memory
does not count in our RSS). Each run writes into fresh indices made from our templates:

- ``plain``: ``helpers.bulk`` of ``{"_index", "_id", "_source": json.loads(line)}`` actions, the
  loader a user would write; same chunk sizes as ours.
- ``ours``: ``load_ndjson`` to the active index only (external versions, dead letter, counts) —
  the like-for-like figure, whose ratio to ``plain`` is the claim (target >= 0.9).
- ``ours+history``: the operator's default, which also appends every version to the history
  (two writes per document), reported for information.

Prints one human line and one JSON line; no assertions. Node URL from ``--url``, ``TQ_ES_URL`` or
``scripts/elasticsearch url``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))


def generate(path: str, n: int) -> None:
    """Write n ECS documents (corpus seed 42 through the real transform) as NDJSON."""
    from datetime import datetime, timezone

    from threatq_provider.ecs.options import EcsOptions
    from threatq_provider.ecs.transform import indicator_to_ecs
    from threatq_simulators.corpus import Corpus

    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    options = EcsOptions()
    with open(path, "w", encoding="utf-8") as out:
        for raw in Corpus(seed=42, indicators=n, events=0).iter_indicators():
            doc = indicator_to_ecs(raw, now=now, options=options)
            out.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")


class PeakRss:
    """Samples this process's RSS every 20 ms while running."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def node_url(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("TQ_ES_URL"):
        return os.environ["TQ_ES_URL"]
    return subprocess.run([str(REPO / "scripts" / "elasticsearch"), "url"], capture_output=True, text=True,
                          check=True).stdout.strip()


def run_plain(client, path: str, index: str, chunk_docs: int, chunk_bytes: int) -> int:
    from elasticsearch import helpers

    def actions():
        with open(path, "rb") as fh:
            for line in fh:
                doc = json.loads(line)
                yield {"_index": index, "_id": str(doc["threatq"]["id"]), "_source": doc}

    ok, _errors = helpers.bulk(client, actions(), chunk_size=chunk_docs, max_chunk_bytes=chunk_bytes,
                               raise_on_error=False, stats_only=True)
    return ok


def run_ours(client, path: str, names, chunk_docs: int, chunk_bytes: int, history: bool) -> int:
    from threatq_provider.elasticsearch.loader import load_ndjson

    with open(path, "rb") as fh, open(os.devnull, "w") as dead:
        counts = load_ndjson(client, fh, active_index=names.active_alias, tombstone_index=names.tombstone_index,
                             history_prefix=names.history_prefix if history else None, dead_letter=dead,
                             chunk_docs=chunk_docs, chunk_bytes=chunk_bytes)
    return counts.indexed + counts.updated


def one_round(client, path: str, n: int, args, tag: str, order: list[str]) -> dict[str, dict[str, float]]:
    from threatq_provider.elasticsearch.templates import IndexNames, install_templates

    out: dict[str, dict[str, float]] = {}
    for mode in order:
        prefix = f"bench-{tag}-{mode.replace('+', '-')}-"
        install_templates(client, prefix=prefix)
        names = IndexNames(prefix)
        with PeakRss() as rss:
            start = time.perf_counter()
            if mode == "plain":
                written = run_plain(client, path, names.active_alias, args.chunk_docs, args.chunk_bytes)
            else:
                written = run_ours(client, path, names, args.chunk_docs, args.chunk_bytes, mode == "ours+history")
            elapsed = time.perf_counter() - start
        out[mode] = {"docs_per_s": n / elapsed, "seconds": elapsed, "written": written,
                     "peak_rss_mb": rss.peak / 2**20}
        client.indices.delete(index=f"{prefix}*", expand_wildcards="all")
        client.indices.delete_index_template(name=f"{prefix}*")
    return out


def _rounded(value: float, digits: int) -> float | None:
    """None for a run that was skipped (NaN), else the rounded value."""
    if value != value:
        return None
    return round(value) if digits == 0 else round(value, digits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="documents (default 200000)")
    parser.add_argument("--repeats", type=int, default=3, help="measured rounds; the median is reported")
    parser.add_argument("--url", help="Elasticsearch URL (default TQ_ES_URL or scripts/elasticsearch url)")
    parser.add_argument("--chunk-docs", type=int, default=2000)
    parser.add_argument("--chunk-bytes", type=int, default=5 * 1024 * 1024)
    parser.add_argument("--skip-history", action="store_true", help="skip the ours+history run")
    parser.add_argument("--generate", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate, args.n)
        return 0

    from elasticsearch import Elasticsearch

    url = node_url(args.url)
    from threatq_provider.elasticsearch.serializers import client_serializers

    # The hook's client (orjson), for both sides: the ratio compares loaders, not serializers.
    client = Elasticsearch(url, request_timeout=300, serializers=client_serializers())
    with tempfile.TemporaryDirectory(prefix="tq-bench-load-") as tmp:
        path = os.path.join(tmp, "ecs.ndjson")
        subprocess.run([sys.executable, __file__, "--generate", path, "--n", str(args.n)], check=True)
        n = sum(1 for _ in open(path, "rb"))
        warm = os.path.join(tmp, "warm.ndjson")
        with open(path, "rb") as src, open(warm, "wb") as dst:
            for i, line in enumerate(src):
                if i >= 2000:
                    break
                dst.write(line)
        modes = ["plain", "ours"] + ([] if args.skip_history else ["ours+history"])
        one_round(client, warm, min(n, 2000), args, "warmup", modes)  # caches, connection pool
        # Alternate the order per round so neither side always runs on a node busy merging.
        rounds = [one_round(client, path, n, args, f"r{i}", modes if i % 2 == 0 else modes[::-1])
                  for i in range(args.repeats)]

    def median(mode: str, key: str) -> float:
        values = [r[mode][key] for r in rounds if mode in r]
        return statistics.median(values) if values else float("nan")

    result = {
        "bench": "load", "n": n, "repeats": args.repeats, "node": url,
        "plain_docs_per_s": round(median("plain", "docs_per_s")),
        "ours_docs_per_s": round(median("ours", "docs_per_s")),
        "ours_with_history_docs_per_s": _rounded(median("ours+history", "docs_per_s"), 0),
        "ratio": round(median("ours", "docs_per_s") / median("plain", "docs_per_s"), 3),
        "ratio_with_history": _rounded(median("ours+history", "docs_per_s") / median("plain", "docs_per_s"), 3),
        "ours_peak_rss_mb": round(max(r["ours"]["peak_rss_mb"] for r in rounds), 1),
        "ours_with_history_peak_rss_mb": _rounded(median("ours+history", "peak_rss_mb"), 1),
        "plain_peak_rss_mb": round(max(r["plain"]["peak_rss_mb"] for r in rounds), 1),
        "rounds": [{m: round(r[m]["docs_per_s"]) for m in r} for r in rounds],
        "chunk_docs": args.chunk_docs, "chunk_bytes": args.chunk_bytes, "cores": os.cpu_count(),
    }
    print(f"load: {n} ECS docs, median of {args.repeats}: plain helpers.bulk {result['plain_docs_per_s']}/s, "
          f"ours {result['ours_docs_per_s']}/s (ratio {result['ratio']}), ours+history "
          f"{result['ours_with_history_docs_per_s']}/s (ratio {result['ratio_with_history']}); "
          f"our peak RSS {result['ours_peak_rss_mb']} MB")
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
