"""Regression tests for exporter bugs the hardening tests found, one per bug."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.reasons import Reason
from exporter.sim import Simulator
from tests.core.conftest import cert_target, probe


async def test_websocket_reset_during_upgrade_is_server_error(
    sim: Simulator, tmp_path: Path
) -> None:
    """A connection reset while upgrading to the engine websocket is server_error, as for HTTP."""
    sim.faults.set("engine", "reset")
    result = await probe(cert_target(sim, timeout="2s"), "engine_session", tmp_path)
    assert result.reason == Reason.SERVER_ERROR, result.error


@pytest.fixture
async def silent_engine(sim: Simulator) -> AsyncIterator[int]:
    """A TLS port with the simulator's server certificate that reads a request and hangs up."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sim.certs_dir / "server.pem", sim.certs_dir / "server_key.pem")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(
            asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError
        ):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def test_websocket_closed_without_answer_is_classified_as_http_is_without_traceback(
    sim: Simulator, silent_engine: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An engine that closes the upgrade request unanswered gets the same reason as an HTTP
    check against the same server (on a fresh TLS 1.3 connection with a client certificate:
    the certificate was refused), logged without a traceback."""
    caplog.set_level(logging.DEBUG)
    ports = {"repository": silent_engine, "proxy": 1, "engine": silent_engine}
    target = cert_target(sim, timeout="2s", ports=ports)
    websocket = await probe(target, "engine_session", tmp_path)
    http = await probe(target, "engine", tmp_path)
    assert websocket.reason == http.reason == Reason.CLIENT_CERTIFICATE_REJECTED, websocket.error
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


@pytest.mark.parametrize("fault", ["cert_expired", "cert_untrusted", "cert_wrong_host"])
async def test_server_certificate_inspection_closes_its_connection(
    sim: Simulator, tmp_path: Path, fault: str
) -> None:
    """Reading a bad server certificate for its metrics leaves no connection open behind."""
    sim.faults.set("repository", fault)
    target = cert_target(sim, timeout="2s")
    await probe(target, "repository", tmp_path)  # warm-up: contexts, listeners
    await asyncio.sleep(0.1)
    fds, tasks = len(os.listdir("/proc/self/fd")), len(asyncio.all_tasks())
    for _ in range(5):
        result = await probe(target, "repository", tmp_path)
        assert [c.source for c in result.certificates].count("server_repository") == 1
    await asyncio.sleep(0.2)
    assert len(os.listdir("/proc/self/fd")) - fds <= 1
    assert len(asyncio.all_tasks()) <= tasks


@pytest.mark.parametrize("after", [0, 50], ids=["at-once", "after-client-hello"])
async def test_reset_during_tls_handshake_is_tls_handshake(
    sim: Simulator, tmp_path: Path, after: int
) -> None:
    """A server that resets the connection before the handshake completes fails the probe as
    tls_handshake — no request was sent, so it is not a server_error mid-request."""

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if after:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await reader.readexactly(after)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        target = cert_target(sim, timeout="2s", ports={"repository": port})
        result = await probe(target, "repository", tmp_path)
    finally:
        server.close()
    assert result.reason == Reason.TLS_HANDSHAKE, result.error
    assert "during the handshake" in result.error
