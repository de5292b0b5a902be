"""The one set of spellings for flags, whole numbers, ISO-8601 times and durations (coerce)."""

from __future__ import annotations

import ast
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pendulum
import pytest

from threatq_provider import coerce
from threatq_provider.coerce import (
    CoercionError,
    format_iso,
    is_unset,
    parse_bool,
    parse_duration,
    parse_int,
    parse_iso,
    to_utc,
)

T = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)

BOOLS = [
    (True, True), (False, False), (1, True), (0, False),
    ("true", True), ("True", True), (" TRUE ", True), ("yes", True), ("on", True), ("y", True), ("Y", True),
    ("1", True),
    ("false", False), ("FALSE", False), ("no", False), ("off", False), ("n", False), ("0", False),
    ("\n0\n", False),
]
NOT_BOOLS = ["ture", "flase", "y es", "2", "-1", "t", "f", "enabled", 2, 1.0, [], "nope"]


@pytest.mark.parametrize(("value", "expected"), BOOLS)
def test_a_flag_is_read_from_every_accepted_word(value: object, expected: bool) -> None:
    assert parse_bool(value, "dry_run") is expected


@pytest.mark.parametrize("value", NOT_BOOLS)
def test_any_other_flag_fails_naming_the_option_and_the_value(value: object) -> None:
    with pytest.raises(CoercionError) as info:
        parse_bool(value, "dry_run", default=False)
    assert str(info.value).startswith(f"dry_run={value!r} is not a boolean")
    assert (info.value.name, info.value.value) == ("dry_run", value)


@pytest.mark.parametrize("value", [None, "", "  ", "None", "none", "NONE"])
@pytest.mark.parametrize("default", [True, False])
def test_an_unset_flag_takes_the_default(value: object, default: bool) -> None:
    assert is_unset(value)
    assert parse_bool(value, "verify_tls", default=default) is default


@pytest.mark.parametrize("value", [None, "", "None"])
def test_an_unset_flag_without_a_default_is_an_error(value: object) -> None:
    with pytest.raises(CoercionError, match="is not a boolean"):
        parse_bool(value, "publish")


@pytest.mark.parametrize(("value", "expected"), [
    (7, 7), ("7", 7), (" 1000 ", 1000), ("+3", 3), ("-3", -3), (0, 0), ("00012", 12),
])
def test_a_whole_number_is_read_from_an_int_or_its_text(value: object, expected: int) -> None:
    assert parse_int(value, "chunk_size") == expected


@pytest.mark.parametrize("value", ["1k", "1.5", 1.5, "1e3", "", "one", True, None, "1_000", "٣"])
def test_anything_else_is_not_a_whole_number(value: object) -> None:
    with pytest.raises(CoercionError, match=r"^chunk_size=.* is not a whole number$"):
        parse_int(value, "chunk_size")


@pytest.mark.parametrize(("value", "minimum", "ok"),
                         [(1, 1, True), (0, 1, False), ("-1", 0, False), (5, 0, True)])
def test_a_whole_number_below_the_minimum_is_refused(value: object, minimum: int, ok: bool) -> None:
    if ok:
        assert parse_int(value, "max_in_flight", minimum=minimum) == int(value)  # type: ignore[call-overload]
    else:
        with pytest.raises(CoercionError, match=rf"is not a whole number of at least {minimum}"):
            parse_int(value, "max_in_flight", minimum=minimum)


@pytest.mark.parametrize("value", [None, "", "None"])
def test_an_unset_number_takes_the_default(value: object) -> None:
    assert parse_int(value, "limit", default=50) == 50


ISO = [
    ("2026-01-31T12:00:00Z", T),
    ("2026-01-31T12:00:00z", T),
    (" 2026-01-31T12:00:00Z\n", T),
    ("2026-01-31T12:00:00+00:00", T),
    ("2026-01-31T13:00:00+01:00", T),
    ("2026-01-31T12:00:00", T),
    ("2026-01-31 12:00:00", T),
    ("2026-01-31T12:00:00.000Z", T),
    ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
    (datetime(2026, 1, 31, 12), T),
    (datetime(2026, 1, 31, 7, tzinfo=timezone(timedelta(hours=-5))), T),
    (pendulum.datetime(2026, 1, 31, 13, tz="Europe/Paris"), T),
]


@pytest.mark.parametrize(("value", "expected"), ISO)
def test_a_date_time_becomes_an_aware_utc_datetime(value: object, expected: datetime) -> None:
    parsed = parse_iso(value, "window_start")
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0) and type(parsed) is datetime


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "31/01/2026", "", "Z", 1769860800, None,
                                   "0001-01-01T00:00:00+03:00"])
def test_anything_else_is_not_a_date_time_naming_the_field(value: object) -> None:
    with pytest.raises(CoercionError, match=r"^observed_at=.* is not (a date-time|an ISO-8601)"):
        parse_iso(value, "observed_at")


@pytest.mark.parametrize(("moment", "timespec", "text"), [
    (T, "auto", "2026-01-31T12:00:00Z"),
    (T, "milliseconds", "2026-01-31T12:00:00.000Z"),
    (T.replace(microsecond=123456), "auto", "2026-01-31T12:00:00.123456Z"),
    (T.replace(microsecond=123456), "milliseconds", "2026-01-31T12:00:00.123Z"),
    (datetime(2026, 1, 31, 12), "milliseconds", "2026-01-31T12:00:00.000Z"),  # naive: UTC, not local time
    (datetime(2026, 1, 31, 13, tzinfo=timezone(timedelta(hours=1))), "auto", "2026-01-31T12:00:00Z"),
    (pendulum.datetime(2026, 1, 31, 13, tz="Europe/Paris"), "milliseconds", "2026-01-31T12:00:00.000Z"),
])
def test_a_moment_is_written_in_utc_with_a_z(moment: datetime, timespec: str, text: str) -> None:
    assert format_iso(moment, timespec=timespec) == text
    kept = to_utc(moment).microsecond
    kept = kept // 1000 * 1000 if timespec == "milliseconds" else kept
    assert parse_iso(text, "round trip") == to_utc(moment).replace(microsecond=kept)


DURATIONS = [
    ("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
    ("90s", timedelta(seconds=90)), (" 5d ", timedelta(days=5)), ("\t7d\n", timedelta(days=7)),
    ("007d", timedelta(days=7)), (timedelta(hours=2), timedelta(hours=2)),
]
NOT_DURATIONS = ["", "5", "d", "5w", "d5", "-1d", "+5d", "1.5d", "5 d", "5D", "5dd", "5d3h", "1 day", None, 5,
                 "٥d"]


@pytest.mark.parametrize(("value", "expected"), DURATIONS)
def test_a_duration_is_a_number_and_one_unit(value: object, expected: timedelta) -> None:
    assert parse_duration(value, "retention") == expected


@pytest.mark.parametrize("value", NOT_DURATIONS)
def test_any_other_duration_fails_naming_the_option_the_value_and_the_form(value: object) -> None:
    with pytest.raises(CoercionError) as info:
        parse_duration(value, "retention", allow_zero=True)
    assert str(info.value).startswith(f"retention={value!r} is not a duration")
    assert "d, h, m or s" in str(info.value)


@pytest.mark.parametrize("value", ["0d", "0h", "0m", "0s", " 0d ", timedelta(0)])
def test_zero_is_legal_only_where_the_option_gives_it_a_meaning(value: object) -> None:
    assert parse_duration(value, "initial_lookback", allow_zero=True) == timedelta(0)
    with pytest.raises(CoercionError, match=r"^ioc_expiration_duration=.* is not a duration greater than"):
        parse_duration(value, "ioc_expiration_duration")


def test_a_negative_timedelta_is_refused_even_where_zero_is_legal() -> None:
    with pytest.raises(CoercionError, match="zero or more"):
        parse_duration(timedelta(seconds=-1), "margin", allow_zero=True)


def test_a_duration_too_large_for_a_timedelta_is_an_error_not_an_overflow() -> None:
    with pytest.raises(CoercionError, match="usable size"):
        parse_duration("99999999999d", "retention")


def test_a_long_value_is_cut_in_the_message() -> None:
    with pytest.raises(CoercionError) as info:
        parse_duration("x" * 500, "retention")
    assert len(str(info.value)) < 250 and "..." in str(info.value)


def test_the_module_imports_no_airflow() -> None:
    tree = ast.parse(Path(coerce.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    allowed = sys.stdlib_module_names | {"__future__"}
    assert not {name for name in imported if name.split(".")[0] not in allowed}


# Well-formed dates: the patterns check the shape; the calendar (month 13) is the parser's job.
PATTERN_SAMPLES = ["2026-01-31T12:00Z", "2026-01-31T12:00:00Z", "2026-01-31T12:00:00.5+01:00",
                   "2026-01-31T12:00:00-0530", "2026-01-31 12:00:00Z", "2026-01-31T12:00:00", "2026-01-31",
                   "0d", "90d", "12h", "30m", "90s", "007d", " 5d", "5 d", "5D", "-1d"]


@pytest.mark.parametrize("text", PATTERN_SAMPLES)
def test_every_text_a_param_pattern_admits_parses(text: str) -> None:
    # The DAG forms' patterns are narrower than the parsers, never wider.
    import re

    if re.fullmatch(coerce.ISO_DATETIME_PATTERN, text):
        assert parse_iso(text, "since").tzinfo is UTC
    if re.fullmatch(coerce.DURATION_PATTERN, text):
        parse_duration(text, "initial_lookback", allow_zero=True)
    if re.fullmatch(coerce.POSITIVE_DURATION_PATTERN, text):
        assert parse_duration(text, "history_retention") > timedelta(0)


def test_the_param_patterns_admit_the_canonical_spellings() -> None:
    import re

    assert re.fullmatch(coerce.ISO_DATETIME_PATTERN, "2026-01-31T12:00:00Z")
    assert re.fullmatch(coerce.DURATION_PATTERN, "0d")
    assert not re.fullmatch(coerce.POSITIVE_DURATION_PATTERN, "0d")
    assert re.fullmatch(coerce.POSITIVE_DURATION_PATTERN, "90d")
