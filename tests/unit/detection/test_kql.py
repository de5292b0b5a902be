"""The KQL translator used to evaluate Elastic's prebuilt indicator-match rules
(``tests/detection/kql.py``): each form it supports, each rule text it must translate, and the
forms it must refuse instead of guessing."""

from __future__ import annotations

import pytest

from tests.detection.engine import _values, load_rules, source_query, threat_query
from tests.detection.kql import KqlError, to_dsl

NOT_SOURCE = {"bool": {"must_not": {"match_phrase": {"labels.is_ioc_transform_source": "true"}}}}
MODULE = {"bool": {"should": [{"match": {"event.module": "threatintel"}},
                              {"query_string": {"fields": ["event.module"], "query": "ti_*"}}],
                   "minimum_should_match": 1}}
WINDOW = {"range": {"@timestamp": {"gte": "now-30d/d"}}}


@pytest.mark.parametrize(("kql", "dsl"), [
    ("a:*", {"exists": {"field": "a"}}),
    ("a.b.*:*", {"exists": {"field": "a.b.*"}}),
    ("a:x", {"match": {"a": "x"}}),
    ('a:"x y"', {"match_phrase": {"a": "x y"}}),
    ("a:x*", {"query_string": {"fields": ["a"], "query": "x*"}}),
    ("a:(x)", {"match": {"a": "x"}}),
    ("a:(x OR y)", {"bool": {"should": [{"match": {"a": "x"}}, {"match": {"a": "y"}}], "minimum_should_match": 1}}),
    ('t >= "now-1d"', {"range": {"t": {"gte": "now-1d"}}}),
    ("t < 5", {"range": {"t": {"lt": "5"}}}),
    ("a:* and b:*", {"bool": {"filter": [{"exists": {"field": "a"}}, {"exists": {"field": "b"}}]}}),
    ("a:* or b:*", {"bool": {"should": [{"exists": {"field": "a"}}, {"exists": {"field": "b"}}],
                             "minimum_should_match": 1}}),
    ("not a:*", {"bool": {"must_not": {"exists": {"field": "a"}}}}),
    # and binds tighter than or, as in KQL
    ("a:* or b:* and c:*", {"bool": {"should": [
        {"exists": {"field": "a"}},
        {"bool": {"filter": [{"exists": {"field": "b"}}, {"exists": {"field": "c"}}]}}], "minimum_should_match": 1}}),
    ("(a:* or b:*) and c:*", {"bool": {"filter": [
        {"bool": {"should": [{"exists": {"field": "a"}}, {"exists": {"field": "b"}}], "minimum_should_match": 1}},
        {"exists": {"field": "c"}}]}}),
])
def test_each_supported_form_translates_as_kibana_does(kql, dsl):
    assert to_dsl(kql) == dsl


@pytest.mark.parametrize("kql", [
    "", "a", "a:", "a:(x and y)", "a:{b:c}", "a.*:x", "(a:*", "a:* b:*", 'a:"x\\"y"', "a:x\\*",
])
def test_forms_outside_the_subset_are_refused(kql):
    with pytest.raises(KqlError):
        to_dsl(kql)


EXPECTED_THREAT_KQL = {
    "ip": {"exists": {"field": "threat.indicator.ip"}},
    "hash": {"bool": {"should": [{"exists": {"field": "threat.indicator.file.hash.*"}},
                                 {"exists": {"field": "threat.indicator.file.pe.imphash"}}],
                      "minimum_should_match": 1}},
    "url": {"exists": {"field": "threat.indicator.url.full"}},
    "email": {"exists": {"field": "threat.indicator.email.address"}},
    "registry": {"exists": {"field": "threat.indicator.registry.path"}},
}
FILTERS = [{"match_phrase": {"event.category": "threat"}}, {"match_phrase": {"event.kind": "enrichment"}},
           {"match_phrase": {"event.type": "indicator"}}]


def test_the_five_rules_are_cited_with_their_ids():
    rules = load_rules()
    assert {r["family"]: r["rule_id"] for r in rules} == {
        "ip": "0c41e478-5263-4c69-8f9e-7dfd2c22da64",
        "hash": "aab184d3-72b3-4639-b242-6597c99d8bca",
        "url": "f3e22c8b-ea47-45d1-b502-b57b6de950b3",
        "email": "fcf18de8-ad7d-4d01-b3f7-a11d5b3883af",
        "registry": "a61809f3-fb5b-465c-8bff-23a8a068ac60",
    }
    for rule in rules:
        assert rule["threat_index"] == ["filebeat-*", "logs-ti_*"]
        assert len(rule["commit"]) == 40 and rule["path"].startswith("rules/threat_intel/")


@pytest.mark.parametrize("rule", load_rules(), ids=lambda r: r["family"])
def test_each_rule_threat_search_translates_to_window_module_field_and_not_source(rule):
    assert threat_query(rule) == {"bool": {"filter": [
        {"bool": {"filter": [WINDOW, MODULE, EXPECTED_THREAT_KQL[rule["family"]], NOT_SOURCE]}},
        *FILTERS,
    ]}}


def test_source_search_uses_the_lookback_on_event_ingested_with_the_timestamp_fallback():
    rule = next(r for r in load_rules() if r["family"] == "registry")
    window = {"gte": "now-65m", "lte": "now"}
    assert source_query(rule) == {"bool": {"filter": [
        {"exists": {"field": "registry.path"}},
        {"bool": {"should": [
            {"range": {"event.ingested": window}},
            {"bool": {"filter": [{"range": {"@timestamp": window}}],
                      "must_not": {"exists": {"field": "event.ingested"}}}},
        ], "minimum_should_match": 1}},
    ]}}


def test_indicator_values_are_read_from_nested_objects_dotted_keys_and_arrays():
    source = {"threat": {"indicator": {"ip": "192.0.2.1", "file": {"hash": {"md5": ["a", "b"]}}}},
              "threat.indicator.url.full": "http://x/", "empty": ""}
    assert _values(source, "threat.indicator.ip") == ["192.0.2.1"]
    assert _values(source, "threat.indicator.file.hash.md5") == ["a", "b"]
    assert _values(source, "threat.indicator.url.full") == ["http://x/"]
    assert _values(source, "threat.indicator.email.address") == []
    assert _values(source, "empty") == []
