"""The closed set of failure reasons (the ``reason`` label of ``qlik_probe_failures_total``).

Dashboards and alert rules match on these strings, so the set only grows together with them.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a probe failed; exactly one per failed run."""

    DNS = "dns"
    CONNECT_REFUSED = "connect_refused"
    TIMEOUT = "timeout"
    TLS_HANDSHAKE = "tls_handshake"
    SERVER_CERTIFICATE_UNTRUSTED = "server_certificate_untrusted"
    SERVER_CERTIFICATE_EXPIRED = "server_certificate_expired"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    CLIENT_CERTIFICATE_REJECTED = "client_certificate_rejected"
    CREDENTIAL_INVALID = "credential_invalid"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    XRFKEY_REJECTED = "xrfkey_rejected"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    INVALID_RESPONSE = "invalid_response"
    SESSION_REJECTED = "session_rejected"
    WRONG_USER = "wrong_user"


AUTH_REASONS = frozenset(
    {
        Reason.UNAUTHORIZED,
        Reason.FORBIDDEN,
        Reason.CLIENT_CERTIFICATE_REJECTED,
        Reason.CREDENTIAL_INVALID,
        Reason.WRONG_USER,
    }
)


class ProbeFailure(Exception):
    """A probe failed for a known reason; ``message`` is the secret-free detail for the log.

    It carries the reason and the message only: what a run learned travels up in its result.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message
