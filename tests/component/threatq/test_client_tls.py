"""TLS failures against real sockets: an untrusted certificate is sent once, a cut handshake is retried."""

from __future__ import annotations

import pytest

from tests.fixtures.tls import HandshakeDropServer, UntrustedTLSServer
from threatq_provider.threatq.auth import PasswordGrant
from threatq_provider.threatq.client import RetryPolicy, ThreatQClient
from threatq_provider.threatq.errors import ThreatQConnectionError, ThreatQTLSError

pytestmark = pytest.mark.component

CANARY = "canary-tls-password-51c0"
FAST_RETRIES = RetryPolicy(total=3, backoff_factor=0, jitter=0)


def client_for(url: str) -> ThreatQClient:
    return ThreatQClient(url, auth=PasswordGrant("cid", "analyst@example.com", CANARY), retry=FAST_RETRIES,
                         timeout=(5, 5))


def test_an_untrusted_certificate_fails_at_once_without_client_retries():
    with UntrustedTLSServer() as server, client_for(server.url) as client:
        with pytest.raises(ThreatQTLSError) as err:
            client.check()
        assert server.attempts == 1  # the same certificate would come back on every retry
    assert err.value.attempts == 1 and "certificate verify failed" in str(err.value)
    assert CANARY not in str(err.value)


def test_a_handshake_cut_short_is_still_retried():
    with HandshakeDropServer() as server, client_for(server.url) as client:
        with pytest.raises(ThreatQConnectionError) as err:
            client.check()
        assert server.attempts == FAST_RETRIES.total + 1
    assert not isinstance(err.value, ThreatQTLSError) and err.value.attempts == FAST_RETRIES.total + 1
