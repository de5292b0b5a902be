"""Benchmark: the whole indicators DAG (poll → transform → load) against the plain-bulk ceiling.

Usage::

    TQ_ES_PORT=9450 scripts/elasticsearch start       # a node of its own: the bench wipes the DAG's indices
    .venv/bin/python bench/pipeline.py --size 100000 --url http://127.0.0.1:9450
    .venv/bin/python bench/pipeline.py --size 1000000 --url http://127.0.0.1:9450
    .venv/bin/python bench/pipeline.py --size 5000 --misp-events 100 --url ...   # + the MISP DAG

What runs, as a user runs it: the ThreatQ simulator (``threatq-sim``, seeded corpus of ``--size``
indicators) in its own process; a fresh SQLite Airflow home; then, in one child process,
``dag.test()`` of ``threatq_indicators_to_elasticsearch`` in ``full_resync`` mode with the
project's connections (``AIRFLOW_CONN_*``) and stage root (``AIRFLOW_VAR_THREATQ_STAGE_ROOT``),
into the Elasticsearch node at ``--url`` (its ``logs-ti_threatq*``, tombstone and run-report
indices are deleted first: give the bench a node of its own).

Then, in the same child and on the same node, the **ceiling**: a plain ``helpers.bulk`` of the
very ECS documents the transform staged (``{"_index", "_id", "_source": json.loads(line)}``, one
write per document, chunks of 2,000 documents / 5 MiB, the hook's client) into a fresh index made
from the same template, which is what a user's own loader of already-mapped documents would cost.
``ratio`` = documents per second through the whole DAG (poll, transform and load with history,
end to end: DAG wall) / documents per second of that ceiling. The DAG wall starts after the DagBag
is parsed and after ``dag.test()``'s in-process execution API is built (timed apart, about 4 s of
CPU): a deployment parses DAG files and runs its api-server before any run starts.

Prints each task's time, the end-to-end rate, the ceiling and the ratio, the child's peak RSS
(``ru_maxrss``: Airflow, the DAG run and everything it imported, before the ceiling runs), the
stage folder's bytes per file, the machine's load average before and after (the machine may be
shared), and checks that nothing was lost: the poll staged ``--size`` indicators, the transform
wrote as many documents, the load read them all, the active index holds every document the load
created and the history every version written. One human block and one JSON line; no assertions
beyond those counts (a mismatch exits 1).

``--misp-events N`` also runs ``threatq_events_to_misp`` over a window holding the simulator's N
events, against the MISP double (``misp-double``, its own process), and reports its wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "threatq_indicators_to_elasticsearch"
MISP_DAG_ID = "threatq_events_to_misp"
CORPUS_START = "2026-01-01"
CORPUS_END = "2026-03-01"
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret-not-a-real-one"
MISP_KEY = "bench-misp-key-0123456789abcdefghijklmnop"
CEILING_CHUNK_DOCS, CEILING_CHUNK_BYTES = 2000, 5 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{what} did not answer at {url} within {timeout:.0f} s")


def warm_up(port: int) -> None:
    """One token and one one-row page, so the simulator has its corpus ready before the DAG polls."""
    sys.path.insert(0, str(REPO / "plugins"))
    from threatq_provider.threatq.auth import ClientCredentials
    from threatq_provider.threatq.client import ThreatQClient

    client = ThreatQClient(f"http://127.0.0.1:{port}", auth=ClientCredentials(CLIENT_ID, CLIENT_SECRET), page_size=1)
    try:
        next(client.iter_indicator_pages("1970-01-01T00:00:00Z", "9999-12-31T00:00:00Z"), None)
    finally:
        client.close()


def node_url(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("TQ_BENCH_ES_URL"):
        return os.environ["TQ_BENCH_ES_URL"]
    return subprocess.run([str(REPO / "scripts" / "elasticsearch"), "url"], capture_output=True, text=True,
                          check=True).stdout.strip()


# -- child: the DAG run and the ceiling, in one process ----------------------------------------------

def _seconds(ti: Any) -> float | None:
    if ti.start_date is None or ti.end_date is None:
        return None
    return (ti.end_date - ti.start_date).total_seconds()


def _stage_files(stage_root: Path) -> dict[str, int]:
    return {str(p.relative_to(stage_root)): p.stat().st_size for p in stage_root.rglob("*") if p.is_file()}


def _xcoms(run: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ti in run.get_task_instances():
        value = ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index)
        if ti.map_index is not None and ti.map_index >= 0:
            out.setdefault(ti.task_id, []).append(value)
        else:
            out[ti.task_id] = value
    return out


def ceiling(client: Any, ecs_path: Path, prefix: str) -> tuple[int, float]:
    """Plain helpers.bulk of the staged ECS documents into a fresh index of the same template."""
    from elasticsearch import helpers

    from threatq_provider.elasticsearch.templates import IndexNames, install_templates
    from threatq_provider.stage_io import open_lines

    install_templates(client, prefix=prefix)
    index = IndexNames(prefix).active_alias

    def actions() -> Any:
        with open_lines(ecs_path) as lines:
            for line in lines:
                doc = json.loads(line)
                yield {"_index": index, "_id": str(doc["threatq"]["id"]), "_source": doc}

    started = time.perf_counter()
    ok, _errors = helpers.bulk(client, actions(), chunk_size=CEILING_CHUNK_DOCS, max_chunk_bytes=CEILING_CHUNK_BYTES,
                               raise_on_error=False, stats_only=True)
    took = time.perf_counter() - started
    client.indices.delete(index=f"{prefix}*", expand_wildcards="all")
    client.indices.delete_index_template(name=f"{prefix}*")
    return int(ok), took


class RssSampler(threading.Thread):
    """This process's RSS every 50 ms, to tell which task peaked."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.samples: list[tuple[float, int]] = []
        self.before_dag_mb = 0.0

    def now_mb(self) -> float:
        return float(self.proc.memory_info().rss) / 2**20

    def run(self) -> None:
        while True:
            self.samples.append((time.time(), self.proc.memory_info().rss))
            time.sleep(0.05)

    def peak_between(self, start: Any, end: Any) -> float | None:
        if start is None or end is None:
            return None
        a, b = start.timestamp(), end.timestamp()
        inside = [rss for t, rss in self.samples if a <= t <= b]
        return round(max(inside) / 2**20, 1) if inside else None


def child(args: argparse.Namespace) -> int:
    from airflow.models import DagBag

    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook

    result: dict[str, Any] = {}
    samples = RssSampler()
    samples.start()
    dagbag = DagBag(dag_folder=str(REPO / "dags"))
    if dagbag.import_errors:
        raise SystemExit(f"DAG import errors: {dagbag.import_errors}")
    # dag.test() builds an in-process execution API (FastAPI, cadwyn; about 4 s of CPU) on its first
    # task, counted in that task's time; a deployment's api-server is up before any run, so it is
    # built here, before the clock, and timed on its own.
    api_started = time.perf_counter()
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    assert in_process_api_server().app is not None
    result["execution_api_build_s"] = time.perf_counter() - api_started
    samples.before_dag_mb = samples.now_mb()
    started = time.perf_counter()
    profile = os.environ.get("TQ_BENCH_PROFILE")  # a path: cProfile of the DAG run (main thread)
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        run = profiler.runcall(dagbag.dags[DAG_ID].test, run_conf={"mode": "full_resync"})
        profiler.dump_stats(profile)
    else:
        run = dagbag.dags[DAG_ID].test(run_conf={"mode": "full_resync"})
    result["dag_wall_s"] = time.perf_counter() - started
    result["dag_state"] = str(run.state)
    result["tasks_s"] = {ti.task_id: _seconds(ti) for ti in run.get_task_instances()}
    result["task_states"] = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    xcoms = _xcoms(run)
    result["poll"] = {k: xcoms.get("poll", {}).get(k) for k in ("indicators", "pages", "rejected")}
    result["transform"] = {k: xcoms.get("transform", {}).get(k) for k in ("read", "written", "rejected", "engine")}
    result["load"] = {k: v for k, v in (xcoms.get("load") or {}).items() if k not in ("templates",)}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["rss_before_dag_mb"] = samples.before_dag_mb
    result["task_peak_rss_mb"] = {ti.task_id: samples.peak_between(ti.start_date, ti.end_date)
                                  for ti in run.get_task_instances()}
    stage_root = Path(args.stage_root)
    result["stage_files"] = _stage_files(stage_root)
    result["stage_bytes"] = sum(result["stage_files"].values())

    client = ElasticsearchEcsHook(elasticsearch_conn_id="elasticsearch_default").get_client()
    client.indices.refresh(index="logs-ti_threatq*")
    result["active_count"] = client.count(index="logs-ti_threatq_latest.threat")["count"]
    result["history_count"] = client.count(index="logs-ti_threatq.threat_history-*")["count"]
    ecs = Path(str((xcoms.get("transform") or {}).get("path", "")).removeprefix("file://"))
    written, took = ceiling(client, ecs, "bench-ceiling-")
    result["ceiling"] = {"docs": written, "seconds": took, "docs_per_s": written / took if took else None}

    if args.misp_events:
        dagbag = DagBag(dag_folder=str(REPO / "dags"))  # fresh params
        started = time.perf_counter()
        misp_run = dagbag.dags[MISP_DAG_ID].test(run_conf={"updated_since": f"{CORPUS_START}T00:00:00Z",
                                                           "updated_until": f"{CORPUS_END}T00:00:00Z"})
        took = time.perf_counter() - started
        shares = _xcoms(misp_run).get("share_event") or []
        result["misp"] = {"state": str(misp_run.state), "seconds": took,
                          "tasks": len(shares), "events": sum(s.get("events", 0) for s in shares if s)}
    Path(args.result).write_text(json.dumps(result, default=str))
    return 0


# -- parent: services, Airflow home, report -------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="indicators in the simulator (default 100000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--url", help="Elasticsearch URL of a node the bench may wipe (default TQ_BENCH_ES_URL, "
                                      "else scripts/elasticsearch url)")
    parser.add_argument("--misp-events", type=int, default=0, help="also run the MISP DAG over this many events")
    parser.add_argument("--keep", action="store_true", help="keep the temporary Airflow home and stage folder")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--stage-root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from elasticsearch import Elasticsearch

    url = node_url(args.url)
    es = Elasticsearch(url, request_timeout=120)
    try:  # a cluster with data streams keeps the history in one (elasticsearch/cluster.py)
        es.indices.delete_data_stream(name="logs-ti_threatq*", expand_wildcards="all")
    except Exception:  # noqa: BLE001 - none there, or a cluster without data streams
        pass
    for pattern in ("logs-ti_threatq*", "threatq-ioc-tombstones*", "threatq-provider-runs*", "bench-ceiling-*"):
        es.indices.delete(index=pattern, expand_wildcards="all", ignore_unavailable=True, allow_no_indices=True)
    load_before = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="tq-bench-pipeline-")
    home, stage = Path(tmp) / "airflow", Path(tmp) / "stage"
    home.mkdir()
    stage.mkdir()
    bin_dir = Path(sys.executable).parent
    tq_port, misp_port = free_port(), free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_THREATQ_DEFAULT": json.dumps({
            "conn_type": "threatq", "host": f"http://127.0.0.1:{tq_port}", "password": CLIENT_SECRET,
            "extra": {"client_id": CLIENT_ID, "allow_insecure_http": True}}),
        "AIRFLOW_CONN_ELASTICSEARCH_DEFAULT": json.dumps({"conn_type": "elasticsearch_ecs", "host": url,
                                                          "extra": {"request_timeout": 300}}),
        "AIRFLOW_CONN_MISP_DEFAULT": json.dumps({
            "conn_type": "misp", "host": f"http://127.0.0.1:{misp_port}", "password": MISP_KEY,
            "extra": {"allow_insecure_http": True}}),
        "AIRFLOW_VAR_THREATQ_STAGE_ROOT": f"file://{stage}",
    }
    services: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([str(bin_dir / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
        sim = subprocess.Popen(
            [str(bin_dir / "threatq-sim"), "--port", str(tq_port), "--indicators", str(args.size),
             "--events", str(args.misp_events), "--seed", str(args.seed), "--start", CORPUS_START, "--end",
             CORPUS_END, "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        services.append(sim)
        wait_http(f"http://127.0.0.1:{tq_port}/", sim, "threatq-sim")
        warm_up(tq_port)  # the simulator builds its corpus on first use: not the poll's time
        if args.misp_events:
            misp = subprocess.Popen([str(bin_dir / "misp-double"), "--port", str(misp_port), "--api-key", MISP_KEY],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            services.append(misp)
            wait_http(f"http://127.0.0.1:{misp_port}/", misp, "misp-double")
        result_path = Path(tmp) / "result.json"
        log_path = Path(tmp) / "child.log"
        with open(log_path, "wb") as log:
            code = subprocess.run([sys.executable, __file__, "--child", "--result", str(result_path), "--stage-root",
                                   str(stage)] + (["--misp-events", str(args.misp_events)] if args.misp_events else []),
                                  env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        if code != 0 or not result_path.exists():
            print(log_path.read_text()[-5000:])
            raise SystemExit(f"the DAG run failed (exit {code}); log: {log_path}")
        r = json.loads(result_path.read_text())
    finally:
        for proc in services:
            proc.terminate()
            proc.wait(timeout=30)
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    return report(args, url, r, load_before, load_after, tmp)


def report(args: argparse.Namespace, url: str, r: dict[str, Any], load_before: tuple[float, ...],
           load_after: tuple[float, ...], tmp: str) -> int:
    n = args.size
    load = r["load"]
    rate = n / r["dag_wall_s"]
    ceiling_rate = r["ceiling"]["docs_per_s"]
    problems = []
    if r["dag_state"] != "success":
        problems.append(f"DAG run {r['dag_state']}: {r['task_states']}")
    if r["poll"]["indicators"] != n:
        problems.append(f"poll staged {r['poll']['indicators']} of {n}")
    if r["transform"]["written"] != r["poll"]["indicators"] or load.get("read") != r["transform"]["written"]:
        problems.append(f"transform wrote {r['transform']['written']}, load read {load.get('read')}")
    if r["active_count"] != load.get("indexed") or r["history_count"] != load.get("history_written"):
        problems.append(f"active index {r['active_count']} vs indexed {load.get('indexed')}; history "
                        f"{r['history_count']} vs written {load.get('history_written')}")
    if load.get("rejected_documents"):
        problems.append(f"{load.get('rejected_documents')} rejected documents")
    summary = {
        "bench": "pipeline", "size": n, "node": url, "cores": os.cpu_count(),
        "dag_wall_s": round(r["dag_wall_s"], 1), "execution_api_build_s": round(r["execution_api_build_s"], 1),
        "tasks_s": {k: round(v, 1) for k, v in r["tasks_s"].items() if v},
        "end_to_end_per_s": round(rate), "ceiling_docs_per_s": round(ceiling_rate),
        "ceiling_s": round(r["ceiling"]["seconds"], 1), "ratio": round(rate / ceiling_rate, 3),
        "peak_rss_mb": round(r["peak_rss_mb"], 1), "rss_before_dag_mb": round(r["rss_before_dag_mb"], 1),
        "task_peak_rss_mb": r["task_peak_rss_mb"], "stage_bytes": r["stage_bytes"],
        "stage_files": {k.rsplit("/", 1)[-1]: v for k, v in r["stage_files"].items()},
        "active": r["active_count"], "history": r["history_count"], "withheld": load.get("withheld_by_reason"),
        "load_avg_before": [round(x, 2) for x in load_before], "load_avg_after": [round(x, 2) for x in load_after],
        "misp": r.get("misp"), "ok": not problems, "problems": problems,
    }
    tasks = ", ".join(f"{k} {v:.1f} s" for k, v in summary["tasks_s"].items())
    print(f"pipeline: {n} indicators through {DAG_ID} (full_resync, dag.test) in {r['dag_wall_s']:.1f} s "
          f"({tasks}; dag.test()'s in-process execution API built before the clock in "
          f"{r['execution_api_build_s']:.1f} s, as a deployment's api-server is up before a run)")
    print(f"  end to end {rate:,.0f} indicators/s; plain helpers.bulk ceiling on the same documents "
          f"{ceiling_rate:,.0f} docs/s; ratio {summary['ratio']}")
    print(f"  peak RSS {summary['peak_rss_mb']} MB (before the DAG run {summary['rss_before_dag_mb']} MB; by task "
          + ", ".join(f"{k} {v}" for k, v in summary["task_peak_rss_mb"].items() if v) + ")")
    print(f"  stage {r['stage_bytes'] / 1e6:,.1f} MB "
          + ", ".join(f"{k} {v / 1e6:,.1f} MB" for k, v in summary["stage_files"].items()))
    print(f"  active {r['active_count']}, history {r['history_count']}, withheld {load.get('withheld_by_reason')}; "
          f"load average {summary['load_avg_before']} → {summary['load_avg_after']}")
    if r.get("misp"):
        m = r["misp"]
        print(f"  MISP DAG: {m['events']} events in {m['tasks']} share tasks, {m['seconds']:.1f} s ({m['state']})")
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    print(json.dumps(summary, sort_keys=True))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
