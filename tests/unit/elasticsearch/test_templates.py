"""Index template bodies are generated from the provider's package data: names, every field, fallbacks."""

from __future__ import annotations

from threatq_provider.elasticsearch.templates import (
    ACTIVE_ALIAS,
    IndexNames,
    ecs_fields,
    template_body,
    template_config,
)


def _flat(properties, base=""):
    out = {}
    for name, spec in properties.items():
        if "properties" in spec:
            out.update(_flat(spec["properties"], f"{base}{name}."))
        if "type" in spec:
            out[f"{base}{name}"] = spec
    return out


def test_active_names_follow_elastics_conventions():
    names = IndexNames()

    assert names.active_alias == ACTIVE_ALIAS == "logs-ti_threatq_latest.threat"
    assert names.first_active_index == "logs-ti_threatq_latest.threat-000001"
    assert names.history_prefix == "logs-ti_threatq.threat_history-"


def test_the_tombstone_index_is_hidden_and_outside_the_threat_intel_patterns():
    from threatq_provider.elasticsearch.names import TOMBSTONE_INDEX

    names = IndexNames()
    assert names.tombstone_index == TOMBSTONE_INDEX == "threatq-ioc-tombstones"
    assert IndexNames("t1-").tombstone_index == "t1-threatq-ioc-tombstones"
    # Kibana's threat-intel views and indicator-match rules read logs-ti_*: tombstones are not IOCs.
    assert not names.tombstone_index.startswith("logs-")
    assert template_config()["tombstones"]["settings"]["index"]["hidden"] is True


def test_prefix_reaches_every_name_and_pattern():
    names = IndexNames("t1-")
    body = template_body("active", names)

    assert body["index_patterns"] == ["t1-logs-ti_threatq_latest.threat-*"]
    assert body["composed_of"] == ["t1-logs-ti_threatq@custom"]
    assert all(n.startswith("t1-") for n in (names.active_alias, names.history_template, names.custom_component))


def test_every_transform_field_is_in_both_templates_with_its_type():
    for kind in ("active", "history"):
        mapped = _flat(template_body(kind, IndexNames())["template"]["mappings"]["properties"])
        extra = template_config()[kind]["extra_properties"]
        for path, spec in ecs_fields().items():
            if path in extra:  # a keyword the template pins as constant_keyword (threat.feed.*, labels)
                assert (spec["type"], mapped[path]["type"]) == ("keyword", "constant_keyword"), (kind, path)
                continue
            assert mapped[path] == spec, (kind, path)


def test_template_constants_agree_with_the_document_constants():
    """A constant_keyword whose value differs from the document's rejects the document: the
    active index pins what the transform writes; the history pins labels "true", which the loader
    writes into the history copy (issue 12)."""
    from threatq_provider.ecs.tables import load_tables

    written = {".".join(path): value for path, value in load_tables().constants}
    for kind in ("active", "history"):
        for path, spec in template_config()[kind]["extra_properties"].items():
            if "value" not in spec:
                continue
            want = "true" if (kind, path) == ("history", "labels.is_ioc_transform_source") else written[path]
            assert spec["value"] == want, (kind, path)


def test_mappings_are_not_dynamic():
    mappings = template_body("active", IndexNames())["template"]["mappings"]

    assert mappings["dynamic"] is False and mappings["date_detection"] is False


def test_missing_types_get_their_fallback_and_the_digest_tracks_the_content():
    full = template_body("active", IndexNames())
    reduced = template_body("active", IndexNames(), frozenset({"wildcard"}))

    flat = _flat(reduced["template"]["mappings"]["properties"])
    assert flat["threat.indicator.url.full"] == template_config()["type_fallbacks"]["wildcard"]
    assert full["_meta"]["digest"] != reduced["_meta"]["digest"]
    assert full["_meta"]["digest"] == template_body("active", IndexNames())["_meta"]["digest"]
    assert full["version"] == template_config()["version"]


def test_with_runtime_fields_the_history_indexes_a_few_fields_and_declares_the_rest():
    from threatq_provider.elasticsearch.templates import field_mappings

    body = template_body("history", IndexNames(), runtime_fields=True)
    mappings = body["template"]["mappings"]
    indexed, runtime = _flat(mappings["properties"]), mappings["runtime"]
    spec = template_config()["history"]["runtime_fields"]

    assert set(indexed) | set(runtime) == set(field_mappings("history"))  # every field, once
    assert not set(indexed) & set(runtime)
    assert set(spec["indexed"]) <= set(indexed)
    for path, mapping in field_mappings("history").items():
        if path in runtime:
            assert runtime[path] == {"type": spec["types"][mapping["type"]]}, path
        else:  # listed, or a type with no runtime counterpart, or not indexed at all
            assert indexed[path] == mapping, path
            assert (path in spec["indexed"] or mapping["type"] not in spec["types"]
                    or mapping.get("index") is False), path
    assert runtime["threat.indicator.ip"] == {"type": "ip"} and runtime["threat.indicator.url.full"] == {"type": "keyword"}
    assert indexed["threatq.cidr_block"]["type"] == "ip_range"


def test_runtime_fields_change_only_the_history():
    for flag in (False, True):
        assert "runtime" not in template_body("active", IndexNames(), runtime_fields=flag)["template"]["mappings"]
    assert "runtime" not in template_body("history", IndexNames())["template"]["mappings"]
    light = template_body("history", IndexNames(), runtime_fields=True)
    assert light["_meta"]["digest"] != template_body("history", IndexNames())["_meta"]["digest"]
