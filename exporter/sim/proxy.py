"""The QPS REST API (port 4243): sessions, users and tickets per virtual proxy.

Paths are ``/qps/[{vp}/]…``; no vp segment — or an empty one, ``/qps//session``, as Ctrl-Q sends
for the default virtual proxy — means the default virtual proxy (qlik-api-facts.md §3, §9).
Every call needs a matching xrfkey; the client certificate is the listener's job. Session
objects are PascalCase, as Butler SOS and Ctrl-Q read them. Each node's proxy knows only its
own sessions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from exporter.sim.qlik import xrfkey_error
from exporter.sim.state import user_key

if TYPE_CHECKING:
    from exporter.sim.simulator import Simulator
    from exporter.sim.site import Node


def _vp(request: web.Request, sim: Simulator) -> str:
    vp = request.match_info.get("vp", "")
    if vp not in sim.virtual_proxies:
        raise web.HTTPNotFound(text=f"Unknown virtual proxy prefix '{vp}'.")
    return vp


def _ticket_fields(body: Any) -> tuple[str, str, tuple[dict[str, str], ...]]:
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="Body must be a JSON object.")
    ud, uid = body.get("UserDirectory"), body.get("UserId")
    if not isinstance(ud, str) or not isinstance(uid, str) or not ud or not uid:
        raise web.HTTPBadRequest(text="UserDirectory and UserId are required.")
    # help.qlik.com "Add ticket": neither may contain a backslash.
    if "\\" in ud or "\\" in uid:
        raise web.HTTPBadRequest(text="UserDirectory and UserId must not contain a backslash.")
    attrs = body.get("Attributes") or []
    if not isinstance(attrs, list) or not all(isinstance(a, dict) for a in attrs):
        raise web.HTTPBadRequest(text="Attributes must be a list of objects.")
    return ud, uid, tuple(attrs)


def create_app(sim: Simulator, node: Node) -> web.Application:
    """The QPS API application of one node."""

    @web.middleware
    async def xrfkey(request: web.Request, handler: Any) -> web.StreamResponse:
        error = xrfkey_error(request)
        if error is not None:
            return error
        response: web.StreamResponse = await handler(request)
        return response

    async def sessions(request: web.Request) -> web.StreamResponse:
        vp = _vp(request, sim)
        found = sim.proxy_sessions.find(vp=vp, node=node.name)
        return web.json_response([s.to_qps() for s in found])

    async def session(request: web.Request) -> web.StreamResponse:
        vp = _vp(request, sim)
        found = sim.proxy_sessions.get(request.match_info["id"])
        if found is None or found.vp != vp or found.node != node.name:
            raise web.HTTPNotFound(text="Session not found.")
        if request.method == "DELETE":
            sim.proxy_sessions.delete(found.session_id)
        return web.json_response(found.to_qps())

    async def user(request: web.Request) -> web.StreamResponse:
        vp = _vp(request, sim)
        who = user_key(request.match_info["dir"], request.match_info["id"])
        if request.method == "DELETE":
            ended = sim.proxy_sessions.delete_user(who, vp=vp, node=node.name)
        else:
            ended = sim.proxy_sessions.find(vp=vp, user=who, node=node.name)
        return web.json_response([s.to_qps() for s in ended])

    async def ticket(request: web.Request) -> web.StreamResponse:
        vp = _vp(request, sim)
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="Body must be JSON.") from None
        ud, uid, attrs = _ticket_fields(body)
        t = sim.tickets.issue(vp, ud, uid, attrs)
        reply = {
            "UserDirectory": ud,
            "UserId": uid,
            "Attributes": list(attrs),
            "Ticket": t.ticket,
            "TargetUri": body.get("TargetUri"),
            "TargetId": body.get("TargetId"),
        }
        return web.json_response(reply, status=201)

    app = sim.service_app("proxy", node=node)
    app.middlewares.append(xrfkey)
    r = app.router
    for base in ("/qps", "/qps/", "/qps/{vp}"):
        r.add_get(f"{base}/session", sessions)
        r.add_route("GET", f"{base}/session/{{id}}", session)
        r.add_route("DELETE", f"{base}/session/{{id}}", session)
        r.add_route("GET", f"{base}/user/{{dir}}/{{id}}", user)
        r.add_route("DELETE", f"{base}/user/{{dir}}/{{id}}", user)
        r.add_post(f"{base}/ticket", ticket)
    return app
