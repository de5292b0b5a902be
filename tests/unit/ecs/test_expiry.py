"""Elastic's four IOC expiry rules, one test each, plus the boundaries the sweep relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from threatq_provider.ecs.expiry import (
    REASON_DURATION,
    REASON_EXPIRED_AT,
    REASON_EXPIRES_AT,
    REASON_STATUS,
    ioc_expiration,
)
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import indicator_to_ecs

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
D90 = timedelta(days=90)


def _raw(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"id": 1, "value": "1.2.3.4", "type": {"name": "IP Address"},
                               "status": {"id": 1, "name": "Active"}, "updated_at": "2026-01-10 08:00:00"}
    base.update(fields)
    return base


def test_rule1_expired_at_wins_over_everything() -> None:
    raw = _raw(expired_at="2026-02-01 00:00:00", expires_at="2026-03-01 00:00:00", status={"name": "Expired"})
    assert ioc_expiration(raw, now=NOW, duration=D90) == (datetime(2026, 2, 1, tzinfo=UTC), REASON_EXPIRED_AT)


def test_rule2_expires_at_when_no_expired_at() -> None:
    raw = _raw(expires_at="2026-03-01 00:00:00", status={"name": "Expired"})
    assert ioc_expiration(raw, now=NOW, duration=D90) == (datetime(2026, 3, 1, tzinfo=UTC), REASON_EXPIRES_AT)


def test_rule3_status_expired_reads_status_name_not_the_object() -> None:
    # Elastic >=1.32 compares the status *object* to 'Expired', so this rule never fires there and
    # the indicator would live 90 more days; we read status.name.
    raw = _raw(status={"id": 2, "name": "Expired", "description": "No longer poses a serious threat."})
    assert ioc_expiration(raw, now=NOW, duration=D90) == (datetime(2026, 1, 10, 8, tzinfo=UTC), REASON_STATUS)


def test_rule3_accepts_the_old_string_status() -> None:
    assert ioc_expiration(_raw(status="Expired"), now=NOW, duration=D90)[1] == REASON_STATUS


def test_rule4_default_duration_counts_from_updated_at_not_now() -> None:
    expiry, reason = ioc_expiration(_raw(), now=NOW, duration=timedelta(days=5))
    assert (expiry, reason) == (datetime(2026, 1, 15, 8, tzinfo=UTC), REASON_DURATION)
    assert expiry is not None and expiry < NOW  # already expired: the sweep removes it


def test_rule4_hours_and_minutes() -> None:
    assert ioc_expiration(_raw(), now=NOW, duration=timedelta(hours=12))[0] == datetime(2026, 1, 10, 20, tzinfo=UTC)
    assert ioc_expiration(_raw(), now=NOW, duration=timedelta(minutes=30))[0] == datetime(2026, 1, 10, 8, 30, tzinfo=UTC)


def test_unparsable_expired_at_falls_through_to_next_rule() -> None:
    raw = _raw(expired_at="not a date", expires_at="2026-03-01 00:00:00")
    assert ioc_expiration(raw, now=NOW, duration=D90)[1] == REASON_EXPIRES_AT


def test_missing_updated_at_counts_from_now() -> None:
    raw = _raw()
    del raw["updated_at"]
    assert ioc_expiration(raw, now=NOW, duration=D90) == (NOW + D90, REASON_DURATION)


def test_boundary_expiry_equal_to_now() -> None:
    # updated_at + duration == now: the sweep deletes docs with ioc_expired_at <= now.
    raw = _raw(updated_at="2026-11-24 12:00:00")
    assert ioc_expiration(raw, now=NOW, duration=timedelta(days=1))[0] == NOW


def test_overflowing_duration_gives_no_expiry_instead_of_crashing() -> None:
    assert ioc_expiration(_raw(), now=NOW, duration=timedelta(days=3_000_000)) == (None, None)


def test_transform_writes_expiry_in_ecs_date_form() -> None:
    doc = indicator_to_ecs(_raw(), now=NOW, options=EcsOptions(ioc_expiration_duration="5d"))
    assert doc["threatq"]["ioc_expired_at"] == "2026-01-15T08:00:00.000Z"
    assert doc["threatq"]["ioc_expiration_reason"] == REASON_DURATION
