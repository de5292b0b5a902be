"""threatq/_fields.int_id: path ids are whole numbers of at least 1, read by coerce.parse_int."""

from __future__ import annotations

import pytest

from threatq_provider.threatq._fields import int_id
from threatq_provider.threatq.errors import ThreatQValidationError


@pytest.mark.parametrize(("value", "ident"), [(12, 12), ("12", 12), (" 7 ", 7)])
def test_an_id_is_a_positive_whole_number(value, ident):
    assert int_id("event_id", value) == ident


@pytest.mark.parametrize("value", [0, -3, "x", None, "1.5", 1.5,
                                   True, 12.0])  # decided drift (#11): True read as 1, 12.0 as 12 before
def test_anything_else_names_the_field(value):
    with pytest.raises(ThreatQValidationError, match="event_id") as info:
        int_id("event_id", value)
    assert info.value.reason == "a positive integer id is required"
