"""Time helpers shared by the ThreatQ simulator modules.

ThreatQ writes datetimes as ``YYYY-MM-DD HH:MM:SS`` in UTC with no zone; the simulator keeps
them internally as integer epoch seconds, which are cheap to store per indicator and to compare.

Not ``threatq_provider.coerce``, on purpose: the simulators are a separate distribution that never
imports the provider, so that one date bug cannot hide on both sides of a test.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timezone
from functools import lru_cache

__all__ = ["fmt", "to_epoch", "to_datetime", "TimeParseError"]


class TimeParseError(ValueError):
    """A value could not be read as a date or datetime."""


def fmt(epoch: int | None) -> str | None:
    """Format epoch seconds the way ThreatQ does (``YYYY-MM-DD HH:MM:SS``, UTC).

    :param epoch: seconds since 1970-01-01 UTC, or None.
    :return: the formatted string, or None when ``epoch`` is None.
    """
    if epoch is None:
        return None
    # hot path (a dozen dates per generated indicator): format the day once, the time by arithmetic
    day, rest = divmod(int(epoch), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{_day(day)} {hours:02d}:{minutes:02d}:{seconds:02d}"


@lru_cache(maxsize=4096)
def _day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86400))


def to_epoch(value: object) -> int:
    """Read a datetime-ish value as epoch seconds (UTC).

    Accepts aware or naive (taken as UTC) ``datetime``, ``date``, int/float epochs and strings in
    ThreatQ form (``2026-01-01 00:00:00``, optional milliseconds), ISO 8601 (``T``, ``Z``,
    offsets) or a bare date.

    :param value: the value to read.
    :return: whole epoch seconds.
    :raises TimeParseError: when the value is not a recognisable datetime.
    """
    if isinstance(value, bool):
        raise TimeParseError(f"not a datetime: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(dt.timestamp())
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp())
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z") or text.endswith("z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError as exc:
            raise TimeParseError(f"not a datetime: {value!r}") from exc
        return to_epoch(dt)
    raise TimeParseError(f"not a datetime: {value!r}")


def to_datetime(value: object) -> datetime:
    """Read a datetime-ish value (see :func:`to_epoch`) as an aware UTC ``datetime``."""
    return datetime.fromtimestamp(to_epoch(value), tz=timezone.utc)
