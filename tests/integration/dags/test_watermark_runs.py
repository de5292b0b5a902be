"""The sync watermark through the real indicator DAG (#13 item 1): ``dag.test()`` (real Airflow,
in-process), the ThreatQ simulator over HTTP, the real Elasticsearch node.

* A fresh deployment's first scheduled-style run (no ``since``/``until``) loads the initial
  look-back (default 90 days): exactly the simulator's indicators updated in it, nothing older.
* Interval N, then interval N+7 (the scheduler was down for six intervals): the second run reads
  from the watermark, its report names the six missed intervals, and Elasticsearch holds exactly
  the indicators updated from interval N to N+7.
* A window given by hand for the past, and a dry run, never move the watermark.

Ground truth comes from the simulator's corpus and ``helpers`` (the expiry rules re-implemented).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.dags import helpers
from tests.integration.dags.test_indicator_dag_runs import (  # noqa: F401 (fixtures)
    INDICATORS,
    SWEEP,
    _run,
    airflow_env,
    dagbag,
    es_clean,
)

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.elasticsearch]

STEP = timedelta(minutes=10)  # the DAG's default schedule, */10
LONG_LIFE = "3650d"  # no indicator expires by duration: the window alone decides what is loaded


def _floor10(moment: datetime) -> datetime:
    return moment.replace(minute=moment.minute - moment.minute % 10, second=0, microsecond=0)


def _watermark(sim) -> dict:
    from airflow.models.variable import Variable

    host = sim.url.split("://", 1)[1].rstrip("/")
    text = Variable.get(f"threatq_watermark__{INDICATORS}__{host}__window", default_var=None)
    return json.loads(text) if text else {}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _sweep_and_check(dagbag, es, truth) -> dict:
    before = helpers.utcnow()
    _run(dagbag, SWEEP)
    return helpers.assert_active_index_matches(es, truth, before=before, after=helpers.utcnow(), duration=LONG_LIFE)


def test_a_fresh_deployment_first_run_loads_the_initial_lookback(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn, monkeypatch  # noqa: F811
):
    end = _floor10(helpers.utcnow()) - timedelta(hours=1)  # the run's interval: [end - 10 min, end)
    sim = tq_sim_factory(seed=31, indicators=4_000, events=5, start=end - timedelta(days=120), end=end)
    tq_conn(sim)
    # The connection names the ThreatQ web UI (#13 item 5): every IOC links back to it.
    conn = json.loads(os.environ["AIRFLOW_CONN_THREATQ_DEFAULT"])
    conn["extra"]["ui_base_url"] = "https://threatq.example.test/"
    monkeypatch.setenv("AIRFLOW_CONN_THREATQ_DEFAULT", json.dumps(conn))
    truth = list(sim.corpus.iter_indicators(end - timedelta(days=90), end))
    older = list(sim.corpus.iter_indicators(None, end - timedelta(days=90)))
    assert truth and older, "the corpus must reach both inside and before the look-back"
    assert _watermark(sim) == {}

    run = _run(dagbag, INDICATORS, logical_date=end, conf={"ioc_expiration_duration": LONG_LIFE})
    poll, report = run["xcom"]["poll"], run["xcom"]["report"]

    assert (poll["window_start"], poll["window_end"]) == ((end - timedelta(days=90)).isoformat(), end.isoformat())
    assert poll["indicators"] == len(truth)
    assert sorted(helpers.read_ndjson_ids(poll["path"])) == sorted(helpers.all_ids(truth))
    assert report["window_kind"] == "initial_lookback" and report["gap_closed"] is None
    assert (report["interval_start"], report["interval_end"]) == (_iso(end - STEP), _iso(end))
    assert report["watermark_saved"] is True and _watermark(sim)["watermark"] == _iso(end)
    docs = _sweep_and_check(dagbag, es_clean, truth)
    assert not set(docs) & set(helpers.all_ids(older)), "an indicator older than the look-back was loaded"
    # ECS dates and the link back (#13 item 5), from the simulator's own values.
    by_id = {str(raw["id"]): raw for raw in truth}
    for tq_id, hit in docs.items():
        indicator, raw = hit["_source"]["threat"]["indicator"], by_id[tq_id]
        assert indicator["reference"] == f"https://threatq.example.test/indicators/{tq_id}/details"
        assert indicator["first_seen"] == _ecs_date(raw["created_at"])
        assert indicator["last_seen"] == _ecs_date(raw["touched_at"])
        # (@timestamp too, unless the sweep's detection window moved it: modified_at keeps ThreatQ's time)
        assert indicator["modified_at"] == _ecs_date(raw["updated_at"]) == hit["_source"]["threatq"]["updated_at"]


def _ecs_date(threatq_date: str) -> str:
    """ThreatQ's ``YYYY-MM-DD HH:MM:SS`` (UTC) as Elastic writes it."""
    return threatq_date.replace(" ", "T") + ".000Z"


def test_six_missed_intervals_are_read_by_the_next_run_and_its_report_names_the_gap(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn, monkeypatch  # noqa: F811
):
    end_n = _floor10(helpers.utcnow()) - timedelta(hours=3)
    sim = tq_sim_factory(seed=32, indicators=6_000, events=5, start=end_n - timedelta(days=1),
                         end=end_n + timedelta(hours=2))
    tq_conn(sim)
    # First run of this deployment reads only its own interval, so the gap is all that is left.
    monkeypatch.setenv("AIRFLOW_VAR_THREATQ_INITIAL_LOOKBACK", "0d")
    conf = {"ioc_expiration_duration": LONG_LIFE}

    first = _run(dagbag, INDICATORS, logical_date=end_n, conf=conf)
    assert first["xcom"]["poll"]["window_start"] == (end_n - STEP).isoformat()
    assert _watermark(sim)["watermark"] == _iso(end_n)

    # Intervals N+1 .. N+6 never ran (scheduler down); N+7 runs.
    end_n7 = end_n + 7 * STEP
    missed = list(sim.corpus.iter_indicators(end_n, end_n7 - STEP))
    assert len(missed) > 60, "the missed intervals should hold indicators"
    second = _run(dagbag, INDICATORS, logical_date=end_n7, conf=conf)
    poll, report = second["xcom"]["poll"], second["xcom"]["report"]

    assert (poll["window_start"], poll["window_end"]) == (end_n.isoformat(), end_n7.isoformat())
    own_and_missed = list(sim.corpus.iter_indicators(end_n, end_n7))
    assert sorted(helpers.read_ndjson_ids(poll["path"])) == sorted(helpers.all_ids(own_and_missed))
    assert report["window_kind"] == "catch_up"
    assert report["gap_closed"] == {"start": _iso(end_n), "end": _iso(end_n7 - STEP), "intervals": 6}
    assert _watermark(sim)["watermark"] == _iso(end_n7)
    # The run report in Elasticsearch (the Kibana dashboard's source) names the gap too.
    es_clean.indices.refresh(index="threatq-provider-runs")
    doc = es_clean.get(index="threatq-provider-runs", id=f"{INDICATORS}/{second['run'].run_id}")["_source"]
    assert (doc["gap_start"], doc["gap_end"], doc["gap_intervals"]) == (_iso(end_n), _iso(end_n7 - STEP), 6)
    assert doc["window_kind"] == "catch_up" and doc["window_start"] == end_n.isoformat()

    # Elasticsearch holds exactly interval N to N+7: nothing lost in the gap, nothing else.
    _sweep_and_check(dagbag, es_clean, list(sim.corpus.iter_indicators(end_n - STEP, end_n7)))

    # A window given by hand for the past (a re-read), and a dry run, leave the watermark alone.
    past = _run(dagbag, INDICATORS, logical_date=end_n7 + STEP,
                conf=conf | {"since": (end_n - timedelta(hours=5)).isoformat(), "until": end_n.isoformat()})
    assert past["xcom"]["report"]["window_kind"] is None and past["xcom"]["report"]["watermark_saved"] is False
    dry = _run(dagbag, INDICATORS, logical_date=end_n7 + 2 * STEP, conf=conf | {"dry_run": True})
    assert dry["xcom"]["poll"]["window_start"] == end_n7.isoformat()  # it read from the watermark...
    assert dry["xcom"]["report"]["watermark_saved"] is False  # ...and, loading nothing, kept it
    assert _watermark(sim)["watermark"] == _iso(end_n7)
