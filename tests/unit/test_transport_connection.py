"""Resolve, connect and handshake: addresses in order, IP literals, the phases, the failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from exporter.reasons import Reason
from exporter.transport import ProbeFailure, is_ip, resolve_host
from exporter.transport.connection import connect
from tests.unit.transport_peers import HOST, Pki, make_pki


class FixedResolver:
    """A resolver that answers every name with set addresses and notes what it was asked."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.asked: list[tuple[str, int]] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return self.addresses


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
async def tls_port(pki: Pki) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1 that holds every connection until the client leaves."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
        except OSError:
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(hold, HOST, 0, ssl=pki.server_context())
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    ("host", "ip"),
    [
        ("127.0.0.1", True),
        ("[127.0.0.1]", True),
        ("::1", True),
        ("[fe80::1]", True),
        ("qlik.example", False),
        ("1.2.3", False),
        ("[qlik.example]", False),
        ("12:34", False),
        ("X10.0.0.1", False),
    ],
)
def test_ip_literals_are_told_from_names(host: str, ip: bool) -> None:
    assert is_ip(host) is ip


async def test_an_ip_literal_is_not_resolved() -> None:
    resolver = FixedResolver(["192.0.2.1"])
    assert await resolve_host(resolver, "[::1]", 443) == ["::1"]
    assert await resolve_host(resolver, "10.0.0.1", 443) == ["10.0.0.1"]
    assert resolver.asked == []


async def test_a_name_is_resolved_with_its_port() -> None:
    resolver = FixedResolver(["192.0.2.1", "192.0.2.2"])
    assert await resolve_host(resolver, "qlik.example", 4242) == ["192.0.2.1", "192.0.2.2"]
    assert resolver.asked == [("qlik.example", 4242)]


async def test_a_name_without_addresses_is_a_dns_failure() -> None:
    with pytest.raises(ProbeFailure) as info:
        await resolve_host(FixedResolver([]), "qlik.example", 443)
    assert (info.value.reason, info.value.message) == (
        Reason.DNS,
        "cannot resolve qlik.example: no addresses",
    )


async def test_connect_tries_the_addresses_in_order(pki: Pki, tls_port: int) -> None:
    """Nothing listens on 127.0.0.2: the next address is tried; with none left, its error."""
    phases: dict[str, float] = {}
    resolver = FixedResolver(["127.0.0.2", HOST])
    started = time.perf_counter()
    conn = await connect(resolver, "localhost", tls_port, pki.client_context(), phases)
    elapsed = time.perf_counter() - started
    conn.abort()
    assert resolver.asked == [("localhost", tls_port)]
    assert set(phases) == {"resolve", "connect", "tls"}
    assert all(0 <= v <= elapsed for v in phases.values())
    with pytest.raises(ConnectionRefusedError):
        await connect(FixedResolver(["127.0.0.2"]), "localhost", tls_port, pki.client_context(), {})


async def test_a_bracketed_ip_host_is_verified_without_its_brackets(
    pki: Pki, tls_port: int
) -> None:
    """The certificate names 127.0.0.1; the host may be written in brackets."""
    conn = await connect(FixedResolver([]), f"[{HOST}]", tls_port, pki.client_context(), {})
    assert conn.peer_der == pki.server_der
    conn.abort()


async def test_a_connection_closed_during_the_handshake_is_a_tls_failure(pki: Pki) -> None:
    """A port that accepts and hangs up at once (a proxy refusing us) fails the handshake."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ProbeFailure) as info:
            await connect(FixedResolver([]), HOST, port, pki.client_context(), {})
    finally:
        server.close()
        await server.wait_closed()
    assert info.value.reason is Reason.TLS_HANDSHAKE
    assert info.value.message.startswith(
        f"TLS with {HOST} failed: the connection was closed during the handshake ("
    )


async def test_the_host_name_is_verified_as_written(pki: Pki) -> None:
    """Names compare without case; no letter of the host is dropped on the way to TLS."""
    ctx = pki.server_context()
    pki.ca.issue_cert("xa.example").configure_cert(ctx)

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.transport.abort()

    server = await asyncio.start_server(hold, HOST, 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        conn = await connect(FixedResolver([HOST]), "Xa.example", port, pki.client_context(), {})
        conn.abort()
    finally:
        server.close()
        await server.wait_closed()
