"""Shared operator plumbing: flags from rendered templates."""

from __future__ import annotations

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from threatq_provider.operators._common import as_bool


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True), (False, False), (None, False),
        ("true", True), ("True", True), (" yes ", True), ("1", True), ("on", True),
        ("false", False), ("FALSE", False), ("no", False), ("0", False), ("off", False), ("", False), ("None", False),
    ],
)
def test_flags_read_the_usual_words(value: object, expected: bool) -> None:
    assert as_bool(value, "dry_run") is expected


@pytest.mark.parametrize("value", ["ture", "flase", "y es", "2"])
def test_a_misspelt_flag_fails_naming_the_argument_instead_of_meaning_false(value: str) -> None:
    with pytest.raises(AirflowFailException, match=rf"dry_run={value!r} is not a boolean"):
        as_bool(value, "dry_run")
