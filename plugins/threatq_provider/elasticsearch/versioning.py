"""External versions of the active index: which copy of a ThreatQ indicator wins.

The active index keeps one document per indicator (``_id`` = ``threatq.id``) and writes with
``version_type=external``: Elasticsearch stores a copy only when its version is above the stored
one (else 409). The version is one signed 64-bit number built from two parts::

    version = updated_at_seconds << 31 | observed_seconds

``updated_at_seconds`` (major, 32 bits)
    ThreatQ's ``updated_at`` (the document's ``@timestamp``) in whole seconds since 1970, the
    resolution ThreatQ writes. A copy with an older ``updated_at`` never replaces a newer one,
    whatever order runs load in. An indicator without a usable ``updated_at`` gets 0, so any
    dated copy beats it (the transform marks it and stamps ``@timestamp`` with the run's time,
    which is not a ThreatQ version).
``observed_seconds`` (minor, 31 bits)
    When the poll read ThreatQ, in whole seconds since :data:`OBSERVED_EPOCH` (the worker's
    clock; 0 when unknown). It orders copies with the same ``updated_at``: two ThreatQ edits in
    the same second, or the same row transformed again with other options or a newer mapping
    (re-mapping). A later poll saw ThreatQ later, so its copy is at least as current; a replay of
    an old stage file carries its own poll's time and never replaces what a later poll loaded.

Bounds: ``updated_at`` before 2106-02-07, ``observed_at`` from 2020-01-01 to 2088-01-19; the
largest version is 2**63 - 1, the largest Elasticsearch accepts. Versions written before this
scheme were ``updated_at`` in milliseconds (below 2**42), so every new version is above every old
one (see the upgrade note under *Loader* in docs/elasticsearch.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from threatq_provider.coerce import CoercionError, DateOutOfRangeError, parse_iso, to_utc

__all__ = [
    "MAX_UPDATED_SECONDS",
    "OBSERVED_BITS",
    "OBSERVED_EPOCH",
    "UndatedVersionError",
    "external_version",
    "observed_part",
    "parse_timestamp",
    "split_version",
    "updated_part",
]

OBSERVED_BITS = 31
OBSERVED_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
_OBSERVED_MAX = (1 << OBSERVED_BITS) - 1
#: Largest ``updated_at`` that fits the 32-bit major part (2106-02-07T06:28:15Z).
MAX_UPDATED_SECONDS = (1 << 32) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Major parts below this are versions of the earlier scheme (epoch milliseconds < 2**42).
_LEGACY_BELOW = 1 << (42 - OBSERVED_BITS)


class UndatedVersionError(ValueError):
    """A timestamp that cannot be a version's major part; ``kind`` names why (a reject reason)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def parse_timestamp(text: object) -> datetime:
    """An RFC 3339 / ISO-8601 ``@timestamp`` as an aware UTC datetime (naive is taken as UTC).

    :raises UndatedVersionError: ``invalid_timestamp`` when it is not such a time.
    """
    if not isinstance(text, str) or not text:
        raise UndatedVersionError("invalid_timestamp", f"@timestamp {text!r} is not an RFC 3339 time")
    try:
        return parse_iso(text, "@timestamp")
    except DateOutOfRangeError:  # "0001-01-01T00:00+03:00" lies before datetime.min in UTC
        raise UndatedVersionError("timestamp_before_1970", f"@timestamp {text[:60]!r} is before 1970") from None
    except CoercionError:
        raise UndatedVersionError("invalid_timestamp", f"@timestamp {text[:60]!r} is not an RFC 3339 time") from None


def updated_part(updated_at: datetime, *, clock: datetime, max_skew: timedelta) -> int:
    """The major part: ``updated_at`` in whole seconds, checked against the clock.

    :param updated_at: ThreatQ's ``updated_at`` (aware, or naive UTC).
    :param clock: the loader's clock (now): every row was read from ThreatQ before it.
    :param max_skew: how far ``updated_at`` may lie after ``clock`` (ThreatQ's clock ahead of the
        worker's); a later date cannot be a real edit and would freeze the indicator for good.
    :return: seconds since 1970, at least 1.
    :raises UndatedVersionError: ``timestamp_before_1970`` (at or before 1970-01-01T00:00:00Z:
        versions must be positive, and 0 is kept for undated copies) or ``timestamp_in_future``.
    """
    updated_at = to_utc(updated_at)
    seconds = int((updated_at - _EPOCH) // timedelta(seconds=1))
    if seconds < 1:
        raise UndatedVersionError("timestamp_before_1970",
                                  f"@timestamp {updated_at.isoformat()} is not after 1970-01-01T00:00:00Z")
    limit = to_utc(clock) + max_skew
    if updated_at > limit or seconds > MAX_UPDATED_SECONDS:
        raise UndatedVersionError(
            "timestamp_in_future",
            f"@timestamp {updated_at.isoformat()} (ThreatQ updated_at) is more than {_span(max_skew)} after "
            f"{to_utc(clock).isoformat()} (the load's clock); as a version it would hide every later edit",
        )
    return seconds


def _span(delta: timedelta) -> str:
    """``1d``, ``36h``, ``90s``: a skew as people write it."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def observed_part(observed_at: datetime | None) -> int:
    """The minor part: seconds from :data:`OBSERVED_EPOCH` to ``observed_at`` (0 when unknown).

    :raises ValueError: ``observed_at`` before 2020-01-01 or after 2088-01-19 (a wrong clock).
    """
    if observed_at is None:
        return 0
    seconds = int((to_utc(observed_at) - OBSERVED_EPOCH) // timedelta(seconds=1))
    if not 0 <= seconds <= _OBSERVED_MAX:
        raise ValueError(f"observed_at {observed_at.isoformat()} is outside 2020-01-01 .. 2088-01-19; "
                         "check the worker's clock")
    return seconds


def external_version(updated_seconds: int, observed_seconds: int) -> int:
    """Join the two parts (``updated_seconds`` 0 for an undated copy)."""
    return updated_seconds << OBSERVED_BITS | observed_seconds


def split_version(version: int) -> tuple[datetime | None, datetime | None]:
    """``(updated_at, observed_at)`` of a version (``None`` for an undated or unknown part).

    A version of the earlier scheme (``updated_at`` in milliseconds: from 2**31 to 2**42, which
    in this scheme would be an ``updated_at`` in the first 35 minutes of 1970) reads as
    ``(updated_at, None)``.
    """
    updated, observed = version >> OBSERVED_BITS, version & _OBSERVED_MAX
    if 0 < updated < _LEGACY_BELOW:
        return _EPOCH + timedelta(milliseconds=version), None
    return (
        _EPOCH + timedelta(seconds=updated) if updated else None,
        OBSERVED_EPOCH + timedelta(seconds=observed) if observed else None,
    )
