"""Error messages are typed and never carry credentials."""

from __future__ import annotations

from threatq_provider.threatq.errors import (
    ThreatQAPIError,
    ThreatQAuthError,
    ThreatQError,
    ThreatQValidationError,
    mask_body,
)


def test_mask_body_removes_known_secrets_and_token_fields():
    text = ('{"access_token":"abc","refresh_token":"def","client_secret":"ghi","ok":"fine"} '
            "Authorization: Bearer xyz password=hunter2 known-secret")
    out = mask_body(text, ["known-secret"])
    for secret in ("abc", "def", "ghi", "xyz", "hunter2", "known-secret"):
        assert secret not in out
    assert '"ok":"fine"' in out


def test_mask_body_hides_token_shaped_strings_and_cuts():
    out = mask_body("token AoJ9z5LKnvwCJjEwNjk2NwAoJ9z5LKnvwCJjEwNjk2Nw== end " + "x " * 500)
    assert "AoJ9z5LKnvwCJjEwNjk2Nw" not in out
    assert len(out) <= 201


def test_api_error_message_names_method_path_status():
    err = ThreatQAuthError(401, "GET", "/api/events/3", "nope", detail="unauthorised after re-authentication")
    assert isinstance(err, ThreatQAPIError) and isinstance(err, ThreatQError)
    assert str(err) == "ThreatQ GET /api/events/3 returned HTTP 401 (unauthorised after re-authentication): nope"


def test_validation_error_is_a_value_error_listing_values():
    err = ThreatQValidationError("indicator status", "Bogus", ["Active", "Review"])
    assert isinstance(err, ValueError)
    assert str(err) == "invalid indicator status 'Bogus': valid values: Active, Review"
