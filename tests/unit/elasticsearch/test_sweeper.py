"""Pure parts of the sweeper: the expiry query, and durations refused before anything is deleted.

The duration's spellings are tested once, in tests/unit/test_coerce.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from threatq_provider.coerce import CoercionError
from threatq_provider.elasticsearch.sweeper import expired_query, sweep_history, sweep_tombstones

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class _NoCalls:
    """A client that fails the test on any use: the sweep must refuse before its first request."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the sweep used the client ({name}) despite a refused duration")


def test_expired_query_is_inclusive_and_utc():
    now = datetime(2026, 11, 25, 13, 0, tzinfo=timezone(timedelta(hours=1)))

    assert expired_query(now) == {"range": {"threatq.ioc_expired_at": {"lte": "2026-11-25T12:00:00.000Z"}}}


def test_a_naive_clock_is_utc():
    assert expired_query(datetime(2026, 11, 25, 12)) == expired_query(NOW)


@pytest.mark.parametrize("retention", ["0d", "0s", " 0h "])
def test_a_zero_history_retention_is_refused_before_any_request(retention):
    # Decided drift (#11): "0d" used to be accepted and deleted every history index, today's included.
    with pytest.raises(CoercionError, match=rf"^retention={retention!r} is not a duration greater than zero"):
        sweep_history(_NoCalls(), now=NOW, retention=retention)


@pytest.mark.parametrize("retention", ["0d", "0m"])
def test_a_zero_tombstone_retention_is_refused_before_any_request(retention):
    # Decided drift (#11): "0d" used to drop every tombstone, and with them the guard against replays.
    with pytest.raises(CoercionError, match=rf"^tombstone_retention={retention!r} is not a duration greater than zero"):
        sweep_tombstones(_NoCalls(), now=NOW, retention=retention)


@pytest.mark.parametrize("retention", ["5 d", "5D", "five days"])
def test_a_misspelt_retention_is_refused_naming_the_option(retention):
    # Decided drift (#11): a blank between number and unit ("5 d") was accepted here, refused elsewhere.
    with pytest.raises(ValueError, match=r"^retention=.* is not a duration: a whole number followed by d, h, m or s"):
        sweep_history(_NoCalls(), now=NOW, retention=retention)
