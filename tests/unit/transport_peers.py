"""The far end for transport tests: real TLS on 127.0.0.1 answering with bytes a test wrote.

Certificates come from trustme at test time. :class:`CraftedServer` reads each request head
and answers with whatever its ``answer`` returns, so a test can send any bytes at all,
including broken HTTP, and see what the server saw (request heads, connections, their ends).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trustme

HOST = "127.0.0.1"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


@dataclass(frozen=True, slots=True)
class Pki:
    """A test CA with a server certificate for 127.0.0.1 and a client context trusting it."""

    ca: trustme.CA
    leaf: trustme.LeafCert

    def server_context(self, *, tls12: bool = False) -> ssl.SSLContext:
        """A server context; ``tls12`` caps it at TLS 1.2."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.leaf.configure_cert(ctx)
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the test CA (and no system CA)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(ctx)
        return ctx

    @property
    def server_der(self) -> bytes:
        """The server certificate as DER."""
        return ssl.PEM_cert_to_DER_cert(self.leaf.cert_chain_pems[0].bytes().decode())


def make_pki() -> Pki:
    """A fresh CA and server certificate."""
    ca = trustme.CA()
    return Pki(ca, ca.issue_cert(HOST, "localhost"))


Writer = asyncio.StreamWriter
# What the server does with one request head: bytes to send, or a coroutine that writes itself.
Answer = Callable[[bytes], bytes | Callable[[Writer], Awaitable[None]]]


@dataclass(eq=False)
class CraftedServer:
    """A TLS server answering every request head with ``answer(head)``.

    After ``answers_per_connection`` answers it closes the connection (with a TLS close);
    otherwise it waits for the next request. ``ended`` counts connections that are over,
    whoever ended them.
    """

    ctx: ssl.SSLContext
    answer: Answer
    answers_per_connection: int = 1
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    ended: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[Writer] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self) -> CraftedServer:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._serve, HOST, 0, ssl=self.ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def until(self, *, connections: int = 0, ended: int = 0) -> None:
        """Wait (at most 5 s) until this many connections have come, and this many are over."""
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(
                lambda: self.connections >= connections and self.ended >= ended
            )

    async def _count(self, connections: int = 0, ended: int = 0) -> None:
        async with self._changed:
            self.connections += connections
            self.ended += ended
            self._changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        await self._count(connections=1)
        try:
            for _ in range(self.answers_per_connection):
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                reply = self.answer(head)
                if isinstance(reply, bytes):
                    writer.write(reply)
                    await writer.drain()
                else:
                    await reply(writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
            await self._count(ended=1)


def ws_accept(head: bytes) -> str:
    """The Sec-WebSocket-Accept answering the request ``head``."""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            digest = hashlib.sha1(value.strip() + WS_GUID).digest()  # noqa: S324 - RFC 6455
            return base64.b64encode(digest).decode()
    raise AssertionError("no Sec-WebSocket-Key in the request")


def switching(head: bytes, *, accept: str | None = None) -> bytes:
    """A 101 answer to the websocket request ``head`` (with ``accept`` instead, if given)."""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {accept or ws_accept(head)}\r\n\r\n".encode()
    )


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One unmasked server frame (RFC 6455 §5.2)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        length = bytes([n])
    elif n < 65536:
        length = bytes([126]) + n.to_bytes(2, "big")
    else:
        length = bytes([127]) + n.to_bytes(8, "big")
    return bytes([first]) + length + payload
