"""ThreatQ dates → ECS dates, fast.

ThreatQ writes ``YYYY-MM-DD HH:MM:SS`` in UTC without a zone; Elastic's pipeline reads that form
as UTC and writes ISO-8601 with milliseconds (``2020-11-15T00:00:02.000Z``). The common form is
checked with ``datetime.fromisoformat`` (C code) and rewritten as text; ISO-8601 with a ``T``
or a zone is accepted too (converted to UTC), which Elastic's pipeline would reject. No dateutil.

Not ``threatq_provider.coerce``, on purpose: this is the transform's hot path (a bounded cache, a
shape check before ``fromisoformat``, text rewritten without building a datetime), tuned per
indicator, and the Rust engine (native/) mirrors its output byte for byte
(tests/unit/ecs/test_native.py). ``coerce`` reads configuration values; this reads ThreatQ records.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["format_ecs_date", "parse_threatq_date", "to_ecs_date"]

_UTC = UTC
#: Converted dates by raw text; bounded, emptied when full. The repeats it catches are mostly
#: local (an indicator's attributes and sources carry its own created/updated times; adversaries
#: recur), so it is small on purpose: 1,024 entries stay in the CPU cache, and the transform ran
#: ~9% faster than with 65,536 (22.8 vs 25.1 µs per indicator, simulator corpus).
CACHE: dict[str, str | None] = {}
CACHE_MAX = 1 << 10
_MISS = object()
#: ThreatQ's own form, "YYYY-MM-DD HH:MM:SS" by shape: 19 characters with "-" at 4, " " at 10, ":" at
#: 13 and 16 and two digits at the end (one C call, ~60 ns less than the same tests in Python; a
#: non-ASCII digit there, which str.isdigit() would take, fails fromisoformat either way).
_FIXED_FORM = re.compile(r"....-..... ..:..:[0-9][0-9]", re.DOTALL).fullmatch
_fromisoformat = datetime.fromisoformat  # bound once: the miss path runs ~5 times per indicator


def parse_threatq_date(value: object) -> datetime | None:
    """Parse a ThreatQ date into an aware UTC datetime.

    :param value: ``"2020-11-15 00:00:02"`` (or ISO-8601).
    :return: the datetime, or ``None`` when the value is not a date.
    """
    if not isinstance(value, str) or not value:
        return None
    text = value
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if len(value) < 10 or value[4:5] != "-":
        # fromisoformat also takes "20201115" and week dates; ThreatQ never sends those.
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=_UTC)
    try:
        return parsed.astimezone(_UTC)
    except OverflowError:
        # "0001-01-01 00:00+03" lies before datetime.min in UTC: not a usable date, and it must
        # be flagged like any other unparsable date instead of sinking the batch.
        return None


def format_ecs_date(value: datetime) -> str:
    """Write a datetime as ECS/Elastic do: ``2020-11-15T00:00:02.000Z`` (UTC, milliseconds).

    :param value: aware datetime (naive is taken as UTC).
    :return: the ISO-8601 text.
    """
    if value.tzinfo is not None:
        value = value.astimezone(_UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def to_ecs_date(value: object) -> str | None:
    """Convert one ThreatQ date string to the ECS form, or ``None`` when it does not parse.

    :param value: the raw field value.
    :return: ISO-8601 UTC text with milliseconds, or ``None``.
    """
    if not isinstance(value, str):
        return None
    cached = CACHE.get(value, _MISS)
    if cached is not _MISS:
        return cached  # type: ignore[return-value]
    return _convert_uncached(value)


def _convert_uncached(value: str) -> str | None:
    """:func:`to_ecs_date` for a string the cache does not hold; stores the result.

    About a third of the dates of a run are seen for the first time, so this path is hot too.

    :param value: the raw date text.
    :return: ISO-8601 UTC text with milliseconds, or ``None``.
    """
    result: str | None
    if _FIXED_FORM(value):
        try:
            _fromisoformat(value)
        except ValueError:
            result = None
        else:
            # Same text as value[:10] + "T" + value[11:] (3x cheaper than slicing): the date part
            # fromisoformat accepted holds only digits, "-" and "W", so the first space is at 10.
            result = value.replace(" ", "T", 1) + ".000Z"
    else:
        parsed = parse_threatq_date(value)
        result = format_ecs_date(parsed) if parsed is not None else None
    if len(CACHE) >= CACHE_MAX:
        CACHE.clear()
    CACHE[value] = result
    return result


def add(value: datetime, delta: timedelta) -> datetime | None:
    """``value + delta``, or ``None`` past year 9999 (a huge duration must not crash a batch)."""
    try:
        return value + delta
    except OverflowError:
        return None
