"""The exporter's own HTTP/1.1 and websocket client, over timed TCP and TLS connections.

``connection`` times resolve, connect and the TLS handshake; ``http`` frames requests and
responses with h11 and keeps a probe's connections; ``websocket`` speaks frames with wsproto.
"""

from exporter.transport.connection import Connection, Resolver, SystemResolver, is_ip, resolve_host
from exporter.transport.errors import ClosedBeforeResponse, ProbeFailure
from exporter.transport.http import (
    DEFAULT_MAX_BODY,
    MAX_HEADER_BYTES,
    USER_AGENT,
    HttpResponse,
    HttpSession,
)
from exporter.transport.websocket import WebSocket

__all__ = [
    "DEFAULT_MAX_BODY",
    "MAX_HEADER_BYTES",
    "USER_AGENT",
    "ClosedBeforeResponse",
    "Connection",
    "HttpResponse",
    "HttpSession",
    "ProbeFailure",
    "Resolver",
    "SystemResolver",
    "WebSocket",
    "is_ip",
    "resolve_host",
]
