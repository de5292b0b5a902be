"""PyMISP answers → typed MispError subclasses, never a dict, never the API key."""

from __future__ import annotations

import pytest
import requests
from pymisp.exceptions import MISPServerError, PyMISPUnexpectedResponse

from threatq_provider.misp import errors as e

KEY = "canary-api-key-000111222333"


def answer(status, body):
    return {"errors": (status, body)}


@pytest.mark.parametrize(("response", "kind"), [
    (answer(403, {"name": "Authentication failed. Please make sure…", "message": "Authentication failed.", "url": "/x"}),
     e.MispAuthError),
    (answer(404, {"name": "Invalid event.", "message": "Invalid event.", "url": "/events/view/1"}), e.MispNotFound),
    (answer(429, {"name": "Rate limit exceeded.", "message": "Rate limit exceeded.", "url": "/events/restSearch"}),
     e.MispRateLimited),
    (answer(403, {"saved": False, "name": "Could not add Attribute", "message": "Could not add Attribute",
                  "errors": {"value": ["Value not in the right type/format."]}}), e.MispRejected),
])
def test_error_dicts_become_typed_errors(response, kind):
    with pytest.raises(kind) as info:
        e.call("add event 1", lambda: response)
    assert "add event 1" in str(info.value)


def test_rejections_keep_misp_field_errors():
    with pytest.raises(e.MispRejected) as info:
        e.translate("add attribute", answer(403, {"message": "Could not add Attribute", "errors": {"value": ["bad"]}}))
    assert info.value.errors == {"value": ["bad"]} and info.value.status == 403


def test_partial_successes_are_returned_for_the_caller_to_read():
    partial = {"Attribute": [{"id": "1"}], "errors": {"attribute_1": {"value": ["bad"]}}}
    assert e.translate("add attributes", partial) is partial


def raising(exc):
    def fn():
        raise exc
    return fn


@pytest.mark.parametrize(("exc", "text"), [
    (MISPServerError(f"Error code 500:\nstack trace mentioning {KEY}"), "HTTP 5xx"),
    (PyMISPUnexpectedResponse("Unexpected response"), "not JSON"),
    (requests.exceptions.ReadTimeout("read timed out"), "timeout"),
    (requests.exceptions.ConnectionError("refused"), "unreachable"),
])
def test_library_errors_become_server_errors_without_the_key(exc, text):
    with pytest.raises(e.MispServerError) as info:
        e.call("publish event x", raising(exc), secret=KEY)
    assert text in str(info.value) and KEY not in str(info.value)
    assert info.value.__cause__ is None  # the original (which may hold a body) is not chained
