"""Pure parts of the sweeper: durations and the expiry query."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from threatq_provider.elasticsearch.sweeper import expired_query, parse_duration


@pytest.mark.parametrize(("text", "delta"), [("5d", timedelta(days=5)), ("12h", timedelta(hours=12)),
                                             ("30m", timedelta(minutes=30)), (" 90s ", timedelta(seconds=90))])
def test_parse_duration(text, delta):
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["", "5", "5w", "d5", "-1d", "1.5d"])
def test_parse_duration_rejects_other_forms(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_expired_query_is_inclusive_and_utc():
    now = datetime(2026, 11, 25, 13, 0, tzinfo=timezone(timedelta(hours=1)))

    assert expired_query(now) == {"range": {"threatq.ioc_expired_at": {"lte": "2026-11-25T12:00:00.000Z"}}}
