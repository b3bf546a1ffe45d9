"""``engine_session``: open an engine session over the websocket and call ``EngineVersion``.

QSEoW: ``wss://host:4747/app/engineData`` with the client certificate and ``X-Qlik-User`` — how
enigma.js and Ctrl-Q connect. Qlik Cloud: ``wss://<tenant>/app/SessionApp_<random>`` with the
bearer token, a session app that needs no stored app (how qlik-sdk's session apps connect).
The engine greets with ``OnConnected`` (engine 12.20+), maybe preceded by
``OnAuthenticationInformation``; a notification with ``severity: fatal`` (for
example ``OnMaxParallelSessionsExceeded``) means the session was refused (qlik-api-facts.md §2).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from exporter.checks.context import NOT_JSON, ProbeContext, server_json
from exporter.reasons import ProbeFailure, Reason
from exporter.results import CheckValues
from exporter.transport import WebSocket

GREETING_FRAMES = 5
# Notifications an engine may push before the answer; beyond these the run gives up.
MAX_NOTIFICATIONS = 50


async def run(ctx: ProbeContext) -> CheckValues:
    """Wait for ``OnConnected``, then ask for the engine version on the global handle."""
    cloud = ctx.target.type == "cloud"
    ws = await ctx.websocket(
        f"/app/SessionApp_{secrets.token_hex(8)}" if cloud else "/app/engineData"
    )
    try:
        await read_greeting(ctx, ws)
        call = {"jsonrpc": "2.0", "id": 1, "method": "EngineVersion", "handle": -1, "params": []}
        await ws.send_text(json.dumps(call))
        reply = await read_message(ctx, ws, expect_id=1)
    finally:
        await ws.close()
    version = parse_version(ctx, reply)
    return CheckValues(engine_version=version, details={"engine version": version})


async def read_message(
    ctx: ProbeContext, ws: WebSocket, *, expect_id: int | None = None
) -> dict[str, Any]:
    for _ in range(MAX_NOTIFICATIONS):
        data = server_json(await ws.receive())
        if data is NOT_JSON:
            raise ctx.invalid("engine sent a frame that is not JSON")
        if not isinstance(data, dict):
            raise ctx.invalid("engine sent a JSON-RPC frame that is not an object")
        _raise_if_fatal(data)
        if expect_id is None or data.get("id") == expect_id:
            return data
        ctx.note(f"engine notification {str(data.get('method'))[:60]} ignored")
    raise ctx.invalid(f"no answer within {MAX_NOTIFICATIONS} engine messages")


def _raise_if_fatal(data: dict[str, Any]) -> None:
    params = data.get("params")
    method = str(data.get("method", ""))[:80]
    if isinstance(params, dict):
        if params.get("severity") == "fatal":
            raise ProbeFailure(Reason.SESSION_REJECTED, f"engine sent fatal {method}")
        if method == "OnAuthenticationInformation" and params.get("mustAuthenticate") is True:
            raise ProbeFailure(Reason.SESSION_REJECTED, "engine says mustAuthenticate")


async def read_greeting(ctx: ProbeContext, ws: WebSocket) -> None:
    for _ in range(GREETING_FRAMES):
        data = await read_message(ctx, ws)
        method = data.get("method")
        ctx.note(f"engine greeting {str(method)[:60]}")
        if method == "OnConnected":
            return
    raise ctx.invalid(f"no OnConnected within the first {GREETING_FRAMES} frames")


def parse_version(ctx: ProbeContext, reply: dict[str, Any]) -> str:
    error = reply.get("error")
    if isinstance(error, dict):
        raise ctx.invalid(f"EngineVersion failed: {str(error.get('message'))[:120]}")
    result = reply.get("result")
    version = None
    if isinstance(result, dict) and isinstance(result.get("qVersion"), dict):
        version = result["qVersion"].get("qComponentVersion")
    if not isinstance(version, str) or not version:
        raise ctx.invalid("EngineVersion reply lacks qVersion.qComponentVersion")
    return version[:64]
