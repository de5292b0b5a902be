"""Turning configuration values into typed values: flags, whole numbers, ISO-8601 times, durations.

The one place the provider reads these, so that an option spelt one way in a connection extra,
an operator argument, a DAG Param, a Variable or a share option means the same everywhere.
Values arrive as Python objects or as rendered Jinja text (``"true"``, ``"1000"``, ``"None"``).

Every parser raises :class:`CoercionError` (a ``ValueError``) whose message names the option or
field and the bad value, and says what is expected. Callers turn it into their own error type
(``AirflowFailException``, ``ConnectionConfigError``, ``EcsConfigError``, ``MispConfigError``...).
The value is shown (cut to 80 characters): these are settings, not credentials. Where a secret
could sit in the wrong field (connection extras, ``_conn_extras``), the caller words its own
message and leaves the value out.

Imports no Airflow: ``ecs/``, ``threatq/``, ``elasticsearch/`` and ``misp/`` use it.

Two date helpers stay elsewhere on purpose: ``ecs/dates.py`` (the transform's hot path, mirrored
byte for byte by the Rust engine) and the simulators' ``timefmt`` (a separate distribution).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "DURATION_FORM",
    "DURATION_PATTERN",
    "ISO_DATETIME_PATTERN",
    "POSITIVE_DURATION_PATTERN",
    "FALSE_WORDS",
    "TRUE_WORDS",
    "UNSET_WORDS",
    "CoercionError",
    "DateOutOfRangeError",
    "format_iso",
    "format_iso_millis",
    "is_unset",
    "parse_bool",
    "parse_duration",
    "parse_int",
    "parse_iso",
    "to_utc",
]

#: The words a flag may be spelt with (any case, surrounding blanks ignored).
TRUE_WORDS = frozenset({"true", "yes", "on", "y", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "n", "0"})
#: What an unset value renders to: nothing, blanks, or a template that printed Python's ``None``
#: (any case). An unset value takes the caller's default.
UNSET_WORDS = frozenset({"", "none"})

DURATION_FORM = "a whole number followed by d, h, m or s (days, hours, minutes, seconds), e.g. 90d, 12h, 30m"
_DURATION = re.compile(r"([0-9]+)([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_NO_DEFAULT: Any = object()

#: JSON-schema patterns for DAG Params (the trigger form checks them). Narrower than the parsers
#: on purpose: a form asks for the one canonical spelling (a zone on every time; days, hours or
#: minutes), and every text a pattern admits parses here (tests/unit/test_coerce.py).
#: ``format: date-time`` gives the form its date picker; the pattern checks the value even where
#: jsonschema's optional date-time checker (rfc3339-validator) is not installed.
ISO_DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$"
#: A duration that may be zero (a look-back), and one that may not (a lifetime, a retention).
DURATION_PATTERN = "^[0-9]+[dhm]$"
POSITIVE_DURATION_PATTERN = "^[1-9][0-9]*[dhm]$"


class CoercionError(ValueError):
    """A value that is not of the expected kind.

    :ivar name: the option or field, as the user wrote it (``dry_run``, ``verify_tls``...).
    :ivar value: the value given.
    :ivar expected: what it should have been (the message's end, for callers that word their own).
    """

    def __init__(self, name: str, value: Any, expected: str) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        super().__init__(f"{name}={shown} is not {expected}")
        self.name = name
        self.value = value
        self.expected = expected


class DateOutOfRangeError(CoercionError):
    """A well-formed date-time that lies outside the years 1-9999 once in UTC."""


def is_unset(value: Any) -> bool:
    """Whether a value means "not given": ``None``, blank text, or the text ``None`` (any case)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in UNSET_WORDS)


def parse_bool(value: Any, name: str, *, default: bool = _NO_DEFAULT) -> bool:
    """A flag from a bool or text: ``true/false``, ``yes/no``, ``on/off``, ``y/n``, ``1/0`` (any case).

    A misspelt word is an error, never "false": ``dry_run="ture"`` must not delete for real.

    :param value: the raw value; a bool is taken as is, the ints 0 and 1 as their flag.
    :param name: the option's name, for the error message.
    :param default: the result for an unset value (:func:`is_unset`); without one, unset is an error.
    :return: the flag.
    :raises CoercionError: any other value.
    """
    if isinstance(value, bool):
        return value
    if is_unset(value) and default is not _NO_DEFAULT:
        return default
    word = str(value).strip().lower() if isinstance(value, str | int) else None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise CoercionError(name, value, "a boolean; use true/false (also yes/no, on/off, y/n, 1/0)")


def parse_int(value: Any, name: str, *, minimum: int | None = None, default: int = _NO_DEFAULT) -> int:
    """A whole number from an int or its decimal text (surrounding blanks ignored).

    :param value: the raw value (``"1000"``, ``1000``); a bool or a fraction is refused.
    :param name: the option's name, for the error message.
    :param minimum: the smallest value allowed, if any.
    :param default: the result for an unset value; without one, unset is an error.
    :return: the number.
    :raises CoercionError: not a whole number, or below ``minimum``.
    """
    if is_unset(value) and default is not _NO_DEFAULT:
        return default
    expected = "a whole number" if minimum is None else f"a whole number of at least {minimum}"
    if isinstance(value, bool):
        raise CoercionError(name, value, expected)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        number = int(value.strip())
    else:
        raise CoercionError(name, value, expected)
    if minimum is not None and number < minimum:
        raise CoercionError(name, value, expected)
    return number


def to_utc(moment: datetime) -> datetime:
    """An aware UTC datetime: an aware one converted, a naive one taken as UTC.

    The result is a plain ``datetime`` even for a subclass (pendulum's ``DateTime`` keeps its own
    zone object through arithmetic, and its ``isoformat`` differs).

    :raises OverflowError: the moment lies outside the years 1-9999 once in UTC.
    """
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if type(moment) is not datetime:
        moment = datetime(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
                          moment.microsecond, tzinfo=UTC)
    return moment


def parse_iso(value: Any, name: str) -> datetime:
    """An ISO-8601 / RFC 3339 date-time as an aware UTC datetime.

    Accepts a ``datetime`` (naive is taken as UTC) or text such as ``2026-01-31T12:00:00Z``,
    ``2026-01-31 12:00:00``, ``2026-01-31T13:00:00+01:00`` (``Z`` or ``z``; surrounding blanks
    ignored; a text without a zone is UTC) and a bare date ``2026-01-31`` (midnight UTC).

    :param value: the raw value.
    :param name: the option or field, for the error message.
    :return: the moment in UTC.
    :raises CoercionError: anything else; :class:`DateOutOfRangeError` for a moment outside the
        years 1-9999 in UTC.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise CoercionError(name, value, "an ISO-8601 date-time, e.g. 2026-01-31T12:00:00Z") from None
    else:
        raise CoercionError(name, value, "an ISO-8601 date-time, e.g. 2026-01-31T12:00:00Z")
    try:
        return to_utc(parsed)
    except OverflowError:  # "0001-01-01T00:00+03:00" lies before datetime.min in UTC
        raise DateOutOfRangeError(name, value, "a date-time between the years 1 and 9999 in UTC") from None


def format_iso(moment: datetime, *, timespec: str = "auto") -> str:
    """The ISO-8601 text the provider writes: UTC with a ``Z`` (naive is taken as UTC).

    :param moment: the moment.
    :param timespec: ``"milliseconds"`` for what Elasticsearch documents and queries carry
        (``2026-01-31T12:00:00.000Z``); ``"auto"`` (seconds, or microseconds when there are any)
        for watermarks and XCom.
    :return: the text.
    """
    return to_utc(moment).isoformat(timespec=timespec).replace("+00:00", "Z")


def format_iso_millis(moment: datetime) -> str:
    """:func:`format_iso` with milliseconds, as Elasticsearch documents and queries carry them."""
    return format_iso(moment, timespec="milliseconds")


def parse_duration(value: Any, name: str, *, allow_zero: bool = False) -> timedelta:
    """A duration written ``<n>d``, ``<n>h``, ``<n>m`` or ``<n>s`` (lower case, surrounding blanks
    ignored, no blank between number and unit), or a ``timedelta``.

    Zero is refused unless the option gives it a meaning (``allow_zero``, e.g. a look-back of
    ``0d`` reads only the run's own interval, a margin of ``0m`` adds none).

    :param value: the raw value.
    :param name: the option's name, for the error message.
    :param allow_zero: whether a zero duration is legal for this option.
    :return: the duration.
    :raises CoercionError: any other form, a negative or refused zero duration, or one too large.
    """
    if isinstance(value, timedelta):
        duration = value
    else:
        match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise CoercionError(name, value, f"a duration: {DURATION_FORM}")
        try:
            duration = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:
            raise CoercionError(name, value, f"a duration of a usable size: {DURATION_FORM}") from None
    if duration < timedelta(0) or (duration == timedelta(0) and not allow_zero):
        least = "zero or more" if allow_zero else "greater than zero"
        raise CoercionError(name, value, f"a duration {least}: {DURATION_FORM}")
    return duration
