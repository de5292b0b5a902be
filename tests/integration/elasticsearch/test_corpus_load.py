"""End to end on the Elasticsearch side: simulator corpus → real ECS transform → loader → sweep."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import pytest

from threatq_provider.ecs.expiry import REASON_STATUS_POLICY
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import indicator_to_ecs
from threatq_provider.elasticsearch.loader import load_ndjson
from threatq_provider.elasticsearch.sweeper import sweep_expired
from threatq_provider.elasticsearch.templates import IndexNames, install_templates
from threatq_simulators.corpus import Corpus

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]

TRANSFORM_NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def test_every_transformed_corpus_document_is_accepted_and_the_sweep_matches_the_source(
        es_client, es_index_prefix):
    docs = [indicator_to_ecs(raw, now=TRANSFORM_NOW, options=EcsOptions())
            for raw in Corpus(seed=42, indicators=1500, events=0).iter_indicators()]
    names = IndexNames(es_index_prefix)
    install_templates(es_client, prefix=es_index_prefix)
    dead = io.StringIO()

    counts = load_ndjson(es_client, (json.dumps(d) for d in docs), active_index=names.active_alias,
                         tombstone_index=names.tombstone_index,
                         history_prefix=names.history_prefix, dead_letter=dead)

    assert dead.getvalue() == "" and counts.rejected_total == 0
    # Statuses outside the status policy (default: Active only) never reach the active index; every
    # document, theirs too, is accepted by the history, whose mapping is the same.
    withheld = {d["threatq"]["id"] for d in docs if d["threatq"].get("ioc_expiration_reason") == REASON_STATUS_POLICY}
    assert withheld and dict(counts.withheld_by_reason) == {"status_policy": len(withheld)}
    assert counts.indexed == len({d["threatq"]["id"] for d in docs} - withheld)
    assert (counts.history_written, counts.history_rejected) == (len(docs), 0)
    docs = [d for d in docs if d["threatq"]["id"] not in withheld]
    # Sweep in the middle of the corpus' expiry range; compare with the documents themselves.
    expiries = sorted(d["threatq"]["ioc_expired_at"] for d in docs if d["threatq"].get("ioc_expired_at"))
    now = datetime.fromisoformat(expiries[len(expiries) // 2].replace("Z", "+00:00"))
    expected = {d["threatq"]["id"] for d in docs if d["threatq"].get("ioc_expired_at")
                and datetime.fromisoformat(d["threatq"]["ioc_expired_at"].replace("Z", "+00:00")) <= now}

    result = sweep_expired(es_client, now=now, index=names.active_alias,
                           tombstone_index=names.tombstone_index)

    es_client.indices.refresh(index=names.active_alias)
    left = {int(h["_id"]) for h in es_client.search(index=names.active_alias, size=10000, _source=False)["hits"]["hits"]}
    assert result["deleted"] == len(expected) > 0
    assert left == {d["threatq"]["id"] for d in docs} - expected
