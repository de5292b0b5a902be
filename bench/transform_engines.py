"""Documents per second of each ECS transform engine, over the same corpus, in one run.

Engines (``transform_stream``: NDJSON bytes in, NDJSON out, as the operator runs it):

* ``native``: the Rust line mapper (``native/``); lines it hands back take the Python path;
* ``python``: the Python specification alone (``engine="python"``): what a machine without the
  native module runs, and what the native engine hands its unusual lines to.

A third engine, Python with per-shape copy functions generated and run with ``exec``
(``ecs/conversions.py``), was measured here against these two in one run and dropped: 1.05x the
plain Python loop, while the native engine is 5.3x (numbers and decision in the commit that
removed it and in the git history of this file).

The engines take turns, one round each per repeat, so a neighbour's load on a shared machine
falls on all of them alike; the figure is the median CPU time (``time.process_time``, per core),
with wall time beside it. The corpus is the simulator's (``threatq_simulators.corpus``).
No assertions: it prints one human line and one JSON line per engine.

    python bench/transform_engines.py --n 50000 --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from threatq_provider.ecs import native
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import transform_stream

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class _Sink(io.StringIO):
    """Counts nothing and keeps nothing: the figure is the transform's, not the output buffer's."""

    def write(self, text: str) -> int:
        return len(text)


def _engines() -> list[str]:
    """The engines installed here (``python`` always; ``native`` when the module is built)."""
    return ["native", "python"] if native.available() else ["python"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="indicators in the corpus")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    from threatq_simulators.corpus import Corpus

    lines = [json.dumps(r, separators=(",", ":")).encode() for r in Corpus(args.seed, indicators=args.n).iter_indicators()]
    options = EcsOptions()
    engines = _engines()
    gc.collect()
    gc.freeze()  # the corpus is input, not work: keep the cyclic GC from rescanning it
    cpu: dict[str, list[float]] = {name: [] for name in engines}
    wall: dict[str, list[float]] = {name: [] for name in engines}
    outputs: dict[str, int] = {}
    for round_no in range(args.repeats + 1):  # round 0 warms up (tables, date cache, shapes)
        for name in engines:
            out = io.StringIO() if round_no == 0 else _Sink()
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            counts = transform_stream(lines, out, _Sink(), now=NOW, options=options, engine=name)
            spent_cpu, spent_wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
            if round_no == 0:
                outputs[name] = hash(out.getvalue())
                assert counts.written == len(lines), counts.as_dict()
            else:
                cpu[name].append(spent_cpu)
                wall[name].append(spent_wall)
    same = len(set(outputs.values())) == 1
    base = statistics.median(cpu["python"])
    for name in engines:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        rate = len(lines) / c
        print(f"{name}: {rate:,.0f} docs/s per core ({c / len(lines) * 1e6:.2f} µs/doc, {base / c:.2f}x python; "
              f"wall {len(lines) / w:,.0f}/s), {len(lines):,} indicators, median of {args.repeats}")
        print(json.dumps({"bench": f"transform_engines.{name}", "indicators": len(lines), "repeats": args.repeats,
                          "median_cpu_s": round(c, 4), "docs_per_s": round(rate), "vs_python": round(base / c, 3),
                          "median_wall_s": round(w, 4), "cpu_s": [round(x, 3) for x in cpu[name]],
                          "same_output": same, "python": platform.python_version(),
                          "machine": platform.processor() or platform.machine()}))
    print(f"same output bytes from every engine: {same}")


if __name__ == "__main__":
    main()
