"""Parse-time report for the DAG files: wall time per file in a fresh interpreter.

Airflow's dag-processor re-parses every DAG file every few seconds, so a DAG file must not do
network calls or heavy imports at top level. This prints, per file, the median time to import it
in a fresh Python process (after ``airflow.sdk`` is already imported, so the number is the DAG
file's own cost: provider modules, packaged tables, DAG construction) and the heavy libraries it
pulled in. No assertion; the issue's target is "under a second" per file.

    .venv/bin/python bench/dag_parse.py [--repeats 5]

Prints one human line per file and one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("elasticsearch", "pymisp", "pymispgalaxies", "requests", "pandas", "urllib3")

_PROBE = r"""
import json, sys, time
import airflow.sdk  # the DAG authoring API every DAG file pays for; measured separately
from airflow.sdk import DAG, Param, Asset  # noqa: F401
t0 = time.perf_counter()
import runpy
ns = runpy.run_path(sys.argv[1])
dt = time.perf_counter() - t0
heavy = [m for m in sys.argv[2].split(",") if m in sys.modules]
print(json.dumps({"seconds": dt, "heavy": heavy, "dags": sorted(k for k, v in ns.items() if type(v).__name__ == "DAG")}))
"""


def measure(path: Path, repeats: int) -> dict:
    runs = []
    last: dict = {}
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, str(path), ",".join(HEAVY)],
            capture_output=True, text=True, check=True, cwd=REPO,
        )
        last = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(last["seconds"])
    return {"file": str(path.relative_to(REPO)), "median_s": statistics.median(runs), "max_s": max(runs),
            "heavy_imports": last["heavy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = [measure(p, args.repeats) for p in sorted((REPO / "dags").glob("*.py"))]
    for r in results:
        heavy = ", ".join(r["heavy_imports"]) or "none"
        print(f"{r['file']}: parse {r['median_s'] * 1000:.0f} ms median of {args.repeats} "
              f"(max {r['max_s'] * 1000:.0f} ms), heavy imports: {heavy}")
    print(json.dumps({"bench": "dag_parse", "repeats": args.repeats, "files": results}))


if __name__ == "__main__":
    main()
