"""Window-mode filters like a data collection's (#13 item 6), through the real indicator DAG
(``dag.test()``), the ThreatQ simulator over HTTP (its query grammar answers them) and the real
node(s). The expected set is computed here from the simulator's corpus, independently of the client."""

from __future__ import annotations

import pytest

from tests.integration.dags import helpers
from tests.integration.dags.test_indicator_dag_runs import (  # noqa: F401 (fixtures)
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


def _names(items) -> set[str]:
    return {(i if isinstance(i, str) else i["name"]).lower() for i in items or []}


def _wanted(raw: dict, *, statuses, min_score, sources, tags) -> bool:
    return (raw["status"]["name"] in statuses and raw["score"] >= min_score
            and bool(_names(raw["sources"]) & {s.lower() for s in sources})
            and bool(_names(raw["tags"]) & {t.lower() for t in tags}))


@pytest.mark.parametrize("case", ["all four", "score only"])
def test_status_score_source_and_tag_filters_read_exactly_what_they_say(
    case, airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn  # noqa: F811
):
    sim = tq_sim_factory(seed=61, indicators=4_000, events=5, start=CORPUS_START, end=CORPUS_END)
    tq_conn(sim)
    corpus = list(sim.corpus.iter_indicators(CORPUS_START, CORPUS_END))
    if case == "all four":
        filters = {"statuses": ["Active", "Review"], "min_score": 4,
                   "sources": ["CrowdStrike Intelligence", "abuse.ch MalwareBazaar", "CISA AIS"],
                   "tags": ["botnet", "apt", "ransomware"]}
        truth = [r for r in corpus if _wanted(r, **filters)]
    else:
        filters = {"min_score": 8}
        truth = [r for r in corpus if r["score"] >= 8]
    assert 0 < len(truth) < len(corpus) // 2, "the filters should select a part of the corpus"

    run = _run(dagbag, INDICATORS, conf=_window_conf(CORPUS_START, CORPUS_END, ioc_expiration_duration="3650d",
                                                     **filters))
    poll = run["xcom"]["poll"]
    assert poll["filters"] == filters
    assert sorted(helpers.read_ndjson_ids(poll["path"]), key=int) == sorted(helpers.all_ids(truth), key=int)
    loaded = helpers.es_active_docs(es_clean)
    assert set(loaded) <= set(helpers.all_ids(truth)) and loaded, "the active index holds only what was read"


def test_a_filter_in_collection_mode_is_refused_before_any_request(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn  # noqa: F811
):
    sim = tq_sim_factory(seed=62, indicators=200, events=5, start=CORPUS_START, end=CORPUS_END)
    tq_conn(sim)
    dag = dagbag.dags[INDICATORS]
    dag.get_task("poll").retries = 0
    run = dag.test(run_conf={"mode": "collection", "collection": sim.corpus.collections[0]["hash"], "min_score": 5})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "failed" and states["poll"] == "failed"
    assert sim.stats["requests"] == 0, "the poll called ThreatQ before refusing its arguments"
