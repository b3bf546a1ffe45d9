"""The closed set of failure reasons (the ``reason`` label of ``qlik_probe_failures_total``).

Dashboards and alert rules match on these strings, so the set only grows together with them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


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


# What usually causes each reason and what to check: the README's table, for `probe`.
HINTS: Final = {
    Reason.DNS: ("the host name does not resolve"),
    Reason.CONNECT_REFUSED: ("nothing listens on the port, or a firewall rejects"),
    Reason.TIMEOUT: (
        "no complete answer within `timeout` (a hung service, an engine that never sends "
        "`OnConnected`)"
    ),
    Reason.TLS_HANDSHAKE: (
        "TLS failed for another reason (not TLS on that port, no common protocol, the "
        "connection reset during the handshake)"
    ),
    Reason.SERVER_CERTIFICATE_UNTRUSTED: (
        "the server certificate is not issued by `ca_file` (or system trust)"
    ),
    Reason.SERVER_CERTIFICATE_EXPIRED: ("the server certificate has expired (or is not yet valid)"),
    Reason.HOSTNAME_MISMATCH: (
        "the server certificate does not cover `host` in its SAN (a host named only in "
        "the subject CN does not count, as in browsers)"
    ),
    Reason.CLIENT_CERTIFICATE_REJECTED: ("the service refused the client certificate"),
    Reason.CREDENTIAL_INVALID: (
        "a local certificate, key, token or secret file is missing, unreadable, "
        "malformed, mismatched or expired (the daemon keeps the other targets running and"
        " retries the file every run)"
    ),
    Reason.UNAUTHORIZED: ("401, or a virtual proxy redirecting to its login page"),
    Reason.FORBIDDEN: (
        "403 (user disabled, no access, host not in the virtual proxy's allow list)"
    ),
    Reason.XRFKEY_REJECTED: ("403 `XSRF prevention check failed` (something stripped the xrfkey)"),
    Reason.NOT_FOUND: ("404: wrong virtual proxy prefix or path"),
    Reason.RATE_LIMITED: (
        "429 (also from the OAuth token endpoint); the next run waits for `retry-after`"
    ),
    Reason.SERVER_ERROR: ("5xx, or the connection dropped mid-request"),
    Reason.INVALID_RESPONSE: (
        "not the documented shape: not JSON, missing fields, oversized (also a websocket "
        "message or frame count over the limit), or a redirect (never followed: the "
        "credentials would go wherever it points)"
    ),
    Reason.SESSION_REJECTED: (
        "the engine closed or reset the websocket, refused the upgrade with an unexpected"
        " status, or sent a fatal notification (e.g. `OnMaxParallelSessionsExceeded`)"
    ),
    Reason.WRONG_USER: ("whoami answered for another user than configured"),
}
