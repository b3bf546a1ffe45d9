"""A small HTTP/1.1-over-TLS client that times every phase of a probe.

The probe is the product here, so the client is the exporter's own rather than aiohttp's
connection pool: it needs the time spent resolving, connecting, in the TLS handshake, waiting
for the first byte and reading as separate numbers, a fresh TLS connection per probe (the
handshake and the client certificate are what is being tested), the server certificate even
when verification fails, and a hard limit on how much of a response it reads.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from multidict import CIMultiDict

import exporter
from exporter.reasons import ProbeFailure, Reason

USER_AGENT = f"qlik-sense-exporter/{exporter.__version__}"
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_BODY = 4 * 1024 * 1024


class ClosedBeforeResponse(ConnectionError):
    """The server closed the connection cleanly without sending a byte of the response.

    ``fresh`` says it happened on the connection's first request right after a TLS 1.3
    handshake: that is how a TLS 1.3 service refuses a client certificate, since the client's
    side of the handshake has already finished when the server checks the certificate.
    """

    def __init__(self, *, fresh: bool) -> None:
        super().__init__("connection closed before the response")
        self.fresh = fresh


class Resolver(Protocol):
    """Turns a host name into addresses; injectable so tests never touch real DNS."""

    async def resolve(self, host: str, port: int) -> list[str]:
        """Addresses for ``host``; raises ``socket.gaierror`` when the name does not resolve."""
        ...


class SystemResolver:
    """The operating system's resolver, through the event loop's thread pool."""

    async def resolve(self, host: str, port: int) -> list[str]:
        """Addresses for ``host`` in the order the system returns them."""
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_ip(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 literal (brackets allowed)."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.strip("[]"))
    except OSError:
        return False
    return True


def _is_digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts ``²`` and other digits int() refuses."""
    return text.isascii() and text.isdigit()


async def _readline(reader: asyncio.StreamReader) -> bytes:
    """One line of the response head; a line longer than the reader's limit is invalid."""
    try:
        return await reader.readline()
    except ValueError:  # asyncio's LimitOverrunError, re-raised by readline as ValueError
        raise ProbeFailure(Reason.INVALID_RESPONSE, "response line too long") from None


async def resolve_host(resolver: Resolver, host: str, port: int) -> list[str]:
    """Addresses for ``host`` (an IP literal as is); a failed lookup is a ``dns`` failure."""
    if is_ip(host):
        return [host.strip("[]")]
    try:
        addresses = await resolver.resolve(host, port)
    except socket.gaierror as exc:
        raise ProbeFailure(Reason.DNS, f"cannot resolve {host}: {exc.strerror}") from None
    if not addresses:
        raise ProbeFailure(Reason.DNS, f"cannot resolve {host}: no addresses")
    return addresses


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


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reusable: bool = True
    requests: int = 0


@dataclass(slots=True)
class HttpSession:
    """The connections of one probe; the first connection's phases are the probe's phases.

    Requests after the first (a logout, ``tenants/me``) reuse the kept-alive connection.
    """

    resolver: Resolver
    phases: dict[str, float] = field(default_factory=dict)
    max_body: int = DEFAULT_MAX_BODY
    on_certificate: Callable[[str, int, bytes], None] | None = None  # the server's DER
    _conns: dict[tuple[str, int], _Conn] = field(default_factory=dict)

    def _phase(self, name: str, started: float) -> None:
        self.phases.setdefault(name, time.perf_counter() - started)

    async def open(self, host: str, port: int, ctx: ssl.SSLContext) -> _Conn:
        """Resolve, connect and handshake, recording each phase the first time."""
        t = time.perf_counter()
        addresses = await resolve_host(self.resolver, host, port)
        self._phase("resolve", t)
        t = time.perf_counter()
        reader, writer = await self._connect(addresses, port)
        self._phase("connect", t)
        t = time.perf_counter()
        try:
            await writer.start_tls(ctx, server_hostname=host.strip("[]"))
        except BaseException:
            writer.transport.abort()
            raise
        self._phase("tls", t)
        ssl_obj = writer.get_extra_info("ssl_object")
        der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
        if der and self.on_certificate is not None:
            self.on_certificate(host, port, der)
        return _Conn(reader, writer)

    @staticmethod
    async def _connect(
        addresses: list[str], port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        error: OSError | None = None
        for address in addresses:
            try:
                return await asyncio.open_connection(address, port, limit=MAX_HEADER_BYTES)
            except OSError as exc:
                error = exc
        assert error is not None
        raise error

    async def request(
        self,
        method: str,
        host: str,
        port: int,
        ctx: ssl.SSLContext,
        target: str,
        headers: Mapping[str, str],
    ) -> HttpResponse:
        """Send one request and read the whole response (up to ``max_body``)."""
        key = (host, port)
        conn = self._conns.get(key)
        if conn is None or not conn.reusable or conn.reader.at_eof():
            conn = await self.open(host, port, ctx)
            self._conns[key] = conn
        host_header = host if port == 443 else f"{host}:{port}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}", f"User-Agent: {USER_AGENT}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        conn.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        t = time.perf_counter()
        await conn.writer.drain()
        status_line = await _readline(conn.reader)
        conn.requests += 1
        if not status_line:
            ssl_obj = conn.writer.get_extra_info("ssl_object")
            tls13 = ssl_obj is not None and ssl_obj.version() == "TLSv1.3"
            raise ClosedBeforeResponse(fresh=conn.requests == 1 and tls13)
        self._phase("request", t)
        t = time.perf_counter()
        response = await self._read_response(conn, status_line, head=method == "HEAD")
        self._phase("read", t)
        return response

    async def _read_response(self, conn: _Conn, status_line: bytes, *, head: bool) -> HttpResponse:
        parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not _is_digits(parts[1]):
            raise ProbeFailure(Reason.INVALID_RESPONSE, f"not an HTTP response: {parts[0][:40]!r}")
        status = int(parts[1])
        headers = await self._read_headers(conn.reader)
        if head or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            body = await self._read_chunked(conn.reader)
        elif (length := headers.get("Content-Length")) is not None:
            if not _is_digits(length.strip()):
                raise ProbeFailure(Reason.INVALID_RESPONSE, "invalid Content-Length")
            n = int(length)
            if n > self.max_body:
                raise ProbeFailure(Reason.INVALID_RESPONSE, f"response body too large: {n} bytes")
            body = await conn.reader.readexactly(n)
        else:
            body = await self._read_to_eof(conn.reader)
            conn.reusable = False
        if headers.get("Connection", "").lower() == "close":
            conn.reusable = False
        return HttpResponse(status, parts[2] if len(parts) > 2 else "", headers, body)

    @staticmethod
    async def _read_headers(reader: asyncio.StreamReader) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        total = 0
        while True:
            line = await _readline(reader)
            total += len(line)
            if total > MAX_HEADER_BYTES:
                raise ProbeFailure(Reason.INVALID_RESPONSE, "response headers too large")
            if line in (b"\r\n", b"\n"):
                return headers
            if not line:
                raise ConnectionResetError("connection closed inside the response headers")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProbeFailure(Reason.INVALID_RESPONSE, "malformed response header")
            headers.add(name.strip(), value.strip())

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        body = bytearray()
        while True:
            size_line = (await _readline(reader)).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                size = -1
            if size < 0 or not size_line.isalnum():
                raise ProbeFailure(Reason.INVALID_RESPONSE, "malformed chunked body")
            if size == 0:
                while (await _readline(reader)) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            if len(body) + size > self.max_body:
                raise ProbeFailure(Reason.INVALID_RESPONSE, "response body too large")
            body += await reader.readexactly(size)
            await reader.readexactly(2)

    async def _read_to_eof(self, reader: asyncio.StreamReader) -> bytes:
        body = bytearray()
        while chunk := await reader.read(65536):
            body += chunk
            if len(body) > self.max_body:
                raise ProbeFailure(Reason.INVALID_RESPONSE, "response body too large")
        return bytes(body)

    async def close(self) -> None:
        """Close every connection of the probe without waiting for a TLS close_notify."""
        for conn in self._conns.values():
            conn.writer.transport.abort()
        self._conns.clear()
