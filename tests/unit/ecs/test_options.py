"""EcsOptions and parse_duration: a bad duration is refused when configured, never replaced by 90 days."""

from __future__ import annotations

from datetime import timedelta

import pytest
from threatq_provider.ecs.errors import EcsConfigError
from threatq_provider.ecs.options import EcsOptions, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90d", timedelta(days=90)), ("5d", timedelta(days=5)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30))],
)
def test_parse_duration_accepts_days_hours_minutes(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["90", "90x", "d", "0d", "-5d", "+5d", " 5d", "5 d", "5D", "1.5d", "", "5s", "5dd"])
def test_parse_duration_rejects_anything_else_naming_value_and_form(text: str) -> None:
    with pytest.raises(EcsConfigError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)
    assert "d, h or m" in str(info.value)


def test_options_reject_bad_duration_at_construction() -> None:
    with pytest.raises(EcsConfigError, match="'90x'"):
        EcsOptions(ioc_expiration_duration="90x")


def test_options_defaults_match_elastic() -> None:
    options = EcsOptions()
    assert options.ioc_expiration_duration == "90d"
    assert options.expiration == timedelta(days=90)
    assert options.preserve_original_event is False
    assert options.threatq_url is None


def test_options_are_frozen_and_strip_trailing_slash_of_url() -> None:
    options = EcsOptions(threatq_url="https://tq.example.com/")
    assert options.threatq_url == "https://tq.example.com"
    with pytest.raises(AttributeError):
        options.ioc_expiration_duration = "1d"  # type: ignore[misc]


def test_options_reject_non_http_threatq_url() -> None:
    with pytest.raises(EcsConfigError, match="threatq_url"):
        EcsOptions(threatq_url="tq.example.com")
