"""The corpus's Threat Library: malware and attack patterns, their links to events, determinism."""

from __future__ import annotations

import re

import pytest

from threatq_simulators import corpus as corpus_module
from threatq_simulators.corpus import Corpus

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus(seed=42, indicators=300, events=80)


def test_objects_have_threatq_custom_object_shapes(corpus: Corpus) -> None:
    for code, (object_id, name, plural) in {"malware": (9, "Malware", "Malware"),
                                            "attack_pattern": (6, "Attack Pattern", "Attack Patterns")}.items():
        objects = corpus.library_objects(code)
        assert [o["id"] for o in objects] == list(range(1, len(objects) + 1))
        for obj in objects:
            assert (obj["object_id"], obj["object_code"], obj["object_name"], obj["object_name_plural"]) == (
                object_id, code, name, plural)
            assert obj["type_id"] is None and obj["status_id"] is None and obj["value"]
            assert all(DATE_RE.match(obj[k]) for k in ("created_at", "updated_at", "touched_at"))
            assert obj["created_at"] <= obj["updated_at"] <= obj["touched_at"]
            assert obj["sources"] and all(s["pivot"][f"{code}_id"] == obj["id"] for s in obj["sources"])
            assert all(a[f"{code}_id"] == obj["id"] for a in obj["attributes"])


def test_seed_names_are_real_galaxy_names_and_a_few_in_house_ones(corpus: Corpus) -> None:
    from threatq_provider.misp.mapping import galaxy_tags, tables

    rules = {rule.kind: rule for rule in tables().galaxy_rules}
    malware = {o["value"]: galaxy_tags(o["value"], rules["Malware"]) for o in corpus.malware}
    patterns = {o["value"]: galaxy_tags(o["value"], rules["Attack Pattern"]) for o in corpus.attack_patterns}
    assert 'misp-galaxy:mitre-malware="Emotet - S0367"' in malware["Emotet"]
    assert malware["Cobalt Strike"] and malware["TrickBot"]
    assert patterns["T1059 - Command and Scripting Interpreter"] == [
        'misp-galaxy:mitre-attack-pattern="Command and Scripting Interpreter - T1059"']
    assert patterns["Phishing"] and patterns["T1566.001 - Spearphishing Attachment"]
    assert 1 <= sum(not tags for tags in malware.values()) < len(malware) // 2
    assert 1 <= sum(not tags for tags in patterns.values()) < len(patterns) // 2


def test_events_link_a_realistic_subset(corpus: Corpus) -> None:
    events = corpus.events
    with_malware = [e for e in events if e["malware"]]
    with_patterns = [e for e in events if e["attack_pattern"]]
    assert len(events) // 4 < len(with_malware) < len(events)
    assert len(events) // 4 < len(with_patterns) < len(events)
    assert all(len(e["malware"]) <= 3 and len(e["attack_pattern"]) <= 4 for e in events)
    # a malware named in the title is related to the event
    titled = [e for e in events if re.match(r"(.+) (campaign observed|infection on workstation)$", e["title"])]
    assert titled
    for event in titled:
        family = re.match(r"(.+) (campaign|infection)", event["title"]).group(1)
        assert family in [m["value"] for m in event["malware"]]
    # spearphish events get phishing techniques
    spear = [e for e in events if e["type"]["name"] == "Spearphish" and e["attack_pattern"]]
    assert spear and any("Spearphishing" in p["value"] or p["value"] == "Phishing"
                         for e in spear for p in e["attack_pattern"])
    for code in ("malware", "attack_pattern"):
        for event in events:
            ids = [o["id"] for o in event[code]]
            assert ids == sorted(set(ids)) == corpus.event_library_ids(event["id"], code)
            assert all(event["id"] in corpus.library_event_ids(code, i) for i in ids)


def test_same_seed_same_links_other_seed_other_links() -> None:
    a, b, c = Corpus(seed=5, indicators=50, events=40), Corpus(seed=5, indicators=50, events=40), Corpus(
        seed=6, indicators=50, events=40)
    assert a.malware == b.malware and a.event(7) == b.event(7)
    links = lambda k: [(e["id"], [m["id"] for m in e["malware"]], [p["id"] for p in e["attack_pattern"]])  # noqa: E731
                       for e in k.events]
    assert links(a) == links(b) != links(c)


def test_the_library_changes_nothing_else_in_the_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    with_library = Corpus(seed=3, indicators=120, events=30)
    seed = corpus_module.load_seed_data()
    seed.pop("malware")
    seed.pop("attack_patterns")
    monkeypatch.setattr(corpus_module, "load_seed_data", lambda: seed)
    without = Corpus(seed=3, indicators=120, events=30)

    assert without.malware == [] and all(not e["malware"] and not e["attack_pattern"] for e in without.events)
    strip = lambda e: {k: v for k, v in e.items() if k not in ("malware", "attack_pattern")}  # noqa: E731
    assert [strip(e) for e in with_library.events] == [strip(e) for e in without.events]
    assert [with_library.indicator(i) for i in range(1, 121)] == [without.indicator(i) for i in range(1, 121)]
    assert with_library.investigations == without.investigations


def test_unknown_object_raises_key_error(corpus: Corpus) -> None:
    assert not corpus.library_exists("malware", 999) and not corpus.library_exists("tool", 1)
    with pytest.raises(KeyError):
        corpus.library_object("malware", 999)
