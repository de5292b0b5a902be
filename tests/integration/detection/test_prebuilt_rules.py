"""Elastic Security's five prebuilt threat-intel indicator-match rules see our IOCs (issue 12).

IOCs of every type the rules map (IP, hash, URL, e-mail, registry) are created in the ThreatQ
simulator, loaded by the real indicator DAG (``dag.test()``, real HTTP, the real Elasticsearch
node) and swept by the real sweep DAG. Planted source events (matching and not) go into a
``logs-*`` index. Each rule is then evaluated as Elastic's detection engine does
(:mod:`tests.detection.engine`: its ``threat_query`` KQL translated to query DSL with its
``threat_filters``, over its ``threat_index``; its source ``query`` with the look-back; its
``threat_mapping`` as ``terms`` on the event fields), and the alerts it would raise must equal the
planted ground truth exactly: every match present, nothing else (no history copy, no expired
IOC, no unmapped hash type, no event outside the look-back).

Run: ``scripts/test tests/integration/detection`` (or with a node already running,
``TQ_ES_URL=$(scripts/elasticsearch url) .venv/bin/pytest tests/integration/detection``).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.detection.engine import Match, indicators, load_rules, matches
from tests.integration.detection.conftest import run_dag

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.elasticsearch]

INDICATORS = "threatq_indicators_to_elasticsearch"
SWEEP = "threatq_ioc_expiry_sweep"
ACTIVE_INDEX_PREFIX = "logs-ti_threatq_latest.threat-"
HISTORY_INDEX_PREFIX = "logs-ti_threatq.threat_history-"
NOW = datetime.now(timezone.utc).replace(microsecond=0)

SHA512 = "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043"
# key → (ThreatQ type, value, status). Created through the simulator's ThreatQ API model.
PLANTED: dict[str, tuple[str, str, str]] = {
    "ip": ("IP Address", "198.51.100.23", "Active"),
    "ipv6": ("IPv6 Address", "2001:db8::bad:1", "Active"),
    "md5": ("MD5", "5d41402abc4b2a76b9719d911017c592", "Active"),
    "sha1": ("SHA-1", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d", "Active"),
    "sha256": ("SHA-256", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "Active"),
    "sha512": ("SHA-512", SHA512, "Active"),
    "url": ("URL", "http://malware.example.net/dl/payload.exe?id=7", "Active"),
    "email": ("Email Address", "phisher@bad.example.org", "Active"),
    "registry": ("Registry Key", "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\updater",
                 "Active"),
    # Must never fire: status Expired (swept out of the active index; its history copy stays).
    "expired_ip": ("IP Address", "192.0.2.66", "Expired"),
    "expired_md5": ("MD5", "0cc175b9c0f1b6a831c399e269772661", "Expired"),
    # Must never fire: outside the status policy (Active only by default; Whitelisted never).
    "whitelisted_ip": ("IP Address", "192.0.2.53", "Whitelisted"),
    "whitelisted_url": ("URL", "https://updates.example.com/agent.msi", "Whitelisted"),
    "review_email": ("Email Address", "maybe@unsure.example.org", "Review"),
}

FRESH = "fresh"
OLD = "old"  # before the rules' 65-minute look-back
# Planted source events: id → (fields, ground truth [(event field, planted indicator key)]).
EVENTS: dict[str, tuple[dict[str, Any], list[tuple[str, str]]]] = {
    "ip-src": ({"source": {"ip": "198.51.100.23"}, "destination": {"ip": "10.0.0.5"}}, [("source.ip", "ip")]),
    "ip-dst": ({"source": {"ip": "10.0.0.5"}, "destination": {"ip": "198.51.100.23"}}, [("destination.ip", "ip")]),
    "ip-both": ({"source": {"ip": "198.51.100.23"}, "destination": {"ip": "2001:db8:0:0:0:0:bad:1"}},
                [("source.ip", "ip"), ("destination.ip", "ipv6")]),
    "ipv6-dst": ({"destination": {"ip": "2001:0db8::0bad:0001"}}, [("destination.ip", "ipv6")]),
    "ip-none": ({"source": {"ip": "203.0.113.99"}, "destination": {"ip": "10.0.0.5"}}, []),
    "ip-only-related": ({"source": {"ip": "10.0.0.9"}, "related": {"ip": ["198.51.100.23"]}}, []),
    "ip-expired": ({"destination": {"ip": "192.0.2.66"}}, []),
    "ip-whitelisted": ({"source": {"ip": "192.0.2.53"}, "destination": {"ip": "192.0.2.53"}}, []),
    "url-whitelisted": ({"url": {"full": "https://updates.example.com/agent.msi",
                                 "original": "https://updates.example.com/agent.msi"}}, []),
    "email-review": ({"email": {"from": {"address": "maybe@unsure.example.org"}}}, []),
    "md5-file": ({"file": {"hash": {"md5": "5d41402abc4b2a76b9719d911017c592"}}}, [("file.hash.md5", "md5")]),
    "sha1-process": ({"process": {"hash": {"sha1": "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"}}},
                     [("process.hash.sha1", "sha1")]),
    "sha256-dll": ({"dll": {"hash": {"sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}}},
                   [("dll.hash.sha256", "sha256")]),
    "sha512-file": ({"file": {"hash": {"sha512": SHA512}}}, []),  # the rule maps no sha512
    "md5-other": ({"file": {"hash": {"md5": "e4d909c290d0fb1ca068ffaddf22cbd0"}}}, []),
    "md5-expired": ({"process": {"hash": {"md5": "0cc175b9c0f1b6a831c399e269772661"}}}, []),
    "url-full": ({"url": {"full": "http://malware.example.net/dl/payload.exe?id=7"}}, [("url.full", "url")]),
    "url-original": ({"url": {"full": "http://cdn.example.com/a.js",
                              "original": "http://malware.example.net/dl/payload.exe?id=7"}},
                     [("url.original", "url")]),
    "url-none": ({"url": {"full": "http://malware.example.net/dl/payload.exe"}}, []),
    "email-from": ({"email": {"from": {"address": "phisher@bad.example.org"}}}, [("email.from.address", "email")]),
    "email-to": ({"email": {"from": {"address": "ceo@corp.example.com"},
                            "to": {"address": ["a@corp.example.com", "phisher@bad.example.org"]}}},
                 [("email.to.address", "email")]),
    "email-none": ({"email": {"from": {"address": "friend@good.example.org"}}}, []),
    "registry": ({"registry": {"path": PLANTED["registry"][1]}}, [("registry.path", "registry")]),
    "registry-none": ({"registry": {"path": "HKEY_LOCAL_MACHINE\\SOFTWARE\\Vendor\\Run\\updater"}}, []),
    "ip-src-old": ({"source": {"ip": "198.51.100.23"}, "_when": OLD}, []),
}
RULE_OF_FIELD = {"source.ip": "ip", "destination.ip": "ip", "url.full": "url", "url.original": "url",
                 "email.from.address": "email", "email.to.address": "email", "registry.path": "registry"}


def _family(field: str) -> str:
    return "hash" if ".hash." in field else RULE_OF_FIELD[field]


def plant_indicators(sim: Any) -> dict[str, str]:
    """Create the planted indicators in the simulator; key → ThreatQ id."""
    ids = {}
    for key, (type_name, value, status) in PLANTED.items():
        obj, existing = sim.corpus.create_indicator(
            {"value": value, "type": type_name, "status": status,
             "sources": [{"name": "Detection Test Feed", "tlp": "AMBER"}]})
        assert not existing, f"{key}: the corpus already has {value!r}"
        ids[key] = str(obj["id"])
    return ids


def index_events(es: Any, index: str) -> None:
    from elasticsearch import helpers

    fresh = (NOW - timedelta(minutes=5)).isoformat()
    old = (NOW - timedelta(hours=3)).isoformat()
    actions = []
    for event_id, (fields, _truth) in EVENTS.items():
        doc = {k: v for k, v in fields.items() if k != "_when"}
        when = old if fields.get("_when") == OLD else fresh
        doc.update({"@timestamp": when, "event": {"ingested": when, "kind": "event"}, "planted": event_id})
        actions.append({"_index": index, "_id": event_id, "_source": doc})
    helpers.bulk(es, actions, refresh="wait_for")


def expected(ids: dict[str, str]) -> dict[str, set[tuple[str, str, str]]]:
    """Rule family → {(event id, event field, ThreatQ id of the indicator)}."""
    truth: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for event_id, (_fields, pairs) in EVENTS.items():
        for field, key in pairs:
            truth[_family(field)].add((event_id, field, ids[key]))
    return truth


def _as_truth(found: set[Match], es: Any) -> set[tuple[str, str, str]]:
    out = set()
    for m in found:
        assert m.indicator_index.startswith(ACTIVE_INDEX_PREFIX), f"{m} matched outside the active index"
        source = es.get(index=m.indicator_index, id=m.indicator_id)["_source"]
        out.add((m.event_id, m.field, str(source["threatq"]["id"])))
    return out


@pytest.fixture
def loaded(airflow_db, dagbag, airflow_env, es_clean, tq_sim_factory, tq_conn, events_index):
    """The planted IOCs loaded by the indicator DAG among a generated corpus, swept, and the
    planted events indexed. Returns (planted key → ThreatQ id, load report)."""
    sim = tq_sim_factory(seed=7, indicators=300, events=5, start=NOW - timedelta(days=60), end=NOW - timedelta(hours=1))
    tq_conn(sim)
    ids = plant_indicators(sim)
    load = run_dag(dagbag, INDICATORS, conf={"mode": "full_resync"})
    run_dag(dagbag, SWEEP)
    index_events(es_clean, events_index)
    es_clean.indices.refresh(index="logs-*")
    return ids, load


def test_each_prebuilt_rule_alerts_on_exactly_the_planted_matches(loaded, es_clean):
    ids, load = loaded
    assert load["xcom"]["report"]["loaded"] >= len(PLANTED)
    truth = expected(ids)
    rules = load_rules()
    assert sorted(r["family"] for r in rules) == ["email", "hash", "ip", "registry", "url"]
    got = {rule["family"]: _as_truth(matches(es_clean, rule), es_clean) for rule in rules}
    assert got == {family: truth.get(family, set()) for family in got}
    assert all(got[family] for family in got), "every rule family must alert on something"


def test_each_rule_threat_search_finds_the_active_planted_iocs_and_no_history_or_expired_copy(loaded, es_clean):
    ids, load = loaded
    expired = {ids["expired_ip"], ids["expired_md5"]}
    outside_policy = {ids["whitelisted_ip"], ids["whitelisted_url"], ids["review_email"]}
    # the status policy kept them out of the active index on the load itself, counted by reason
    assert load["xcom"]["load"]["withheld_by_reason"]["status_policy"] >= len(outside_policy)
    active = {str(h["_source"]["threatq"]["id"]) for h in es_clean.search(
        index="logs-ti_threatq_latest.threat", query={"terms": {"threatq.id": sorted(outside_policy)}})["hits"]["hits"]}
    assert active == set()
    for rule in load_rules():
        hits = indicators(es_clean, rule)
        assert hits, rule["name"]
        assert all(h["_index"].startswith(ACTIVE_INDEX_PREFIX) for h in hits), \
            f"{rule['name']}: the threat search reads a history copy (labels.is_ioc_transform_source must be 'true' there)"
        seen = {str(h["_source"]["threatq"]["id"]) for h in hits}
        assert not seen & (expired | outside_policy)
    # The history holds every version loaded, expired and whitelisted too: only the label keeps the rules out.
    history = es_clean.search(index=HISTORY_INDEX_PREFIX + "*", size=10,
                              query={"terms": {"threatq.id": sorted(expired | outside_policy)}})["hits"]["hits"]
    assert {str(h["_source"]["threatq"]["id"]) for h in history} == expired | outside_policy
    assert {h["_source"]["labels"]["is_ioc_transform_source"] for h in history} == {"true"}
