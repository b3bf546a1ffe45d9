"""The Qlik Associative Engine (port 4747): REST healthcheck and the JSON-RPC websocket.

Wire facts (qlik-api-facts.md §2): healthcheck at ``/healthcheck`` and ``/engine/healthcheck``
with or without a trailing slash; ``started`` is compact ISO-8601 with an offset; older engines
spell ``comitted`` and lack ``in_memory_docs``, ``totalPhysical`` and ``saturated``. The
websocket (``/app/engineData``, ``/app/``, ``/app/<appId>``) greets with ``OnConnected``
(optionally after ``OnAuthenticationInformation``), answers on global handle ``-1``, and ends a
user's session over the parallel-session limit with a fatal ``OnMaxParallelSessionsExceeded``.

Delta protocol (enigma.js ``delta-response-interceptor.js``, @qlik/api ``delta-compression``):
a request with ``"delta": true`` gets ``"delta": true`` and every result value as a JSON-Patch
list against the previous value of the same handle, method and key — ``add /`` the first time,
``[]`` while unchanged, ``replace /`` after a change. Clients set the flag on methods with one
out-parameter other than ``qSuccess`` by their schema: ``EngineVersion`` always; ``OpenDoc``
from @qlik/api (its schema names ``qReturn``) but not from enigma.js's 12.1823 schema.

Documents: ``OpenDoc`` on a known app (or the connection's session app) returns a ``Doc`` handle;
``GetActiveDoc`` returns the session app a ``/app/SessionApp_<id>`` connection opened;
``GetAppLayout`` works on a doc handle. Unknown apps are ``LOCERR_APP_NOT_FOUND`` (1003).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from exporter.sim.faults import FaultChain, FaultKind, Faults
from exporter.sim.qlik import QlikUser, qlik_user_or_error

if TYPE_CHECKING:
    from exporter.sim.simulator import Simulator
    from exporter.sim.site import Node

GLOBAL_HANDLE = -1
APP_NOT_FOUND = 1003  # LOCERR_APP_NOT_FOUND in the engine's LocalizedErrorCode enum
SESSION_APP_PREFIX = "SessionApp_"


def started_compact(sim: Simulator) -> str:
    """``20240915T061233.000+0200``: the engine's compact start timestamp."""
    return sim.engine.started.strftime("%Y%m%dT%H%M%S.000%z")


def engine_version(sim: Simulator, node: Node | None) -> str:
    """The engine build of a node (the site's unless the node runs another)."""
    return (node.engine_version if node else None) or sim.engine.version


def healthcheck_payload(sim: Simulator, node: Node | None = None) -> dict[str, Any]:
    """The healthcheck body, modern or (by setting) in the old engines' shape."""
    node = node or sim.central
    apps = list(sim.engine.apps)
    active = sum(node.engine_sessions.values())
    users = sum(1 for n in node.engine_sessions.values() if n)
    legacy = sim.engine.healthcheck_style == "legacy"
    mem: dict[str, Any] = {
        "comitted" if legacy else "committed": 2134.6,
        "allocated": 2598.1,
        "free": 11034.2,
    }
    doc_lists: dict[str, Any] = {"active_docs": apps[:1], "loaded_docs": apps}
    body: dict[str, Any] = {
        "version": engine_version(sim, node),
        "started": started_compact(sim),
        "mem": mem,
        "cpu": {"total": 3},
        "session": {"active": active, "total": node.engine_sessions_total},
        "apps": {**doc_lists, "calls": 18211, "selections": 402},
        "users": {"active": users, "total": len(node.engine_users_seen)},
        "cache": {"hits": 12, "lookups": 40, "added": 28, "replaced": 0, "bytes_added": 90311},
    }
    if not legacy:
        mem["totalPhysical"] = 16383.5
        body["apps"]["in_memory_docs"] = apps
        body["saturated"] = sim.engine.saturated
    return body


def _notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def _error(msg_id: Any, code: int, parameter: str, message: str) -> dict[str, Any]:
    # enigma.js reads exactly code, parameter and message (error-response-interceptor.js).
    error = {"code": code, "parameter": parameter, "message": message}
    return {"jsonrpc": "2.0", "id": msg_id, "error": error}


class RpcError(Exception):
    """A JSON-RPC error answer."""

    def __init__(self, code: int, parameter: str, message: str) -> None:
        super().__init__(message)
        self.code, self.parameter, self.message = code, parameter, message


def _param(params: Any, index: int, name: str, default: Any = None) -> Any:
    """A parameter given by position (a list) or by name (an object)."""
    if isinstance(params, list):
        return params[index] if index < len(params) else default
    if isinstance(params, dict):
        return params.get(name, default)
    return default


@dataclass(slots=True)
class Connection:
    """One websocket session's state: open documents and the delta protocol's last values."""

    version_of: Callable[[], str]
    apps: list[str]
    session_app: str | None = None
    docs: dict[int, str] = field(default_factory=dict)
    delta_state: dict[tuple[int, str, str], Any] = field(default_factory=dict)
    calls: Counter[tuple[str, bool]] = field(default_factory=Counter)

    # -- methods --------------------------------------------------------------------------------

    def call(self, handle: int, method: str, params: Any) -> dict[str, Any]:
        """The ``result`` of one call, or :class:`RpcError`."""
        if handle == GLOBAL_HANDLE:
            impl = GLOBAL_METHODS.get(method)
        elif handle in self.docs:
            impl = DOC_METHODS.get(method)
        else:
            raise RpcError(-32602, "Invalid handle", "Invalid Params")
        if impl is None:
            raise RpcError(-32601, method, "Method not found")
        return impl(self, handle, params)

    def open_doc(self, app_id: str) -> dict[str, Any]:
        """A ``Doc`` handle for ``app_id`` (the same handle when it is already open)."""
        if app_id not in self.apps and app_id != self.session_app:
            raise RpcError(APP_NOT_FOUND, app_id, "App not found")
        handle = next((h for h, doc in self.docs.items() if doc == app_id), None)
        if handle is None:
            handle = len(self.docs) + 1
            self.docs[handle] = app_id
        return {"qReturn": {"qType": "Doc", "qHandle": handle, "qGenericId": app_id}}

    # -- the delta protocol ------------------------------------------------------------------

    def deltas(self, handle: int, method: str, result: dict[str, Any]) -> dict[str, Any]:
        """``result`` as JSON-Patch lists against what this connection last sent."""
        out: dict[str, Any] = {}
        for key, value in result.items():
            cache_key = (handle, method, key)
            if cache_key not in self.delta_state:
                out[key] = [{"op": "add", "path": "/", "value": value}]
            elif self.delta_state[cache_key] == value:
                out[key] = []
            else:
                out[key] = [{"op": "replace", "path": "/", "value": value}]
            self.delta_state[cache_key] = value
        return out

    def answer(self, request: Any) -> dict[str, Any]:
        """The JSON-RPC reply to one decoded request."""
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _error(None, -32600, "Invalid request", "Invalid Request")
        msg_id, method = request.get("id"), request["method"]
        handle = request.get("handle", GLOBAL_HANDLE)
        self.calls[method, request.get("delta") is True] += 1
        try:
            result = self.call(handle, method, request.get("params", []))
        except RpcError as exc:
            return _error(msg_id, exc.code, exc.parameter, exc.message)
        if request.get("delta") is True:
            return {
                "jsonrpc": "2.0",
                "id": msg_id,
                "delta": True,
                "result": self.deltas(handle, method, result),
            }
        return {"jsonrpc": "2.0", "id": msg_id, "result": result}


Method = Callable[[Connection, int, Any], dict[str, Any]]


def _active_doc(c: Connection, handle: int, params: Any) -> dict[str, Any]:
    if c.session_app is None:
        raise RpcError(APP_NOT_FOUND, "", "No active document")
    return c.open_doc(c.session_app)


def _app_layout(c: Connection, handle: int, params: Any) -> dict[str, Any]:
    app_id = c.docs[handle]
    return {
        "qLayout": {
            "qTitle": app_id,
            "qFileName": app_id,
            "qLastReloadTime": "2024-09-15T04:12:33.000Z",
            "qModified": False,
            "qHasScript": not app_id.startswith(SESSION_APP_PREFIX),
            "qStateNames": [],
            "qMeta": {},
            "qLocaleInfo": {},
            "qHasData": not app_id.startswith(SESSION_APP_PREFIX),
            "qReadOnly": False,
            "qIsOpenedWithoutData": False,
            "qIsSessionApp": app_id.startswith(SESSION_APP_PREFIX),
            "qThumbnail": {},
        }
    }


GLOBAL_METHODS: dict[str, Method] = {
    "EngineVersion": lambda c, h, p: {"qVersion": {"qComponentVersion": c.version_of()}},
    "ProductVersion": lambda c, h, p: {"qReturn": c.version_of()},  # deprecated, still served
    "IsDesktopMode": lambda c, h, p: {"qReturn": False},
    "OSName": lambda c, h, p: {"qReturn": "WindowsNT"},
    "QTProduct": lambda c, h, p: {"qReturn": "Qlik Sense"},
    "GetDocList": lambda c, h, p: {
        "qDocList": [{"qDocName": a, "qDocId": a, "qTitle": a} for a in c.apps]
    },
    "OpenDoc": lambda c, h, p: c.open_doc(str(_param(p, 0, "qDocName", ""))),
    "GetActiveDoc": _active_doc,
}
DOC_METHODS: dict[str, Method] = {"GetAppLayout": _app_layout}


def answer(sim: Simulator, request: Any) -> dict[str, Any]:
    """The reply to one request on a fresh connection (kept for callers without a session)."""
    return Connection(lambda: sim.engine.version, list(sim.engine.apps)).answer(request)


def _encode_reply(faults: Faults | FaultChain, reply: dict[str, Any]) -> str:
    """Serialise a reply, applying the engine's malformed_json / wrong_shape faults."""
    fault = faults.take("engine", (FaultKind.MALFORMED_JSON, FaultKind.WRONG_SHAPE))
    text = json.dumps(reply)
    if fault is None:
        return text
    if fault.kind is FaultKind.WRONG_SHAPE and "result" in reply:
        return json.dumps({**reply, "result": fault.params.get("body", ["unexpected"])})
    return text[: max(1, len(text) // 2)]


def app_id_of(request: web.Request) -> str | None:
    """The app a websocket URL names (``/app/<id>``); ``None`` for ``engineData`` or none."""
    tail = request.match_info.get("tail", "").split("/", 1)[0]
    return None if tail in ("", "engineData") else tail


async def serve_session(
    request: web.Request,
    sim: Simulator,
    user: QlikUser,
    *,
    node: Node | None = None,
    via_proxy: bool = False,
    auth_info: dict[str, Any] | None = None,
) -> web.WebSocketResponse:
    """Run one engine websocket session for ``user`` until either side closes it.

    ``node`` is the node whose engine serves it (``None``: the Cloud tenant's engine).
    """
    faults = sim.faults_for(node) if node is not None else sim.faults
    ws = web.WebSocketResponse(autoping=True, heartbeat=None)
    await ws.prepare(request)
    key = (user.user_directory.casefold(), user.user_id.casefold())
    if sim.engine_sessions[key] >= sim.engine.max_parallel_sessions:
        params = {"severity": "fatal", "message": "Max parallel sessions exceeded"}
        await ws.send_json(_notification("OnMaxParallelSessionsExceeded", params))
        await ws.close()
        return ws
    app_id = app_id_of(request)
    session_app = app_id if app_id and app_id.startswith(SESSION_APP_PREFIX) else None
    conn = Connection(
        lambda: engine_version(sim, node), list(sim.engine.apps), session_app, calls=sim.rpc_calls
    )
    _count(sim, node, key, ws, +1)
    try:
        if await _greet(ws, sim, faults, user, via_proxy=via_proxy, auth_info=auth_info):
            await _converse(ws, conn, faults)
    finally:
        _count(sim, node, key, ws, -1)
    return ws


def _count(
    sim: Simulator, node: Node | None, key: tuple[str, str], ws: web.WebSocketResponse, step: int
) -> None:
    """Track an engine session opening (+1) or ending (-1), site-wide and per node."""
    sim.engine_sessions[key] += step
    targets = [node] if node is not None else []
    if step > 0:
        sim.websockets.add(ws)
        sim.engine_sessions_total += 1
        sim.engine_users_seen.add(key)
        for n in targets:
            n.websockets.add(ws)
            n.engine_sessions[key] += 1
            n.engine_sessions_total += 1
            n.engine_users_seen.add(key)
    else:
        sim.websockets.discard(ws)
        for n in targets:
            n.websockets.discard(ws)
            n.engine_sessions[key] -= 1


async def _greet(
    ws: web.WebSocketResponse,
    sim: Simulator,
    faults: Faults | FaultChain,
    user: QlikUser,
    *,
    via_proxy: bool,
    auth_info: dict[str, Any] | None,
) -> bool:
    """Send the greeting frames; ``False`` when a fatal fault ended the session instead."""
    fatal = faults.take("engine", (FaultKind.ENGINE_FATAL,))
    if fatal is not None:
        await ws.send_json(_notification(fatal.params["method"], {"severity": "fatal"}))
        await ws.close()
        return False
    if auth_info is not None or via_proxy or sim.engine.auth_info_first:
        info = auth_info or {
            "userId": user.user_id,
            "userDirectory": user.user_directory,
            "mustAuthenticate": False,
        }
        await ws.send_json(_notification("OnAuthenticationInformation", info))
    if faults.take("engine", (FaultKind.ENGINE_NO_CONNECTED,)) is None:
        await ws.send_json(_notification("OnConnected", {"qSessionState": "SESSION_CREATED"}))
    return True


async def _converse(
    ws: web.WebSocketResponse, conn: Connection, faults: Faults | FaultChain
) -> None:
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            continue
        try:
            request = json.loads(msg.data)
        except ValueError:
            await ws.send_json(_error(None, -32700, "Parse error", "Parse error"))
            continue
        with contextlib.suppress(ConnectionResetError):
            await ws.send_str(_encode_reply(faults, conn.answer(request)))


def create_app(sim: Simulator, node: Node) -> web.Application:
    """The engine application of one node (mutual TLS is the listener's job)."""

    async def healthcheck(request: web.Request) -> web.StreamResponse:
        return web.json_response(healthcheck_payload(sim, node))

    async def websocket(request: web.Request) -> web.StreamResponse:
        # Direct 4747 access needs X-Qlik-User on the upgrade; what a real engine does without
        # it is unconfirmed, so the upgrade is refused with a 403 the client can report.
        user = qlik_user_or_error(request, sim.disabled_users)
        if isinstance(user, web.Response):
            return user
        return await serve_session(request, sim, user, node=node)

    app = sim.service_app("engine", node=node)
    for path in ("/healthcheck", "/healthcheck/", "/engine/healthcheck", "/engine/healthcheck/"):
        app.router.add_get(path, healthcheck)
    app.router.add_get("/app/", websocket)
    app.router.add_get("/app/{tail:.+}", websocket)
    return app
