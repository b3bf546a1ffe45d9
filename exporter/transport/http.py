"""HTTP/1.1 over the exporter's own timed connections, framed by ``h11``.

A probe's session opens a fresh TLS connection for its first request (the handshake is what is
being tested) and reuses it, kept alive, for the requests after (a logout, ``tenants/me``).
Every response is read whole, within a byte budget, so that no answer a server can send makes
a probe read without end or spend more than a little CPU.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import h11
from multidict import CIMultiDict

import exporter
from exporter.reasons import Reason
from exporter.transport.connection import Connection, Resolver, connect
from exporter.transport.errors import ClosedBeforeResponse, ProbeFailure
from exporter.transport.websocket import WebSocket, upgrade_headers, verify_upgrade

USER_AGENT = f"qlik-sense-exporter/{exporter.__version__}"
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_BODY = 4 * 1024 * 1024
# What a response may read beyond its head and body (chunk lines, trailers, 1xx heads):
# 16 KiB plus an eighth of the body. Real servers chunk in kilobytes; a stream of 1-byte
# chunks ends after a few thousand of them, in milliseconds.
FRAMING_BYTES = 16 * 1024
CHUNK_FRAMING = 5  # the least one chunk adds: a size digit and two line ends

# Where h11's error messages start quoting received bytes (which could be anything).
_QUOTED = re.compile(r":? (?:b['\"]|bytearray\()")


@dataclass(slots=True)
class HttpResponse:
    """A fully read response."""

    status: int
    reason: str
    headers: CIMultiDict[str]
    body: bytes

    def text(self, limit: int = 300) -> str:
        """The start of the body as text, for log lines."""
        return self.body[:limit].decode("utf-8", "replace")


@dataclass(slots=True, eq=False)
class _Channel:
    """A connection and the h11 state machine that frames HTTP on it."""

    conn: Connection
    http: h11.Connection = field(
        default_factory=lambda: h11.Connection(
            h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES
        )
    )
    requests: int = 0

    def recycle(self) -> bool:
        """Ready the connection for another request if both sides left it open."""
        if self.http.our_state is h11.DONE and self.http.their_state is h11.DONE:
            self.http.start_next_cycle()
            return True
        return False


@dataclass(slots=True)
class HttpSession:
    """The connections of one probe; the first connection's phases are the probe's phases."""

    resolver: Resolver
    phases: dict[str, float] = field(default_factory=dict)
    max_body: int = DEFAULT_MAX_BODY
    on_certificate: Callable[[str, int, bytes], None] | None = None  # the server's DER
    _idle: dict[tuple[str, int], _Channel] = field(default_factory=dict)
    _opened: list[Connection] = field(default_factory=list)

    async def open(self, host: str, port: int, ctx: ssl.SSLContext) -> Connection:
        """Resolve, connect and handshake, recording each phase the first time.

        The connection is the session's: :meth:`close` aborts it with the others.
        """
        conn = await connect(self.resolver, host, port, ctx, self.phases)
        self._opened.append(conn)
        if (der := conn.peer_der) and self.on_certificate is not None:
            self.on_certificate(host, port, der)
        return conn

    async def request(
        self,
        method: str,
        host: str,
        port: int,
        ctx: ssl.SSLContext,
        target: str,
        headers: Mapping[str, str],
        body: bytes = b"",
    ) -> HttpResponse:
        """Send one request (with ``body``, if any) and read the whole response (up to
        ``max_body``)."""
        channel = self._idle.pop((host, port), None)
        if channel is None or channel.conn.at_eof:
            channel = _Channel(await self.open(host, port, ctx))
        fields = _head_fields(host, port, headers)
        if body:
            fields.append(("Content-Length", str(len(body))))
        response = await self._exchange(channel, method, target, fields, body)
        if channel.recycle():
            self._idle[(host, port)] = channel
        return response

    async def websocket(
        self,
        host: str,
        port: int,
        ctx: ssl.SSLContext,
        target: str,
        headers: Mapping[str, str],
        *,
        max_message: int,
        max_frames: int,
    ) -> tuple[HttpResponse, WebSocket | None]:
        """Ask for a websocket on a fresh connection; the answer, and the socket on a 101.

        Any other status (a redirect too: it is never followed) comes back as the response
        with no socket, for the caller to map.
        """
        channel = _Channel(await self.open(host, port, ctx))
        upgrade, key = upgrade_headers()
        fields = _head_fields(host, port, {**headers, **upgrade})
        response = await self._exchange(channel, "GET", target, fields)
        if response.status != 101:
            channel.conn.abort()
            return response, None
        try:
            verify_upgrade(response.headers, key)
        except ProbeFailure:
            channel.conn.abort()
            raise
        trailing, _ = channel.http.trailing_data
        ws = WebSocket(channel.conn, trailing, max_message=max_message, max_frames=max_frames)
        return response, ws

    async def _exchange(
        self,
        channel: _Channel,
        method: str,
        target: str,
        fields: list[tuple[str, str]],
        body: bytes = b"",
    ) -> HttpResponse:
        """Send one request on ``channel`` and read its response, recording the phases."""
        try:
            data = _encode(channel.http, method, target, fields, body)
            started = time.perf_counter()
            await channel.conn.send(data)
            channel.requests += 1
            reading = _Reading(channel, self.max_body)
            response = await reading.head()
            self.phases.setdefault("request", reading.first_byte - started)
            if response.status != 101:
                response.body = await reading.body(response, method)
        except BaseException:
            channel.conn.abort()
            raise
        self.phases.setdefault("read", time.perf_counter() - reading.first_byte)
        return response

    async def close(self) -> None:
        """Close every connection of the probe without waiting for a TLS close_notify."""
        for conn in self._opened:
            conn.abort()
        self._opened.clear()
        self._idle.clear()


def host_field(host: str, port: int) -> str:
    """The ``Host`` header for ``host``: with the port, unless it is HTTPS's default 443."""
    return host if port == 443 else f"{host}:{port}"


def _head_fields(host: str, port: int, headers: Mapping[str, str]) -> list[tuple[str, str]]:
    return [("Host", host_field(host, port)), ("User-Agent", USER_AGENT), *headers.items()]


def _encode(
    http: h11.Connection, method: str, target: str, fields: list[tuple[str, str]], body: bytes
) -> bytes:
    """The request as bytes; header values are Latin-1, as HTTP/1.1 carries them."""
    try:
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fields]
        request = h11.Request(method=method, target=target.encode("latin-1"), headers=raw)
        data = http.send(request)
        if body:
            data += http.send(h11.Data(data=body))
        return data + http.send(h11.EndOfMessage())
    except (h11.LocalProtocolError, UnicodeEncodeError):
        raise _unsendable(target, fields) from None


def _unsendable(target: str, fields: list[tuple[str, str]]) -> ProbeFailure:
    """Which part of a request HTTP cannot carry, named without its value (it may be secret)."""
    for name, value in fields:
        if not _carries(name, value):
            return ProbeFailure(
                Reason.CREDENTIAL_INVALID,
                f"request header {name[:40]!r} holds characters HTTP does not allow",
            )
    return ProbeFailure(
        Reason.CREDENTIAL_INVALID, "the request path holds characters HTTP does not allow"
    )


def _carries(name: str, value: str) -> bool:
    """Whether an HTTP/1.1 request can carry the header ``name: value``."""
    fields = [(name, value)] if name.lower() == "host" else [("Host", "h"), (name, value)]
    try:
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fields]
        h11.Request(method="GET", target="/", headers=raw)
    except (h11.LocalProtocolError, UnicodeEncodeError):
        return False
    return True


def _response(head: h11.Response | h11.InformationalResponse) -> HttpResponse:
    """The response as h11 parsed its head; the body comes later."""
    headers: CIMultiDict[str] = CIMultiDict(
        (k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers.raw_items()
    )
    return HttpResponse(head.status_code, head.reason.decode("latin-1"), headers, b"")


@dataclass(slots=True)
class _Reading:
    """Reads one response off a channel, counting every byte against the budget."""

    channel: _Channel
    max_body: int
    wire: int = 0
    head_bytes: int = MAX_HEADER_BYTES  # until the head is in
    body_bytes: int = 0
    chunks: int = 0
    first_byte: float = 0.0
    eof: bool = False
    in_body: bool = False

    async def head(self) -> HttpResponse:
        """The final response head; informational 1xx heads before it are skipped."""
        while True:
            event = self._event()
            if event is h11.NEED_DATA:
                await self._fill()
            elif isinstance(event, h11.Response) or (
                isinstance(event, h11.InformationalResponse) and event.status_code == 101
            ):
                self.in_body = True
                self.head_bytes = self.wire - len(self.channel.http.trailing_data[0])
                return _response(event)
            elif not isinstance(event, h11.InformationalResponse):
                raise ProbeFailure(Reason.INVALID_RESPONSE, "malformed response head")

    async def body(self, response: HttpResponse, method: str) -> bytes:
        """The whole body, up to ``max_body`` bytes."""
        length = int(response.headers.get("Content-Length", "0"))  # h11 checked: digits only
        if length > self.max_body and method != "HEAD" and response.status not in (204, 304):
            raise ProbeFailure(Reason.INVALID_RESPONSE, f"response body too large: {length} bytes")
        body = bytearray()
        while True:
            event = self._event()
            if event is h11.NEED_DATA:
                await self._fill()
            elif isinstance(event, h11.Data):
                body += event.data
                self.body_bytes = len(body)
                if self.body_bytes > self.max_body:
                    raise ProbeFailure(Reason.INVALID_RESPONSE, "response body too large")
                if event.chunk_start:
                    # Checked per chunk, not only per read: a read can hold thousands of them.
                    self.chunks += 1
                    self._limit_framing(CHUNK_FRAMING * self.chunks)
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:
                raise ProbeFailure(Reason.INVALID_RESPONSE, "malformed response body")

    def _event(self) -> object:
        """h11's next event, or NEED_DATA; its protocol errors become this module's."""
        try:
            return self.channel.http.next_event()
        except h11.RemoteProtocolError as exc:
            raise self._failure(exc) from None

    async def _fill(self) -> None:
        self._limit_framing(self.wire - self.head_bytes - self.body_bytes)
        data = await self.channel.conn.receive()
        if not self.wire:
            if not data:
                channel = self.channel
                raise ClosedBeforeResponse(fresh=channel.requests == 1 and channel.conn.tls13)
            self.first_byte = time.perf_counter()
        self.wire += len(data)
        self.eof = not data
        self.channel.http.receive_data(data)

    def _limit_framing(self, framing: int) -> None:
        """Refuse more framing (chunk lines, trailers, 1xx heads) than the budget allows."""
        if framing > FRAMING_BYTES + self.body_bytes // 8:
            raise ProbeFailure(
                Reason.INVALID_RESPONSE,
                f"response framing too large: {framing} bytes around a body of "
                f"{self.body_bytes} bytes",
            )

    def _failure(self, exc: h11.RemoteProtocolError) -> Exception:
        """What a framing error means: too large, the peer gone mid-response, or malformed."""
        if exc.error_status_hint == 431:  # h11's buffer limit: a head or chunk line too long
            part = "chunk header" if self.in_body else "headers"
            return ProbeFailure(Reason.INVALID_RESPONSE, f"response {part} too large")
        if self.eof and self.in_body:
            return asyncio.IncompleteReadError(b"", None)
        if self.eof:
            return ConnectionResetError("connection closed inside the response headers")
        return ProbeFailure(Reason.INVALID_RESPONSE, f"malformed response: {_quoteless(exc)}")


def _quoteless(exc: h11.RemoteProtocolError) -> str:
    """h11's description of the error without the bytes it quotes from the response."""
    return _QUOTED.split(str(exc), maxsplit=1)[0][:80]
