"""The Qlik Sense Repository Service (QRS, port 4242) of one node.

Every QRS call needs a matching xrfkey and an ``X-Qlik-User`` header (qlik-api-facts.md §1);
the client certificate is checked in the TLS handshake (see :mod:`exporter.sim.tls`). Paths are
case-insensitive (``/qrs/ServiceStatus/full`` = ``/qrs/servicestatus/full``). Every node's
repository answers for the whole site, as on a real site where all share one database; only
``/qrs/about`` (``nodeType``, build) and ``/servernodeconfiguration/local`` are the node's own.

Served: ``about``, ``ssl/ping``, ``servernodeconfiguration`` (``/full``, ``/local``),
``ServiceStatus/full``, ``license``, ``license/accesstypeoverview``, ``virtualproxyconfig/full``,
``proxyservice/full``. List endpoints honour simple QRS filters (``prefix eq 'jwt' or …``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from exporter.sim.qlik import qlik_user_or_error, xrfkey_error
from exporter.sim.settings import HeaderVirtualProxy, JwtVirtualProxy, VirtualProxy

if TYPE_CHECKING:
    from exporter.sim.simulator import Simulator
    from exporter.sim.site import Node

_NS = uuid.UUID("6f1f0c4e-5d0a-4b8f-9d67-2b7c0e4f9a11")


def stable_id(*parts: str) -> str:
    """A UUID that stays the same for the same parts (QRS ids do not change between calls)."""
    return str(uuid.uuid5(_NS, "/".join(parts)))


def about_payload(sim: Simulator, node: Node | None = None) -> dict[str, Any]:
    """The QRS ``About`` model with all its documented (LOCKED) fields."""
    node = node or sim.central
    return {
        "buildVersion": node.build_version or sim.build_version,
        "buildDate": sim.build_date,
        "databaseProvider": "Devart.Data.PostgreSql",
        "nodeType": 1 if node.is_central else 2,  # 1 = Central, 2 = Rim
        "sharedPersistence": True,
        "requiresBootstrap": False,
        "singleNodeOnly": False,
        "schemaPath": "About",
    }


def qrs_checks(request: web.Request, sim: Simulator) -> web.Response | None:
    """The xrfkey check, then the X-Qlik-User check; ``None`` when both pass."""
    error = xrfkey_error(request)
    if error is not None:
        return error
    user = qlik_user_or_error(request, sim.disabled_users)
    return user if isinstance(user, web.Response) else None


# -- QRS filters ----------------------------------------------------------------------------

_CLAUSE = re.compile(r"\s*([A-Za-z][\w.]*)\s+(eq|ne|sw|ew|so)\s+'((?:[^']|'')*)'\s*", re.I)


class FilterError(ValueError):
    """A filter this simulator cannot read."""


def _field(entity: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(entity, dict):
            return None
        entity = next((v for k, v in entity.items() if k.lower() == part.lower()), None)
    return entity


def _matches(entity: dict[str, Any], clause: tuple[str, str, str]) -> bool:
    path, op, want = clause
    value = _field(entity, path)
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    have, want = text.casefold(), want.casefold()
    return {
        "eq": have == want,
        "ne": have != want,
        "sw": have.startswith(want),
        "ew": have.endswith(want),
        "so": want in have,
    }[op.lower()]


def parse_filter(text: str) -> list[list[tuple[str, str, str]]]:
    """``a eq 'x' and b ne 'y' or c sw 'z'`` as OR-groups of AND-clauses."""
    groups = []
    for group in re.split(r"\s+or\s+", text.strip(), flags=re.I):
        clauses = []
        for part in re.split(r"\s+and\s+", group, flags=re.I):
            m = _CLAUSE.fullmatch(part)
            if m is None:
                raise FilterError(f"cannot read filter clause {part.strip()!r}")
            clauses.append((m[1], m[2], m[3].replace("''", "'")))
        groups.append(clauses)
    return groups


def apply_filter(request: web.Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items the request's ``filter`` keeps (all of them without one)."""
    text = next((v for k, v in request.query.items() if k.lower() == "filter"), None)
    if not text:
        return items
    groups = parse_filter(text)
    return [i for i in items if any(all(_matches(i, c) for c in g) for g in groups)]


# -- site shapes -----------------------------------------------------------------------------


def node_container(node: Node) -> dict[str, Any]:
    """``/qrs/servernodeconfiguration/local``: the local node's ids (LOCKED shape)."""

    def service_id(service: str) -> str:
        if not node.runs(service):
            return "00000000-0000-0000-0000-000000000000"
        return node.status[service].id

    return {
        "configuration": {"id": node.id},
        "repositoryServiceID": service_id("repository"),
        "engineServiceID": service_id("engine"),
        "proxyServiceID": service_id("proxy"),
        "schedulerServiceID": service_id("scheduler"),
        "printingServiceID": service_id("printing"),
    }


def _authentication_method(vp: VirtualProxy) -> int:
    """QRS ``authenticationMethod``: 0 Ticket, 1/2 header static/dynamic, 4 JWT."""
    if isinstance(vp, JwtVirtualProxy):
        return 4
    if isinstance(vp, HeaderVirtualProxy):
        return 2 if vp.pattern else 1
    return 0


def vp_condensed(vp: VirtualProxy) -> dict[str, Any]:
    """``VirtualProxyConfigCondensed``: what ``ProxyServiceSettings.virtualProxies`` lists."""
    return {
        "id": stable_id("vp", vp.prefix),
        "prefix": vp.prefix,
        "description": f"Virtual proxy '{vp.prefix}'" if vp.prefix else "Central Proxy (Default)",
        "sessionCookieHeaderName": vp.cookie_name,
        "authenticationMethod": _authentication_method(vp),
        "privileges": None,
    }


def vp_full(sim: Simulator, vp: VirtualProxy) -> dict[str, Any]:
    """``VirtualProxyConfig`` with the fields Ctrl-Q and the QMC use."""
    header = vp if isinstance(vp, HeaderVirtualProxy) else None
    jwt_vp = vp if isinstance(vp, JwtVirtualProxy) else None
    return {
        **vp_condensed(vp),
        "createdDate": "2021-09-20T08:02:11.302Z",
        "modifiedDate": "2021-09-20T08:02:11.302Z",
        "modifiedByUserName": "INTERNAL\\sa_repository",
        "customProperties": [],
        "authenticationModuleRedirectUri": "",
        "sessionModuleBaseUri": "",
        "loadBalancingModuleBaseUri": "",
        "useStickyLoadBalancing": False,
        "loadBalancingServerNodes": [n.condensed_json() for n in sim.nodes if n.engine_enabled],
        "headerAuthenticationMode": (2 if header.pattern else 1) if header else 0,
        "headerAuthenticationHeaderName": header.header_name if header else "",
        "headerAuthenticationStaticUserDirectory": header.user_directory if header else "",
        "headerAuthenticationDynamicUserDirectory": (header.pattern or "") if header else "",
        "anonymousAccessMode": 0,
        "windowsAuthenticationEnabledDevicePattern": "Windows",
        "sessionCookieDomain": "",
        "additionalResponseHeaders": "",
        "sessionInactivityTimeout": 30,
        "extendedSecurityEnvironment": False,
        "websocketCrossOriginWhiteList": [n.host_name for n in sim.nodes if n.proxy_enabled],
        "defaultVirtualProxy": vp.prefix == "",
        "tags": [],
        "jwtAudience": jwt_vp.audience if jwt_vp else "",
        "jwtPublicKeyCertificate": jwt_vp.certificate_pem.decode() if jwt_vp else "",
        "jwtAttributeUserId": jwt_vp.user_id_claim if jwt_vp else "",
        "jwtAttributeUserDirectory": jwt_vp.user_directory_claim if jwt_vp else "",
        "jwtAttributeMap": [],
        "schemaPath": "VirtualProxyConfig",
    }


def proxy_service(sim: Simulator, node: Node) -> dict[str, Any]:
    """``ProxyService`` of one node: settings with ports and linked virtual proxies."""
    return {
        "id": stable_id("proxyservice", node.id),
        "createdDate": "2021-09-20T08:02:11.302Z",
        "modifiedDate": "2021-09-20T08:02:11.302Z",
        "modifiedByUserName": "INTERNAL\\sa_repository",
        "customProperties": [],
        "serverNodeConfiguration": node.condensed_json(),
        "settings": {
            "id": stable_id("proxysettings", node.id),
            "listenPort": sim.ports.frontend,
            "allowHttp": False,
            "unencryptedListenPort": 80,
            "authenticationListenPort": 4244,
            "kerberosAuthentication": False,
            "unencryptedAuthenticationListenPort": 4248,
            "sslBrowserCertificateThumbprint": "",
            "keepAliveTimeoutSeconds": 10,
            "maxHeaderSizeBytes": 16384,
            "maxHeaderLines": 100,
            "useWsTrace": False,
            "performanceLoggingInterval": 5,
            "restListenPort": sim.ports.proxy,
            "virtualProxies": [vp_condensed(vp) for vp in sim.virtual_proxies.values()],
            "schemaPath": "ProxyServiceSettings",
        },
        "tags": [],
        "privileges": None,
        "schemaPath": "ProxyService",
    }


Route = Callable[[web.Request], Any]


def create_app(sim: Simulator, node: Node) -> web.Application:
    """The QRS application of one node (mutual TLS is the listener's job)."""

    def listed(request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        try:
            return web.json_response(apply_filter(request, items))
        except FilterError as exc:
            return web.Response(status=400, text=str(exc))

    routes: dict[str, Route] = {
        "about": lambda r: web.json_response(about_payload(sim, node)),
        # The body is the string "Ping successful"; its exact JSON quoting is unconfirmed,
        # so it is sent as a JSON string like every other QRS body.
        "ssl/ping": lambda r: web.json_response("Ping successful"),
        "servernodeconfiguration": lambda r: listed(r, [n.condensed_json() for n in sim.nodes]),
        "servernodeconfiguration/full": lambda r: listed(
            r, [n.qrs_json(sim.cluster_id) for n in sim.nodes]
        ),
        "servernodeconfiguration/local": lambda r: web.json_response(node_container(node)),
        "servicestatus/full": lambda r: listed(r, [e for n in sim.nodes for e in n.status_json()]),
        "license": lambda r: web.json_response(sim.license.qrs_json()),
        "license/accesstypeoverview": lambda r: web.json_response(
            sim.license.access_overview_json()
        ),
        "virtualproxyconfig/full": lambda r: listed(
            r, [vp_full(sim, vp) for vp in sim.virtual_proxies.values()]
        ),
        "proxyservice/full": lambda r: listed(
            r, [proxy_service(sim, n) for n in sim.nodes if n.proxy_enabled]
        ),
    }

    async def dispatch(request: web.Request) -> web.StreamResponse:
        failed = qrs_checks(request, sim)
        if failed is not None:
            return failed
        route = routes.get(request.match_info["tail"].lower().rstrip("/"))
        if route is None:
            return web.Response(status=404, text="Not found.")
        response: web.StreamResponse = route(request)
        return response

    app = sim.service_app("repository", node=node)
    app.router.add_get("/qrs/{tail:.*}", dispatch)
    return app
