"""``engine_session``: open an engine session over the websocket and call ``EngineVersion``.

``wss://host:4747/app/engineData`` with the client certificate and ``X-Qlik-User`` — how
enigma.js and Ctrl-Q connect. The engine greets with ``OnConnected`` (engine 12.20+), maybe
preceded by ``OnAuthenticationInformation``; a notification with ``severity: fatal`` (for
example ``OnMaxParallelSessionsExceeded``) means the session was refused (qlik-api-facts.md §2).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from exporter.checks.context import NOT_JSON, ProbeContext, server_json
from exporter.reasons import ProbeFailure, Reason
from exporter.results import CheckValues
from exporter.transport import ClosedBeforeResponse, Resolver, resolve_host

MAX_FRAME = 1024 * 1024
GREETING_FRAMES = 5


class _ResolverAdapter(AbstractResolver):
    """Lets aiohttp use the exporter's (injectable) resolver and time the lookup."""

    def __init__(self, resolver: Resolver, phases: dict[str, float]) -> None:
        self._resolver = resolver
        self._phases = phases

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        t = time.perf_counter()
        addresses = await resolve_host(self._resolver, host, port)
        self._phases.setdefault("resolve", time.perf_counter() - t)
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        """Nothing to release."""


async def run(ctx: ProbeContext) -> CheckValues:
    """Wait for ``OnConnected``, then ask for the engine version on the global handle."""
    phases = ctx.session.phases
    url = f"wss://{ctx.target.host}:{ctx.port}/app/engineData"
    connector = aiohttp.TCPConnector(
        ssl=ctx.auth.tls.verify,
        force_close=True,
        resolver=_ResolverAdapter(ctx.session.resolver, phases),
    )
    t = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as http:
        try:
            ws = await http.ws_connect(
                url, headers=ctx.auth.headers, max_msg_size=MAX_FRAME, autoping=True
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise _handshake_failure(exc, url) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise exc.certificate_error from None
        except aiohttp.ClientConnectorError as exc:
            raise exc.os_error from None
        except aiohttp.ServerDisconnectedError:
            raise ClosedBeforeResponse(fresh=False) from None
        async with ws:
            phases.setdefault("connect", time.perf_counter() - t - phases.get("resolve", 0.0))
            _record_certificate(ctx, ws)
            ctx.note(f"websocket {url} open")
            t = time.perf_counter()
            await _greeting(ctx, ws)
            phases.setdefault("request", time.perf_counter() - t)
            t = time.perf_counter()
            await ws.send_str(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "EngineVersion",
                        "handle": -1,
                        "params": [],
                    }
                )
            )
            reply = await _next_message(ctx, ws, expect_id=1)
            phases.setdefault("read", time.perf_counter() - t)
    version = _version(ctx, reply)
    return CheckValues(engine_version=version, details={"engine version": version})


def _record_certificate(ctx: ProbeContext, ws: aiohttp.ClientWebSocketResponse) -> None:
    ssl_obj = ws.get_extra_info("ssl_object")
    der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
    if der and ctx.session.on_certificate is not None:
        ctx.session.on_certificate(ctx.target.host, ctx.port, der)


def _handshake_failure(exc: aiohttp.WSServerHandshakeError, url: str) -> ProbeFailure:
    status = exc.status
    reason = {
        401: Reason.UNAUTHORIZED,
        403: Reason.FORBIDDEN,
        404: Reason.NOT_FOUND,
        429: Reason.RATE_LIMITED,
    }.get(status)
    if reason is None:
        reason = Reason.SERVER_ERROR if status >= 500 else Reason.SESSION_REJECTED
    return ProbeFailure(reason, f"websocket upgrade to {url} refused: {status} {exc.message}")


async def _next_message(
    ctx: ProbeContext, ws: aiohttp.ClientWebSocketResponse, *, expect_id: int | None = None
) -> dict[str, Any]:
    while True:
        msg = await ws.receive()
        if msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
        ):
            raise ProbeFailure(
                Reason.SESSION_REJECTED, f"engine closed the websocket (code {ws.close_code})"
            )
        if msg.type == aiohttp.WSMsgType.ERROR:
            raise ProbeFailure(Reason.SESSION_REJECTED, f"websocket error: {ws.exception()!r}")
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ctx.invalid("engine sent a non-text frame")
        data = server_json(msg.data)
        if data is NOT_JSON:
            raise ctx.invalid("engine sent a frame that is not JSON")
        if not isinstance(data, dict):
            raise ctx.invalid("engine sent a JSON-RPC frame that is not an object")
        _raise_if_fatal(data)
        if expect_id is None or data.get("id") == expect_id:
            return data
        ctx.note(f"engine notification {str(data.get('method'))[:60]} ignored")


def _raise_if_fatal(data: dict[str, Any]) -> None:
    params = data.get("params")
    method = str(data.get("method", ""))[:80]
    if isinstance(params, dict):
        if params.get("severity") == "fatal":
            raise ProbeFailure(Reason.SESSION_REJECTED, f"engine sent fatal {method}")
        if method == "OnAuthenticationInformation" and params.get("mustAuthenticate") is True:
            raise ProbeFailure(Reason.SESSION_REJECTED, "engine says mustAuthenticate")


async def _greeting(ctx: ProbeContext, ws: aiohttp.ClientWebSocketResponse) -> None:
    for _ in range(GREETING_FRAMES):
        data = await _next_message(ctx, ws)
        method = data.get("method")
        ctx.note(f"engine greeting {str(method)[:60]}")
        if method == "OnConnected":
            return
    raise ctx.invalid(f"no OnConnected within the first {GREETING_FRAMES} frames")


def _version(ctx: ProbeContext, reply: dict[str, Any]) -> str:
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
