"""The seeded ThreatQ corpus: determinism, valid values for every type, windows, creation."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
from collections import Counter
from datetime import datetime, timezone

import pytest

from threatq_simulators.corpus import Corpus, ValidationError, load_enumerations
from threatq_simulators.timefmt import to_epoch

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
HEX = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-384": 96, "SHA-512": 128, "GOST Hash": 64}


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus(seed=42, indicators=3000, events=60)


def _valid(type_name: str, value: str) -> bool:
    checks = {
        "IP Address": lambda v: not ipaddress.IPv4Address(v).is_private and not ipaddress.IPv4Address(v).is_reserved,
        "IPv6 Address": lambda v: ipaddress.IPv6Address(v).is_global,
        "CIDR Block": lambda v: "/" in v and ipaddress.ip_network(v, strict=True) is not None,
        "FQDN": lambda v: re.fullmatch(r"([a-z0-9-]+\.)+[a-z]{2,}", v) is not None,
        "URL": lambda v: re.fullmatch(r"https?://[^/\s:]+(:\d+)?/[^\s]*", v) is not None,
        "Email Address": lambda v: re.fullmatch(r"[a-z0-9._-]+@([a-z0-9-]+\.)+[a-z]{2,}", v) is not None,
        "Fuzzy Hash": lambda v: re.fullmatch(r"\d+:[A-Za-z0-9+/]+:[A-Za-z0-9+/]+", v) is not None,
        "Registry Key": lambda v: v.startswith(("HKLM\\", "HKCU\\")),
        "ASN": lambda v: re.fullmatch(r"AS\d+", v) is not None,
        "CVE": lambda v: re.fullmatch(r"CVE-\d{4}-\d{4,}", v) is not None,
        "MAC Address": lambda v: re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", v) is not None,
        "x509 Serial": lambda v: re.fullmatch(r"([0-9a-f]{2}:){15}[0-9a-f]{2}", v) is not None,
        "x509 Subject": lambda v: v.startswith("CN=") and ", O=" in v,
        "File Path": lambda v: v.startswith(("C:\\", "/")),
        "URL Path": lambda v: v.startswith("/"),
        "User-agent": lambda v: "/" in v,
        "Binary String": lambda v: re.fullmatch(r"[0-9A-F]+", v) is not None and len(v) % 2 == 0,
    }
    if type_name in HEX:
        return re.fullmatch(f"[0-9a-f]{{{HEX[type_name]}}}", value) is not None
    check = checks.get(type_name)
    return bool(value.strip()) if check is None else bool(check(value))


def test_every_enumerated_type_appears_with_valid_values(corpus: Corpus) -> None:
    names = {t["name"] for t in load_enumerations()["indicator_types"]}
    seen: Counter[str] = Counter()
    for ind in corpus.iter_indicators():
        tname = ind["type"]["name"]
        seen[tname] += 1
        assert _valid(tname, ind["value"]), (tname, ind["value"])
    assert set(seen) == names
    assert len(names) == 34


def test_hash_values_have_exact_lengths(corpus: Corpus) -> None:
    for ind in corpus.iter_indicators(types=list(HEX)):
        assert len(ind["value"]) == HEX[ind["type"]["name"]]


def test_same_seed_same_corpus_and_other_seed_differs() -> None:
    a, b, c = Corpus(seed=7, indicators=200), Corpus(seed=7, indicators=200), Corpus(seed=8, indicators=200)
    assert [a.indicator(i) for i in (1, 50, 200)] == [b.indicator(i) for i in (1, 50, 200)]
    assert a.event(3) == b.event(3)
    assert [a.indicator(i)["value"] for i in range(40, 60)] != [c.indicator(i)["value"] for i in range(40, 60)]


def test_indicator_has_full_relations_and_threatq_dates(corpus: Corpus) -> None:
    ind = corpus.indicator(123)
    for key in ("type", "status", "score", "sources", "attributes", "adversaries", "tags", "value", "class", "hash"):
        assert key in ind
    assert set(ind["type"]) == {"id", "name", "class"}
    assert set(ind["status"]) == {"id", "name", "description"}
    assert isinstance(ind["score"], int) and 0 <= ind["score"] <= 10
    for key in ("created_at", "updated_at", "touched_at", "published_at"):
        assert DATE_RE.match(ind[key])
    for key in ("expires_at", "expired_at", "last_detected_at"):
        assert ind[key] is None or DATE_RE.match(ind[key])
    assert ind["sources"], "every indicator has at least one source"
    for src in ind["sources"]:
        assert src["tlp_name"] is None or re.fullmatch(r"TLP:(RED|AMBER|GREEN|WHITE)", src["tlp_name"])


def test_distributions_are_realistic(corpus: Corpus) -> None:
    inds = list(corpus.iter_indicators())
    statuses = Counter(i["status"]["name"] for i in inds)
    assert set(statuses) == {"Active", "Expired", "Indirect", "Review", "Whitelisted"}
    assert all(i["expired_at"] for i in inds if i["status"]["name"] == "Expired")
    assert not any(i["expired_at"] for i in inds if i["status"]["name"] != "Expired")
    with_expiry = [to_epoch(i["expires_at"]) for i in inds if i["expires_at"] and i["status"]["name"] == "Active"]
    cut = to_epoch("2026-02-01")
    assert any(e < cut for e in with_expiry) and any(e > cut for e in with_expiry)
    assert set(i["score"] for i in inds) == set(range(11))
    tlps = Counter(s["tlp_name"] for i in inds for s in i["sources"])
    assert {"TLP:RED", "TLP:AMBER", "TLP:GREEN", "TLP:WHITE", None} <= set(tlps)
    assert any(i["adversaries"] for i in inds) and any(i["attributes"] for i in inds)


def test_updated_at_spread_over_the_range(corpus: Corpus) -> None:
    days = Counter(i["updated_at"][:10] for i in corpus.iter_indicators())
    assert sorted(days) == [f"2026-01-0{d}" for d in range(1, 8)]
    assert min(days.values()) > len(list(corpus.indicator_ids())) / 7 * 0.7


def test_window_is_start_inclusive_end_exclusive_and_ordered(corpus: Corpus) -> None:
    ids = corpus.indicator_ids()
    pivot = corpus.indicator(ids[1500])["updated_at"]
    before = list(corpus.iter_indicators(None, pivot))
    after = list(corpus.iter_indicators(pivot, None))
    assert len(before) + len(after) == len(ids)
    assert all(i["updated_at"] < pivot for i in before) and all(i["updated_at"] >= pivot for i in after)
    keys = [(i["updated_at"], i["id"]) for i in before + after]
    assert keys == sorted(keys)


def test_window_accepts_datetimes_and_strings(corpus: Corpus) -> None:
    dt = datetime(2026, 1, 3, tzinfo=timezone.utc)
    a = [i["id"] for i in corpus.iter_indicators(dt, "2026-01-04T00:00:00Z")]
    b = corpus.indicator_ids("2026-01-03 00:00:00", datetime(2026, 1, 4))
    assert a == b and a


def test_id_offset_shifts_enumeration_ids_only() -> None:
    old = Corpus(indicators=50, id_offset=100)
    assert old.indicator_types[0]["id"] == 101 and old.statuses[0]["id"] == 101
    assert old.event_types[0]["id"] == 101
    ind = old.indicator(15)
    assert ind["type_id"] == ind["type"]["id"] > 100
    assert old.resolve_indicator_type("IP Address")["id"] == 115


def test_events_have_relations_and_attachments_with_real_bytes(corpus: Corpus) -> None:
    events = corpus.events
    assert len(events) == 60
    assert any(a["name"] == "Threat Level" for e in events for a in e["attributes"])
    assert any(a["name"] == "Analysis Level" for e in events for a in e["attributes"])
    assert all(e["indicator_ids"] and e["sources"] for e in events)
    atts = [a for e in events for a in e["attachments"]]
    assert atts
    for att in atts:
        content = corpus.attachment_content(att["id"])
        assert hashlib.md5(content).hexdigest() == att["hash"] and len(content) == att["file_size"]


def test_investigations_and_collections(corpus: Corpus) -> None:
    invs = corpus.investigations
    assert len(invs) == 5 and all(i["event_ids"] and i["name"] for i in invs)
    names = [c["name"] for c in corpus.collections]
    assert "All active" in names and all(re.fullmatch(r"[0-9a-f]{32}", c["hash"]) for c in corpus.collections)
    active = list(corpus.iter_collection("All active"))
    assert active and all(i["status"]["name"] == "Active" for i in active)


def test_create_indicator_is_visible_and_deduplicated() -> None:
    c = Corpus(indicators=100)
    obj, existing = c.create_indicator({"value": "203.0.113.9", "type": {"name": "IP Address"}, "status": "Active",
                                        "sources": [{"name": "Unit", "tlp": {"name": "GREEN"}}]})
    assert not existing and obj["id"] == 101 and c.indicator(101)["sources"][0]["tlp_name"] == "TLP:GREEN"
    again, existing = c.create_indicator({"value": "203.0.113.9", "type_id": obj["type_id"]})
    assert existing and again["id"] == 101
    value = c.indicator(5)["value"]
    dup, existing = c.create_indicator({"value": value, "type": c.indicator(5)["type"]["name"]})
    assert existing and dup["id"] == 5
    assert c.find_indicator_ids_by_value("203.0.113.9") == [101]
    assert [i["id"] for i in c.iter_indicators("2026-06-01")] == [101]


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"type": "IP Address"}, "value"),
        ({"value": "x"}, "type"),
        ({"value": "x", "type": "Nope"}, "type"),
        ({"value": "999.1.1.1", "type": "IP Address"}, "value"),
        ({"value": "abc", "type": "MD5"}, "value"),
        ({"value": "1.2.3.4", "type": "IP Address", "status": "Bogus"}, "status"),
    ],
)
def test_create_indicator_rejects_invalid_input(item: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        Corpus(indicators=10).create_indicator(item)
    assert err.value.field == field


def test_eamil_attachment_alias_resolves() -> None:
    assert Corpus(indicators=1).resolve_indicator_type("Eamil Attachment")["name"] == "Email Attachment"


def test_large_corpus_is_lazy() -> None:
    c = Corpus(indicators=200_000)
    assert c.indicator(199_999)["id"] == 199_999
    assert len(c.indicator_ids("2026-01-01", "2026-01-08")) == 200_000


def test_an_edit_moves_the_indicator_to_the_window_of_now_everywhere() -> None:
    c = Corpus(seed=7, indicators=300, start="2026-01-01", end="2026-01-08")
    old = c.indicator(42)
    new_status = "Review" if old["status"]["name"] != "Review" else "Active"
    before = int(time.time())
    edited = c.update_indicator(42, {"status": new_status, "description": "<p>re-rated</p>"})
    after = int(time.time())
    assert before <= to_epoch(edited["updated_at"]) <= after and edited["touched_at"] >= edited["updated_at"]
    assert edited["status"]["name"] == new_status and edited["description"] == "<p>re-rated</p>"
    assert {s["indicator_status_id"] for s in edited["sources"]} == {edited["status_id"]}
    assert (edited["value"], edited["created_at"], edited["type"]) == (old["value"], old["created_at"], old["type"])
    assert c.indicator(42) == edited
    # The generated window no longer has it; the window of now does, once; counts are unchanged.
    assert 42 not in c.indicator_ids("2026-01-01", "2026-01-08")
    assert c.indicator_ids(before) == [42]
    assert sorted(c.indicator_ids()) == list(range(1, 301))
    # Queries and collections read the edited values (the select cache is invalidated).
    by_status = c.select_indicators({"status_name": new_status})
    assert 42 in by_status
    assert all(c.indicator(i)["status"]["name"] == new_status for i in by_status)


def test_edits_keep_updated_at_order_and_created_ones_can_be_edited() -> None:
    c = Corpus(seed=7, indicators=50, start="2026-01-01", end="2026-01-08")
    created, _ = c.create_indicator({"value": "198.51.100.7", "type": "IP Address", "status": "Active"})
    c.update_indicator(3, {"status_id": c.resolve_status("Expired")["id"]})
    c.update_indicator(created["id"], {"description": "seen again"})
    c.update_indicator(3, {"status": {"name": "Active"}})  # edited twice: one entry, the latest
    rows = list(c.iter_indicators("2026-06-01"))
    assert sorted(r["id"] for r in rows) == [3, created["id"]]
    assert [to_epoch(r["updated_at"]) for r in rows] == sorted(to_epoch(r["updated_at"]) for r in rows)
    three = c.indicator(3)
    assert three["status"]["name"] == "Active" and three["expired_at"] is None
    assert c.indicator(created["id"])["description"] == "seen again"
    assert len(c.indicator_ids()) == 51


def test_an_edit_to_expired_sets_expired_at() -> None:
    c = Corpus(seed=7, indicators=50)
    active = next(i for i in range(1, 51) if c.indicator(i)["status"]["name"] == "Active")
    edited = c.update_indicator(active, {"status": "Expired"})
    assert edited["expired_at"] == edited["updated_at"]


def test_an_edit_never_moves_a_future_dated_indicator_back() -> None:
    c = Corpus(seed=7, indicators=20, start="2099-01-01", end="2099-01-02")
    old = c.indicator(5)["updated_at"]
    assert c.update_indicator(5, {"description": "x"})["updated_at"] == old


@pytest.mark.parametrize(
    ("changes", "field"),
    [({}, "data"), ({"value": "1.2.3.4"}, "value"), ({"status": "Bogus"}, "status"), ({"status_id": 999}, "status")],
)
def test_an_edit_names_what_it_refuses(changes: dict, field: str) -> None:
    c = Corpus(seed=7, indicators=10)
    with pytest.raises(ValidationError) as err:
        c.update_indicator(4, changes)
    assert err.value.field == field
    assert c.indicator(4) == Corpus(seed=7, indicators=10).indicator(4)  # nothing half-applied


def test_editing_a_deleted_indicator_is_a_key_error() -> None:
    c = Corpus(seed=7, indicators=10)
    c.delete_indicator(4)
    with pytest.raises(KeyError):
        c.update_indicator(4, {"description": "x"})
