"""The status policy on the MISP side (issue 12): the IDS flag only for statuses active for
detection, the same table as the Elasticsearch side (Active by default; Whitelisted never)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from threatq_provider.misp.errors import MispConfigError
from threatq_provider.misp.mapping import event_to_misp
from threatq_provider.misp.options import OPTION_FIELDS, ShareOptions

DATA = Path(__file__).resolve().parents[2] / "data" / "misp"
IP = "203.0.113.5"


def _with_status(status: str | None, **options):
    raw = json.loads((DATA / "event_spearphish.json").read_text())
    indicators = copy.deepcopy(raw["indicators"])
    for indicator in indicators:
        if indicator["value"] == IP:
            if status is None:
                indicator.pop("status", None)
            else:
                indicator["status"] = {"id": 9, "name": status}
    result = event_to_misp(raw["event"], indicators, threatq_host="https://threatq.example.com",
                           options=ShareOptions(**options), attachments=[])
    return next(a for a in result.misp_event.attributes if a.value == IP)


@pytest.mark.parametrize(("status", "ids"), [("Active", True), ("active", True), ("Review", False),
                                             ("Indirect", False), ("Expired", False), ("Whitelisted", False),
                                             (None, True)])
def test_default_policy_flags_only_active_indicators(status, ids):
    assert _with_status(status).to_ids is ids


def test_a_wider_policy_flags_review_too_but_never_whitelisted():
    assert _with_status("Review", active_statuses=["Active", "Review"]).to_ids is True
    assert _with_status("Review", active_statuses="Active, Review").to_ids is True  # a Variable's text
    assert _with_status("Whitelisted", active_statuses=["Active", "Review"]).to_ids is False
    with pytest.raises(MispConfigError, match="Whitelisted can never"):
        ShareOptions(active_statuses=["Active", "Whitelisted"])


def test_to_ids_false_still_clears_every_flag():
    assert _with_status("Active", to_ids=False).to_ids is False


def test_the_policy_is_a_share_option_operators_take():
    assert "active_statuses" in OPTION_FIELDS and "status_policy" not in OPTION_FIELDS
