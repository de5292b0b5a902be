"""Shared operator plumbing: flags from rendered templates; failing fast on errors no retry can heal."""

from __future__ import annotations

import ssl

import elasticsearch
import opensearchpy
import pytest
import requests
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from threatq_provider.elasticsearch.errors import ConnectionConfigError, TemplateInstallError
from threatq_provider.misp.errors import (
    MispAuthError,
    MispConfigError,
    MispRateLimited,
    MispRejected,
    MispServerError,
)
from threatq_provider.operators._common import CERTIFICATE_FAILURE, as_bool, fail_fast, permanent_reason
from threatq_provider.threatq.errors import (
    ThreatQAuthError,
    ThreatQBadRequest,
    ThreatQConnectionError,
    ThreatQNotFound,
    ThreatQRateLimited,
    ThreatQResponseError,
    ThreatQServerError,
    ThreatQTLSError,
    ThreatQValidationError,
)


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


@pytest.mark.parametrize(("value", "expected"), [("y", True), ("Y", True), ("n", False), (1, True), (0, False)])
def test_flags_take_y_and_n_like_connection_extras(value: object, expected: bool) -> None:
    # Decided drift (#11): operators and connection extras read the same words (threatq_provider.coerce).
    assert as_bool(value, "dry_run") is expected


@pytest.mark.parametrize("value", [2, 1.0, ["true"]])
def test_a_flag_that_is_neither_bool_nor_word_fails_instead_of_meaning_its_truth(value: object) -> None:
    # Decided drift (#11): bool(value) used to turn 2 or ["true"] into True.
    with pytest.raises(AirflowFailException, match="is not a boolean"):
        as_bool(value, "dry_run")


@pytest.mark.parametrize("value", ["ture", "flase", "y es", "2"])
def test_a_misspelt_flag_fails_naming_the_argument_instead_of_meaning_false(value: str) -> None:
    with pytest.raises(AirflowFailException, match=rf"dry_run={value!r} is not a boolean"):
        as_bool(value, "dry_run")


def _es_api_error(cls: type, status: int) -> Exception:
    from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig

    meta = ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                           node=NodeConfig("https", "es.example", 9200))
    return cls(message="security_exception", meta=meta, body={"error": "denied"})


def _certificate_failure_wrapped_as_libraries_do() -> Exception:
    """requests → urllib3 → ssl, re-raised ``from None`` by a hook (``__context__`` keeps the chain)."""
    cert = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    try:
        try:
            raise requests.exceptions.SSLError(cert)
        except requests.exceptions.SSLError:
            raise MispServerError("cannot reach MISP (SSLError: certificate verify failed)") from None
    except MispServerError as exc:
        return exc


PERMANENT = [
    ThreatQTLSError("GET", "/api/indicators", "SSLCertVerificationError: certificate verify failed"),
    ThreatQValidationError("page_size", 0, reason="an integer >= 1 is required"),
    ThreatQAuthError(401, "POST", "/api/token", detail="credentials refused"),
    ThreatQBadRequest(400, "POST", "/api/indicators/query"),
    ThreatQNotFound(404, "GET", "/api/indicators/query/hash/nope"),
    MispAuthError("MISP refused the API key (403)", status=403),
    MispConfigError("connection 'misp_default': refusing to send the API key over plain http"),
    ConnectionConfigError("es", "host", "no host URL"),
    _es_api_error(elasticsearch.AuthenticationException, 401),
    _es_api_error(elasticsearch.AuthorizationException, 403),
    opensearchpy.exceptions.AuthenticationException(401, "security_exception", {}),
    opensearchpy.exceptions.AuthorizationException(403, "security_exception", {}),
    _certificate_failure_wrapped_as_libraries_do(),
]
TRANSIENT = [
    ThreatQConnectionError("GET", "/api/indicators", "ConnectionRefusedError", attempts=6),
    ThreatQServerError(503, "GET", "/api/indicators"),
    ThreatQRateLimited(429, "GET", "/api/indicators"),
    ThreatQResponseError(200, "POST", "/api/indicators/query", detail="truncated body"),
    MispServerError("MISP server error (HTTP 5xx)", status=500),
    MispRateLimited("rate limit", status=429),
    MispRejected("stale timestamp", status=403),  # a concurrent edit: the retry re-reads the event
    TemplateInstallError("could not install"),
    _es_api_error(elasticsearch.ConflictError, 409),
    opensearchpy.exceptions.ConflictError(409, "version_conflict_engine_exception", {}),
    opensearchpy.exceptions.ConnectionTimeout("TIMEOUT", "read timed out", None),
    ConnectionError("reset"),
    AirflowException("some other failure"),
]


@pytest.mark.parametrize("exc", PERMANENT, ids=lambda e: type(e).__name__)
def test_errors_no_retry_can_heal_have_a_reason(exc: Exception) -> None:
    assert permanent_reason(exc)


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: type(e).__name__)
def test_transient_errors_keep_the_retries(exc: Exception) -> None:
    assert permanent_reason(exc) is None


def test_a_certificate_failure_is_found_through_the_wrapping() -> None:
    assert permanent_reason(_certificate_failure_wrapped_as_libraries_do()) == CERTIFICATE_FAILURE


class _Op:
    def __init__(self, error: Exception) -> None:
        self.error = error

    @fail_fast
    def execute(self, context: object) -> dict:
        raise self.error


def test_fail_fast_turns_a_permanent_error_into_a_failure_that_keeps_its_text_and_cause() -> None:
    cause = ThreatQNotFound(404, "GET", "/api/indicators/query/hash/nope", "Data collection not found.")
    with pytest.raises(AirflowFailException) as info:
        _Op(cause).execute({})
    assert info.value.__cause__ is cause
    assert str(info.value) == f"{cause} (not retried: ThreatQ has no such object (404))"


@pytest.mark.parametrize("exc", [ThreatQServerError(503, "GET", "/x"), AirflowException("x"), KeyError("k")])
def test_fail_fast_lets_every_other_error_through_unchanged(exc: Exception) -> None:
    with pytest.raises(type(exc)) as info:
        _Op(exc).execute({})
    assert info.value is exc


def test_fail_fast_hides_userinfo_in_a_library_error_text() -> None:
    cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    try:
        raise requests.exceptions.SSLError(cert)
    except requests.exceptions.SSLError:
        try:
            raise RuntimeError("GET https://elastic:canary-pw-9@es.example:9200/ failed") from None
        except RuntimeError as exc:
            wrapped = exc
    with pytest.raises(AirflowFailException) as info:
        _Op(wrapped).execute({})
    assert "canary-pw-9" not in str(info.value) and "https://***@es.example" in str(info.value)


def test_fail_fast_keeps_the_execute_name_for_airflow() -> None:
    assert _Op.execute.__name__ == "execute" and _Op.execute.__wrapped__.__name__ == "execute"


@pytest.mark.parametrize("value", [None, "", "None", "none", "  "])
def test_an_unset_optional_argument_is_none_by_the_one_rule(value: object) -> None:
    # Decided drift (#11): "unset" is coerce.is_unset everywhere; blanks and "none" were cast before.
    from threatq_provider.operators._common import optional

    assert optional(value, int) is None and optional(value, str) is None


def test_an_optional_whole_number_is_not_cut() -> None:
    from threatq_provider.operators._common import optional

    assert optional(" 12 ", int) == 12
    with pytest.raises(ValueError, match="is not a whole number"):
        optional(12.5, int)
