"""The plain-HTTP admin endpoint (127.0.0.1): flip faults, switch the site, read state.

Every switch of the Python API is here too, for tests and benchmarks in another process. JSON
in and out; a bad request is a 400 whose text says what is wrong; an unknown node or OAuth
client is a 404.

State and faults:

- ``GET /state``: ports, hosts, certificate folder, faults, sessions, nodes, licences.
- ``GET /faults``; ``POST /faults`` ``{"service": "repository", "kind": "status", "status": 500}``
  (optional ``times``; optional ``node`` to fault one node only); ``DELETE /faults``;
  ``DELETE /faults/{service}`` (all nodes' too).

The site (``{node}`` is a node name or host name):

- ``GET /site/nodes``; ``POST /site/nodes`` ``{"name", "hostName"?, "address"?, "purpose"?,
  "engine"?, "proxy"?, "scheduler"?, "printing"?, "resolvable"?}`` adds and starts a node;
  ``DELETE /site/nodes/{node}`` removes one.
- ``POST /site/nodes/{node}/stop`` | ``/start``: all its ports refuse / listen again.
- ``POST /site/nodes/{node}/services/{service}`` ``{"state": "no_communication",
  "timestamp"?: ISO 8601}`` sets what ServiceStatus reports (``"state": null``: the natural one).
- ``POST /site/nodes/{node}/services/{service}/stop`` | ``/start``: the service's listener.
- ``POST /site/nodes/{node}/versions`` ``{"buildVersion"?, "engineVersion"?}``.
- ``POST /site/nodes/{node}/certificate`` ``{"kind": "other_ca"|"wrong_host"|"expired"|
  "renewed", "validDays"?}``; ``DELETE /site/nodes/{node}/certificate`` restores it.
- ``GET /site/license``; ``POST /site/license`` ``{"variant"?, "validTo"?: date|null,
  "keyDateFormat"?: "qlik"|"iso"}``; ``POST /site/license/expire``; ``POST /site/license/exhaust``;
  ``POST /site/license/access/{professional|analyzer}`` ``{"total"?, "allocated"?, "used"?,
  "quarantined"?, "enabled"?}``.

Qlik Cloud:

- ``POST /apikeys`` ``{"sub"?, "expires_in"?, "admin"?}`` issues an API key;
  ``POST /apikeys/{jti}/revoke`` revokes one.
- ``POST /cloud/oauth/clients`` ``{"name"?, "admin"?}`` → ``{"client_id", "client_secret"}``;
  ``POST /cloud/oauth/clients/{id}/revoke``; ``POST /cloud/oauth/clients/{id}/rate-limit``
  ``{"limit": 0, "window"?: 60}`` (``"limit": null`` lifts it);
  ``POST /cloud/oauth/clients/{id}/forbid`` ``{"forbidden": true}`` (403 on token requests);
  ``POST /cloud/oauth/token-lifetime`` ``{"seconds": 600}``.
- ``GET /cloud/license``; ``POST /cloud/license`` ``{"validTo"?: date, "status"?: "Ok"|…|null}``;
  ``POST /cloud/license/expire``; ``POST /cloud/license/exhaust``;
  ``POST /cloud/license/allotments/{name}`` ``{"units"?, "unitsUsed"?, "usageClass"?, "overage"?}``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web

from exporter.sim.faults import SERVICES
from exporter.sim.site import Node, NodeSpec

if TYPE_CHECKING:
    from exporter.sim.simulator import Simulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def _guard(handler: Handler) -> Handler:
    """Bad values become 400 and unknown names 404, with the reason as the text."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except KeyError as exc:
            raise web.HTTPNotFound(text=str(exc.args[0]) if exc.args else "not found") from None
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    return wrapped


def _date(value: Any, name: str) -> dt.date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f'"{name}" must be an ISO 8601 date or null')
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise ValueError(f'"{name}" must be an ISO 8601 date, got {value!r}') from None


def _datetime(value: Any, name: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f'"{name}" must be an ISO 8601 time')
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def state(sim: Simulator) -> dict[str, Any]:
    """What ``GET /state`` returns."""
    return {
        "host": sim.host,
        "cloud_host": sim.cloud_host,
        "hosts": sim.hosts,
        "ports": asdict(sim.ports),
        "certs_dir": str(sim.certs_dir),
        "faults": sim.faults.snapshot(),
        "proxy_sessions": sim.proxy_sessions.counts(),
        "engine_sessions": sim.engine_session_counts(),
        "nodes": [n.admin_json() for n in sim.nodes],
        "license": sim.license.admin_json(),
        "cloud_license": sim.cloud.license.admin_json(),
        "oauth_clients": [c.to_json() for c in sim.cloud.oauth.clients.values()],
    }


def _fault_routes(sim: Simulator, r: web.UrlDispatcher) -> None:
    async def get_faults(request: web.Request) -> web.StreamResponse:
        return web.json_response(sim.faults.snapshot())

    async def post_fault(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        service, kind = body.pop("service", None), body.pop("kind", None)
        node = body.pop("node", None)
        if not isinstance(service, str) or not isinstance(kind, str):
            raise web.HTTPBadRequest(text='"service" and "kind" are required strings')
        faults = sim.faults if node is None else sim.node(str(node)).faults
        fault = faults.set(service, kind, **body)
        return web.json_response({"service": service, "node": node, **fault.to_json()}, status=201)

    async def delete_faults(request: web.Request) -> web.StreamResponse:
        service = request.match_info.get("service")
        if service is not None and service not in SERVICES:
            raise web.HTTPNotFound(text=f"unknown service {service!r}")
        sim.faults.clear(service)
        for node in sim.nodes:
            if service is None or service in node.faults.services:
                node.faults.clear(service)
        return web.json_response(sim.faults.snapshot())

    r.add_get("/faults", get_faults)
    r.add_post("/faults", _guard(post_fault))
    r.add_delete("/faults", delete_faults)
    r.add_delete("/faults/{service}", delete_faults)


def _node_routes(sim: Simulator, r: web.UrlDispatcher) -> None:
    def node_reply(node: Node, status: int = 200) -> web.Response:
        return web.json_response(node.admin_json(), status=status)

    async def list_nodes(request: web.Request) -> web.StreamResponse:
        return web.json_response([n.admin_json() for n in sim.nodes])

    async def add_node(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        known = {"name", "hostName", "address", "purpose", "engine", "proxy", "scheduler"}
        known |= {"printing", "resolvable"}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown node field(s) {sorted(unknown)}")
        name = body.pop("name", None)
        if not isinstance(name, str):
            raise ValueError('"name" is a required string')
        spec = NodeSpec(name, host_name=body.pop("hostName", None), **body)
        node = await sim.add_node(spec)
        return node_reply(node, 201)

    async def remove_node(request: web.Request) -> web.StreamResponse:
        node = await sim.remove_node(request.match_info["node"])
        return web.json_response(node.admin_json())

    async def stop_node(request: web.Request) -> web.StreamResponse:
        return node_reply(await sim.stop_node(request.match_info["node"]))

    async def start_node(request: web.Request) -> web.StreamResponse:
        return node_reply(await sim.start_node(request.match_info["node"]))

    async def set_state(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if "state" not in body:
            raise ValueError('"state" is required (a state name, or null for the natural one)')
        node = sim.set_service_state(
            request.match_info["node"],
            request.match_info["service"],
            body["state"],
            _datetime(body.get("timestamp"), "timestamp"),
        )
        return node_reply(node)

    async def service_action(request: web.Request) -> web.StreamResponse:
        name, service = request.match_info["node"], request.match_info["service"]
        if request.match_info["action"] == "stop":
            node = await sim.stop_service(name, service)
        else:
            node = await sim.start_service(name, service)
        return node_reply(node)

    async def versions(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        node = sim.set_node_versions(
            request.match_info["node"],
            build_version=body.get("buildVersion"),
            engine_version=body.get("engineVersion"),
        )
        return node_reply(node)

    async def certificate(request: web.Request) -> web.StreamResponse:
        name = request.match_info["node"]
        if request.method == "DELETE":
            sim.restore_node_certificate(name)
            return node_reply(sim.node(name))
        body = await _json_body(request)
        days = body.get("validDays")
        path = sim.regenerate_node_certificate(
            name, body.get("kind", "other_ca"), valid_days=float(days) if days else None
        )
        return web.json_response({**sim.node(name).admin_json(), "certificateFile": str(path)})

    base = "/site/nodes/{node}"
    r.add_get("/site/nodes", list_nodes)
    r.add_post("/site/nodes", _guard(add_node))
    r.add_delete(base, _guard(remove_node))
    r.add_post(f"{base}/stop", _guard(stop_node))
    r.add_post(f"{base}/start", _guard(start_node))
    r.add_post(f"{base}/services/{{service}}", _guard(set_state))
    r.add_post(f"{base}/services/{{service}}/{{action:stop|start}}", _guard(service_action))
    r.add_post(f"{base}/versions", _guard(versions))
    r.add_post(f"{base}/certificate", _guard(certificate))
    r.add_delete(f"{base}/certificate", _guard(certificate))


def _license_routes(sim: Simulator, r: web.UrlDispatcher) -> None:
    lic = sim.license

    def reply() -> web.Response:
        return web.json_response(lic.admin_json())

    async def get_license(request: web.Request) -> web.StreamResponse:
        return reply()

    async def post_license(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if "variant" in body:
            lic.set_variant(body["variant"])
        if "validTo" in body:
            lic.set_end(_date(body["validTo"], "validTo"))
        if "keyDateFormat" in body:
            if body["keyDateFormat"] not in ("qlik", "iso"):
                raise ValueError('"keyDateFormat" must be "qlik" or "iso"')
            lic.key_date_format = body["keyDateFormat"]
        return reply()

    async def expire(request: web.Request) -> web.StreamResponse:
        lic.expire()
        return reply()

    async def exhaust(request: web.Request) -> web.StreamResponse:
        lic.exhaust()
        return reply()

    async def access(request: web.Request) -> web.StreamResponse:
        lic.set_access(request.match_info["type"], **await _json_body(request))
        return reply()

    r.add_get("/site/license", get_license)
    r.add_post("/site/license", _guard(post_license))
    r.add_post("/site/license/expire", expire)
    r.add_post("/site/license/exhaust", exhaust)
    r.add_post("/site/license/access/{type}", _guard(access))


def _cloud_routes(sim: Simulator, r: web.UrlDispatcher) -> None:
    tenant = sim.cloud

    async def issue_api_key(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        sub, expires_in = body.get("sub"), body.get("expires_in", 86400 * 30)
        if sub is not None and not isinstance(sub, str):
            raise web.HTTPBadRequest(text='"sub" must be a string')
        if expires_in is not None and not isinstance(expires_in, int | float):
            raise web.HTTPBadRequest(text='"expires_in" must be a number or null')
        key = sim.cloud_issue_api_key(sub, expires_in, admin=bool(body.get("admin", True)))
        jti = jwt.decode(key, options={"verify_signature": False})["jti"]
        return web.json_response({"key": key, "jti": jti}, status=201)

    async def revoke_api_key(request: web.Request) -> web.StreamResponse:
        jti = sim.cloud_revoke(request.match_info["jti"])
        return web.json_response({"jti": jti, "status": "revoked"})

    async def create_client(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        name = body.get("name", "monitoring")
        if not isinstance(name, str):
            raise ValueError('"name" must be a string')
        client_id, secret = tenant.create_oauth_client(name, admin=bool(body.get("admin", True)))
        reply = {**tenant.oauth_client(client_id).to_json(), "client_secret": secret}
        return web.json_response(reply, status=201)

    async def client_action(request: web.Request) -> web.StreamResponse:
        client_id, action = request.match_info["id"], request.match_info["action"]
        client = tenant.oauth_client(client_id)
        body = await _json_body(request)
        if action == "revoke":
            tenant.revoke_oauth_client(client_id)
        elif action == "rate-limit":
            limit = body.get("limit", 0)
            if limit is not None and (not isinstance(limit, int) or limit < 0):
                raise ValueError('"limit" must be a non-negative integer or null')
            tenant.rate_limit_oauth_client(client_id, limit, float(body.get("window", 60)))
        else:
            client.forbidden = bool(body.get("forbidden", True))
        return web.json_response(client.to_json())

    async def token_lifetime(request: web.Request) -> web.StreamResponse:
        seconds = (await _json_body(request)).get("seconds")
        if not isinstance(seconds, int) or seconds < 1:
            raise ValueError('"seconds" must be a positive integer')
        tenant.oauth.token_lifetime = seconds
        return web.json_response({"seconds": seconds})

    lic = tenant.license

    async def get_license(request: web.Request) -> web.StreamResponse:
        return web.json_response(lic.admin_json())

    async def post_license(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if "validTo" in body:
            end = _date(body["validTo"], "validTo")
            if end is None:
                raise ValueError('"validTo" must be a date')
            lic.set_end(end)
        if "status" in body:
            lic.set_status(body["status"])
        return web.json_response(lic.admin_json())

    async def license_action(request: web.Request) -> web.StreamResponse:
        if request.match_info["action"] == "expire":
            lic.expire()
        else:
            lic.exhaust()
        return web.json_response(lic.admin_json())

    async def allotment(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        lic.set_allotment(
            request.match_info["name"],
            units=body.get("units"),
            units_used=body.get("unitsUsed"),
            usage_class=body.get("usageClass"),
            overage=body.get("overage"),
        )
        return web.json_response(lic.admin_json())

    r.add_post("/apikeys", _guard(issue_api_key))
    r.add_post("/apikeys/{jti}/revoke", revoke_api_key)
    r.add_post("/cloud/oauth/clients", _guard(create_client))
    r.add_post("/cloud/oauth/clients/{id}/{action:revoke|rate-limit|forbid}", _guard(client_action))
    r.add_post("/cloud/oauth/token-lifetime", _guard(token_lifetime))
    r.add_get("/cloud/license", get_license)
    r.add_post("/cloud/license", _guard(post_license))
    r.add_post("/cloud/license/{action:expire|exhaust}", license_action)
    r.add_post("/cloud/license/allotments/{name}", _guard(allotment))


def create_app(sim: Simulator) -> web.Application:
    """The admin application."""

    async def get_state(request: web.Request) -> web.StreamResponse:
        return web.json_response(state(sim))

    app = web.Application()
    app.router.add_get("/state", get_state)
    _fault_routes(sim, app.router)
    _node_routes(sim, app.router)
    _license_routes(sim, app.router)
    _cloud_routes(sim, app.router)
    return app
