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


async def rpc(ws, msg_id: int, method: str, handle: int = -1, params=None, **extra) -> dict:
    request = {"jsonrpc": "2.0", "id": msg_id, "method": method, "handle": handle}
    await ws.send_json({**request, "params": params or [], **extra})
    return await receive(ws)


async def test_delta_request_gets_json_patch_results(sim, sim_mtls):
    """`delta: true`: add / first, [] while unchanged, replace / after a change (per handle)."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await ws_open(session, sim, sim_mtls)
        await receive(ws)
        first = await rpc(ws, 1, "EngineVersion", delta=True)
        assert first == {
            "jsonrpc": "2.0",
            "id": 1,
            "delta": True,
            "result": {
                "qVersion": [
                    {"op": "add", "path": "/", "value": {"qComponentVersion": "12.1823.6"}}
                ]
            },
        }
        assert (await rpc(ws, 2, "EngineVersion", delta=True))["result"] == {"qVersion": []}
        sim.engine.version = "12.1900.1"
        changed = (await rpc(ws, 3, "EngineVersion", delta=True))["result"]["qVersion"]
        assert changed == [
            {"op": "replace", "path": "/", "value": {"qComponentVersion": "12.1900.1"}}
        ]
        await ws.close()


async def test_delta_state_is_per_connection(sim, sim_mtls):
    """A new websocket starts over: its first delta answer is a full `add`."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for _ in range(2):
            ws = await ws_open(session, sim, sim_mtls)
            await receive(ws)
            reply = await rpc(ws, 1, "ProductVersion", delta=True)
            assert reply["result"]["qReturn"] == [{"op": "add", "path": "/", "value": "12.1823.6"}]
            await ws.close()


async def test_without_delta_results_are_plain(sim, sim_mtls):
    """Requests without `delta` get plain results and no `delta` member."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await ws_open(session, sim, sim_mtls)
        await receive(ws)
        reply = await rpc(ws, 1, "EngineVersion", delta=False)
        assert "delta" not in reply
        assert reply["result"] == {"qVersion": {"qComponentVersion": "12.1823.6"}}
        await ws.close()


async def test_open_doc_returns_a_doc_handle_with_a_layout(sim, sim_mtls):
    """OpenDoc on a known app gives a Doc handle (the same one again); GetAppLayout works."""
    app = sim.engine.apps[0]
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await ws_open(session, sim, sim_mtls, f"/app/{app}")
        await receive(ws)
        reply = await rpc(ws, 1, "OpenDoc", params=[app])
        assert reply["result"] == {"qReturn": {"qType": "Doc", "qHandle": 1, "qGenericId": app}}
        again = await rpc(ws, 2, "OpenDoc", params={"qDocName": app})
        assert again["result"]["qReturn"]["qHandle"] == 1
        layout = await rpc(ws, 3, "GetAppLayout", handle=1, delta=True)
        assert layout["result"]["qLayout"][0]["value"]["qTitle"] == app
        await ws.close()


async def test_open_unknown_app_is_app_not_found(sim, sim_mtls):
    """OpenDoc on an unknown app: error 1003 (LOCERR_APP_NOT_FOUND) naming the app."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await ws_open(session, sim, sim_mtls)
        await receive(ws)
        reply = await rpc(ws, 1, "OpenDoc", params=["no-such-app"])
        assert (reply["error"]["code"], reply["error"]["parameter"]) == (1003, "no-such-app")
        unknown_handle = await rpc(ws, 2, "GetAppLayout", handle=7)
        assert unknown_handle["error"]["code"] == -32602
        await ws.close()


async def test_get_active_doc_without_a_session_app_is_an_error(sim, sim_mtls):
    """GetActiveDoc on /app/engineData has no document to return."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await ws_open(session, sim, sim_mtls)
        await receive(ws)
        assert (await rpc(ws, 1, "GetActiveDoc"))["error"]["code"] == 1003
        await ws.close()
