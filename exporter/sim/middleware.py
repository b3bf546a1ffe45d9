"""The HTTP side of fault injection: one middleware per service and a table of fault responses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from exporter.sim.faults import (
    BODY_KINDS,
    HTTP_TERMINAL_KINDS,
    Fault,
    FaultChain,
    FaultKind,
    Faults,
)


class ErrorRenderer(Protocol):
    """Builds a service's error response (Qlik Sense: plain text; Qlik Cloud: JSON errors)."""

    def __call__(
        self, status: int, message: str, retry_after: int | None = None
    ) -> web.Response: ...


def text_error(status: int, message: str, retry_after: int | None = None) -> web.Response:
    """How Qlik Sense on-premise services answer errors: a short plain-text body."""
    return web.Response(status=status, text=message)


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """What the middleware needs to know about the service it fronts."""

    name: str
    faults: Faults | FaultChain
    stopping: asyncio.Event
    render_error: ErrorRenderer = text_error


FaultResponder = Callable[[web.Request, Handler, Fault, ServiceInfo], Awaitable[web.StreamResponse]]


def is_websocket_upgrade(request: web.Request) -> bool:
    """True for a websocket handshake (body faults are then applied to frames instead)."""
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


async def _hang(
    request: web.Request, handler: Handler, fault: Fault, info: ServiceInfo
) -> web.StreamResponse:
    # Never answer; end only when the client gives up (transport closing) or the simulator
    # stops, so stop() cannot be held up by hung handlers.
    while not info.stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(info.stopping.wait(), timeout=0.2)
    return web.Response(status=503, text="simulator stopping")


async def _reset(
    request: web.Request, handler: Handler, fault: Fault, info: ServiceInfo
) -> web.StreamResponse:
    abort_connection(request)
    return web.Response(status=500)  # never reaches the client: the socket is gone


def abort_connection(request: web.Request) -> None:
    """Abort the TCP connection with an RST (SO_LINGER 0), as a crashed or filtered peer does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _status(
    request: web.Request, handler: Handler, fault: Fault, info: ServiceInfo
) -> web.StreamResponse:
    status: int = fault.params["status"]
    body: str | None = fault.params.get("body")
    retry_after: int | None = fault.params.get("retry_after")
    resp = (
        web.Response(status=status, text=body)
        if body is not None
        else info.render_error(status, _reason(status), retry_after)
    )
    if retry_after is not None:
        # Qlik Cloud sends a lower-case `retry-after: <seconds>` with 429 (qlik-api-facts.md §5).
        resp.headers["retry-after"] = str(retry_after)
    return resp


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _json_of(request: web.Request, handler: Handler) -> tuple[web.Response, Any]:
    """Run the real handler and decode its JSON body (``None`` when it is not JSON)."""
    resp = await handler(request)
    if not isinstance(resp, web.Response) or not isinstance(resp.body, bytes):
        return web.Response(text="{}"), None
    try:
        return resp, json.loads(resp.body)
    except ValueError:
        return resp, None


async def _malformed_json(
    request: web.Request, handler: Handler, fault: Fault, info: ServiceInfo
) -> web.StreamResponse:
    resp, _ = await _json_of(request, handler)
    raw = resp.body if isinstance(resp.body, bytes) else b"{}"
    # The real answer cut in half, still labelled JSON: what a truncating proxy produces.
    cut = raw[: max(1, len(raw) // 2)]
    return web.Response(status=resp.status, body=cut, content_type="application/json")


async def _wrong_shape(
    request: web.Request, handler: Handler, fault: Fault, info: ServiceInfo
) -> web.StreamResponse:
    if "body" in fault.params:
        return web.json_response(fault.params["body"])
    resp, data = await _json_of(request, handler)
    # Valid JSON whose top-level type is not what the endpoint documents.
    other: Any = [{"unexpected": True}] if isinstance(data, dict) else {"unexpected": True}
    return web.json_response(other, status=resp.status)


async def _oversized(
    request: web.Request, handler: Handler, fault: Fault, info: ServiceInfo
) -> web.StreamResponse:
    size = int(fault.params["size_mb"] * 1024 * 1024)
    head, tail = b'{"padding":"', b'"}'
    chunk = b"x" * (1024 * 1024)
    resp = web.StreamResponse(status=200, headers={hdrs.CONTENT_TYPE: "application/json"})
    resp.content_length = size
    await resp.prepare(request)
    await resp.write(head)
    remaining = size - len(head) - len(tail)
    while remaining > 0:
        piece = chunk[: min(len(chunk), remaining)]
        await resp.write(piece)
        remaining -= len(piece)
    await resp.write(tail)
    await resp.write_eof()
    return resp


RESPONDERS: dict[FaultKind, FaultResponder] = {
    FaultKind.HANG: _hang,
    FaultKind.RESET: _reset,
    FaultKind.STATUS: _status,
    FaultKind.MALFORMED_JSON: _malformed_json,
    FaultKind.WRONG_SHAPE: _wrong_shape,
    FaultKind.OVERSIZED: _oversized,
}
_WS_TERMINAL = tuple(k for k in HTTP_TERMINAL_KINDS if k not in BODY_KINDS)


def fault_middleware(info: ServiceInfo) -> Any:
    """A middleware that applies the service's HTTP faults before its handlers run."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        delay = info.faults.take(info.name, (FaultKind.DELAY,))
        if delay is not None:
            await asyncio.sleep(delay.params["seconds"])
        kinds = _WS_TERMINAL if is_websocket_upgrade(request) else HTTP_TERMINAL_KINDS
        fault = info.faults.take(info.name, kinds)
        if fault is None:
            return await handler(request)
        return await RESPONDERS[fault.kind](request, handler, fault, info)

    return middleware
