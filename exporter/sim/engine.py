"""The Qlik Associative Engine (port 4747): REST healthcheck and the JSON-RPC websocket.

Wire facts (qlik-api-facts.md §2): healthcheck at ``/healthcheck`` and ``/engine/healthcheck``
with or without a trailing slash; ``started`` is compact ISO-8601 with an offset; older engines
spell ``comitted`` and lack ``in_memory_docs``, ``totalPhysical`` and ``saturated``. The
websocket (``/app/engineData``, ``/app/``, ``/app/<appId>``) greets with ``OnConnected``
(optionally after ``OnAuthenticationInformation``), answers on global handle ``-1``, and ends a
user's session over the parallel-session limit with a fatal ``OnMaxParallelSessionsExceeded``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from exporter.sim.faults import FaultKind
from exporter.sim.qlik import QlikUser, qlik_user_or_error
from exporter.sim.settings import EngineSettings

if TYPE_CHECKING:
    from exporter.sim.simulator import Simulator

GLOBAL_HANDLE = -1


def started_compact(sim: Simulator) -> str:
    """``20240915T061233.000+0200``: the engine's compact start timestamp."""
    return sim.engine.started.strftime("%Y%m%dT%H%M%S.000%z")


def healthcheck_payload(sim: Simulator) -> dict[str, Any]:
    """The healthcheck body, modern or (by setting) in the old engines' shape."""
    apps = list(sim.engine.apps)
    active = sum(sim.engine_sessions.values())
    users = sum(1 for n in sim.engine_sessions.values() if n)
    legacy = sim.engine.healthcheck_style == "legacy"
    mem: dict[str, Any] = {
        "comitted" if legacy else "committed": 2134.6,
        "allocated": 2598.1,
        "free": 11034.2,
    }
    doc_lists: dict[str, Any] = {"active_docs": apps[:1], "loaded_docs": apps}
    body: dict[str, Any] = {
        "version": sim.engine.version,
        "started": started_compact(sim),
        "mem": mem,
        "cpu": {"total": 3},
        "session": {"active": active, "total": sim.engine_sessions_total},
        "apps": {**doc_lists, "calls": 18211, "selections": 402},
        "users": {"active": users, "total": len(sim.engine_users_seen)},
        "cache": {"hits": 12, "lookups": 40, "added": 28, "replaced": 0, "bytes_added": 90311},
    }
    if not legacy:
        mem["totalPhysical"] = 16383.5
        body["apps"]["in_memory_docs"] = apps
        body["saturated"] = sim.engine.saturated
    return body


def _notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


GlobalMethod = Callable[[EngineSettings], dict[str, Any]]

GLOBAL_METHODS: dict[str, GlobalMethod] = {
    "EngineVersion": lambda e: {"qVersion": {"qComponentVersion": e.version}},
    "ProductVersion": lambda e: {"qReturn": e.version},  # deprecated, still served
    "IsDesktopMode": lambda e: {"qReturn": False},
    "OSName": lambda e: {"qReturn": "WindowsNT"},
    "QTProduct": lambda e: {"qReturn": "Qlik Sense"},
    "GetDocList": lambda e: {
        "qDocList": [{"qDocName": a, "qDocId": a, "qTitle": a} for a in e.apps]
    },
}


def _error(msg_id: Any, code: int, parameter: str, message: str) -> dict[str, Any]:
    # enigma.js reads exactly code, parameter and message (error-response-interceptor.js).
    error = {"code": code, "parameter": parameter, "message": message}
    return {"jsonrpc": "2.0", "id": msg_id, "error": error}


def answer(sim: Simulator, request: Any) -> dict[str, Any]:
    """The JSON-RPC reply to one decoded request."""
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        return _error(None, -32600, "Invalid request", "Invalid Request")
    msg_id, method = request.get("id"), request["method"]
    handle = request.get("handle", GLOBAL_HANDLE)
    if handle != GLOBAL_HANDLE:
        return _error(msg_id, -32602, "Invalid handle", "Invalid Params")
    impl = GLOBAL_METHODS.get(method)
    if impl is None:
        return _error(msg_id, -32601, method, "Method not found")
    return {"jsonrpc": "2.0", "id": msg_id, "result": impl(sim.engine)}


def _encode_reply(sim: Simulator, reply: dict[str, Any]) -> str:
    """Serialise a reply, applying the engine's malformed_json / wrong_shape faults."""
    fault = sim.faults.take("engine", (FaultKind.MALFORMED_JSON, FaultKind.WRONG_SHAPE))
    text = json.dumps(reply)
    if fault is None:
        return text
    if fault.kind is FaultKind.WRONG_SHAPE and "result" in reply:
        return json.dumps({**reply, "result": fault.params.get("body", ["unexpected"])})
    return text[: max(1, len(text) // 2)]


async def serve_session(
    request: web.Request, sim: Simulator, user: QlikUser, *, via_proxy: bool = False
) -> web.WebSocketResponse:
    """Run one engine websocket session for ``user`` until either side closes it."""
    ws = web.WebSocketResponse(autoping=True, heartbeat=None)
    await ws.prepare(request)
    key = (user.user_directory.casefold(), user.user_id.casefold())
    if sim.engine_sessions[key] >= sim.engine.max_parallel_sessions:
        params = {"severity": "fatal", "message": "Max parallel sessions exceeded"}
        await ws.send_json(_notification("OnMaxParallelSessionsExceeded", params))
        await ws.close()
        return ws
    sim.websockets.add(ws)
    sim.engine_sessions[key] += 1
    sim.engine_sessions_total += 1
    sim.engine_users_seen.add(key)
    try:
        if await _greet(ws, sim, user, via_proxy=via_proxy):
            await _converse(ws, sim)
    finally:
        sim.engine_sessions[key] -= 1
        sim.websockets.discard(ws)
    return ws


async def _greet(
    ws: web.WebSocketResponse, sim: Simulator, user: QlikUser, *, via_proxy: bool
) -> bool:
    """Send the greeting frames; ``False`` when a fatal fault ended the session instead."""
    fatal = sim.faults.take("engine", (FaultKind.ENGINE_FATAL,))
    if fatal is not None:
        await ws.send_json(_notification(fatal.params["method"], {"severity": "fatal"}))
        await ws.close()
        return False
    if via_proxy or sim.engine.auth_info_first:
        info = {
            "userId": user.user_id,
            "userDirectory": user.user_directory,
            "mustAuthenticate": False,
        }
        await ws.send_json(_notification("OnAuthenticationInformation", info))
    if sim.faults.take("engine", (FaultKind.ENGINE_NO_CONNECTED,)) is None:
        await ws.send_json(_notification("OnConnected", {"qSessionState": "SESSION_CREATED"}))
    return True


async def _converse(ws: web.WebSocketResponse, sim: Simulator) -> None:
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            continue
        try:
            request = json.loads(msg.data)
        except ValueError:
            await ws.send_json(_error(None, -32700, "Parse error", "Parse error"))
            continue
        with contextlib.suppress(ConnectionResetError):
            await ws.send_str(_encode_reply(sim, answer(sim, request)))


def create_app(sim: Simulator) -> web.Application:
    """The engine application (mutual TLS is the listener's job)."""

    async def healthcheck(request: web.Request) -> web.StreamResponse:
        return web.json_response(healthcheck_payload(sim))

    async def websocket(request: web.Request) -> web.StreamResponse:
        # Direct 4747 access needs X-Qlik-User on the upgrade; what a real engine does without
        # it is unconfirmed, so the upgrade is refused with a 403 the client can report.
        user = qlik_user_or_error(request, sim.disabled_users)
        if isinstance(user, web.Response):
            return user
        return await serve_session(request, sim, user)

    app = sim.service_app("engine")
    for path in ("/healthcheck", "/healthcheck/", "/engine/healthcheck", "/engine/healthcheck/"):
        app.router.add_get(path, healthcheck)
    app.router.add_get("/app/", websocket)
    app.router.add_get("/app/{tail:.+}", websocket)
    return app
