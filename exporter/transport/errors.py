"""The two ways a probe's exchange with a server ends early that the runner tells apart."""

from __future__ import annotations

from exporter.reasons import ProbeFailure

__all__ = ["ClosedBeforeResponse", "ProbeFailure"]


class ClosedBeforeResponse(ConnectionError):
    """The server closed the connection cleanly without sending a byte of the response.

    ``fresh`` says it happened on the connection's first request right after a TLS 1.3
    handshake: that is how a TLS 1.3 service refuses a client certificate, since the client's
    side of the handshake has already finished when the server checks the certificate.
    """

    def __init__(self, *, fresh: bool) -> None:
        super().__init__("connection closed before the response")
        self.fresh = fresh
