"""Certificates and TLS errors made in the test, never checked in.

``certificate`` builds an X.509 certificate with exactly the names asked for (with or without a
CN, with or without SANs), which ``trustme`` cannot; ``handshake_error`` runs a real OpenSSL
handshake between two in-memory TLS objects and returns the client's error, so a test gets the
very exception a probe would see, with no socket and no thread; ``CountingServer`` is a TLS
server that counts the connections a probe opens.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_KEY = ec.generate_private_key(ec.SECP256R1())


def certificate(
    *,
    cn: str | None = None,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    san: bool = True,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    serial: int = 0x5E,
) -> x509.Certificate:
    """A self-signed certificate with the given subject CN and SANs (none if ``san`` is off)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else [])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test-CA")])
    start = not_before or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(_KEY.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(not_after or start + dt.timedelta(days=90))
    )
    if san:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(_KEY, hashes.SHA256())


def openssl_error(reason: str) -> ssl.SSLError:
    """An ``SSLError`` as CPython's ``_ssl`` module builds it from an OpenSSL error: errno 1
    (``SSL_ERROR_SSL``), ``library``/``reason`` attributes and the message
    ``[SSL: REASON] reason text (_ssl.c:NNN)``, the text being OpenSSL's lower-case wording."""
    exc = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower().replace('_', ' ')} (_ssl.c:1006)")
    exc.library = "SSL"
    exc.reason = reason
    return exc


def handshake_error(
    client: ssl.SSLContext, server: ssl.SSLContext, server_hostname: str
) -> ssl.SSLError:
    """The error the client side of a real handshake (and its first read) raises."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    tls_client = client.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    tls_server = server.wrap_bio(s_in, s_out, server_side=True)
    client_done = server_failed = False
    for _ in range(10):
        try:
            if client_done:
                tls_client.read(1)  # a TLS 1.3 server refuses the client certificate only now
            else:
                tls_client.do_handshake()
                client_done = True
                tls_client.write(b"GET / HTTP/1.1\r\n\r\n")
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            return exc
        s_in.write(c_out.read())
        if not server_failed:
            try:
                tls_server.do_handshake()
                tls_server.read(1)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                server_failed = True  # its alert is in s_out, for the client to read
        c_in.write(s_out.read())
    raise AssertionError("the handshake did not fail on the client side")


def http_response(status: str, body: bytes = b"", headers: Sequence[str] = ()) -> bytes:
    """A whole HTTP/1.1 response with a Content-Length."""
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class CountingServer:
    """A TLS server on 127.0.0.1 that counts the connections it accepts, keeps the head of
    every request, and answers each with ``answer(head)`` (by default an empty ``status``
    response); ``delays`` holds the seconds each connection waits before its handshake (the
    client's hello stays unread in the socket meanwhile)."""

    ctx: ssl.SSLContext | None  # None: answers in plain HTTP, as a port without TLS would
    status: str = "500 Internal Server Error"
    answer: Callable[[str], bytes] | None = None
    delays: list[float] = field(default_factory=list)
    accepted: int = 0
    open: int = 0
    port: int = 0
    requests: list[str] = field(default_factory=list)
    _listener: socket.socket | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> CountingServer:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._tasks.add(asyncio.create_task(self._accept(self._listener)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        assert self._listener is not None
        self._listener.close()

    async def all_closed(self, within: float = 2.0) -> bool:
        """Whether every accepted connection has been closed by the client (waits a little)."""
        async with asyncio.timeout(within):
            while self.open:
                self._closed.clear()
                await self._closed.wait()
        return True

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(listener)
            self.accepted += 1
            self.open += 1
            self._tasks.add(asyncio.create_task(self._serve(conn)))

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        transport: asyncio.BaseTransport | None = None
        try:
            if self.accepted <= len(self.delays):
                await asyncio.sleep(self.delays[self.accepted - 1])
            reader = asyncio.StreamReader()
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, conn, ssl=self.ctx)
            assert isinstance(transport, asyncio.Transport)
            if self.ctx is None:
                await reader.read(1)  # a TLS ClientHello, never a request line
                transport.write(http_response("400 Bad Request"))
            while self.ctx is not None:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                self.requests.append(head)
                answer = self.answer(head) if self.answer else http_response(self.status)
                transport.write(answer)
            await reader.read()  # until the client closes
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the client gave up or closed: that is what the tests look at
        finally:
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            conn.close()
            self.open -= 1
            self._closed.set()
