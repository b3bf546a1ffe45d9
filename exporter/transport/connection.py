"""Timed name resolution, TCP connect and TLS handshake: the phases a probe reports.

The exporter owns this part rather than handing it to a client library: it needs the time of
each step as a separate number, a fresh TLS connection per probe (the handshake and the client
certificate are what is being tested), and the server certificate of every handshake.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import Protocol

from exporter.reasons import Reason
from exporter.transport.errors import ProbeFailure

# One read takes whatever the socket holds up to this much, so a response costs a few reads
# however the server splits it.
READ_BLOCK = 64 * 1024


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


class Connection:
    """One TCP connection with TLS established; ``abort`` drops it without a TLS goodbye."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def tls13(self) -> bool:
        """Whether the handshake negotiated TLS 1.3."""
        ssl_obj = self.writer.get_extra_info("ssl_object")
        return ssl_obj is not None and ssl_obj.version() == "TLSv1.3"

    @property
    def peer_der(self) -> bytes | None:
        """The server certificate as DER, as the handshake received it."""
        ssl_obj = self.writer.get_extra_info("ssl_object")
        return ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None

    @property
    def at_eof(self) -> bool:
        """Whether the server has closed its side (the connection cannot carry a request)."""
        return self.reader.at_eof()

    async def send(self, data: bytes) -> None:
        """Write ``data`` and wait until the socket has taken it."""
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self) -> bytes:
        """The next block the server sent; ``b""`` once it has closed its side."""
        return await self.reader.read(READ_BLOCK)

    def abort(self) -> None:
        """Close the socket now; safe to call more than once."""
        self.writer.transport.abort()


async def connect(
    resolver: Resolver, host: str, port: int, ctx: ssl.SSLContext, phases: dict[str, float]
) -> Connection:
    """Resolve, connect and handshake, recording ``resolve``, ``connect`` and ``tls``."""
    t = time.perf_counter()
    addresses = await resolve_host(resolver, host, port)
    phases.setdefault("resolve", time.perf_counter() - t)
    t = time.perf_counter()
    reader, writer = await _connect_any(addresses, port)
    phases.setdefault("connect", time.perf_counter() - t)
    t = time.perf_counter()
    try:
        await writer.start_tls(ctx, server_hostname=host.strip("[]"))
    except (ConnectionError, EOFError) as exc:
        writer.transport.abort()
        # No request was sent yet: the handshake failed, whatever the socket says.
        raise ProbeFailure(
            Reason.TLS_HANDSHAKE,
            f"TLS with {host} failed: the connection was closed during the handshake "
            f"({exc.__class__.__name__})",
        ) from None
    except BaseException:
        writer.transport.abort()
        raise
    phases.setdefault("tls", time.perf_counter() - t)
    return Connection(reader, writer)


async def _connect_any(
    addresses: list[str], port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The first address that accepts, in order; the last error when none does."""
    error: OSError | None = None
    for address in addresses:
        try:
            return await asyncio.open_connection(address, port, limit=READ_BLOCK)
        except OSError as exc:
            error = exc
    assert error is not None
    raise error
