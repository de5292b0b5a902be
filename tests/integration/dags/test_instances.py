"""Two ThreatQ instances with overlapping ids in one cluster (#13 item 4), through the real DAGs
(``dag.test()``), two simulators over HTTP and the real node(s).

Production keeps the default instance (no ``instance`` extra: ``_id`` = ``threatq.id``, as every
single-instance deployment before), a partner's instance is named ``partner`` on its connection
(``_id`` = ``partner:<id>``). Both load the same ids; each set must stay whole and apart, the
deletion reconciliation of one must not touch the other, and each keeps its own watermark.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.fixtures.threatq import threatq_conn_json
from tests.integration.dags import helpers
from tests.integration.dags.test_indicator_dag_runs import (  # noqa: F401 (fixtures)
    CORPUS_END,
    CORPUS_START,
    INDICATORS,
    SWEEP,
    _run,
    _window_conf,
    airflow_env,
    dagbag,
    es_clean,
)

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.elasticsearch]

LONG_LIFE = "3650d"


def _by_doc_id(es) -> dict[str, dict]:
    """Every active document by its ``_id`` (``helpers.es_active_docs`` keys by ``threatq.id``, which
    two instances share)."""
    es.indices.refresh(index=helpers.ACTIVE_ALIAS)
    hits = es.search(index=helpers.ACTIVE_ALIAS, body={"query": {"match_all": {}}, "size": 10_000})["hits"]["hits"]
    return {h["_id"]: h["_source"] for h in hits}


def _use(monkeypatch, sim, instance: str | None = None) -> None:
    conn = json.loads(threatq_conn_json(sim, grant="client_credentials"))
    if instance:
        conn["extra"]["instance"] = instance
    monkeypatch.setenv("AIRFLOW_CONN_THREATQ_DEFAULT", json.dumps(conn))


def test_two_instances_with_overlapping_ids_keep_both_sets_apart(
    airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, monkeypatch  # noqa: F811
):
    prod = tq_sim_factory(seed=51, indicators=1_200, events=5, start=CORPUS_START, end=CORPUS_END)
    partner = tq_sim_factory(seed=52, indicators=1_200, events=5, start=CORPUS_START, end=CORPUS_END)
    prod_host = prod.url.split("://", 1)[1].rstrip("/")
    conf = _window_conf(CORPUS_START, CORPUS_END, ioc_expiration_duration=LONG_LIFE)

    _use(monkeypatch, prod)
    first = _run(dagbag, INDICATORS, conf=conf)
    assert (first["xcom"]["poll"]["instance"], first["xcom"]["poll"]["document_id_prefix"]) == (prod_host, "")
    _use(monkeypatch, partner, "partner")
    second = _run(dagbag, INDICATORS, conf=conf)
    assert (second["xcom"]["poll"]["instance"], second["xcom"]["poll"]["document_id_prefix"]) == ("partner", "partner:")
    before = helpers.utcnow()
    _run(dagbag, SWEEP)
    after = helpers.utcnow()

    docs = _by_doc_id(es_clean)
    prod_truth = helpers.active_ids(prod.corpus.iter_indicators(), now=after, duration=LONG_LIFE)
    partner_truth = helpers.active_ids(partner.corpus.iter_indicators(), now=after, duration=LONG_LIFE)
    assert prod_truth & partner_truth, "the two instances should share ids"
    assert helpers.active_ids(prod.corpus.iter_indicators(), now=before, duration=LONG_LIFE) == prod_truth
    # Each set whole and apart: the default instance keeps _id = threatq.id, the named one is prefixed.
    assert set(docs) == prod_truth | {f"partner:{i}" for i in partner_truth}
    for doc_id, source in docs.items():
        instance, tq_id = (doc_id.split(":", 1) if ":" in doc_id else (prod_host, doc_id))
        assert (source["threatq"]["instance"], str(source["threatq"]["id"])) == (instance, tq_id)
    by_value = {str(r["id"]): r["value"] for r in partner.corpus.iter_indicators()}
    assert all(docs[f"partner:{i}"]["threatq"]["indicator_value"] == by_value[i] for i in partner_truth
               if "indicator_value" in docs[f"partner:{i}"]["threatq"])

    # Deleted in the partner's ThreatQ: the partner's reconciliation removes those, prod's stay.
    gone = sorted(partner_truth & prod_truth, key=int)[:10]
    for iid in gone:
        partner.corpus.delete_indicator(int(iid))
    result = _run(dagbag, "threatq_deletion_reconcile")["xcom"]["reconcile_deletions"]
    assert (result["instance"], result["deleted"], result["active"]) == ("partner", 10, len(partner_truth))
    after_reconcile = _by_doc_id(es_clean)
    assert set(after_reconcile) == set(docs) - {f"partner:{i}" for i in gone}
    _use(monkeypatch, prod)
    untouched = _run(dagbag, "threatq_deletion_reconcile")["xcom"]["reconcile_deletions"]
    assert (untouched["instance"], untouched["missing"], untouched["active"]) == (prod_host, 0, len(prod_truth))


def test_each_instance_keeps_its_own_watermark(airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory,  # noqa: F811
                                               monkeypatch):
    from airflow.models.variable import Variable

    end = CORPUS_END.replace(minute=0, second=0)
    prod = tq_sim_factory(seed=53, indicators=300, events=5, start=CORPUS_START, end=CORPUS_END)
    partner = tq_sim_factory(seed=54, indicators=300, events=5, start=CORPUS_START, end=CORPUS_END)
    monkeypatch.setenv("AIRFLOW_VAR_THREATQ_INITIAL_LOOKBACK", "1d")
    _use(monkeypatch, partner, "partner-wm")
    _run(dagbag, INDICATORS, logical_date=end)
    _use(monkeypatch, prod)
    _run(dagbag, INDICATORS, logical_date=end - timedelta(hours=3))
    key = "threatq_watermark__threatq_indicators_to_elasticsearch__{}__window"
    partner_mark = json.loads(Variable.get(key.format("partner-wm")))["watermark"]
    prod_mark = json.loads(Variable.get(key.format(prod.url.split("://", 1)[1].rstrip("/"))))["watermark"]
    assert (partner_mark, prod_mark) == (end.isoformat().replace("+00:00", "Z"),
                                         (end - timedelta(hours=3)).isoformat().replace("+00:00", "Z"))
