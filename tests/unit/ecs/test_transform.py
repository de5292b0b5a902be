"""indicator_to_ecs and transform_stream: mapping details, bad input, streaming counts."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from threatq_provider.ecs.errors import IndicatorRejected
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import TransformCounts, indicator_to_ecs, transform_stream

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def _raw(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 77,
        "value": "89.160.20.156",
        "type": {"id": 15, "name": "IP Address", "class": "network"},
        "status": {"id": 1, "name": "Active"},
        "score": 9,
        "hash": "73c98d43519990c841a5d022546fedd4",
        "created_at": "2026-11-01 10:00:00",
        "updated_at": "2026-11-20 10:00:00",
        "description": "C2 server",
    }
    base.update(fields)
    return base


def test_input_is_not_modified() -> None:
    raw = _raw(sources=[{"id": 1, "name": "A", "created_at": "2026-11-01 10:00:00"}])
    before = json.dumps(raw, sort_keys=True)
    indicator_to_ecs(raw, now=NOW, options=EcsOptions())
    assert json.dumps(raw, sort_keys=True) == before


def test_timestamp_is_updated_at_and_id_is_long() -> None:
    doc = indicator_to_ecs(_raw(id="77"), now=NOW, options=EcsOptions())
    assert doc["@timestamp"] == "2026-11-20T10:00:00.000Z"
    assert doc["threatq"]["id"] == 77


@pytest.mark.parametrize(("score", "label"), [(0, "Low"), (4, "Low"), (5, "Medium"), (7, "Medium"), (8, "High"), (10, "High"), (11, None), (-1, None), ("x", None)])
def test_confidence_from_score(score: object, label: str | None) -> None:
    doc = indicator_to_ecs(_raw(score=score), now=NOW, options=EcsOptions())
    assert doc["threat"]["indicator"].get("confidence") == label


@pytest.mark.parametrize(("spelling", "marking"), [("TLP:AMBER", "AMBER"), ("amber", "AMBER"), ("TLP:CLEAR", "CLEAR"), ("TLP:AMBER+STRICT", "AMBER+STRICT"), ("tlp-red", "RED"), ("testtlp", None)])
def test_tlp_spellings(spelling: str, marking: str | None) -> None:
    doc = indicator_to_ecs(_raw(sources=[{"name": "S", "tlp_name": spelling}]), now=NOW, options=EcsOptions())
    assert doc["threat"]["indicator"].get("marking") == ({"tlp": [marking]} if marking else None)


def test_reference_links_back_to_threatq_when_url_set() -> None:
    doc = indicator_to_ecs(_raw(), now=NOW, options=EcsOptions(threatq_url="https://tq.example.com/"))
    assert doc["threat"]["indicator"]["reference"] == "https://tq.example.com/indicators/77/details"
    assert "reference" not in indicator_to_ecs(_raw(), now=NOW, options=EcsOptions())["threat"]["indicator"]


def test_event_original_only_when_asked_and_verbatim() -> None:
    line = json.dumps(_raw())
    assert "original" not in indicator_to_ecs(json.loads(line), now=NOW, options=EcsOptions())["event"]
    doc = indicator_to_ecs(json.loads(line), now=NOW, options=EcsOptions(preserve_original_event=True), original=line)
    assert doc["event"]["original"] == line
    assert doc["tags"][0] == "preserve_original_event"


def test_duplicates_dropped_when_not_preserved() -> None:
    raw = _raw(sources=[{"name": "S", "tlp_name": "TLP:RED", "provider": "P"}])
    doc = indicator_to_ecs(raw, now=NOW, options=EcsOptions(preserve_duplicate_custom_fields=False))
    for key in ("score", "description", "updated_at"):
        assert key not in doc["threatq"]
    assert doc["threatq"]["sources"] == [{"name": "S"}]
    assert "tags" not in doc
    kept = indicator_to_ecs(raw, now=NOW, options=EcsOptions())
    assert kept["threatq"]["score"] == 9 and kept["tags"] == ["preserve_duplicate_custom_fields"]


def test_attributes_adversaries_and_empty_values() -> None:
    raw = _raw(
        attributes=[{"id": 5, "attribute_id": 2, "indicator_id": 77, "name": "Malware Family", "value": "Emotet", "touched_at": ""}],
        adversaries=[{"id": 12, "name": "APT Example"}],
        tags=[],
        uuid=None,
    )
    doc = indicator_to_ecs(raw, now=NOW, options=EcsOptions())
    assert doc["threatq"]["attributes"] == [{"id": "5", "attribute_id": "2", "indicator_id": "77", "name": "malware_family", "value": "Emotet"}]
    assert doc["threatq"]["adversaries"] == [{"id": "12", "name": "APT Example"}]
    assert "tags" not in doc["threatq"] and "uuid" not in doc["threatq"]


def test_related_fields() -> None:
    assert indicator_to_ecs(_raw(), now=NOW, options=EcsOptions())["related"] == {
        "hash": ["73c98d43519990c841a5d022546fedd4"], "ip": ["89.160.20.156"]}
    md5 = indicator_to_ecs(_raw(type={"name": "MD5"}, value="1ece659dcec98b1e1141160b55655c96"), now=NOW, options=EcsOptions())
    assert md5["related"]["hash"] == ["73c98d43519990c841a5d022546fedd4", "1ece659dcec98b1e1141160b55655c96"]
    fqdn = indicator_to_ecs(_raw(type={"name": "FQDN"}, value="evil.example"), now=NOW, options=EcsOptions())
    assert fqdn["related"]["hosts"] == ["evil.example"] and fqdn["threat"]["indicator"]["url"]["domain"] == "evil.example"


# ---- Bad input never sinks a batch ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"id": 1, "type": {"name": "IP Address"}}, "missing_value"),
        ({"id": 1, "value": "", "type": {"name": "IP Address"}}, "missing_value"),
        ({"id": 1, "value": "1.2.3.4"}, "missing_type"),
        ({"id": 1, "value": "1.2.3.4", "type": {"id": 15}}, "missing_type"),
        ({"value": "1.2.3.4", "type": {"name": "IP Address"}}, "missing_id"),
        ({"id": "abc", "value": "1.2.3.4", "type": {"name": "IP Address"}}, "missing_id"),
        ({"id": 1, "value": ["1.2.3.4"], "type": {"name": "IP Address"}}, "invalid_value"),
        (["not", "an", "object"], "not_an_object"),
    ],
)
def test_unusable_records_are_rejected_with_a_reason(raw: Any, reason: str) -> None:
    with pytest.raises(IndicatorRejected) as info:
        indicator_to_ecs(raw, now=NOW, options=EcsOptions())
    assert info.value.reason == reason


def test_unparsable_date_drops_field_and_records_error() -> None:
    doc = indicator_to_ecs(_raw(created_at="2026-13-45 99:00:00", sources=[{"name": "S", "updated_at": "yesterday"}]),
                           now=NOW, options=EcsOptions())
    assert "created_at" not in doc["threatq"]
    assert "updated_at" not in doc["threatq"]["sources"][0]
    assert any("threatq.created_at" in m for m in doc["error"]["message"])
    assert any("threatq.sources.0.updated_at" in m for m in doc["error"]["message"])
    assert doc["event"]["kind"] == "pipeline_error"
    assert "preserve_original_event" in doc["tags"] and "original" in doc["event"]


def test_date_before_datetime_min_in_utc_is_flagged_not_fatal() -> None:
    # "0001-01-01 00:00+03" overflows when converted to UTC; it is an unparsable date like any other.
    out, rejects = io.StringIO(), io.StringIO()
    lines = [json.dumps(_raw(id=1, created_at="0001-01-01 00:00+03")), json.dumps(_raw(id=2))]
    counts = transform_stream(lines, out, rejects, now=NOW, options=EcsOptions())
    assert (counts.read, counts.written) == (2, 2)
    first = json.loads(out.getvalue().splitlines()[0])
    assert "created_at" not in first["threatq"]
    assert any("threatq.created_at" in m for m in first["error"]["message"])


def test_missing_updated_at_sets_timestamp_to_now_and_flags() -> None:
    raw = _raw()
    del raw["updated_at"]
    doc = indicator_to_ecs(raw, now=NOW, options=EcsOptions())
    assert doc["@timestamp"] == "2026-11-25T12:00:00.000Z"
    assert any("@timestamp" in m for m in doc["error"]["message"])


@pytest.mark.parametrize(("type_name", "value", "field"), [
    ("IP Address", "999.1.1.1", "ip"), ("IPv6 Address", "2001:zz::1", "ip"), ("IP Address", "1.2.3.4/24", "ip")])
def test_invalid_ip_stays_out_of_ip_fields(type_name: str, value: str, field: str) -> None:
    doc = indicator_to_ecs(_raw(type={"name": type_name}, value=value), now=NOW, options=EcsOptions())
    assert field not in doc["threat"]["indicator"]
    assert "ip" not in doc.get("related", {})
    assert doc["threatq"]["indicator_value"] == value
    assert doc["threat"]["indicator"]["type"] in ("ipv4-addr", "ipv6-addr")
    assert "not an IP address" in doc["error"]["message"][0]


def test_invalid_asn_and_cidr_are_flagged() -> None:
    asn = indicator_to_ecs(_raw(type={"name": "ASN"}, value="AS-EXAMPLE"), now=NOW, options=EcsOptions())
    assert "as" not in asn["threat"]["indicator"] and asn["error"]["message"]
    cidr = indicator_to_ecs(_raw(type={"name": "CIDR Block"}, value="10.0.0.0/33"), now=NOW, options=EcsOptions())
    assert "cidr_block" not in cidr["threatq"] and cidr["error"]["message"]


def test_oversized_value_stays_out_of_typed_field() -> None:
    value = "a" * 40000
    doc = indicator_to_ecs(_raw(type={"name": "MD5"}, value=value), now=NOW, options=EcsOptions())
    assert "file" not in doc["threat"]["indicator"]
    assert doc["related"]["hash"] == ["73c98d43519990c841a5d022546fedd4"]
    assert doc["threatq"]["indicator_value"] == value
    assert "40000 characters" in doc["error"]["message"][0]


def test_oversized_description_stays_in_threatq_only() -> None:
    doc = indicator_to_ecs(_raw(description="d" * 9000), now=NOW, options=EcsOptions(preserve_duplicate_custom_fields=False))
    assert "description" not in doc["threat"]["indicator"]
    assert len(doc["threatq"]["description"]) == 9000


def test_unparsable_url_keeps_raw_in_full_like_elastic() -> None:
    doc = indicator_to_ecs(_raw(type={"name": "URL"}, value="89.160.20.156:8080/maf.html"), now=NOW, options=EcsOptions())
    assert doc["threat"]["indicator"]["url"] == {"full": "89.160.20.156:8080/maf.html"}
    assert doc["threatq"]["indicator_value"] == "89.160.20.156:8080/maf.html"
    assert "error" not in doc


def test_bad_numbers_are_dropped_and_flagged() -> None:
    doc = indicator_to_ecs(_raw(score="high", related_event_count="many", sources=[{"name": "S", "source_score": "x"}]),
                           now=NOW, options=EcsOptions())
    assert "score" not in doc["threatq"] and "related_event_count" not in doc["threatq"]
    assert "source_score" not in doc["threatq"]["sources"][0]
    assert len(doc["error"]["message"]) == 3


# ---- Streaming ------------------------------------------------------------------------------


def test_stream_writes_docs_and_rejects_with_counts() -> None:
    good = json.dumps(_raw())
    lines: list[str | bytes] = [
        good,
        "",
        "{not json",
        json.dumps({"id": 2, "type": {"name": "FQDN"}}),
        good.encode(),
        b"\xff\xfe",
        "[1, 2]",
        json.dumps(_raw(created_at="garbage")),
    ]
    out, rejects = io.StringIO(), io.StringIO()
    counts = transform_stream(lines, out, rejects, now=NOW, options=EcsOptions())
    assert isinstance(counts, TransformCounts)
    assert counts.as_dict() == {
        "read": 7, "written": 3, "rejected": {"invalid_json": 2, "missing_value": 1, "not_an_object": 1}, "flagged": 1,
        "engine": counts.engine, "native_lines": counts.native_lines}
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [d["threatq"]["id"] for d in docs] == [77, 77, 77]
    rejected = [json.loads(line) for line in rejects.getvalue().splitlines()]
    assert [(r["reason"], r["line_no"]) for r in rejected] == [
        ("invalid_json", 3), ("missing_value", 4), ("invalid_json", 6), ("not_an_object", 7)]
    assert rejected[0]["raw"] == "{not json"
    assert rejected[1]["raw"] == {"id": 2, "type": {"name": "FQDN"}}
    assert docs[2]["event"]["original"] == json.dumps(_raw(created_at="garbage"))


def test_stream_is_lazy_over_a_generator() -> None:
    def gen() -> Any:
        for i in range(1, 1001):
            yield json.dumps(_raw(id=i))

    out = io.StringIO()
    counts = transform_stream(gen(), out, io.StringIO(), now=NOW, options=EcsOptions())
    assert counts.written == 1000 and counts.rejected == {}


def test_tag_objects_and_string_status_are_made_mapping_safe() -> None:
    doc = indicator_to_ecs(_raw(tags=[{"id": 1, "name": "phishing"}, "apt", "", {"id": 2}], status="Expired"),
                           now=NOW, options=EcsOptions())
    assert doc["threatq"]["tags"] == ["phishing", "apt"]
    assert doc["threatq"]["status"] == {"name": "Expired"}
    assert doc["threatq"]["ioc_expiration_reason"] == "Expiration set by Elastic when threatq.status is 'Expired'"


@pytest.mark.parametrize(("value", "ok"), [("89.160.20.156", True), ("2a02:cf40::1", True), ("::ffff:1.2.3.4", True),
                                           ("01.2.3.4", False), ("1.2.3", False), ("fe80::1%eth0", False), ("1.2.3.4 ", False)])
def test_ip_validation_matches_what_elasticsearch_accepts(value: str, ok: bool) -> None:
    doc = indicator_to_ecs(_raw(value=value), now=NOW, options=EcsOptions())
    assert ("ip" in doc["threat"]["indicator"]) is ok


@pytest.mark.parametrize(("value", "expected"), [
    ("http://[2001:db8::1]:8080/a", {"domain": "2001:db8::1", "port": 8080, "path": "/a"}),
    ("https://Evil.Example/x.tar.gz", {"domain": "Evil.Example", "path": "/x.tar.gz", "extension": "gz"}),
    ("ftp://user@host.example", {"domain": "host.example", "username": "user"}),
])
def test_url_parts(value: str, expected: dict[str, Any]) -> None:
    url = indicator_to_ecs(_raw(type={"name": "URL"}, value=value), now=NOW, options=EcsOptions())["threat"]["indicator"]["url"]
    assert {k: url[k] for k in expected} == expected and url["original"] == url["full"] == value


@pytest.mark.parametrize("value", ["http://host:99999/", "http://host:abc/", "http:///nohost", "mailto:x@example.com"])
def test_urls_without_host_or_with_bad_port_stay_raw(value: str) -> None:
    doc = indicator_to_ecs(_raw(type={"name": "URL"}, value=value), now=NOW, options=EcsOptions())
    assert doc["threat"]["indicator"]["url"] == {"full": value}
    assert doc["threatq"]["indicator_value"] == value


def test_comments_are_converted_like_attributes() -> None:
    doc = indicator_to_ecs(_raw(comments=[{"id": 3, "indicator_id": 77, "value": "seen in C2", "created_at": "2026-01-01 00:00:00"}]),
                           now=NOW, options=EcsOptions())
    assert doc["threatq"]["comments"] == [{"id": "3", "indicator_id": "77", "value": "seen in C2", "created_at": "2026-01-01T00:00:00.000Z"}]


# -- threat.indicator dates (#13 item 5): the indicator_dates table of threatq_to_ecs.json ------


def test_first_seen_last_seen_and_modified_at_come_from_threatq_dates():
    from threatq_provider.ecs.options import EcsOptions
    from threatq_provider.ecs.transform import indicator_to_ecs

    now = datetime(2026, 11, 25, tzinfo=UTC)
    raw = {"id": 7, "value": "198.51.100.7", "type": {"name": "IP Address"}, "status": {"name": "Active"},
           "created_at": "2026-01-02 03:04:05", "updated_at": "2026-11-01 00:00:00",
           "touched_at": "2026-11-20 10:00:00", "last_detected_at": "2026-11-21 11:00:00"}
    indicator = indicator_to_ecs(raw, now=now, options=EcsOptions())["threat"]["indicator"]
    assert (indicator["first_seen"], indicator["last_seen"], indicator["modified_at"]) == (
        "2026-01-02T03:04:05.000Z", "2026-11-20T10:00:00.000Z", "2026-11-01T00:00:00.000Z")
    # Without touched_at, last_seen is the last change; without created_at, no first_seen.
    bare = {k: v for k, v in raw.items() if k not in ("touched_at", "created_at")}
    indicator = indicator_to_ecs(bare, now=now, options=EcsOptions())["threat"]["indicator"]
    assert "first_seen" not in indicator and indicator["last_seen"] == indicator["modified_at"] == (
        "2026-11-01T00:00:00.000Z")
    # An unparsable created_at is flagged on threatq.created_at and sets no first_seen.
    bad = indicator_to_ecs({**raw, "created_at": "yesterday"}, now=now, options=EcsOptions())
    assert "first_seen" not in bad["threat"]["indicator"] and bad["event"]["kind"] == "pipeline_error"


def test_the_dates_table_is_checked_when_loaded():
    from threatq_provider.ecs.errors import EcsTableError
    from threatq_provider.ecs.tables import _indicator_dates

    assert _indicator_dates({"_comment": "x", "first_seen": ["created_at"]}) == (("first_seen", ("created_at",)),)
    with pytest.raises(EcsTableError, match="not one of"):
        _indicator_dates({"seen_at": ["created_at"]})
    with pytest.raises(EcsTableError, match="non-empty list"):
        _indicator_dates({"last_seen": []})
