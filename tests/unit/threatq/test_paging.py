"""to_threatq_time: any ISO-8601 time or datetime becomes ThreatQ's own UTC form, anything else names the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from threatq_provider.threatq.errors import ThreatQValidationError
from threatq_provider.threatq.paging import to_threatq_time


@pytest.mark.parametrize("value", [
    "2026-01-31T12:00:00Z", "2026-01-31T13:00:00+01:00", "2026-01-31 12:00:00", " 2026-01-31T12:00:00Z ",
    datetime(2026, 1, 31, 12), datetime(2026, 1, 31, 7, tzinfo=timezone(timedelta(hours=-5))),
    "2026-01-31T12:00:00z",  # decided drift (#11): a lower-case z is RFC 3339 too, as everywhere else now
])
def test_a_time_becomes_threatqs_utc_form(value):
    assert to_threatq_time(value, "updated_since") == "2026-01-31 12:00:00"


@pytest.mark.parametrize("value", ["yesterday", "", 1769860800, None,
                                   "0001-01-01T00:00:00+03:00"])  # decided drift (#11): was an OverflowError
def test_anything_else_names_the_field(value):
    with pytest.raises(ThreatQValidationError) as info:
        to_threatq_time(value, "updated_since")
    assert info.value.field == "updated_since"


def test_the_result_is_utc_whatever_the_zone():
    assert to_threatq_time(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01 00:00:00"
