"""Documents per second of each ECS transform engine, over the same corpus, in one run.

Engines (``transform_stream``: NDJSON bytes in, NDJSON out, as the operator runs it):

* ``native``: the Rust line mapper (``native/``); lines it hands back take the Python path;
* ``python``: the Python specification alone (``engine="python"``), each ThreatQ object copied
  by ``ObjectKinds.copy``;
* ``python-generated`` (only while ``threatq_provider.ecs.conversions`` exists): the same, with
  the per-shape copy functions that module generates and runs with ``exec``.

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
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from threatq_provider.ecs import native
from threatq_provider.ecs import transform as transform_module
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import transform_stream

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class _Sink(io.StringIO):
    """Counts nothing and keeps nothing: the figure is the transform's, not the output buffer's."""

    def write(self, text: str) -> int:
        return len(text)


class _Generated(AbstractContextManager[None]):
    """Swap the transform's object tables for ``conversions.ObjectKinds`` (generated copies)."""

    NAMES = ("_TOP_KINDS", "_SOURCE_KINDS", "_ATTRIBUTE_KINDS", "_ADVERSARY_KINDS", "_COMMENT_KINDS", "_ID_OBJ_KINDS")

    def __init__(self, kinds_class: type) -> None:
        self.kinds_class = kinds_class
        self.saved: dict[str, Any] = {}

    def __enter__(self) -> None:
        for name in self.NAMES:
            plain = getattr(transform_module, name)
            self.saved[name] = plain
            setattr(transform_module, name, self.kinds_class(plain.name, plain.kinds))

    def __exit__(self, *exc: object) -> None:
        for name, plain in self.saved.items():
            setattr(transform_module, name, plain)


def _engines() -> dict[str, tuple[str, Callable[[], AbstractContextManager[None]]]]:
    """Engine label → (``transform_stream`` engine, context that sets it up)."""
    engines: dict[str, tuple[str, Callable[[], AbstractContextManager[None]]]] = {}
    if native.available():
        engines["native"] = ("native", nullcontext)
    engines["python"] = ("python", nullcontext)
    try:
        from threatq_provider.ecs.conversions import ObjectKinds as GeneratedKinds
    except ImportError:
        pass
    else:
        if hasattr(GeneratedKinds, "source"):  # the code-generating class
            engines["python-generated"] = ("python", lambda: _Generated(GeneratedKinds))
    return engines


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
        for name, (engine, setup) in engines.items():
            with setup():
                out = io.StringIO() if round_no == 0 else _Sink()
                start_cpu, start_wall = time.process_time(), time.perf_counter()
                counts = transform_stream(lines, out, _Sink(), now=NOW, options=options, engine=engine)
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
