"""The plain-HTTP admin endpoint (127.0.0.1): flip faults and read state from another process.

Routes (JSON in and out):

- ``GET /state``: ports, host, certificate folder, active faults, proxy session counts.
- ``GET /faults``; ``POST /faults`` ``{"service": "repository", "kind": "status", "status": 500}``
  (optional ``times``); ``DELETE /faults``; ``DELETE /faults/{service}``.
- ``POST /apikeys`` ``{"sub"?, "expires_in"?}`` issues a Qlik Cloud API key;
  ``POST /apikeys/{jti}/revoke`` revokes one.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web

from exporter.sim.faults import SERVICES

if TYPE_CHECKING:
    from exporter.sim.simulator import Simulator


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def state(sim: Simulator) -> dict[str, Any]:
    """What ``GET /state`` returns."""
    return {
        "host": sim.host,
        "ports": asdict(sim.ports),
        "certs_dir": str(sim.certs_dir),
        "faults": sim.faults.snapshot(),
        "proxy_sessions": sim.proxy_sessions.counts(),
        "engine_sessions": sim.engine_session_counts(),
    }


def create_app(sim: Simulator) -> web.Application:
    """The admin application."""

    async def get_state(request: web.Request) -> web.StreamResponse:
        return web.json_response(state(sim))

    async def get_faults(request: web.Request) -> web.StreamResponse:
        return web.json_response(sim.faults.snapshot())

    async def post_fault(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        service, kind = body.pop("service", None), body.pop("kind", None)
        if not isinstance(service, str) or not isinstance(kind, str):
            raise web.HTTPBadRequest(text='"service" and "kind" are required strings')
        try:
            fault = sim.faults.set(service, kind, **body)
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.json_response({"service": service, **fault.to_json()}, status=201)

    async def delete_faults(request: web.Request) -> web.StreamResponse:
        service = request.match_info.get("service")
        if service is not None and service not in SERVICES:
            raise web.HTTPNotFound(text=f"unknown service {service!r}")
        sim.faults.clear(service)
        return web.json_response(sim.faults.snapshot())

    async def issue_api_key(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request) if request.can_read_body else {}
        sub, expires_in = body.get("sub"), body.get("expires_in", 86400 * 30)
        if sub is not None and not isinstance(sub, str):
            raise web.HTTPBadRequest(text='"sub" must be a string')
        if expires_in is not None and not isinstance(expires_in, int | float):
            raise web.HTTPBadRequest(text='"expires_in" must be a number or null')
        key = sim.cloud_issue_api_key(sub, expires_in)
        jti = jwt.decode(key, options={"verify_signature": False})["jti"]
        return web.json_response({"key": key, "jti": jti}, status=201)

    async def revoke_api_key(request: web.Request) -> web.StreamResponse:
        jti = sim.cloud_revoke(request.match_info["jti"])
        return web.json_response({"jti": jti, "status": "revoked"})

    app = web.Application()
    app.router.add_get("/state", get_state)
    app.router.add_get("/faults", get_faults)
    app.router.add_post("/faults", post_fault)
    app.router.add_delete("/faults", delete_faults)
    app.router.add_delete("/faults/{service}", delete_faults)
    app.router.add_post("/apikeys", issue_api_key)
    app.router.add_post("/apikeys/{jti}/revoke", revoke_api_key)
    return app
