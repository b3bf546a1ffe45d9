"""The engine (4747): healthcheck shapes and the JSON-RPC websocket."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest
from sim_helpers import QLIK_USER, TIMEOUT, call

from exporter.sim import Simulator

WS_HEADERS = {"X-Qlik-User": QLIK_USER}


@pytest.mark.parametrize(
    "path", ["/engine/healthcheck", "/engine/healthcheck/", "/healthcheck", "/healthcheck/"]
)
async def test_healthcheck_paths(sim, sim_mtls, path):
    """The healthcheck answers on both paths, with or without a trailing slash."""
    status, _, body = await call("GET", sim.url("engine", path), sim_mtls)
    assert status == 200
    assert json.loads(body)["version"] == "12.1823.6"


async def test_healthcheck_modern_shape(sim, sim_mtls):
    """The modern healthcheck has `committed`, `totalPhysical`, doc GUID arrays and `saturated`."""
    _, _, text = await call("GET", sim.url("engine", "/engine/healthcheck"), sim_mtls)
    body = json.loads(text)
    assert set(body["mem"]) == {"committed", "allocated", "free", "totalPhysical"}
    assert re.fullmatch(r"\d{8}T\d{6}\.000[+-]\d{4}", body["started"])
    assert body["apps"]["loaded_docs"] == sim.engine.apps
    assert "in_memory_docs" in body["apps"]
    assert body["saturated"] is False
    assert set(body) >= {"cpu", "session", "users", "cache"}


async def test_healthcheck_legacy_spelling(sim, sim_mtls):
    """The legacy style spells `comitted` and lacks saturated, in_memory_docs, totalPhysical."""
    sim.engine.healthcheck_style = "legacy"
    _, _, text = await call("GET", sim.url("engine", "/healthcheck"), sim_mtls)
    body = json.loads(text)
    assert set(body["mem"]) == {"comitted", "allocated", "free"}
    assert "in_memory_docs" not in body["apps"]
    assert "saturated" not in body


async def test_engine_requires_client_certificate(sim, sim_tls):
    """The engine port refuses a client without a certificate."""
    with pytest.raises(aiohttp.ClientError):
        await call("GET", sim.url("engine", "/healthcheck"), sim_tls)


async def ws_open(session: aiohttp.ClientSession, sim: Simulator, ctx, path="/app/engineData"):
    return await session.ws_connect(
        sim.url("engine", path).replace("https", "wss"), ssl=ctx, headers=WS_HEADERS
    )


async def receive(ws) -> dict:
    return json.loads(await ws.receive_str(timeout=3))


@pytest.mark.parametrize("path", ["/app/engineData", "/app/", "/app/5a1c2f7e-3b4d"])
async def test_websocket_greets_with_on_connected(sim, sim_mtls, path):
    """The first frame is OnConnected with SESSION_CREATED, on every app route."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await ws_open(session, sim, sim_mtls, path)
        assert await receive(ws) == {
            "jsonrpc": "2.0",
            "method": "OnConnected",
            "params": {"qSessionState": "SESSION_CREATED"},
        }
        await ws.close()


async def test_websocket_can_send_authentication_information_first(sim, sim_mtls):
    """With auth_info_first, OnAuthenticationInformation precedes OnConnected."""
    sim.engine.auth_info_first = True
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await ws_open(session, sim, sim_mtls)
        first = await receive(ws)
        assert first["method"] == "OnAuthenticationInformation"
        assert first["params"]["mustAuthenticate"] is False
        assert (await receive(ws))["method"] == "OnConnected"
        await ws.close()


async def test_engine_version_and_product_version(sim, sim_mtls):
    """EngineVersion answers qVersion.qComponentVersion and ProductVersion qReturn."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await ws_open(session, sim, sim_mtls)
        await receive(ws)
        await ws.send_json(
            {"jsonrpc": "2.0", "id": 1, "method": "EngineVersion", "handle": -1, "params": []}
        )
        assert await receive(ws) == {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"qVersion": {"qComponentVersion": "12.1823.6"}},
        }
        await ws.send_json(
            {"jsonrpc": "2.0", "id": 2, "method": "ProductVersion", "handle": -1, "params": []}
        )
        assert (await receive(ws))["result"] == {"qReturn": "12.1823.6"}
        await ws.close()


async def test_unknown_method_gets_json_rpc_error(sim, sim_mtls):
    """An unknown method gets error -32601 with code, parameter and message."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await ws_open(session, sim, sim_mtls)
        await receive(ws)
        await ws.send_json(
            {"jsonrpc": "2.0", "id": 7, "method": "NoSuchMethod", "handle": -1, "params": []}
        )
        reply = await receive(ws)
        assert reply["id"] == 7
        assert reply["error"]["code"] == -32601
        assert reply["error"]["parameter"] == "NoSuchMethod"
        assert reply["error"]["message"]
        await ws.close()


async def test_websocket_without_x_qlik_user_is_refused(sim, sim_mtls):
    """The upgrade without X-Qlik-User is refused with 403."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(sim.url("engine", "/app/engineData"), ssl=sim_mtls)
    assert info.value.status == 403


async def test_session_limit_sends_fatal_notification_then_closes(sim, sim_mtls):
    """A sixth parallel session gets OnMaxParallelSessionsExceeded (fatal), then close."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        sockets = [await ws_open(session, sim, sim_mtls) for _ in range(5)]
        for ws in sockets:
            await receive(ws)
        assert sim.engine_session_count("INTERNAL", "sa_api") == 5
        extra = await ws_open(session, sim, sim_mtls)
        note = await receive(extra)
        assert note["method"] == "OnMaxParallelSessionsExceeded"
        assert note["params"]["severity"] == "fatal"
        msg = await extra.receive(timeout=3)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        for ws in sockets:
            await ws.close()


async def test_closed_sessions_free_the_limit(sim, sim_mtls):
    """Closing a session lowers the user's count so a new one is accepted."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await ws_open(session, sim, sim_mtls)
        await receive(ws)
        await ws.close()
        for _ in range(20):
            if sim.engine_session_count("INTERNAL", "sa_api") == 0:
                break
            await asyncio.sleep(0.05)
        assert sim.engine_session_count("INTERNAL", "sa_api") == 0


async def test_healthcheck_counts_live_sessions(sim, sim_mtls):
    """session.active and users.active in the healthcheck follow the open websockets."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await ws_open(session, sim, sim_mtls)
        await receive(ws)
        _, _, text = await call("GET", sim.url("engine", "/healthcheck"), sim_mtls)
        body = json.loads(text)
        assert body["session"]["active"] == 1
        assert body["users"]["active"] == 1
        await ws.close()
