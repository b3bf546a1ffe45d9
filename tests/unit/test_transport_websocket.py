"""The websocket client of the probes, against a real aiohttp websocket server over TLS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from exporter.reasons import Reason
from exporter.transport import HttpResponse, HttpSession, ProbeFailure, WebSocket
from tests.unit.transport_peers import (
    HOST,
    CraftedServer,
    Pki,
    frame,
    make_pki,
    switching,
)

MAX_MESSAGE = 1024
MAX_FRAMES = 20


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


CLOSED = web.AppKey("closed", list[int | None])
CLOSE_SEEN = web.AppKey("close_seen", asyncio.Event)


async def echo(request: web.Request) -> web.WebSocketResponse:
    """Echo every text message; on "ping me", ping first and report the pong that came back."""
    ws = web.WebSocketResponse(autoping=False)
    await ws.prepare(request)
    while True:
        msg = await ws.receive()
        if msg.type is WSMsgType.CLOSE:
            request.app[CLOSED].append(msg.data)
            request.app[CLOSE_SEEN].set()
            await ws.close()
            return ws
        if msg.type is not WSMsgType.TEXT:
            return ws
        if msg.data == "ping me":
            await ws.ping(b"are you there")
            reply = await ws.receive(timeout=5)
            await ws.send_str(f"{reply.type.name} {bytes(reply.data)!r}")
        else:
            await ws.send_str(msg.data)


async def close_4001(request: web.Request) -> web.WebSocketResponse:
    """Close right away with an application code."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close(code=4001, message=b"go away")
    return ws


async def send_then_wait(request: web.Request) -> web.WebSocketResponse:
    """Send what the ``what`` query asks for, then wait for the client to go."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    what = request.query["what"]
    if what == "big":
        await ws.send_str("x" * (MAX_MESSAGE + 1))
    elif what == "binary":
        await ws.send_bytes(b"\x00\x01")
    elif what == "many":
        for i in range(MAX_FRAMES + 1):
            await ws.ping(str(i).encode())
        await ws.send_str("too late")
    async for _ in ws:
        pass
    return ws


@pytest.fixture
async def site(pki: Pki) -> AsyncIterator[dict[str, Any]]:
    """An aiohttp app over TLS on 127.0.0.1, and a recorder app a redirect points to."""
    recorded: list[str] = []

    async def recorder(request: web.Request) -> web.Response:
        recorded.append(request.path)
        return web.Response(text="you followed a redirect")

    recorder_app = web.Application()
    recorder_app.router.add_route("*", "/{tail:.*}", recorder)
    recorder_runner = web.AppRunner(recorder_app)
    await recorder_runner.setup()
    recorder_site = web.TCPSite(recorder_runner, HOST, 0, ssl_context=pki.server_context())
    await recorder_site.start()
    recorder_port = recorder_runner.addresses[0][1]

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"https://{HOST}:{recorder_port}/elsewhere")

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}")

    app = web.Application()
    app[CLOSED] = []
    app[CLOSE_SEEN] = asyncio.Event()
    app.router.add_get("/echo", echo)
    app.router.add_get("/close", close_4001)
    app.router.add_get("/send", send_then_wait)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/status/{code}", status)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0, ssl_context=pki.server_context()).start()
    yield {
        "port": runner.addresses[0][1],
        "recorded": recorded,
        "closed": app[CLOSED],
        "close_seen": app[CLOSE_SEEN],
    }
    await runner.cleanup()
    await recorder_runner.cleanup()


@pytest.fixture
async def crafted(pki: Pki) -> AsyncIterator[list[CraftedServer]]:
    """CraftedServers a test starts (append them); stopped at its end."""
    servers: list[CraftedServer] = []
    yield servers
    for server in servers:
        await server.stop()


async def upgrade(
    session: HttpSession, pki: Pki, port: int, path: str = "/"
) -> tuple[HttpResponse, WebSocket | None]:
    """Ask for a websocket at ``path``, with a header as the engine check sends it."""
    return await session.websocket(
        HOST,
        port,
        pki.client_context(),
        path,
        {"X-Qlik-User": "UserDirectory=LAB; UserId=monitor"},
        max_message=MAX_MESSAGE,
        max_frames=MAX_FRAMES,
    )


async def opened(session: HttpSession, pki: Pki, port: int, path: str) -> WebSocket:
    """The websocket at ``path``, which must be granted."""
    resp, ws = await upgrade(session, pki, port, path)
    assert resp.status == 101
    assert ws is not None
    return ws


async def test_text_round_trip(pki: Pki, site: dict[str, Any], session: HttpSession) -> None:
    """A text message sent comes back as the next message received."""
    ws = await opened(session, pki, site["port"], "/echo")
    await ws.send_text('{"jsonrpc": "2.0", "id": 1}')
    assert await ws.receive() == '{"jsonrpc": "2.0", "id": 1}'


async def test_a_ping_is_answered_with_its_payload(
    pki: Pki, site: dict[str, Any], session: HttpSession
) -> None:
    """receive() answers the server's ping on the way to the next text message."""
    ws = await opened(session, pki, site["port"], "/echo")
    await ws.send_text("ping me")
    assert await ws.receive() == "PONG b'are you there'"


async def test_upgrade_records_phases_and_the_server_certificate(
    pki: Pki, site: dict[str, Any], session: HttpSession
) -> None:
    """The upgrade is timed like a request, and the server's DER is handed over."""
    seen: list[tuple[str, int, bytes]] = []
    session.on_certificate = lambda *a: seen.append(a)
    await opened(session, pki, site["port"], "/echo")
    assert set(session.phases) == {"resolve", "connect", "tls", "request", "read"}
    assert seen == [(HOST, site["port"], pki.server_der)]


async def test_a_close_from_the_server_is_session_rejected_with_its_code(
    pki: Pki, site: dict[str, Any], session: HttpSession
) -> None:
    """The server closing the websocket is session_rejected, naming the close code."""
    ws = await opened(session, pki, site["port"], "/close")
    with pytest.raises(ProbeFailure) as info:
        await ws.receive()
    assert info.value.reason is Reason.SESSION_REJECTED
    assert info.value.message == "websocket closed by the server (code 4001)"


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("big", "websocket message too large"),
        ("binary", "websocket sent a binary message"),
        ("many", "websocket sent too many frames"),
    ],
)
async def test_unwanted_messages_are_invalid_responses(
    pki: Pki, site: dict[str, Any], session: HttpSession, what: str, message: str
) -> None:
    """Too large, binary, or too many frames: invalid_response, never an endless read."""
    ws = await opened(session, pki, site["port"], f"/send?what={what}")
    with pytest.raises(ProbeFailure) as info:
        await ws.receive()
    assert info.value.reason is Reason.INVALID_RESPONSE
    assert info.value.message == message


async def test_close_sends_a_normal_close(
    pki: Pki, site: dict[str, Any], session: HttpSession
) -> None:
    """WebSocket.close() says goodbye with code 1000 before it drops the connection."""
    ws = await opened(session, pki, site["port"], "/echo")
    await ws.close()
    async with asyncio.timeout(5):
        await site["close_seen"].wait()
    assert site["closed"] == [1000]


async def test_a_redirect_is_returned_not_followed(
    pki: Pki, site: dict[str, Any], session: HttpSession
) -> None:
    """A 302 comes back as the answer, and nothing reaches the place it points to."""
    resp, ws = await upgrade(session, pki, site["port"], "/redirect")
    assert (resp.status, ws) == (302, None)
    assert resp.headers["Location"].endswith("/elsewhere")
    await asyncio.sleep(0.1)
    assert site["recorded"] == []


@pytest.mark.parametrize("code", [401, 403])
async def test_a_refused_upgrade_returns_the_status(
    pki: Pki, site: dict[str, Any], session: HttpSession, code: int
) -> None:
    """401 and 403 come back with their body for the caller to map; there is no socket."""
    resp, ws = await upgrade(session, pki, site["port"], f"/status/{code}")
    assert (resp.status, resp.body, ws) == (code, f"status {code}".encode(), None)


async def test_a_wrong_accept_key_is_an_invalid_response(
    pki: Pki, session: HttpSession, crafted: list[CraftedServer]
) -> None:
    """A 101 whose Sec-WebSocket-Accept does not answer our key is not a websocket."""
    server = CraftedServer(pki.server_context(), lambda head: switching(head, accept="d3Jvbmc="))
    crafted.append(await server.start())
    with pytest.raises(ProbeFailure) as info:
        await upgrade(session, pki, server.port)
    assert info.value.reason is Reason.INVALID_RESPONSE
    assert "Sec-WebSocket-Accept" in info.value.message


async def test_frames_in_the_same_packet_as_the_101_are_not_lost(
    pki: Pki, session: HttpSession, crafted: list[CraftedServer]
) -> None:
    """Bytes right behind the 101 head are the first frames; fragments around a ping join up."""
    greeting = (
        frame(0x1, b'{"method": ', fin=False) + frame(0x9, b"hi") + frame(0x0, b'"OnConnected"}')
    )
    server = CraftedServer(pki.server_context(), lambda head: switching(head) + greeting, 2)
    crafted.append(await server.start())
    _, ws = await upgrade(session, pki, server.port)
    assert ws is not None
    assert await ws.receive() == '{"method": "OnConnected"}'
