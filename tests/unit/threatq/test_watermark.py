"""The watermark arithmetic: which window a run reads, and where the watermark may move after it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from threatq_provider.threatq.watermark import (
    KIND_BACKFILL,
    KIND_CATCH_UP,
    KIND_INITIAL,
    KIND_INTERVAL,
    KIND_OVERRIDE,
    WatermarkValueError,
    filters_digest,
    next_watermark,
    parse_lookback,
    parse_watermark_value,
    plan_window,
    watermark_key,
    watermark_value,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=10)


def test_no_watermark_reads_the_initial_lookback_and_may_create_it():
    window = plan_window(T0, T0 + STEP, watermark=None)
    assert (window.start, window.end, window.kind) == (T0 + STEP - timedelta(days=90), T0 + STEP, KIND_INITIAL)
    assert window.may_create and window.gap is None
    # A look-back shorter than the interval (0d) reads the interval itself.
    short = plan_window(T0, T0 + STEP, watermark=None, initial_lookback=timedelta(0))
    assert (short.start, short.end) == (T0, T0 + STEP)


def test_a_watermark_before_the_interval_widens_the_window_and_names_the_gap():
    window = plan_window(T0 + 7 * STEP, T0 + 8 * STEP, watermark=T0 + STEP)
    assert (window.start, window.end, window.kind) == (T0 + STEP, T0 + 8 * STEP, KIND_CATCH_UP)
    assert window.gap == (T0 + STEP, T0 + 7 * STEP)
    assert window.gap_intervals() == 6
    assert not window.may_create


def test_a_watermark_at_or_after_the_interval_start_reads_the_interval():
    for mark in (T0, T0 + STEP / 2, T0 + 5 * STEP):
        window = plan_window(T0, T0 + STEP, watermark=mark)
        assert (window.start, window.end, window.kind, window.gap) == (T0, T0 + STEP, KIND_INTERVAL, None)


def test_backfills_and_windows_given_by_hand_read_their_own_window_whatever_the_watermark():
    old = (T0 - timedelta(days=30), T0 - timedelta(days=29))
    backfill = plan_window(*old, watermark=T0, backfill=True)
    assert (backfill.start, backfill.end, backfill.kind, backfill.may_create) == (*old, KIND_BACKFILL, False)
    backfill_first = plan_window(*old, watermark=None, backfill=True)
    assert (backfill_first.start, backfill_first.may_create) == (old[0], False)
    manual = plan_window(*old, watermark=None, use_watermark=False)
    assert (manual.start, manual.end, manual.kind, manual.may_create) == (*old, KIND_OVERRIDE, False)


def test_the_watermark_moves_forward_only_over_a_range_read_without_a_hole():
    polled = T0 + timedelta(hours=1)
    # joins it: moves to the window's end
    assert next_watermark(T0, start=T0 - STEP, end=T0 + STEP, polled_at=polled, may_create=False) == T0 + STEP
    assert next_watermark(T0, start=T0, end=T0 + STEP, polled_at=polled, may_create=False) == T0 + STEP
    # leaves a hole before it (a backfill of later intervals): unchanged, the next run reads the hole
    assert next_watermark(T0, start=T0 + STEP, end=T0 + 2 * STEP, polled_at=polled, may_create=False) is None
    # an older window (a backfill of the past) never moves it back
    assert next_watermark(T0, start=T0 - 3 * STEP, end=T0 - STEP, polled_at=polled, may_create=False) is None
    # nothing updated after the poll was read: the poll's time caps it (full resync, until=9999)
    far = datetime(9999, 12, 31, tzinfo=UTC)
    assert next_watermark(T0, start=datetime(1970, 1, 1, tzinfo=UTC), end=far, polled_at=polled,
                          may_create=True) == polled


def test_only_a_run_that_read_the_lookback_creates_the_watermark():
    polled = T0 + timedelta(hours=1)
    assert next_watermark(None, start=T0 - timedelta(days=90), end=T0, polled_at=polled, may_create=True) == T0
    assert next_watermark(None, start=T0 - STEP, end=T0, polled_at=polled, may_create=False) is None


def test_each_filter_set_has_its_own_key_and_empty_filters_are_no_filter():
    plain = watermark_key("dag", "threatq.example.com", "window")
    assert plain == "threatq_watermark__dag__threatq.example.com__window"
    assert watermark_key("dag", "threatq.example.com", "window", {"types": None, "tags": []}) == plain
    ips = watermark_key("dag", "threatq.example.com", "window", {"types": ["IP Address", "FQDN"]})
    assert ips.startswith(plain + "__") and ips != plain
    # order of values does not matter; different values do
    assert filters_digest({"types": ["FQDN", "IP Address"]}) == filters_digest({"types": ["IP Address", "FQDN"]})
    assert filters_digest({"types": ["FQDN"]}) != filters_digest({"types": ["IP Address"]})


def test_the_variable_text_round_trips_and_a_hand_set_time_is_accepted():
    text = watermark_value(T0, run_id="scheduled__x", highest_updated_at="2026-11-01 11:59:59")
    body = json.loads(text)
    assert body["watermark"] == "2026-11-01T12:00:00Z" and body["run_id"] == "scheduled__x"
    assert parse_watermark_value(text) == T0
    assert parse_watermark_value("2026-11-01T12:00:00Z") == T0
    assert parse_watermark_value("2026-11-01T13:00:00+01:00") == T0
    assert parse_watermark_value(None) is None and parse_watermark_value("  ") is None


@pytest.mark.parametrize("text", ["yesterday", '{"mark": "2026-01-01T00:00:00Z"}', '{"watermark": 5}', "{not json"])
def test_an_unreadable_variable_is_an_error_naming_it(text):
    with pytest.raises(WatermarkValueError, match="threatq_watermark__x"):
        parse_watermark_value(text, key="threatq_watermark__x")


def test_lookback_forms():
    assert parse_lookback("90d") == timedelta(days=90)
    assert parse_lookback("12h") == timedelta(hours=12)
    assert parse_lookback("0d") == timedelta(0)
    for bad in ("90", "ninety days", "-1d", "1w", ""):
        with pytest.raises(WatermarkValueError, match="initial_lookback"):
            parse_lookback(bad)


def test_lookback_takes_the_providers_one_duration_form():
    # Decided drift (#11): seconds are a unit here too; a blank inside ("5 d") is refused, as everywhere.
    assert parse_lookback(" 90s ") == timedelta(seconds=90)
    with pytest.raises(WatermarkValueError, match=r"^initial_lookback='5 d' is not a duration"):
        parse_lookback("5 d")


def test_a_hand_set_watermark_with_a_lower_case_z_or_no_zone_is_utc():
    assert parse_watermark_value("2026-11-01T12:00:00z") == T0
    assert parse_watermark_value('{"watermark": "2026-11-01 12:00:00"}') == T0
