"""The websocket client's edges: the upgrade it asks for, the limits it reads within and how a
socket ends, against a TLS server on 127.0.0.1 that runs a script per connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from multidict import CIMultiDict

import exporter
from exporter.reasons import Reason
from exporter.transport import HttpSession, ProbeFailure, WebSocket
from exporter.transport.websocket import verify_upgrade
from tests.unit.transport_peers import HOST, Pki, frame, make_pki, switching, ws_accept

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
async def serve(pki: Pki) -> AsyncIterator[Callable[[Script], Awaitable[int]]]:
    """Start a server that reads one request head and hands the connection to a script."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(script: Script) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
                await script(reader, writer, await reader.readuntil(b"\r\n\r\n"))

        server = await asyncio.start_server(handle, HOST, 0, ssl=pki.server_context())
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for writer in writers:
        writer.transport.abort()
    for server in servers:
        server.close()
        await server.wait_closed()


async def upgrade(
    session: HttpSession, pki: Pki, port: int, *, max_message: int = 1024, max_frames: int = 20
) -> WebSocket:
    """The websocket at ``port``, which must be granted."""
    resp, ws = await session.websocket(
        HOST, port, pki.client_context(), "/app", {}, max_message=max_message, max_frames=max_frames
    )
    assert resp.status == 101
    assert ws is not None
    return ws


async def client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next frame the client sent (RFC 6455 §5.2: clients mask), as (opcode, payload)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    mask = await reader.readexactly(4)
    payload = await reader.readexactly(length)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_frame(code: int) -> bytes:
    return frame(0x8, struct.pack("!H", code))


def reset(writer: asyncio.StreamWriter) -> None:
    """End the connection with a TCP reset, as a crashed server does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def hold(reader: asyncio.StreamReader) -> None:
    """Keep the connection until the client goes."""
    await reader.read()


async def test_the_upgrade_request_asks_for_a_websocket_in_rfc_spelling(
    pki: Pki, session: HttpSession, serve: Any
) -> None:
    """Host with the port, our User-Agent and the RFC 6455 headers, spelled as the RFC does
    (some proxies compare them case-sensitively); a 101 has an empty body."""
    heads: list[bytes] = []

    async def script(reader: Any, writer: Any, head: bytes) -> None:
        heads.append(head)
        writer.write(switching(head))
        await hold(reader)

    port = await serve(script)
    resp, ws = await session.websocket(
        HOST, port, pki.client_context(), "/app", {}, max_message=10, max_frames=10
    )
    assert ws is not None
    assert resp.body == b""
    head = heads[0].decode("latin-1")
    assert head.startswith("GET /app HTTP/1.1\r\n")
    key = ws_accept(heads[0])  # the request carries a key
    assert key
    for line in (
        f"Host: {HOST}:{port}",
        f"User-Agent: qlik-sense-exporter/{exporter.__version__}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
    ):
        assert f"\r\n{line}\r\n" in head, line
    assert "\r\nSec-WebSocket-Key: " in head


KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Connection": "Upgrade", "Sec-WebSocket-Accept": ACCEPT}, "without Upgrade"),
        ({"Upgrade": "h2c", "Connection": "Upgrade"}, "without Upgrade"),
        ({"Upgrade": "websocket", "Sec-WebSocket-Accept": ACCEPT}, "without Connection: Upgrade"),
        ({"Upgrade": "websocket", "Connection": "close"}, "without Connection: Upgrade"),
        ({"Upgrade": "websocket", "Connection": "Upgrade"}, "with a wrong Sec-WebSocket-Accept"),
        (
            {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": "eA=="},
            "with a wrong Sec-WebSocket-Accept",
        ),
    ],
)
def test_a_101_that_is_not_a_websocket_answer_is_refused(
    headers: dict[str, str], message: str
) -> None:
    with pytest.raises(ProbeFailure) as info:
        verify_upgrade(CIMultiDict(headers), KEY)
    assert info.value.reason is Reason.INVALID_RESPONSE
    assert info.value.message == f"websocket upgrade answered {message}"


def test_a_websocket_answer_is_accepted_in_any_case() -> None:
    headers = {"upgrade": "WebSocket", "connection": "keep-alive, upgrade"}
    verify_upgrade(CIMultiDict({**headers, "sec-websocket-accept": ACCEPT}), KEY)


def greeter(frames: bytes) -> Script:
    """A server that sends ``frames`` right after its 101 and holds the connection."""

    async def script(reader: Any, writer: Any, head: bytes) -> None:
        writer.write(switching(head) + frames)
        await hold(reader)

    return script


async def test_a_message_of_exactly_the_limit_is_read(
    pki: Pki, session: HttpSession, serve: Any
) -> None:
    text = "é" * 512  # 1024 bytes as UTF-8, 512 characters
    ws = await upgrade(session, pki, await serve(greeter(frame(0x1, text.encode()))))
    assert await ws.receive() == text


async def test_the_limit_counts_the_whole_message_over_its_fragments(
    pki: Pki, session: HttpSession, serve: Any
) -> None:
    fragments = frame(0x1, b"a" * 600, fin=False) + frame(0x0, b"b" * 600)
    ws = await upgrade(session, pki, await serve(greeter(fragments)))
    with pytest.raises(ProbeFailure) as info:
        await ws.receive()
    assert (info.value.reason, info.value.message) == (
        Reason.INVALID_RESPONSE,
        "websocket message too large",
    )


@pytest.mark.parametrize(("pings", "allowed"), [(19, True), (20, False)])
async def test_the_frame_allowance_counts_every_whole_frame(
    pki: Pki, session: HttpSession, serve: Any, pings: int, allowed: bool
) -> None:
    """20 frames in all may come: 19 pings and the message pass, 20 pings and it do not."""
    frames = b"".join(frame(0x9, b"%d" % i) for i in range(pings)) + frame(0x1, b"hello")
    ws = await upgrade(session, pki, await serve(greeter(frames)), max_frames=20)
    if allowed:
        assert await ws.receive() == "hello"
        return
    with pytest.raises(ProbeFailure) as info:
        await ws.receive()
    assert info.value.message == "websocket sent too many frames"


async def test_a_frame_that_arrives_in_pieces_is_one_frame(
    pki: Pki, session: HttpSession, serve: Any
) -> None:
    """A large frame read in several parts spends one frame of the allowance."""
    data = frame(0x1, b"x" * 1000)

    async def script(reader: Any, writer: Any, head: bytes) -> None:
        writer.write(switching(head))
        for i in range(0, len(data), 100):
            writer.write(data[i : i + 100])
            await writer.drain()
            await asyncio.sleep(0.02)
        await hold(reader)

    ws = await upgrade(session, pki, await serve(script), max_frames=1)
    assert await ws.receive() == "x" * 1000


async def test_frames_that_break_the_protocol_are_invalid_responses_that_say_why(
    pki: Pki, session: HttpSession, serve: Any
) -> None:
    """Invalid UTF-8 in a text frame: wsproto's reason, cut at 80 characters."""
    payload = b"a" * 10000 + b"\xc3\x28"
    with pytest.raises(UnicodeDecodeError) as decoding:
        payload.decode()
    assert len(str(decoding.value)) > 80
    ws = await upgrade(session, pki, await serve(greeter(frame(0x1, payload))), max_message=20000)
    with pytest.raises(ProbeFailure) as info:
        await ws.receive()
    assert info.value.reason is Reason.INVALID_RESPONSE
    assert info.value.message == f"websocket protocol error: {str(decoding.value)[:80]}"


async def test_a_close_from_the_server_is_answered_with_its_code(
    pki: Pki, session: HttpSession, serve: Any
) -> None:
    """RFC 6455 §5.5.1: the endpoint that receives a close sends one back."""
    replies: list[tuple[int, bytes]] = []
    replied = asyncio.Event()

    async def script(reader: Any, writer: Any, head: bytes) -> None:
        writer.write(switching(head) + close_frame(4001))
        replies.append(await client_frame(reader))
        replied.set()

    ws = await upgrade(session, pki, await serve(script))
    with pytest.raises(ProbeFailure) as info:
        await ws.receive()
    assert info.value.message == "websocket closed by the server (code 4001)"
    async with asyncio.timeout(5):
        await replied.wait()
    assert replies == [(0x8, struct.pack("!H", 4001))]
    with pytest.raises(ProbeFailure) as sending:
        await ws.send_text("anyone?")
    assert (sending.value.reason, sending.value.message) == (
        Reason.SESSION_REJECTED,
        "websocket already closed",
    )


async def test_a_close_whose_reply_cannot_be_sent_is_still_the_close(
    pki: Pki, session: HttpSession, serve: Any
) -> None:
    """The server closes and is gone before the reply: the close code is what is reported."""

    async def script(reader: Any, writer: Any, head: bytes) -> None:
        writer.write(switching(head) + close_frame(4002))
        await writer.drain()
        reset(writer)

    ws = await upgrade(session, pki, await serve(script))
    await asyncio.sleep(0.2)  # the reset has arrived before the close is read
    with pytest.raises(ProbeFailure) as info:
        await ws.receive()
    assert (info.value.reason, info.value.message) == (
        Reason.SESSION_REJECTED,
        "websocket closed by the server (code 4002)",
    )


async def test_a_connection_that_ends_without_a_close_is_an_abnormal_closure(
    pki: Pki, session: HttpSession, serve: Any
) -> None:
    """The server hangs up without a close frame: code 1006; closing afterwards is quiet."""

    async def script(reader: Any, writer: Any, head: bytes) -> None:
        writer.write(switching(head))
        await writer.drain()
        writer.close()

    ws = await upgrade(session, pki, await serve(script))
    with pytest.raises(ProbeFailure) as info:
        await ws.receive()
    assert (info.value.reason, info.value.message) == (
        Reason.SESSION_REJECTED,
        "websocket closed by the server (code 1006)",
    )
    await asyncio.sleep(0.1)
    await ws.close()  # the goodbye cannot go out; that is no error


async def test_a_reset_connection_is_a_session_reset(
    pki: Pki, session: HttpSession, serve: Any
) -> None:
    """A reset while reading, and a send after it, both say the server reset the socket."""

    async def script(reader: Any, writer: Any, head: bytes) -> None:
        writer.write(switching(head))
        await writer.drain()
        await asyncio.sleep(0.1)
        reset(writer)

    ws = await upgrade(session, pki, await serve(script))
    with pytest.raises(ProbeFailure) as info:
        await ws.receive()
    expected = (Reason.SESSION_REJECTED, "websocket connection reset by the server")
    assert (info.value.reason, info.value.message) == expected
    with pytest.raises(ProbeFailure) as sending:
        await ws.send_text("still there?")
    assert (sending.value.reason, sending.value.message) == expected
    await ws.close()
