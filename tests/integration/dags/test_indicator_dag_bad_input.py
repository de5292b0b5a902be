"""The indicator DAG under the simulator's data faults (issue #18): a silent page cap, a poisoned
indicator, an indicator nested too deep. Real Airflow (``dag.test()``), the ThreatQ simulator over
real HTTP, a real Elasticsearch node.

A run must either carry every indicator to Elasticsearch or fail loudly: never green with fewer.
A bad record must not block the feed: the run completes, the record is counted with its id and
reason, the collection cursor moves past it, and the next run does not fail.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from threatq_provider.stage_io import read_text
from tests.integration.dags import helpers
from tests.integration.dags.test_indicator_dag_runs import (  # noqa: F401 - fixtures used by name
    CORPUS_END,
    CORPUS_START,
    INDICATORS,
    _run,
    _window_conf,
    airflow_env,
    dagbag,
    es_clean,
)

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.elasticsearch]

LONG_LIFE = "3650d"  # every indicator stays active: the active index must hold all of them


def assert_all_written(load: dict, n: int) -> None:
    """The load task read all ``n`` documents and the node refused none of them.

    Counted from the load task's result (the node's own bulk answers) rather than read back,
    because other sessions' DAG tests wipe the shared ``logs-ti_threatq*`` indices on the same
    node at any moment.
    """
    assert load["read"] == n, f"the load read {load['read']} of {n} documents"
    assert load.get("rejected_documents", 0) == 0 and load.get("dead_lettered", 0) == 0, load


def test_a_silent_page_cap_still_loads_every_indicator_of_the_window(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn, monkeypatch
):
    from threatq_simulators.faults import FaultPlan, FaultRule

    # The DAG asks 500 rows a page; the server (or a proxy) serves 100, with a correct total.
    plan = FaultPlan([FaultRule(path_regex="^/api/indicators/query", times=None, page_cap=100)])
    monkeypatch.setenv("AIRFLOW_VAR_THREATQ_PAGE_SIZE", "500")
    sim = tq_sim_factory(seed=23, indicators=2_500, events=5, start=CORPUS_START, end=CORPUS_END, faults=plan)
    tq_conn(sim)
    truth = list(sim.corpus.iter_indicators(CORPUS_START, CORPUS_END))
    assert len(truth) == 2_500

    run = _run(dagbag, INDICATORS, logical_date=datetime(2026, 3, 8, 12, 0, tzinfo=timezone.utc),
               conf=_window_conf(CORPUS_START, CORPUS_END, ioc_expiration_duration=LONG_LIFE))
    poll, report = run["xcom"]["poll"], run["xcom"]["report"]
    assert poll["indicators"] == len(truth), f"the poll stopped at {poll['indicators']} of {len(truth)}"
    staged = helpers.read_ndjson_ids(poll["path"])
    assert sorted(staged) == sorted(helpers.all_ids(truth))
    assert plan.rules[0].triggered >= 25, "the cap was not in the way of the paging"
    assert report["polled"] == report["transformed"] == len(truth)
    assert_all_written(run["xcom"]["load"], len(truth))


def test_a_server_ending_short_of_its_total_fails_the_run_and_loads_nothing(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn, monkeypatch, capfd
):
    from threatq_simulators.faults import FaultPlan, FaultRule

    monkeypatch.setenv("AIRFLOW_VAR_THREATQ_PAGE_SIZE", "500")
    sim = tq_sim_factory(seed=24, indicators=1_200, events=5, start=CORPUS_START, end=CORPUS_END)
    tq_conn(sim)
    total = len(list(sim.corpus.iter_indicators(CORPUS_START, CORPUS_END)))
    # Capped pages of 100; from the third request on the server says "no more rows" while its
    # total still counts all of them: 200 of 1,200 would have been a green run before.
    sim.faults.extend([
        FaultRule(path_regex="^/api/indicators/query", times=None, page_cap=100),
        FaultRule(path_regex="^/api/indicators/query", nth=3, times=None, status=200,
                  body={"total": total, "data": {}, "nextCursorMark": "AoJend"}),
    ])
    dag = dagbag.dags[INDICATORS]
    dag.get_task("poll").retries = 0  # fail now rather than after two 30 s retries
    dag_run = dag.test(logical_date=datetime(2026, 3, 9, 12, 0, tzinfo=timezone.utc),
                       run_conf=_window_conf(CORPUS_START, CORPUS_END, ioc_expiration_duration=LONG_LIFE))
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "failed"
    assert states["poll"] == "failed" and states["load"] == "upstream_failed"
    # The task log names the typed error with both counts (dag.test() writes task logs to the console).
    out = "".join(capfd.readouterr())
    assert "ThreatQIncompleteError" in out
    assert f"paging ended after 200 rows but the server's total is {total}" in out


def test_a_poisoned_indicator_in_collection_mode_is_flagged_and_the_feed_moves_on(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn
):
    # Read the metadata DB directly: the test is not a task, and this is where the Execution API wrote.
    from airflow.models.variable import Variable

    from threatq_simulators.faults import FaultRule

    sim = tq_sim_factory(seed=25, indicators=1_500, events=5, start=CORPUS_START, end=CORPUS_END)
    tq_conn(sim)
    coll = next(c for c in sim.corpus.collections if c["name"] == "Active IP Address")
    truth = list(sim.corpus.iter_collection(coll["hash"]))
    poisoned = truth[len(truth) // 2]["id"]
    # Every answer of the feed carries indicator <poisoned> with "… \ud83d" at the end of its
    # description: before, every run failed at that page and the cursor never moved.
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query/hash/", times=None, poison_indicator=poisoned))
    cursor_var = f"threatq_collection_cursor__{coll['hash']}"
    conf = {"mode": "collection", "collection": coll["hash"], "ioc_expiration_duration": LONG_LIFE}

    first = _run(dagbag, INDICATORS, logical_date=datetime(2026, 3, 10, tzinfo=timezone.utc), conf=conf)
    poll, transform, report = (first["xcom"][t] for t in ("poll", "transform", "report"))
    assert poll["indicators"] == len(truth), "a record was lost with the poisoned one"
    assert (poll["lone_surrogates"], poll["lone_surrogate_ids"]) == (1, [poisoned])
    assert transform["flagged"] >= 1 and report["flagged"] == transform["flagged"]
    assert report["cursor_saved"] is True and Variable.get(cursor_var) == poll["next_cursor"]
    assert_all_written(first["xcom"]["load"], len(truth))
    ecs = read_text(Path(transform["path"].removeprefix("file://"))).splitlines()
    doc = next(d for d in map(json.loads, ecs) if d["threatq"]["id"] == poisoned)
    assert "threatq.description: lone UTF-16 surrogate replaced with U+FFFD" in doc["error"]["message"]
    assert doc["threatq"]["description"].endswith(" \ufffd") and doc["event"]["kind"] == "pipeline_error"

    # The next run starts after the poisoned page and does not fail.
    second = _run(dagbag, INDICATORS, logical_date=datetime(2026, 3, 11, tzinfo=timezone.utc), conf=conf)
    assert second["xcom"]["poll"]["cursor_start"] == poll["next_cursor"]
    assert second["xcom"]["poll"]["indicators"] == 0


def test_an_indicator_nested_too_deep_is_a_poll_reject_and_the_window_loads(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn
):
    from threatq_simulators.faults import FaultRule

    sim = tq_sim_factory(seed=26, indicators=800, events=5, start=CORPUS_START, end=CORPUS_END)
    tq_conn(sim)
    truth = list(sim.corpus.iter_indicators(CORPUS_START, CORPUS_END))
    deep = truth[400]["id"]
    # Its attribute value comes wrapped in 3,000 arrays: resp.json() raised RecursionError before.
    sim.faults.add(FaultRule(path_regex="^/api/indicators/query", times=None, nest_indicator=deep, nest_depth=3_000))

    run = _run(dagbag, INDICATORS, logical_date=datetime(2026, 3, 12, 12, 0, tzinfo=timezone.utc),
               conf=_window_conf(CORPUS_START, CORPUS_END, ioc_expiration_duration=LONG_LIFE))
    poll, report = run["xcom"]["poll"], run["xcom"]["report"]
    assert poll["indicators"] == len(truth) - 1 and poll["rejected"] == {"too_deeply_nested": 1}
    assert report["poll_rejected"] == {"too_deeply_nested": 1}
    rejects = [json.loads(line) for line in read_text(Path(poll["rejects_path"].removeprefix("file://"))).splitlines()]
    assert [(r["id"], r["reason"]) for r in rejects] == [(deep, "too_deeply_nested")]
    assert "[" * 3_000 in rejects[0]["raw"], "the reject keeps the row as ThreatQ sent it"
    staged = helpers.read_ndjson_ids(poll["path"])
    assert sorted(staged) == sorted(i for i in helpers.all_ids(truth) if i != str(deep))
    assert report["transformed"] == len(truth) - 1
    assert_all_written(run["xcom"]["load"], len(truth) - 1)
