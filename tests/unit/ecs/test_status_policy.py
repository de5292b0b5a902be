"""The status policy in the ECS transform (issue 12): an indicator whose ThreatQ status is not
active for detection (default: only Active; Whitelisted never) ends at its ``updated_at`` with
its own reason, so the loader keeps it out of the active index; both engines agree."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime

import pytest

from threatq_provider.ecs import native
from threatq_provider.ecs.errors import EcsConfigError
from threatq_provider.ecs.expiry import REASON_DURATION, REASON_EXPIRED_AT, REASON_STATUS, REASON_STATUS_POLICY
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import indicator_to_ecs, transform_stream
from threatq_provider.threatq.status_policy import StatusPolicy

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
UPDATED = "2026-11-20 10:00:00"
UPDATED_ECS = "2026-11-20T10:00:00.000Z"


def _raw(status: object = None, **extra: object) -> dict:
    raw = {"id": 7, "value": "192.0.2.7", "type": {"name": "IP Address"}, "updated_at": UPDATED, **extra}
    if status is not None:
        raw["status"] = {"id": 1, "name": status} if isinstance(status, str) else status
    return raw


def _expiry(raw: dict, **options: object) -> tuple[str, str]:
    tq = indicator_to_ecs(raw, now=NOW, options=EcsOptions(**options))["threatq"]
    return tq["ioc_expired_at"], tq["ioc_expiration_reason"]


@pytest.mark.parametrize("status", ["Review", "Indirect", "Whitelisted", "Some Custom Status"])
def test_a_status_outside_the_default_policy_ends_the_ioc_at_its_last_update(status):
    assert _expiry(_raw(status)) == (UPDATED_ECS, REASON_STATUS_POLICY)


@pytest.mark.parametrize("status", ["Active", "active", None])
def test_active_or_missing_status_keeps_elastics_rules(status):
    assert _expiry(_raw(status))[1] == REASON_DURATION


def test_elastics_earlier_end_wins_so_expired_indicators_keep_elastics_reason():
    assert _expiry(_raw("Expired")) == (UPDATED_ECS, REASON_STATUS)
    assert _expiry(_raw("Review", expired_at="2026-11-01 00:00:00")) == ("2026-11-01T00:00:00.000Z", REASON_EXPIRED_AT)
    # a future ThreatQ expiry does not keep a Review indicator active
    assert _expiry(_raw("Review", expires_at="2027-01-01 00:00:00")) == (UPDATED_ECS, REASON_STATUS_POLICY)


def test_a_wider_policy_keeps_review_active_and_whitelisted_is_refused():
    assert _expiry(_raw("Review"), active_statuses=("Active", "Review"))[1] == REASON_DURATION
    assert _expiry(_raw("Whitelisted"), active_statuses=("Active", "Review"))[1] == REASON_STATUS_POLICY
    with pytest.raises(EcsConfigError, match="Whitelisted can never"):
        EcsOptions(active_statuses=("Active", "whitelisted"))
    with pytest.raises(EcsConfigError, match="non-empty status names"):
        EcsOptions(active_statuses=("Active", ""))


def test_the_default_policy_is_the_tables_active_only():
    assert StatusPolicy.default().active == ("Active",)
    assert EcsOptions().active_statuses == ("Active",)


@pytest.mark.parametrize("options", [EcsOptions(), EcsOptions(active_statuses=("Active", "Review", "Indirect"))],
                         ids=["default", "wider"])
def test_both_engines_write_the_same_bytes_under_the_policy(options):
    if not native.available():  # as test_native.py: a failure where the native engine is required
        if os.environ.get(native.REQUIRE_ENV) == "1":
            pytest.fail(f"threatq_ecs_native is not installed and {native.REQUIRE_ENV}=1")
        pytest.skip(f"threatq_ecs_native not installed and {native.REQUIRE_ENV} is not 1 (pure-Python install)")
    lines = [json.dumps(_raw(s)) for s in ("Active", "Review", "Indirect", "Whitelisted", "Expired", "REVIEW", "")]
    lines.append(json.dumps(_raw("Révision")))  # non-ASCII: the native side hands it to Python
    outputs = {}
    for engine in ("python", "native"):
        out, rejects = io.StringIO(), io.StringIO()
        transform_stream(lines, out, rejects, now=NOW, options=options, engine=engine)
        outputs[engine] = out.getvalue()
    assert outputs["python"] == outputs["native"]
