"""Benchmark: peak RSS of each process of a real Airflow deployment running the indicators DAG.

Usage::

    TQ_ES_PORT=9750 scripts/elasticsearch start   # a node of its own (the bench wipes its indices); not
                                                  # 9550, the transport port of a node on 9450
    .venv/bin/python bench/worker_rss.py --size 100000 --url http://127.0.0.1:9750

``bench/pipeline.py`` measures RSS inside one ``dag.test()`` process, which also holds the DagBag
and ``dag.test()``'s in-process execution API (FastAPI, cadwyn): no deployed task holds those.
This bench measures what a deployment's processes hold instead. What runs, as a user runs it:
the ThreatQ simulator (``threatq-sim``, the seeded corpus of ``--size`` indicators and the
credentials of ``bench/pipeline.py``) in its own process; Airflow's scheduler (LocalExecutor,
parallelism 4), api-server, dag-processor and triggerer on a fresh SQLite home
(``scripts/airflow-services``, started by ``tests/integration/dags/airflow_services.running``),
the project's connections in ``AIRFLOW_CONN_*``; ``threatq_indicators_to_elasticsearch`` is
unpaused (daily schedule, so the one run unpausing creates covers an empty interval of this
corpus; the bench waits for it), then triggered over the REST API with
``{"mode": "full_resync"}`` and a logical date of now, as the UI's trigger form does
(``--no-logical-date``: ``"logical_date": null``, a run without a data interval, as
``docs/dags.md``'s curl example does), into the Elasticsearch node at ``--url`` (its ``logs-ti_threatq*``,
tombstone and run-report indices are deleted first: give the bench a node of its own).

From the trigger until the run ends, a thread samples every ~50 ms the RSS of every process in
the services' process trees (``/proc``: the services' recorded pids and all their descendants).
Attribution, Airflow 3.3 LocalExecutor: the scheduler's ``multiprocessing`` children are the
executor's workers; a worker *is* the task's supervisor (``supervise_task`` runs in it) and
titles itself ``airflow worker -- LocalExecutor: <task instance id>`` while it supervises
(``<idle>`` between tasks). The supervisor forks the task process, which retitles itself
``airflow worker -- <task instance id>`` on start-up (before that it carries its parent's title).
So a process whose parent is a worker is a task process, and both map to a task through the
task instance id (a UUID) in their titles, which the REST API lists with each task instance. The
REST API's ``pid`` of a task instance (the task process, reported by its supervisor) is checked
against that attribution and the check printed (``pid_agrees``); the ``hostname`` cannot tell
processes of one machine apart.

Prints, per task: its duration, the task process's peak RSS and its supervisor's peak RSS
while supervising it, and the peak of their summed PSS (``/proc/<pid>/smaps_rollup``, every
fourth sample: the task process is forked from its supervisor, so their RSS count the pages they
share twice, their PSS once: what the pair costs the worker's machine); the peaks of the
scheduler, api-server, dag-processor and triggerer (and their other children) for context; the
run's wall time (trigger to end, on this clock, and the run's start to end as Airflow recorded
it); and checks that nothing was lost: the poll staged
``--size`` indicators, active + withheld = ``--size``, history = ``--size`` (the load's XCom read
over the REST API). One human block and one JSON line; a mismatch exits 1. ``--target-mb``
(default 250, issue #17) is only printed next to the task peaks, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import pipeline  # noqa: E402 - bench/pipeline.py: simulator start-up, credentials, corpus

from tests.integration.dags import airflow_services  # noqa: E402

DAG_ID = pipeline.DAG_ID
PSS_EVERY = 4  # ticks between PSS reads of the supervisors and task processes
SERVICES = ("scheduler", "api-server", "dag-processor", "triggerer")
SUPERVISOR_TITLE = re.compile(r"^airflow worker -- LocalExecutor[^:]*: (\S+)")
TASK_TITLE = re.compile(r"^airflow worker -- ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


def _ppids() -> dict[int, int]:
    """pid → parent pid of every process, from /proc/<pid>/stat (one read each)."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone
        # the command name may hold spaces and parentheses: fields resume after the last ')'
        out[int(name)] = int(stat[stat.rindex(b")") + 2:].split()[1])
    return out


def _pss(pid: int) -> int | None:
    """Proportional set size in bytes (/proc/<pid>/smaps_rollup), None if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class Proc:
    """One sampled process: its service tree, parent, and (time, rss, title) samples."""

    pid: int
    service: str
    ppid: int
    samples: list[tuple[float, int, str]] = field(default_factory=list)
    #: sample time → PSS in bytes (executor workers and task processes only: see Sampler.tick)
    pss: dict[float, int] = field(default_factory=dict)

    def peak_mb(self, title: re.Pattern[str] | None = None, group: str | None = None) -> float | None:
        rss = [r for _t, r, ti in self.samples
               if title is None or ((m := title.match(ti)) is not None and m.group(1) == group)]
        return round(max(rss) / 2**20, 1) if rss else None

    def title_at(self, when: float, title: re.Pattern[str]) -> str | None:
        """The id in this process's title at its last sample up to ``when``."""
        last = None
        for t, _r, ti in self.samples:
            if t > when:
                break
            last = ti
        m = title.match(last) if last else None
        return m.group(1) if m else None

    def ids(self, title: re.Pattern[str]) -> set[str]:
        return {m.group(1) for _t, _r, ti in self.samples if (m := title.match(ti))}


class Sampler(threading.Thread):
    """RSS and title of every process under the services' root pids, every ``interval`` seconds."""

    def __init__(self, roots: dict[str, int], interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.roots = roots
        self.interval = interval
        self.procs: dict[int, Proc] = {}
        self.handles: dict[int, Any] = {}
        self.ticks = 0
        self.tick_seconds = 0.0
        self.stopping = threading.Event()

    def tree(self) -> dict[int, tuple[str, int]]:
        ppids = _ppids()
        children: dict[int, list[int]] = defaultdict(list)
        for pid, ppid in ppids.items():
            children[ppid].append(pid)
        out: dict[int, tuple[str, int]] = {}
        for service, root in self.roots.items():
            todo = [root] if root in ppids else []
            while todo:
                pid = todo.pop()
                out[pid] = (service, ppids[pid])
                todo.extend(children.get(pid, ()))
        return out

    def tick(self) -> None:
        now = time.time()
        pss_now = self.ticks % PSS_EVERY == 0
        for pid, (service, ppid) in self.tree().items():
            proc = self.procs.get(pid)
            if proc is None or proc.ppid != ppid:  # new, or the pid was reused
                proc = self.procs[pid] = Proc(pid, service, ppid)
                self.handles[pid] = self.psutil.Process(pid)
            try:
                rss = self.handles[pid].memory_info().rss
                with open(f"/proc/{pid}/cmdline", "rb") as f:  # setproctitle rewrites argv in place
                    title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except (self.psutil.Error, OSError):
                continue  # exited between the scan and the read
            if proc.samples and proc.samples[-1][2] == title:
                title = proc.samples[-1][2]  # one string per distinct title
            proc.samples.append((now, rss, title))
            if pss_now and title.startswith("airflow worker --") and not title.endswith("<idle>"):
                # PSS counts a page shared by n processes as 1/n: the task process is forked from its
                # supervisor, so their RSS double-count the pages they share and their PSS do not.
                # Reading smaps_rollup walks the page tables (ms per process): every PSS_EVERY ticks.
                pss = _pss(pid)
                if pss is not None:
                    proc.pss[now] = pss

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.perf_counter()
            self.tick()
            took = time.perf_counter() - started
            self.ticks += 1
            self.tick_seconds += took
            self.stopping.wait(max(0.0, self.interval - took))

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        self.tick()  # a last sample of whatever is still up


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _pair_pss_peak(task_procs: list[Proc], supervisors: dict[int, Proc]) -> float | None:
    """Peak of supervisor PSS + task process PSS sampled at the same tick: the memory the pair holds."""
    best = 0
    for p in task_procs:
        sup = supervisors[p.ppid].pss
        best = max([best] + [pss + sup[t] for t, pss in p.pss.items() if t in sup])
    return round(best / 2**20, 1) if best else None


def attribute(sampler: Sampler, tis: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task: its task process(es) and supervisor, their peaks; the services' own peaks."""
    procs = sampler.procs
    # the executor's workers are the scheduler's children; a task process, forked by one, carries
    # the same title until its start-up retitles it, so the parent tells them apart
    supervisors = {pid: p for pid, p in procs.items()
                   if p.ppid == sampler.roots["scheduler"] and p.ids(SUPERVISOR_TITLE)}
    task_procs: dict[str, list[Proc]] = defaultdict(list)
    for p in procs.values():
        if p.ppid not in supervisors:
            continue
        ids = p.ids(TASK_TITLE) or ({supervisors[p.ppid].title_at(p.samples[0][0], SUPERVISOR_TITLE)}
                                    - {None, "<idle>"})
        for ti_id in ids:  # one id: a task process runs one task instance
            task_procs[ti_id].append(p)
    tasks: dict[str, Any] = {}
    for ti in tis:
        key = ti["task_id"] if ti.get("map_index", -1) in (-1, None) else f"{ti['task_id']}[{ti['map_index']}]"
        mine = task_procs.get(ti["id"], [])
        sup = [(s.pid, s.peak_mb(SUPERVISOR_TITLE, ti["id"])) for s in supervisors.values()]
        sup = [(pid, mb) for pid, mb in sup if mb is not None]
        tasks[key] = {
            "state": ti["state"], "try": ti.get("try_number"), "duration_s": ti.get("duration"),
            "task_pids": [p.pid for p in mine], "rest_pid": ti.get("pid"),
            "pid_agrees": ti.get("pid") in [p.pid for p in mine] if mine else None,
            "task_peak_mb": max((p.peak_mb() or 0 for p in mine), default=None) or None,
            "supervisor_pids": [pid for pid, _ in sup],
            "supervisor_peak_mb": max((mb for _, mb in sup), default=None),
            "worker_pss_peak_mb": _pair_pss_peak(mine, supervisors),
            "samples": sum(len(p.samples) for p in mine),
        }
    services: dict[str, Any] = {}
    for service, pid in sampler.roots.items():
        own = procs.get(pid)
        others = [p for p in procs.values() if p.service == service and p.pid != pid
                  and p.pid not in supervisors and p.ppid not in supervisors]
        services[service] = {"peak_mb": own.peak_mb() if own else None,
                             "children": len(others),
                             "children_peak_mb": max((p.peak_mb() or 0 for p in others), default=None) or None}
    services["executor_workers"] = {"count": len(supervisors),
                                    "idle_peak_mb": max((s.peak_mb(SUPERVISOR_TITLE, "<idle>") or 0
                                                         for s in supervisors.values()), default=None) or None}
    return {"tasks": tasks, "services": services}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="indicators in the simulator (default 100000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--url", required=True, help="Elasticsearch URL of a node the bench may wipe")
    parser.add_argument("--interval", type=float, default=0.05, help="sampling interval in seconds (default 0.05)")
    parser.add_argument("--target-mb", type=float, default=250.0, help="printed next to the task peaks (issue #17)")
    parser.add_argument("--no-logical-date", action="store_true",
                        help='trigger with "logical_date": null (no data interval), as docs/dags.md\'s curl does')
    parser.add_argument("--dump", help="write every sampled process (pid, parent, title, RSS and PSS over time) "
                                       "to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary Airflow home (logs, stage)")
    args = parser.parse_args()

    import subprocess

    from elasticsearch import Elasticsearch

    es = Elasticsearch(args.url, request_timeout=120)
    try:  # a cluster with data streams keeps the history in one (elasticsearch/cluster.py)
        es.indices.delete_data_stream(name="logs-ti_threatq*", expand_wildcards="all")
    except Exception:  # noqa: BLE001 - none there, or a cluster without data streams
        pass
    for pattern in ("logs-ti_threatq*", "threatq-ioc-tombstones*", "threatq-provider-runs*"):
        es.indices.delete(index=pattern, expand_wildcards="all", ignore_unavailable=True, allow_no_indices=True)

    tmp = Path(tempfile.mkdtemp(prefix="tq-bench-worker-rss-"))
    bin_dir = Path(sys.executable).parent
    tq_port = pipeline.free_port()
    sim = subprocess.Popen(
        [str(bin_dir / "threatq-sim"), "--port", str(tq_port), "--indicators", str(args.size), "--events", "0",
         "--seed", str(args.seed), "--start", pipeline.CORPUS_START, "--end", pipeline.CORPUS_END,
         "--client-id", pipeline.CLIENT_ID, "--client-secret", pipeline.CLIENT_SECRET],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load_before = os.getloadavg()
    try:
        pipeline.wait_http(f"http://127.0.0.1:{tq_port}/", sim, "threatq-sim")
        pipeline.warm_up(tq_port)  # the simulator builds its corpus on first use: not the poll's time
        target = SimpleNamespace(url=f"http://127.0.0.1:{tq_port}", client_id=pipeline.CLIENT_ID,
                                 client_secret=pipeline.CLIENT_SECRET)
        extra_env = {
            # daily: the run unpausing creates reads yesterday, which holds none of this corpus
            "THREATQ_INDICATORS_CRON": "0 0 * * *",
            "AIRFLOW_CONN_ELASTICSEARCH_DEFAULT": json.dumps({"conn_type": "elasticsearch_ecs", "host": args.url,
                                                              "extra": {"request_timeout": 300}}),
        }
        (tmp / "airflow").mkdir()
        with airflow_services.running(tmp / "airflow", sim=target, es_url=args.url, extra_env=extra_env) as dep:
            result = measure(args, dep, es)
    finally:
        sim.terminate()
        sim.wait(timeout=30)
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    result["load_avg_before"] = [round(x, 2) for x in load_before]
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["home"] = str(tmp) if args.keep else None
    return report(args, result)


def measure(args: argparse.Namespace, dep: airflow_services.Services, es: Any) -> dict[str, Any]:
    api = dep.api
    api.wait_dag(DAG_ID)
    api.patch(f"/dags/{DAG_ID}", {"is_paused": False})
    api.wait_idle(DAG_ID, at_least=1, timeout=600)  # the scheduled run of the empty interval
    roots = {s: int((dep.home / "services" / f"{s}.pid").read_text()) for s in SERVICES}
    sampler = Sampler(roots, args.interval)
    sampler.start()
    started = time.perf_counter()
    # a logical date (now, as the UI's trigger form fills in) unless --no-logical-date: a manual run
    # without one has no data interval
    when = None if args.no_logical_date else datetime.now(timezone.utc).isoformat()
    resp = api.post(f"/dags/{DAG_ID}/dagRuns", {"logical_date": when, "conf": {"mode": "full_resync"}})
    if resp.status_code >= 300:
        sampler.stop()
        raise SystemExit(f"trigger refused: {resp.status_code} {resp.text}")
    run_id = resp.json()["dag_run_id"]
    # not a timing assertion: a bound so a stuck deployment ends the bench instead of hanging it
    api.wait_runs(DAG_ID, {run_id}, timeout=max(1800.0, args.size / 50))
    wall = time.perf_counter() - started
    sampler.stop()
    if args.dump:
        Path(args.dump).write_text(json.dumps({pid: {"service": p.service, "ppid": p.ppid, "samples": p.samples,
                                                     "pss": sorted(p.pss.items())}
                                               for pid, p in sampler.procs.items()}))
    run = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}")
    tis = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    tis.sort(key=lambda ti: ti.get("start_date") or "~")
    xcoms = {}
    for task_id in ("poll", "transform", "load"):
        try:
            xcoms[task_id] = api.xcom(DAG_ID, run_id, task_id)
        except Exception as exc:  # noqa: BLE001 - a failed task has none; reported below
            xcoms[task_id] = {"error": str(exc)}
    es.indices.refresh(index="logs-ti_threatq*")
    start, end = _ts(run.get("start_date")), _ts(run.get("end_date"))
    return {
        "run_id": run_id, "state": run["state"], "wall_s": wall,
        "run_s": (end - start).total_seconds() if start and end else None,
        **attribute(sampler, tis),
        "poll": {k: (xcoms["poll"] or {}).get(k) for k in ("indicators", "pages", "rejected", "error")},
        "load": {k: v for k, v in (xcoms["load"] or {}).items() if k != "templates"},
        "active": es.count(index="logs-ti_threatq_latest.threat")["count"],
        "history": es.count(index="logs-ti_threatq.threat_history-*")["count"],
        "sampler": {"ticks": sampler.ticks, "processes": len(sampler.procs),
                    "mean_tick_ms": round(1000 * sampler.tick_seconds / max(1, sampler.ticks), 2)},
        "log_tail": dep.log("scheduler", 30) if run["state"] != "success" else None,
    }


def report(args: argparse.Namespace, r: dict[str, Any]) -> int:
    n = args.size
    load = r["load"]
    withheld = sum((load.get("withheld_by_reason") or {}).values())
    problems = []
    if r["state"] != "success":
        problems.append(f"run {r['state']}: " + ", ".join(f"{k} {t['state']}" for k, t in r["tasks"].items()))
    if r["poll"].get("indicators") != n:
        problems.append(f"poll staged {r['poll'].get('indicators')} of {n}")
    if r["active"] + withheld != n:
        problems.append(f"active {r['active']} + withheld {withheld} != {n}")
    if r["history"] != n:
        problems.append(f"history {r['history']} != {n}")
    for key, t in r["tasks"].items():
        if t["task_peak_mb"] is None:
            problems.append(f"no task process sampled for {key}")
        elif t["pid_agrees"] is False:
            problems.append(f"{key}: REST pid {t['rest_pid']} is not the sampled task process {t['task_pids']}")
    peaks = {k: t["task_peak_mb"] for k, t in r["tasks"].items()}
    over = sorted(k for k, v in peaks.items() if v and v > args.target_mb)
    summary = {
        "bench": "worker_rss", "size": n, "cores": os.cpu_count(), "state": r["state"],
        "wall_s": round(r["wall_s"], 1), "run_s": round(r["run_s"], 1) if r["run_s"] else None,
        "tasks": r["tasks"], "services": r["services"],
        "max_task_peak_mb": max((v for v in peaks.values() if v), default=None),
        "max_supervisor_peak_mb": max((t["supervisor_peak_mb"] or 0 for t in r["tasks"].values()), default=None),
        "max_worker_pss_peak_mb": max((t["worker_pss_peak_mb"] or 0 for t in r["tasks"].values()), default=None),
        "target_mb": args.target_mb, "tasks_over_target": over,
        "poll": r["poll"], "active": r["active"], "withheld": withheld, "history": r["history"],
        "withheld_by_reason": load.get("withheld_by_reason"), "sampler": r["sampler"],
        "load_avg_before": r["load_avg_before"], "load_avg_after": r["load_avg_after"],
        "ok": not problems, "problems": problems,
    }
    print(f"worker_rss: {n} indicators through {DAG_ID} (full_resync, REST trigger; scheduler with LocalExecutor, "
          f"api-server, dag-processor, triggerer) in {r['wall_s']:.1f} s from the trigger "
          f"(run start to end {summary['run_s']} s), {r['state']}")
    print(f"  {'task':<16}{'duration':>10}{'task process':>14}{'supervisor':>12}{'both, PSS':>11}   (peak RSS, MB; "
          f"target {args.target_mb:g} for the task process; PSS: shared pages counted once)")
    for key, t in r["tasks"].items():
        dur = f"{t['duration_s']:.1f} s" if t["duration_s"] is not None else "-"
        print(f"  {key:<16}{dur:>10}{t['task_peak_mb'] or '-':>14}{t['supervisor_peak_mb'] or '-':>12}"
              f"{t['worker_pss_peak_mb'] or '-':>11}"
              f"{'   OVER' if key in over else ''}")
    s = r["services"]
    print("  services (peak RSS, MB): " + ", ".join(
        f"{name} {s[name]['peak_mb']}" + (f" (+{s[name]['children']} children, max {s[name]['children_peak_mb']})"
                                          if s[name]["children"] else "") for name in SERVICES)
          + f"; executor workers {s['executor_workers']['count']}, idle {s['executor_workers']['idle_peak_mb']}")
    agree = [t["pid_agrees"] for t in r["tasks"].values()]
    print(f"  attribution: task instance ids in process titles; REST pid of the task instance agrees for "
          f"{sum(1 for a in agree if a)} of {len(agree)} tasks; {r['sampler']['ticks']} samples of "
          f"{r['sampler']['processes']} processes, {r['sampler']['mean_tick_ms']} ms each")
    print(f"  active {r['active']} + withheld {withheld} = {r['active'] + withheld} (size {n}), "
          f"history {r['history']}; "
          f"load average {summary['load_avg_before']} → {summary['load_avg_after']}")
    if r.get("home"):
        print(f"  kept: {r['home']}")
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    if r.get("log_tail"):
        print(r["log_tail"])
    print(json.dumps(summary, sort_keys=True, default=str))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
