"""Index templates on both real nodes: installed once, every transform field mapped with its type.

Each test runs on Elastic's minimal test node (``es``: fallback field types, daily history indices)
and on OpenSearch's full-module node (``os``: real field types, the history a data stream).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from threatq_provider.elasticsearch.cluster import cluster
from threatq_provider.elasticsearch.templates import (
    IndexNames,
    ecs_fields,
    field_mappings,
    history_target,
    install_templates,
    mapped_types,
    rollover_to_new_index,
    template_config,
)
from threatq_provider.elasticsearch.loader import load_ndjson

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]
DATA = Path(__file__).resolve().parents[2] / "data" / "elasticsearch"


def test_install_creates_both_templates_and_the_first_active_index_behind_the_alias(search_client, search_index_prefix):
    names = IndexNames(search_index_prefix)

    result = install_templates(search_client, prefix=search_index_prefix)

    history = "data_stream" if cluster(search_client).capabilities.data_streams else "daily_indices"
    assert result == {"active_template": "installed", "history_template": "installed", "active_index": "created",
                      "tombstone_index": "created", "history": history}
    aliases = search_client.indices.get_alias(name=names.active_alias)
    assert list(aliases) == [names.first_active_index]
    assert aliases[names.first_active_index]["aliases"][names.active_alias]["is_write_index"] is True


def test_second_install_changes_nothing(search_client, search_index_prefix):
    install_templates(search_client, prefix=search_index_prefix)

    again = install_templates(search_client, prefix=search_index_prefix)

    assert again == {"active_template": "unchanged", "history_template": "unchanged", "active_index": "exists",
                     "tombstone_index": "exists", "history": again["history"]}


def test_every_field_of_ecs_fields_json_and_the_template_is_mapped_with_its_type(search_client, search_index_prefix):
    install_templates(search_client, prefix=search_index_prefix)
    mapped = mapped_types(search_client, IndexNames(search_index_prefix).active_alias)
    fallbacks = template_config()["type_fallbacks"]
    missing = cluster(search_client).capabilities.missing_field_types

    wrong = {}
    for path, spec in field_mappings("active").items():
        # A type the node lacks (Elastic's test node has no wildcard etc.) gets its fallback; a type
        # it has is mapped as itself, never as the fallback.
        expected = fallbacks[spec["type"]]["type"] if spec["type"] in missing else spec["type"]
        if mapped.get(path) != expected:
            wrong[path] = (expected, mapped.get(path))

    assert wrong == {}


def test_real_field_types_where_the_node_has_them_fallbacks_where_not(search_client, search_index_prefix):
    install_templates(search_client, prefix=search_index_prefix)
    mapped = mapped_types(search_client, IndexNames(search_index_prefix).active_alias)
    full = {"threat.indicator.url.full": "wildcard", "error.message": "match_only_text",
            "threat.feed.name": "constant_keyword"}
    fallback = {"threat.indicator.url.full": "keyword", "error.message": "text", "threat.feed.name": "keyword"}

    expected = fallback if cluster(search_client).flavor == "elasticsearch" else full
    assert {path: mapped[path] for path in full} == expected


@pytest.mark.parametrize(
    ("path", "es_type"),
    [
        ("threat.indicator.ip", "ip"),
        ("related.ip", "ip"),
        ("@timestamp", "date"),
        ("threatq.ioc_expired_at", "date"),
        ("threatq.cidr_block", "ip_range"),
        ("threatq.ioc_expiration_reason", "keyword"),
        ("threatq.id", "long"),
        ("threat.indicator.as.number", "long"),
    ],
)
def test_key_fields_have_their_elasticsearch_type(search_client, search_index_prefix, path, es_type):
    install_templates(search_client, prefix=search_index_prefix)

    assert mapped_types(search_client, IndexNames(search_index_prefix).active_alias)[path] == es_type


def test_history_index_gets_the_history_template(search_client, search_index_prefix):
    names = IndexNames(search_index_prefix)
    install_templates(search_client, prefix=search_index_prefix)
    lines = (DATA / "documents.ndjson").read_text().splitlines()

    day = datetime(2026, 11, 20, 23, 59, tzinfo=timezone.utc)
    load_ndjson(search_client, lines, active_index=names.active_alias,
                tombstone_index=names.tombstone_index, history_prefix=names.history_prefix, history_date=day)

    target = history_target(search_client, names, day)
    history = mapped_types(search_client, target)
    assert (history["threat.indicator.ip"], history["threatq.ioc_expired_at"]) == ("ip", "date")
    if cluster(search_client).capabilities.data_streams:
        streams = search_client.indices.get_data_stream(name=target)["data_streams"]
        assert [s["name"] for s in streams] == [names.history_data_stream]
    else:
        assert target == names.history_prefix + "2026.11.20"


def test_unknown_keys_stay_in_source_without_a_mapping(search_client, search_index_prefix):
    names = IndexNames(search_index_prefix)
    install_templates(search_client, prefix=search_index_prefix)
    lines = (DATA / "documents.ndjson").read_text().splitlines()

    load_ndjson(search_client, lines, active_index=names.active_alias,
                tombstone_index=names.tombstone_index, history_prefix=None)

    source = search_client.get(index=names.active_alias, id="1008")["_source"]
    assert source["threatq"]["unknown_future_key"] == {"nested": "kept in _source only"}
    assert not any(p.startswith("threatq.unknown_future_key") for p in mapped_types(search_client, names.active_alias))


def test_rollover_moves_the_alias_and_keeps_every_document_with_its_version(search_client, search_index_prefix):
    names = IndexNames(search_index_prefix)
    install_templates(search_client, prefix=search_index_prefix)
    lines = (DATA / "documents.ndjson").read_text().splitlines()
    load_ndjson(search_client, lines, active_index=names.active_alias,
                tombstone_index=names.tombstone_index, history_prefix=None)
    before = {d["threatq"]["id"]: d["@timestamp"] for d in map(json.loads, lines)}

    result = rollover_to_new_index(search_client, prefix=search_index_prefix)

    assert (result["old_index"], result["new_index"]) == (names.first_active_index, names.active_index_prefix + "000002")
    assert list(search_client.indices.get_alias(name=names.active_alias)) == [result["new_index"]]
    hits = search_client.search(index=names.active_alias, body={"size": 100}, version=True)["hits"]["hits"]
    assert {int(h["_id"]): h["_source"]["@timestamp"] for h in hits} == before
    # The external version survived the copy: replaying the same version is still stale.
    again = load_ndjson(search_client, lines, active_index=names.active_alias,
                        tombstone_index=names.tombstone_index, history_prefix=None)
    assert again.skipped_stale == len(lines)


def test_ip_fields_answer_cidr_queries_and_cidr_blocks_answer_ip_queries(search_client, search_index_prefix):
    names = IndexNames(search_index_prefix)
    install_templates(search_client, prefix=search_index_prefix)
    load_ndjson(search_client, (DATA / "documents.ndjson").read_text().splitlines(), active_index=names.active_alias,
                tombstone_index=names.tombstone_index,
                history_prefix=None)
    search_client.indices.refresh(index=names.active_alias)

    def ids(query):
        return sorted(h["_id"] for h in search_client.search(index=names.active_alias, body={"query": query})["hits"]["hits"])

    assert ids({"term": {"threat.indicator.ip": "89.160.0.0/16"}}) == ["1001"]
    assert ids({"term": {"related.ip": "2a02:cf40::/32"}}) == ["1002"]
    assert ids({"term": {"threatq.cidr_block": "10.20.5.5"}}) == ["1003"]
