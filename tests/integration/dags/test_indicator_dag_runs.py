"""The indicator and sweep DAGs end to end with ``dag.test()``: real Airflow (in-process), the
ThreatQ simulator over real HTTP, a real search node: each test runs against Elastic's test node
(``es``, an ``elasticsearch_ecs`` connection) and OpenSearch's (``os``, Airflow's ``opensearch``
connection type): the DAGs choose the target by the type of ``elasticsearch_default``.

Each test compares what reached Elasticsearch with ground truth computed independently from
the simulator's corpus (``helpers.active_ids``: the four expiration rules, re-implemented).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.integration.dags import helpers
from tests.integration.dags.conftest import CANARY_SECRET as CANARY

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.elasticsearch]

REPO = Path(__file__).resolve().parents[3]
INDICATORS = "threatq_indicators_to_elasticsearch"
SWEEP = "threatq_ioc_expiry_sweep"


def _floor(dt: datetime) -> datetime:
    return dt.replace(microsecond=0)


# The corpus spans the last 10 days and the runs use a 5-day IOC expiration duration, so all
# four expiration rules matter: about half the indicators have expired by duration, some carry
# ThreatQ expiry dates in the past or the future, some have status Expired. (A short span also
# keeps the number of daily history indices, and so the load time, small.)
NOW = _floor(datetime.now(timezone.utc))
CORPUS_START = NOW - timedelta(days=10)
CORPUS_END = NOW - timedelta(hours=1)
DURATION = "5d"


class FreshDags:
    """Each ``.dags[dag_id]`` lookup parses the DAG folder again.

    ``dag.test(run_conf=...)`` runs tasks in-process on the DAG's own operator objects and the
    run's conf ends up merged into their params in place (Airflow 3.3.2): a DAG object reused for
    a second ``dag.test()`` would carry the first run's params (say ``dry_run``) into it. A
    scheduler parses DAGs afresh per run, so a fresh object per run is the faithful test.
    """

    @property
    def dags(self) -> dict:
        from airflow.models import DagBag

        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        return bag.dags


@pytest.fixture
def dagbag() -> FreshDags:
    return FreshDags()


@pytest.fixture
def es_clean(search_client):
    helpers.wipe_threatq_indices(search_client)
    yield search_client
    helpers.wipe_threatq_indices(search_client)


@pytest.fixture
def airflow_env(monkeypatch, search_conn, tmp_path, no_variables):
    """Connections and variables exactly as a deployment gives them: ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*``.
    The search connection is ``elasticsearch_ecs`` for Elasticsearch, ``opensearch`` for OpenSearch."""
    monkeypatch.setenv("AIRFLOW_CONN_ELASTICSEARCH_DEFAULT", search_conn)
    monkeypatch.setenv("AIRFLOW_VAR_THREATQ_STAGE_ROOT", f"file://{tmp_path}/stage")
    return tmp_path


def _xcoms(dag_run) -> dict:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, key="return_value")).all()
        return {row.task_id: XComModel.deserialize_value(row) for row in rows}


def _run(dagbag, dag_id: str, *, logical_date: datetime | None = None, conf: dict | None = None) -> dict:
    dag_run = dagbag.dags[dag_id].test(logical_date=logical_date, run_conf=conf or {})
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "success", f"{dag_id} run ended {dag_run.state}: {states}"
    return {"run": dag_run, "states": states, "xcom": _xcoms(dag_run)}


def _stale_stage_folder(stage_tmp: Path, dag_id: str, *, age_before: datetime) -> Path:
    """A run folder under the stage root whose files were last written 30 days before ``age_before``."""
    import os

    folder = stage_tmp / "stage" / dag_id / "scheduled__stale"
    folder.mkdir(parents=True)
    stamp = (age_before - timedelta(days=30)).timestamp()
    for name in ("raw.ndjson", "ecs.ndjson"):
        (folder / name).write_text("{}\n")
        os.utime(folder / name, (stamp, stamp))
    return folder


def _window_conf(start: datetime, end: datetime, **extra) -> dict:
    return {"since": start.isoformat(), "until": end.isoformat(), **extra}


def test_window_run_loads_exactly_the_active_indicators_and_a_rerun_changes_nothing(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn, monkeypatch
):
    sim = tq_sim_factory(seed=42, indicators=10_000, events=10, start=CORPUS_START, end=CORPUS_END)
    tq_conn(sim)
    corpus = list(sim.corpus.iter_indicators(CORPUS_START, CORPUS_END))
    assert len(corpus) == 10_000
    logical = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    conf = _window_conf(CORPUS_START, CORPUS_END, ioc_expiration_duration=DURATION)

    first = _run(dagbag, INDICATORS, logical_date=logical, conf=conf)
    poll = first["xcom"]["poll"]
    assert poll["indicators"] == len(corpus)
    staged = helpers.read_ndjson_ids(poll["path"])
    assert sorted(staged) == sorted(helpers.all_ids(corpus)), "the staged window is not the corpus window"
    assert first["xcom"]["report"]["loaded"] > 0

    before = helpers.utcnow()
    _run(dagbag, SWEEP)
    after = helpers.utcnow()
    docs = helpers.assert_active_index_matches(es_clean, corpus, before=before, after=after, duration=DURATION)
    assert 0.2 * len(corpus) < len(docs) < 0.8 * len(corpus), "the corpus should mix active and expired indicators"

    # The same interval again: same stage folder, same documents, nothing doubled or rewritten.
    _run(dagbag, INDICATORS, logical_date=logical, conf=conf)
    before2 = helpers.utcnow()
    _run(dagbag, SWEEP)
    after2 = helpers.utcnow()
    docs2 = helpers.assert_active_index_matches(es_clean, corpus, before=before2, after=after2, duration=DURATION)
    common = set(docs) & set(docs2)  # an indicator expiring between the two sweeps leaves; nothing else may
    changed = [i for i in common if docs[i]["_source"] != docs2[i]["_source"]]
    assert changed == [], f"re-running the interval changed {len(changed)} documents, e.g. {changed[:3]}"


def test_type_filter_and_dry_run_params_are_honoured(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn, monkeypatch
):
    sim = tq_sim_factory(seed=7, indicators=2_000, events=5, start=CORPUS_START, end=CORPUS_END)
    tq_conn(sim)
    wanted = ["IP Address", "FQDN"]
    truth = list(sim.corpus.iter_indicators(CORPUS_START, CORPUS_END, types=wanted))
    logical = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
    stale = _stale_stage_folder(airflow_env, INDICATORS, age_before=logical)

    dry = _run(dagbag, INDICATORS, logical_date=logical, conf=_window_conf(CORPUS_START, CORPUS_END, dry_run=True))
    assert dry["states"]["load"] == "skipped"
    assert dry["xcom"]["report"]["dry_run"] is True
    assert helpers.es_active_docs(es_clean) == {}, "a dry run wrote to Elasticsearch"
    # Stage retention ran after the skipped load: the stale run folder went, this run's stayed.
    assert dry["states"]["stage_retention"] == "success"
    assert (dry["xcom"]["stage_retention"]["deleted"], dry["xcom"]["stage_retention"]["kept"]) == (1, 1)
    assert not stale.exists() and Path(dry["xcom"]["poll"]["path"].removeprefix("file://")).parent.is_dir()

    run = _run(dagbag, INDICATORS, logical_date=logical,
               conf=_window_conf(CORPUS_START, CORPUS_END, indicator_types=wanted, ioc_expiration_duration="3650d"))
    assert sorted(helpers.read_ndjson_ids(run["xcom"]["poll"]["path"])) == sorted(helpers.all_ids(truth))
    before = helpers.utcnow()
    _run(dagbag, SWEEP)
    docs = helpers.assert_active_index_matches(es_clean, truth, before=before, after=helpers.utcnow(), duration="3650d")
    assert {d["_source"]["threatq"]["type"]["name"] for d in docs.values()} <= set(wanted)


def test_stage_retention_runs_after_a_failed_poll_and_the_run_still_fails(airflow_db, dagbag, airflow_env):
    """No ThreatQ connection: poll fails, the rest is upstream_failed, stage retention still runs,
    and the run ends failed (a plain all_done leaf would have turned it into a success)."""
    logical = datetime(2026, 3, 7, 12, 0, tzinfo=timezone.utc)
    stale = _stale_stage_folder(airflow_env, INDICATORS, age_before=logical)
    dag = dagbag.dags[INDICATORS]
    dag.get_task("poll").retries = 0  # fail now rather than after two 30 s retries
    dag_run = dag.test(logical_date=logical)
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states == {"poll": "failed", "transform": "upstream_failed", "load": "upstream_failed",
                      "report": "upstream_failed", "stage_retention": "success"}
    assert str(dag_run.state) == "failed"
    assert not stale.exists()


def test_faults_mid_run_still_end_with_exactly_the_ground_truth(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn, monkeypatch, caplog
):
    from threatq_simulators.faults import FaultPlan, FaultRule

    # Three faults in the middle of the paging: a burst of 429s, every token expired (the next
    # call gets a 401 and must renew), two 503s. Small pages so the run has ~30 requests.
    query = "^/api/indicators/query"
    plan = FaultPlan([
        FaultRule(path_regex=query, nth=3, times=3, status=429, headers={"Retry-After": "0"}),
        FaultRule(path_regex=query, nth=8, times=1, action="expire_token"),
        FaultRule(path_regex=query, nth=12, times=2, status=503),
    ])
    monkeypatch.setenv("AIRFLOW_VAR_THREATQ_PAGE_SIZE", "100")
    sim = tq_sim_factory(seed=11, indicators=3_000, events=5, start=CORPUS_START, end=CORPUS_END, faults=plan)
    tq_conn(sim)
    corpus = list(sim.corpus.iter_indicators(CORPUS_START, CORPUS_END))
    logical = datetime(2026, 3, 3, 12, 0, tzinfo=timezone.utc)

    run = _run(dagbag, INDICATORS, logical_date=logical,
               conf=_window_conf(CORPUS_START, CORPUS_END) | {"ioc_expiration_duration": "3650d"})
    staged = helpers.read_ndjson_ids(run["xcom"]["poll"]["path"])
    assert len(staged) == len(set(staged)) == len(corpus), "an indicator was lost or doubled across the faults"
    assert set(staged) == set(helpers.all_ids(corpus))
    fired = {r.action or r.status: r.triggered for r in plan.rules}
    assert fired == {429: 3, "expire_token": 1, 503: 2}, f"the fault plan did not fire as planned: {fired}"
    before = helpers.utcnow()
    _run(dagbag, SWEEP)
    helpers.assert_active_index_matches(es_clean, corpus, before=before, after=helpers.utcnow(), duration="3650d")
    assert CANARY not in caplog.text
    assert CANARY not in json.dumps(run["xcom"], default=str)


def test_collection_mode_saves_the_cursor_only_after_the_load(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn, monkeypatch
):
    # Read the metadata DB directly: the test is not a task, and this is where the Execution API wrote.
    from airflow.models.variable import Variable

    sim = tq_sim_factory(seed=5, indicators=1_500, events=5, start=CORPUS_START, end=CORPUS_END)
    tq_conn(sim)
    coll = next(c for c in sim.corpus.collections if c["name"] == "Active IP Address")
    truth = list(sim.corpus.iter_collection(coll["hash"]))
    cursor_var = f"threatq_collection_cursor__{coll['hash']}"
    Variable.delete(cursor_var)  # the other target's run of this test saved one in the same metadata DB
    conf = {"mode": "collection", "collection": coll["hash"], "ioc_expiration_duration": "3650d"}

    dry = _run(dagbag, INDICATORS, logical_date=datetime(2026, 3, 4, tzinfo=timezone.utc), conf=conf | {"dry_run": True})
    assert dry["xcom"]["poll"]["indicators"] == len(truth)
    assert dry["xcom"]["report"]["cursor_saved"] is False
    assert Variable.get(cursor_var, default_var=None) is None, "a dry run moved the cursor"

    first = _run(dagbag, INDICATORS, logical_date=datetime(2026, 3, 5, tzinfo=timezone.utc), conf=conf)
    assert sorted(helpers.read_ndjson_ids(first["xcom"]["poll"]["path"])) == sorted(helpers.all_ids(truth))
    assert first["xcom"]["report"]["cursor_saved"] is True
    saved = Variable.get(cursor_var)
    assert saved == first["xcom"]["poll"]["next_cursor"]

    # The next run resumes after the saved cursor: nothing new in the collection, nothing re-read.
    second = _run(dagbag, INDICATORS, logical_date=datetime(2026, 3, 6, tzinfo=timezone.utc), conf=conf)
    assert second["xcom"]["poll"]["cursor_start"] == saved
    assert second["xcom"]["poll"]["indicators"] == 0
    before = helpers.utcnow()
    _run(dagbag, SWEEP)
    helpers.assert_active_index_matches(es_clean, truth, before=before, after=helpers.utcnow(), duration="3650d")


def test_hourly_sweep_before_the_first_load_has_nothing_to_do(airflow_db, dagbag, airflow_env, es_clean):
    """The sweep DAG runs hourly from the moment it is unpaused, possibly before any load."""
    run = _run(dagbag, SWEEP)
    assert run["xcom"]["sweep_expired_iocs"]["deleted"] == 0


def _replay_task(dagbag, dag_id: str, run_id: str, task_id: str) -> None:
    """Run one task of an existing run again, as clearing it in the UI does: the run, its other
    tasks' XComs and its stage folder stay; the task re-renders its templates from them
    (``airflow tasks test <dag> <task> <run_id>``, the same in-process runner as ``dag.test()``)."""
    from argparse import Namespace

    from airflow.cli.commands.task_command import task_test

    task_test(Namespace(dag_id=dag_id, task_id=task_id, logical_date_or_run_id=run_id, map_index=-1,
                        task_params=None, env_vars=None, post_mortem=False, bundle_name=None),
              dag=dagbag.dags[dag_id])


def test_a_replayed_old_load_after_remapping_and_sweeping_brings_nothing_back(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn
):
    """#18 item 3 and #13 item 3 through the real DAGs: run 1 loads with a 10-year lifetime; run 2
    reads the same rows with a 5-day lifetime, and every loaded IOC takes it (before: all 409,
    nothing changed); the sweep removes what that expires; then run 1's load is replayed from its
    stage file long after the node forgot the deletes (before: every swept IOC came back with its
    2036 expiry and no sweep removed it again)."""
    import time

    sim = tq_sim_factory(seed=17, indicators=1_500, events=5, start=CORPUS_START, end=CORPUS_END)
    tq_conn(sim)
    corpus = list(sim.corpus.iter_indicators(CORPUS_START, CORPUS_END))
    old_logical = datetime(2026, 3, 8, 12, 0, tzinfo=timezone.utc)

    old = _run(dagbag, INDICATORS, logical_date=old_logical,
               conf=_window_conf(CORPUS_START, CORPUS_END, ioc_expiration_duration="3650d"))
    assert (old["xcom"]["load"]["read"], old["xcom"]["load"]["rejected_total"]) == (len(corpus), 0)
    # The node forgets a delete 60 s after it (index.gc_deletes); 0 s: at its next refresh.
    es_clean.indices.put_settings(index=helpers.ACTIVE_ALIAS, body={"index.gc_deletes": "0s"})

    new = _run(dagbag, INDICATORS, logical_date=old_logical + timedelta(days=1),
               conf=_window_conf(CORPUS_START, CORPUS_END, ioc_expiration_duration=DURATION))
    assert new["xcom"]["poll"]["polled_at"] > old["xcom"]["poll"]["polled_at"]
    # Every IOC run 1 put in the active index is rewritten (before the fix: all skipped_stale).
    assert (new["xcom"]["load"]["updated"], new["xcom"]["load"]["skipped_stale"]) == (old["xcom"]["load"]["indexed"], 0)
    before = helpers.utcnow()
    sweep = _run(dagbag, SWEEP)["xcom"]["sweep_expired_iocs"]
    docs = helpers.assert_active_index_matches(es_clean, corpus, before=before, after=helpers.utcnow(),
                                               duration=DURATION)
    removed = set(helpers.all_ids(corpus)) - set(docs)
    assert sweep["tombstones"] == sweep["deleted"] > 0.2 * len(corpus)
    by_id = {str(raw["id"]): raw for raw in corpus}
    lifetime = helpers.parse_duration(DURATION)
    for tq_id, hit in docs.items():  # the new lifetime reached every IOC still active
        assert hit["_source"]["threatq"]["ioc_expired_at"] == helpers.expires(by_id[tq_id], lifetime).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z"), f"indicator {tq_id} kept its old expiry"
    time.sleep(1)
    es_clean.indices.refresh(index=helpers.ACTIVE_ALIAS)

    _replay_task(dagbag, INDICATORS, old["run"].run_id, "load")
    replay = _xcoms(old["run"])["load"]
    before = helpers.utcnow()
    again = _run(dagbag, SWEEP)["xcom"]["sweep_expired_iocs"]

    assert (replay["skipped_deleted"], replay["skipped_stale"]) == (len(removed), len(docs))
    assert (replay["indexed"], replay["updated"]) == (0, 0)
    assert again["matched"] == 0
    after_replay = helpers.assert_active_index_matches(es_clean, corpus, before=before, after=helpers.utcnow(),
                                                       duration=DURATION)
    assert {i: h["_source"] for i, h in after_replay.items()} == {i: h["_source"] for i, h in docs.items()}
