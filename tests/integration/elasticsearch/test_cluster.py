"""Capability detection on both real nodes: Elastic's minimal test node has none of the
full-cluster features but runtime fields, OpenSearch's test node has them all but runtime fields;
probing changes nothing on the cluster."""

from __future__ import annotations

import logging

import pytest

from threatq_provider.elasticsearch.cluster import PROBED_FIELD_TYPES, Capabilities, Cluster, cluster

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]


def test_elastics_minimal_test_node_has_no_full_cluster_feature_but_runtime_fields(es_client):
    caps = Cluster(es_client).capabilities

    assert caps == Capabilities("elasticsearch", caps.version, runtime_fields=True)
    assert caps.version.startswith("8.")
    assert caps.missing_field_types == frozenset(PROBED_FIELD_TYPES)


def test_opensearchs_test_node_has_every_full_cluster_feature_but_runtime_fields(os_client):
    caps = Cluster(os_client).capabilities

    assert caps == Capabilities("opensearch", caps.version, delete_by_query=True, ingest_painless=True,
                                data_streams=True, field_types=frozenset(PROBED_FIELD_TYPES))
    assert caps.version.startswith("3.")
    assert caps.missing_field_types == frozenset()


def _new_client(target: str, url: str):
    if target == "elasticsearch":
        from elasticsearch import Elasticsearch

        return Elasticsearch(url)
    from opensearchpy import OpenSearch

    return OpenSearch(url)


def test_capabilities_are_probed_once_per_client_and_logged(search_target, search_url, caplog):
    client = _new_client(search_target, search_url)
    caplog.set_level(logging.INFO, logger="threatq_provider.elasticsearch.cluster")
    try:
        first = cluster(client).capabilities
        second = cluster(client).capabilities
    finally:
        client.close()

    assert first is second and first.flavor == search_target
    lines = [r.getMessage() for r in caplog.records if r.name == "threatq_provider.elasticsearch.cluster"]
    assert len(lines) == 1 and lines[0].startswith(f"cluster capabilities: {{'flavor': '{search_target}'")


def test_probing_leaves_nothing_behind(search_client):
    Cluster(search_client).capabilities  # noqa: B018 - the probe is the act under test

    # Other sessions share the node: look only for what a probe could have made.
    left = search_client.indices.get_alias(index="threatq-capability-probe*", expand_wildcards="all",
                                           allow_no_indices=True)
    assert dict(left) == {}
    templates = [t["name"] for t in search_client.indices.get_index_template()["index_templates"]]
    assert [t for t in templates if "probe" in t or t.startswith("simulate")] == []
