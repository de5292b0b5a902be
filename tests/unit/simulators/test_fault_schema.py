"""The fault-plan schema both simulators share: checks on a rule, binding to a server, the tables of
docs/simulators.md (the schema is documented once, there)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from threatq_simulators.faults import ACTIONS, MISP, SCHEMA_KEYS, THREATQ, FaultPlan, FaultRule, control

DOC = Path(__file__).resolve().parents[3] / "docs" / "simulators.md"


@pytest.mark.parametrize(("old", "hint"), [
    ({"path": "^events/add"}, 'path_regex (searched in "/path?query": add the leading slash'),
    ({"skip": 1}, "nth (skip: k is nth: k + 1)"),
    ({"delay": 1.0}, "delay_s"),
    ({"non_json": True}, 'action "malformed"'),
    ({"drop": True}, 'action "close"'),
])
def test_keys_of_the_old_misp_schema_name_their_replacement(old: dict, hint: str) -> None:
    with pytest.raises(ValueError, match="old MISP double schema") as err:
        FaultRule.from_dict(old)
    assert hint in str(err.value)


@pytest.mark.parametrize(("rule", "message"), [
    ({"status": 503, "action": "reset"}, "a status or takes an action"),
    ({"path_regex": "("}, "is not a regular expression"),
    ({"delay_s": -1}, "delay_s must be a number >= 0"),
    ({"headers": ["Retry-After"]}, "headers must be an object"),
    ({"times": "always"}, "times must be >= 0 or null"),
    ({"action": "explode"}, "unknown fault action"),
])
def test_bad_rules_are_refused_with_the_cause(rule: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        FaultRule.from_dict(rule)


def test_a_plan_bound_to_a_server_refuses_the_other_ones_extension() -> None:
    plan = FaultPlan([{"times": None, "page_cap": 10}])  # not bound yet: any server's keys
    with pytest.raises(ValueError, match=r"misp-double does not serve page_cap \(an extension of threatq-sim\)"):
        plan.bind(MISP)
    assert plan.extension is None
    assert plan.bind(THREATQ) is plan and plan.extension is THREATQ
    misp = FaultPlan(extension=MISP)
    for rule in ({"action": "expire_token"}, {"nest_indicator": 3, "nest_depth": 4}, {"poison_indicator": 1}):
        with pytest.raises(ValueError, match="misp-double does not serve"):
            misp.add(rule)
    assert misp.add({"action": "commit_then_reset"}).action == "commit_then_reset"


def test_extend_and_the_control_endpoint_add_all_rules_or_none() -> None:
    plan = FaultPlan(extension=MISP)
    with pytest.raises(ValueError):
        plan.extend([{"status": 503}, {"page_cap": 2}])
    assert len(plan) == 0
    status, body = control(plan, "POST", json.dumps([{"status": 503}, {"bogus": 1}]).encode())
    assert status == 400 and "bogus" in body["errors"][0] and len(plan) == 0
    status, body = control(plan, "POST", b'{"rules": [{"status": 503}, {"nth": 2, "action": "reset"}]}')
    assert status == 201 and [r["status"] for r in body["data"]] == [503, None]
    assert control(plan, "GET", b"")[1]["data"][1]["action"] == "reset"
    assert control(plan, "POST", b"not json")[0] == 400
    assert control(plan, "PUT", b"")[0] == 405
    assert control(plan, "DELETE", b"") == (204, None) and len(plan) == 0


def test_a_rule_in_json_form_lists_every_key_and_its_counters() -> None:
    rule = FaultRule.from_dict({"method": "GET", "times": None, "status": 429})
    assert list(rule.to_dict()) == [*SCHEMA_KEYS, *THREATQ.data_faults, *THREATQ.keys, "matched", "triggered"]
    assert list(rule.to_dict(THREATQ)) == list(rule.to_dict())
    assert list(rule.to_dict(MISP)) == [*SCHEMA_KEYS, "matched", "triggered"]  # the MISP double lists its own keys
    assert list(FaultPlan([rule], extension=MISP).to_list()[0]) == list(rule.to_dict(MISP))
    assert FaultRule.from_dict({k: v for k, v in rule.to_dict().items()
                                if k not in ("matched", "triggered")}) == rule


def _table(section: str, header: str) -> list[list[str]]:
    lines = section.split(header, 1)[1].split("\n\n", 1)[0].splitlines()
    rows = [line for line in lines if line.startswith("|") and not line.startswith("|---")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_the_docs_document_every_key_and_action_of_the_schema_once() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### Fault plans (both simulators)", 1)[1].split("\n### ", 1)[0]
    keys = [row[0].strip("`") for row in _table(section, "| key | default | meaning |")]
    assert keys == list(SCHEMA_KEYS)
    actions = [row[0].split()[0].strip("`") for row in _table(section, "| action | what the client sees |")]
    assert actions == [*ACTIONS, *THREATQ.actions]
    assert [row[0] for row in _table(section, "| action | what the client sees |")][-1] == "`expire_token` (threatq-sim)"
    data_rules = [FaultRule.from_dict(json.loads(row[0].strip("`"))) for row in _table(section, "| rule | reproduces |")]
    assert [k for r in data_rules for k in r.data_kinds] == list(THREATQ.data_faults)
    assert text.count("| key | default | meaning |") == 1  # one table, for both simulators
