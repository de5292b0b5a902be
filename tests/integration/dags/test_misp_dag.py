"""threatq_events_to_misp in a real Airflow (SQLite, ``dag.test()``): ThreatQ simulator → MISP double.

The expectation is computed here, independently of the provider's mapping: from the simulator's
corpus, the events updated in the run's data interval, each with its indicators' values (types
MISP lacks left out), its attachments' names and its event type.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pendulum
import pytest

from tests.fixtures.misp import MISP_CANARY_KEY
from tests.fixtures.threatq import threatq_conn_json

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.component, pytest.mark.usefixtures("no_variables")]

REPO = Path(__file__).resolve().parents[3]
DAG_ID = "threatq_events_to_misp"
START, END = "2024-03-01T00:00:00Z", "2024-03-01T04:00:00Z"
# ThreatQ types with no MISP attribute type (docs/reference/misp.md §3.1); written out here on purpose.
NO_MISP_TYPE = {"Password", "GOST Hash", "x509 Serial", "x509 Subject", "Binary String", "File Mapping", "Hash ION"}


@pytest.fixture
def misp_dag():
    # A fresh DAG object per test: dag.test() runs in-process and a run's conf can stick to the
    # parsed DAG's params, which would leak one test's event_ids into the next.
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{DAG_ID}.py"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


@pytest.fixture
def sim(threatq_sim_factory, monkeypatch):
    """A ThreatQ simulator whose 24 events were all updated within four hours.

    Each simulator is a new ThreatQ instance (its own port) with no watermark yet; the initial
    look-back is 0d here, so a first run shares its own hour only (the look-back and the watermark
    have their own tests below).
    """
    sim = threatq_sim_factory(indicators=400, events=24, start=START, end=END, seed=7)
    monkeypatch.setenv("AIRFLOW_CONN_THREATQ_DEFAULT", threatq_conn_json(sim))
    monkeypatch.setenv("AIRFLOW_VAR_THREATQ_INITIAL_LOOKBACK", "0d")
    return sim


def normalise(type_name: str, value: str) -> str:
    value = value.strip().lower()
    return value[2:] if type_name == "ASN" and value.startswith("as") else value


def expected_events(corpus: Any, start: Any, end: Any, event_ids: list[int] | None = None) -> dict[str, Any]:
    """ThreatQ id → (title, indicator values, attachment names, event type) for the events MISP should hold."""
    out = {}
    for event in corpus.events:
        updated = pendulum.parse(event["updated_at"].replace(" ", "T") + "Z")
        start = pendulum.instance(start) if start is not None else None
        end = pendulum.instance(end) if end is not None else None
        if event_ids is not None and event["id"] not in event_ids:
            continue
        if event_ids is None and not (start <= updated < end):
            continue
        values = set()
        for row in event["indicators"]:
            type_name = corpus.type_by_id(row["type_id"])["name"]
            if type_name not in NO_MISP_TYPE:
                values.add(normalise(type_name, row["value"]))
        out[event["id"]] = (event["title"], values, {a["name"] for a in event["attachments"]}, event["type"]["name"])
    return out


TECHNIQUE = re.compile(r"(T\d{4}(?:\.\d{3})?) - (.+)")


def attack_pattern_tag(threatq_name: str) -> str:
    """ThreatQ's "T1059 - Command and Scripting Interpreter" → its ATT&CK cluster's galaxy tag."""
    technique, name = TECHNIQUE.match(threatq_name).groups()
    return f'misp-galaxy:mitre-attack-pattern="{name} - {technique}"'


def misp_view(double: Any) -> dict[str, Any]:
    out = {}
    for event in double.events():
        # indicators: everything but attachments and the event's own attributes (text with the name as comment)
        ind = {a["value"].lower() for a in event["Attribute"]
               if a["type"] not in ("attachment", "malware-sample") and not (a["type"] == "text" and a["comment"])}
        att = {a["value"] for a in event["Attribute"] if a["type"] in ("attachment", "malware-sample")}
        tag = {t["name"].split("=")[0]: t["name"].split('"')[1] for t in event["Tag"] if t["name"].startswith("threatq:")}
        out[int(tag["threatq:event-id"])] = (event["info"], ind, att, tag["threatq:event-type"])
    return out


def test_the_dag_shares_the_events_of_its_data_interval(airflow_db, misp_dag, sim, misp_conn, caplog):
    run = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 2, tz="UTC"))

    assert run.state == "success"
    start, end = run.data_interval_start, run.data_interval_end
    assert (end - start).total_seconds() == 3600
    expected = expected_events(sim.corpus, start, end)
    assert expected, "the window should hold some events"
    assert misp_view(misp_conn) == expected
    assert all(e["published"] for e in misp_conn.events())
    # ThreatQ's attack patterns "T1078 - Valid Accounts" (GET /api/events/{id}/attack_pattern) arrive as
    # ATT&CK galaxy tags "Valid Accounts - T1078"; malware as mitre-malware / malpedia ones.
    tags = {int(t["name"].split('"')[1]): {x["name"] for x in e["Tag"]}
            for e in misp_conn.events() for t in e["Tag"] if t["name"].startswith("threatq:event-id=")}
    techniques = {e["id"]: {attack_pattern_tag(p["value"]) for p in e["attack_pattern"] if TECHNIQUE.match(p["value"])}
                  for e in sim.corpus.events if e["id"] in expected}
    assert any(techniques.values()), "the window should hold events with ATT&CK attack patterns"
    assert all(techniques[eid] <= tags[eid] for eid in expected)
    assert any(t.startswith(("misp-galaxy:mitre-malware=", "misp-galaxy:malpedia=")) for ts in tags.values() for t in ts)
    xcoms = [ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index) for ti in run.get_task_instances()]
    assert MISP_CANARY_KEY not in json.dumps(xcoms, default=str)
    assert MISP_CANARY_KEY not in caplog.text


def test_a_rerun_of_the_same_interval_changes_nothing(airflow_db, misp_dag, sim, misp_conn):
    misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 3, tz="UTC"))
    before = {e["uuid"]: sorted(a["uuid"] for a in e["Attribute"]) for e in misp_conn.events()}

    run = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 3, tz="UTC"))

    assert run.state == "success"
    after = {e["uuid"]: sorted(a["uuid"] for a in e["Attribute"]) for e in misp_conn.events()}
    assert after == before and before
    shares = [ti.xcom_pull(task_ids="share_event", map_indexes=ti.map_index)
              for ti in run.get_task_instances() if ti.task_id == "share_event"]
    assert shares and all(s["added"] == 0 and s["created"] == 0 for s in shares)


def test_a_manual_run_shares_the_given_event_ids_with_its_params(airflow_db, misp_dag, sim, misp_conn):
    run = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 1, tz="UTC"),
                        run_conf={"event_ids": [2, 5], "publish": False, "distribution": "all_communities"})

    assert run.state == "success"
    assert misp_view(misp_conn) == expected_events(sim.corpus, None, None, event_ids=[2, 5])
    assert {(e["published"], e["distribution"]) for e in misp_conn.events()} == {(False, "3")}


def test_event_type_params_filter_the_window(airflow_db, misp_dag, sim, misp_conn):
    start = pendulum.datetime(2024, 3, 1, 0, tz="UTC")
    window = expected_events(sim.corpus, start, pendulum.datetime(2024, 3, 1, 4, tz="UTC"))
    wanted = sorted({kind for *_, kind in window.values()})[0]
    run = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 4, tz="UTC"), run_conf={"event_types": [wanted]})

    assert run.state == "success"
    in_interval = expected_events(sim.corpus, run.data_interval_start, run.data_interval_end)
    assert misp_view(misp_conn) == {i: v for i, v in in_interval.items() if v[3] == wanted}



def test_an_interval_without_events_succeeds_and_shares_nothing(airflow_db, misp_dag, sim, misp_conn):
    run = misp_dag.test(logical_date=pendulum.datetime(2024, 2, 1, 5, tz="UTC"))

    assert run.state == "success"
    assert misp_conn.events() == []
    assert [r.method for r in misp_conn.requests()] == []


def test_updated_since_and_until_replace_the_window(airflow_db, misp_dag, sim, misp_conn):
    run = misp_dag.test(logical_date=pendulum.datetime(2024, 2, 1, 5, tz="UTC"),
                        run_conf={"updated_since": START, "updated_until": END})

    assert run.state == "success"
    everything = expected_events(sim.corpus, pendulum.parse(START), pendulum.parse(END))
    assert len(everything) == 24 and misp_view(misp_conn) == everything


def test_the_dag_is_hourly_windowed_non_overlapping_and_bounded(misp_dag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    assert isinstance(misp_dag.timetable, CronDataIntervalTimetable)
    assert (misp_dag.max_active_runs, misp_dag.catchup) == (1, False)
    share = misp_dag.get_task("share_event")
    assert share.max_active_tis_per_dagrun == 4
    assert {"event_ids", "event_types", "tags", "sources", "publish", "distribution"} <= set(misp_dag.params)
    assert "misp_default" in misp_dag.doc_md and "threatq_default" in misp_dag.doc_md


def test_the_dag_file_parses_without_heavy_imports():
    import subprocess
    import sys

    code = ("import runpy, sys; runpy.run_path(sys.argv[1]);"
            "print('HEAVY=' + ','.join(m for m in ('pymisp', 'requests', 'elasticsearch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "dags" / f"{DAG_ID}.py")],
                         capture_output=True, text=True, check=True, timeout=120)
    assert [line for line in out.stdout.splitlines() if line.startswith("HEAVY=")] == ["HEAVY="]


def _save_watermark_xcom(run: Any) -> dict[str, Any]:
    ti = next(t for t in run.get_task_instances() if t.task_id == "save_watermark")
    assert str(ti.state) == "success"
    return ti.xcom_pull(task_ids="save_watermark")


def test_a_first_run_shares_the_initial_lookback(airflow_db, misp_dag, sim, misp_conn, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_THREATQ_INITIAL_LOOKBACK")  # the default: 90 days
    run = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 6, tz="UTC"))

    assert run.state == "success"
    assert run.data_interval_start == pendulum.datetime(2024, 3, 1, 5, tz="UTC")  # an hour with no event
    end = run.data_interval_end
    everything = expected_events(sim.corpus, end - pendulum.duration(days=90), end)
    assert len(everything) == 24 and misp_view(misp_conn) == everything
    saved = _save_watermark_xcom(run)
    assert saved["window_kind"] == "initial_lookback" and saved["watermark_saved"] is True
    assert saved["watermark"] == "2024-03-01T06:00:00Z"


def test_hours_the_scheduler_missed_are_shared_by_the_next_run_which_names_the_gap(
        airflow_db, misp_dag, sim, misp_conn):
    first = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 1, tz="UTC"))  # [00:00, 01:00)
    assert first.state == "success"
    assert misp_view(misp_conn) == expected_events(sim.corpus, first.data_interval_start, first.data_interval_end)

    # 01:00 to 07:00 never ran; the 07:00-08:00 run shares them too.
    run = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 8, tz="UTC"))

    assert run.state == "success"
    saved = _save_watermark_xcom(run)
    assert saved["gap_closed"] == {"start": "2024-03-01T01:00:00Z", "end": "2024-03-01T07:00:00Z", "intervals": 6}
    assert (saved["window_start"], saved["window_end"]) == ("2024-03-01T01:00:00Z", "2024-03-01T08:00:00Z")
    assert saved["watermark"] == "2024-03-01T08:00:00Z"
    everything = expected_events(sim.corpus, pendulum.parse(START), pendulum.parse(END))
    assert len(everything) == 24 and misp_view(misp_conn) == everything


def test_a_failed_share_keeps_the_watermark_so_the_next_run_shares_again(
        airflow_db, misp_dag, sim, misp_conn):
    first = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 1, tz="UTC"))
    assert first.state == "success" and _save_watermark_xcom(first)["watermark"] == "2024-03-01T01:00:00Z"
    for task in misp_dag.tasks:
        task.retries = 0
    misp_conn.add_fault({"method": "POST", "path_regex": "^/events/add", "status": 500, "times": None})
    failed = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 2, tz="UTC"))
    assert failed.state == "failed"
    states = {t.task_id: str(t.state) for t in failed.get_task_instances()}
    assert states["save_watermark"] == "upstream_failed"
    misp_conn.faults.clear()

    again = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 3, tz="UTC"))
    assert again.state == "success"
    saved = _save_watermark_xcom(again)
    assert saved["window_start"] == "2024-03-01T01:00:00Z"  # the failed hour is read again
    assert misp_view(misp_conn) == expected_events(sim.corpus, pendulum.parse(START),
                                                   pendulum.datetime(2024, 3, 1, 3, tz="UTC"))


def test_two_threatq_instances_share_one_misp_without_colliding(airflow_db, misp_dag, sim, misp_conn,
                                                                threatq_sim_factory, monkeypatch):
    """#13 item 4: a second instance (a partner's) with the same event ids, named on its connection."""
    window = {"updated_since": START, "updated_until": END}
    first = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 5, tz="UTC"), run_conf=window)
    assert first.state == "success"
    prod = {e["uuid"] for e in misp_conn.events()}
    assert len(prod) == 24

    partner = threatq_sim_factory(indicators=400, events=24, start=START, end=END, seed=7)  # same ids
    conn = json.loads(threatq_conn_json(partner))
    conn["extra"]["instance"] = "partner"
    monkeypatch.setenv("AIRFLOW_CONN_THREATQ_DEFAULT", json.dumps(conn))
    second = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 6, tz="UTC"), run_conf=window)

    assert second.state == "success"
    events = misp_conn.events()
    assert len(events) == 48 and prod < {e["uuid"] for e in events}, "the partner's events replaced ours"
    by_id: dict[int, int] = {}
    for event in events:
        tq_id = next(int(t["name"].split('"')[1]) for t in event["Tag"] if t["name"].startswith("threatq:event-id="))
        by_id[tq_id] = by_id.get(tq_id, 0) + 1
    assert set(by_id.values()) == {2}, "each ThreatQ event id is in MISP once per instance"
    # Sharing the partner again updates its own events in place.
    again = misp_dag.test(logical_date=pendulum.datetime(2024, 3, 1, 7, tz="UTC"), run_conf=window)
    assert again.state == "success" and len(misp_conn.events()) == 48
