"""EcsOptions: a bad duration is refused when configured, never replaced by 90 days.

The duration's spellings are tested once, in tests/unit/test_coerce.py; here, what EcsOptions does with them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from threatq_provider.ecs.errors import EcsConfigError
from threatq_provider.ecs.options import EcsOptions


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90d", timedelta(days=90)), ("5d", timedelta(days=5)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30))],
)
def test_ioc_expiration_accepts_days_hours_minutes(text: str, expected: timedelta) -> None:
    assert EcsOptions(ioc_expiration_duration=text).expiration == expected


@pytest.mark.parametrize("text", ["90", "90x", "d", "0d", "0m", "-5d", "+5d", "5 d", "5D", "1.5d", "", "5dd"])
def test_ioc_expiration_rejects_anything_else_naming_option_value_and_form(text: str) -> None:
    with pytest.raises(EcsConfigError) as info:
        EcsOptions(ioc_expiration_duration=text)
    assert f"ioc_expiration_duration={text!r}" in str(info.value)
    assert "d, h, m or s" in str(info.value)


@pytest.mark.parametrize(("text", "expected"), [(" 5d ", timedelta(days=5)), ("90s", timedelta(seconds=90))])
def test_ioc_expiration_takes_the_providers_one_duration_form(text: str, expected: timedelta) -> None:
    # Decided drift (#11): surrounding blanks and seconds were refused here, accepted by the sweeps.
    assert EcsOptions(ioc_expiration_duration=text).expiration == expected


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
