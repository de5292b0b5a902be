"""The history's mapping answers every query as a fully indexed one does (issue 17).

Where the cluster has runtime fields (Elasticsearch), the history indexes a few fields and declares
the others as runtime fields of the same types (``templates.split_runtime``); OpenSearch keeps the
full mapping. Either way a user's query on the history returns what the same query returns on
the active index, for the documents both hold: term, CIDR, range on numbers and dates, exists,
wildcard and prefix, and aggregations, on fields of each type.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import indicator_to_ecs
from threatq_provider.elasticsearch.cluster import cluster
from threatq_provider.elasticsearch.loader import load_ndjson
from threatq_provider.elasticsearch.templates import IndexNames, install_templates, template_config
from threatq_simulators.corpus import Corpus

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]

TRANSFORM_NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


@pytest.fixture
def loaded(search_client, search_index_prefix):
    docs = [indicator_to_ecs(raw, now=TRANSFORM_NOW, options=EcsOptions())
            for raw in Corpus(seed=42, indicators=1200, events=0).iter_indicators()]
    names = IndexNames(search_index_prefix)
    install_templates(search_client, prefix=search_index_prefix)
    counts = load_ndjson(search_client, (json.dumps(d) for d in docs), active_index=names.active_alias,
                         tombstone_index=names.tombstone_index, history_prefix=names.history_prefix)
    assert counts.rejected_documents == 0 and counts.history_written == len(docs)
    search_client.indices.refresh(index=f"{names.active_alias},{names.history_pattern}")
    return names, docs


def _ids(client, index: str, query: dict) -> set[int]:
    resp = client.search(index=index, body={"query": query, "size": 10000, "_source": ["threatq.id"]})
    return {hit["_source"]["threatq"]["id"] for hit in resp["hits"]["hits"]}


def _first(docs, *path):
    for doc in docs:
        node = doc
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            return node[0] if isinstance(node, list) else node
    raise AssertionError(f"no document has {'.'.join(path)}")


def test_the_history_mapping_follows_the_cluster(search_client, loaded):
    names, _docs = loaded
    mapping = next(iter(search_client.indices.get_mapping(index=names.history_pattern).values()))["mappings"]
    runtime = mapping.get("runtime") or {}
    if cluster(search_client).capabilities.runtime_fields:
        assert runtime["threat.indicator.ip"] == {"type": "ip"}
        assert runtime["threatq.score"] == {"type": "long"}
        assert runtime["threatq.expires_at"] == {"type": "date"}
        assert runtime["threat.indicator.url.full"] == {"type": "keyword"}
        indexed = template_config()["history"]["runtime_fields"]["indexed"]
        assert not set(indexed) & set(runtime)  # what rules filter on is indexed, never read at query time
        assert "indicator" not in mapping["properties"]["threat"]["properties"] or \
            "ip" not in mapping["properties"]["threat"]["properties"]["indicator"]["properties"]
    else:
        assert runtime == {}
        assert mapping["properties"]["threat"]["properties"]["indicator"]["properties"]["ip"]["type"] == "ip"


def test_queries_on_the_history_answer_as_on_the_active_index(search_client, loaded):
    names, docs = loaded
    active_ids = _ids(search_client, names.active_alias, {"match_all": {}})
    docs = [d for d in docs if d["threatq"]["id"] in active_ids]  # values the active index holds
    ip = _first(docs, "threat", "indicator", "ip")
    url = _first(docs, "threat", "indicator", "url", "full")
    status = _first(docs, "threatq", "status", "name")
    scores = sorted(d["threatq"]["score"] for d in docs if isinstance(d["threatq"].get("score"), int))
    expires = sorted(d["threatq"]["expires_at"] for d in docs if d["threatq"].get("expires_at"))
    queries = {
        "term on an ip": {"term": {"threat.indicator.ip": ip}},
        "cidr on an ip": {"term": {"threat.indicator.ip": ip.rsplit(".", 1)[0] + ".0/24" if "." in ip else ip}},
        "term on a keyword": {"term": {"threatq.status.name": status}},
        "range on a long": {"range": {"threatq.score": {"gte": scores[len(scores) // 2]}}},
        "range on a date": {"range": {"threatq.expires_at": {"lt": expires[len(expires) // 2]}}},
        "exists": {"exists": {"field": "threat.indicator.url.full"}},
        "wildcard": {"wildcard": {"threat.indicator.url.full": {"value": "*" + url[-6:]}}},
        "prefix on a nested keyword": {"prefix": {"threatq.sources.name": _first(docs, "threatq", "sources")["name"][:3]}},
        "indexed field": {"term": {"threat.indicator.type": _first(docs, "threat", "indicator", "type")}},
    }
    for name, query in queries.items():
        want = _ids(search_client, names.active_alias, query)
        got = _ids(search_client, names.history_pattern, query) & active_ids
        assert want and got == want, name


def test_aggregations_on_the_history_count_as_on_the_active_index(search_client, loaded):
    names, _docs = loaded
    active_ids = sorted(_ids(search_client, names.active_alias, {"match_all": {}}))
    body = {"size": 0, "query": {"terms": {"threatq.id": active_ids}},
            "aggs": {"status": {"terms": {"field": "threatq.status.name", "size": 50}},
                     "score": {"stats": {"field": "threatq.score"}},
                     "latest": {"max": {"field": "threatq.updated_at"}},
                     "ips": {"cardinality": {"field": "threat.indicator.ip"}}}}

    active = search_client.search(index=names.active_alias, body=body)["aggregations"]
    history = search_client.search(index=names.history_pattern, body=body)["aggregations"]

    assert active["status"]["buckets"] and history == active
