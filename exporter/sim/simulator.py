"""The simulator: a Qlik Sense site (one node or several) with real TLS, plus a Qlik Cloud tenant.

Single host (the default, as before)::

    sim = Simulator(tmp_path)                 # host "localhost", every service on 127.0.0.1
    await sim.start()
    ...  # https://localhost:{sim.ports.repository}/qrs/about with sim.certs_dir/client.pem
    await sim.stop()

A multi-node site::

    sim = Simulator(tmp_path, nodes=3)        # central + rim1 + rim2 (see site.DEFAULT_SITE)
    await sim.start()
    sim.hosts          # {"central.qliksim.test": "127.0.0.2", "rim1.qliksim.test": "127.0.0.3", …}
    sim.resolver()     # a SiteResolver for the exporter's injectable resolver
    sim.ports          # the same port numbers on every node
    await sim.stop_node("rim1")               # its ports refuse; its services: no_communication

Each node listens on its own loopback address (127.0.0.2, 127.0.0.3, …) with the same ports,
and serves a certificate for ``<name>.qliksim.test`` and its address (SAN), issued by the site's
CA (``root.pem``). Node files: ``certs_dir/nodes/<name>/server.pem``. ``nodes`` may also be a
list of :class:`~exporter.sim.site.NodeSpec`. The Cloud tenant and the plain-HTTP admin port
listen on ``bind`` (127.0.0.1); in a site the tenant's host is ``localhost``. Switches: the
methods below (``stop_node``, ``start_node``, ``add_node``, ``remove_node``,
``set_service_state``, ``stop_service``, ``start_service``, ``regenerate_node_certificate``,
``license.*``, ``cloud.*``) and the same over HTTP (:mod:`exporter.sim.admin`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import jwt
from aiohttp import web

from exporter.sim import certs
from exporter.sim.cloud import CloudTenant
from exporter.sim.faults import NODE_SERVICES, FaultChain, FaultKind, Faults
from exporter.sim.license import SiteLicense
from exporter.sim.middleware import ErrorRenderer, ServiceInfo, fault_middleware, text_error
from exporter.sim.ratelimit import FixedWindow
from exporter.sim.services import ADMIN_FACTORY, CLOUD_FACTORY, NODE_FACTORIES
from exporter.sim.settings import (
    EngineSettings,
    HeaderVirtualProxy,
    JwtVirtualProxy,
    Ports,
    TicketVirtualProxy,
    VirtualProxy,
)
from exporter.sim.site import (
    DEFAULT_DOMAIN,
    DEFAULT_SITE,
    AiohttpSiteResolver,
    Node,
    NodeSpec,
    SiteResolver,
    next_addresses,
)
from exporter.sim.state import ProxySessions, Tickets, user_key
from exporter.sim.tls import CertPair, ClientCertMode, ServiceTls, build_service_tls

log = logging.getLogger(__name__)

MUTUAL_SERVICES = ("repository", "proxy", "engine")
ServiceName = Literal["repository", "proxy", "engine", "frontend", "cloud"]
CertificateKind = Literal["other_ca", "wrong_host", "expired", "renewed"]
CERTIFICATE_KINDS: tuple[CertificateKind, ...] = ("other_ca", "wrong_host", "expired", "renewed")
KEY_PASSWORD = "QlikSimKeyPassword"  # noqa: S105 - test data, printed by the CLI on purpose
"""Password of the simulator's encrypted client-key variants and ``client.pfx`` (test data)."""
NODE_KEY: web.AppKey[Node] = web.AppKey("node", Node)
"""The node an application serves (``request.app[NODE_KEY]``)."""
_BIND_ATTEMPTS = 8


def _site_specs(nodes: int | Sequence[NodeSpec], domain: str) -> list[NodeSpec]:
    """Complete node specs: names to host names, free loopback addresses, one central."""
    if isinstance(nodes, int):
        if nodes < 1:
            raise ValueError("a site needs at least one node")
        extra = [NodeSpec(f"rim{i}", purpose="production") for i in range(3, nodes)]
        specs = [*DEFAULT_SITE, *extra][:nodes]
    else:
        specs = list(nodes)
    if sum(s.central for s in specs) != 1:
        raise ValueError("a site has exactly one central node")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("node names must be unique")
    free = iter(next_addresses({s.address for s in specs if s.address}, len(specs)))
    return [
        replace(
            s,
            host_name=s.host_name or f"{s.name}.{domain}",
            address=s.address or next(free),
        )
        for s in specs
    ]


class Simulator:
    """A Qlik Sense site (QRS, QPS, engine, virtual proxies) and a Qlik Cloud tenant."""

    def __init__(
        self,
        workdir: Path,
        host: str = "localhost",
        *,
        nodes: int | Sequence[NodeSpec] | None = None,
        domain: str = DEFAULT_DOMAIN,
        build_version: str = "31.43.0.0",
        build_date: str = "4/12/2024 18:12:20 PM",
        engine_version: str = "12.1823.6",
        engine_healthcheck_style: Literal["modern", "legacy"] = "modern",
        engine_auth_info_first: bool = False,
        max_parallel_sessions: int = 5,
        client_cert_mode: Literal["required", "forbidden_403"] = "required",
        ports: Ports | None = None,
        bind: str = "127.0.0.1",
        client_valid_days: float | None = None,
        server_valid_days: float | None = None,
        jwt_cert_valid_days: float | None = None,
        cloud_rate_limit: tuple[int, float] | None = None,
        key_pool: certs.KeyPool | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.certs_dir = self.workdir
        self.domain = domain
        self.site_mode = nodes is not None
        self.nodes: list[Node] = self._build_nodes(nodes, host, bind)
        self.host = self.central.host_name
        self.cloud_host = host
        self.build_version = build_version
        self.build_date = build_date
        self.engine = EngineSettings(
            version=engine_version,
            healthcheck_style=engine_healthcheck_style,
            auth_info_first=engine_auth_info_first,
            max_parallel_sessions=max_parallel_sessions,
        )
        self._client_cert_mode = client_cert_mode
        self._requested_ports = ports or Ports()
        self.ports = Ports()
        self.bind = bind
        self.client_valid_days = client_valid_days
        self.server_valid_days = server_valid_days
        self.jwt_cert_valid_days = jwt_cert_valid_days
        self.cloud = CloudTenant(self.cloud_host)
        self.cloud_rate_limit = cloud_rate_limit
        self.keys = key_pool or certs.SHARED_KEYS
        self.license = SiteLicense()

        self.faults = Faults()
        self.proxy_sessions = ProxySessions(default_node=self.central.name)
        self.tickets = Tickets()
        self.disabled_users: set[tuple[str, str]] = set()
        self.user_names: dict[tuple[str, str], str] = {
            ("LAB", "goran"): "Göran S",
            ("INTERNAL", "sa_api"): "sa_api",
        }
        self.jwt_vp = JwtVirtualProxy()
        self.header_vp = HeaderVirtualProxy()
        self.header_dynamic_vp = HeaderVirtualProxy(
            prefix="hdrdyn", header_name="X-Sso-Identity", pattern="$ud\\$id"
        )
        self.key_password = KEY_PASSWORD
        self.cluster_id = "0b4c1c1e-7a2d-4f53-9a35-3d3b0b5c2f10"

        self.ca: certs.CertificateAuthority | None = None
        self.tls: dict[str, ServiceTls] = {}  # the Cloud listener's (node listeners: node.tls)
        self.stopping = asyncio.Event()
        self.websockets: set[web.WebSocketResponse] = set()
        self.engine_sessions: Counter[tuple[str, str]] = Counter()
        self.engine_sessions_total = 0
        self.engine_users_seen: set[tuple[str, str]] = set()
        self.rpc_calls: Counter[tuple[str, bool]] = Counter()
        """Engine JSON-RPC calls by (method, delta requested), for tests of real clients."""
        self.ticket_vp = TicketVirtualProxy()
        self._runners: list[web.AppRunner] = []
        self._started = False

    def _build_nodes(
        self, nodes: int | Sequence[NodeSpec] | None, host: str, bind: str
    ) -> list[Node]:
        if nodes is None:
            spec = NodeSpec(host.replace("/", "_") or "node", central=True, printing=True)
            return [Node(spec, host, bind)]
        return [
            Node(s, s.host_name or s.name, s.address or "") for s in _site_specs(nodes, self.domain)
        ]

    # -- the site -----------------------------------------------------------------------------

    @property
    def central(self) -> Node:
        """The central node."""
        return next(n for n in self.nodes if n.is_central)

    def node(self, name: str) -> Node:
        """A node by name or host name (case-insensitive); ``KeyError`` when there is none."""
        key = name.casefold()
        for n in self.nodes:
            if key in (n.name.casefold(), n.host_name.casefold()):
                return n
        raise KeyError(f"no node {name!r}; nodes: {', '.join(n.name for n in self.nodes)}")

    @property
    def hosts(self) -> dict[str, str]:
        """Host name → address of every resolvable node: feed it to the exporter's resolver."""
        return {n.host_name: n.address for n in self.nodes if n.resolvable}

    def resolver(self) -> SiteResolver:
        """An exporter ``Resolver`` for the node names (live: added nodes resolve too)."""
        return SiteResolver(lambda: self.hosts)

    def aiohttp_resolver(self) -> AiohttpSiteResolver:
        """The same mapping for ``aiohttp.TCPConnector(resolver=…)``."""
        return AiohttpSiteResolver(lambda: self.hosts)

    def faults_for(self, node: Node | None) -> Faults | FaultChain:
        """The faults a node's services obey: its own first, then the site-wide ones."""
        return self.faults if node is None else FaultChain(node.faults, self.faults)

    # -- public helpers -------------------------------------------------------------------

    @property
    def client_cert_mode(self) -> str:
        """``required`` (handshake fails without a client certificate) or ``forbidden_403``."""
        return self._client_cert_mode

    @client_cert_mode.setter
    def client_cert_mode(self, mode: Literal["required", "forbidden_403"]) -> None:
        self._client_cert_mode = mode
        for tls in self._all_tls():
            tls.set_client_cert_mode(self._tls_mode())

    def _all_tls(self) -> list[ServiceTls]:
        return [*self.tls.values(), *(t for n in self.nodes for t in n.tls.values())]

    @property
    def cloud_rate_limit(self) -> tuple[int, float] | None:
        """``(requests, window seconds)`` per user on the Cloud tenant; ``None`` = no limit."""
        limit = self.cloud.rate_limit
        return None if limit is None else (limit.limit, limit.window)

    @cloud_rate_limit.setter
    def cloud_rate_limit(self, value: tuple[int, float] | None) -> None:
        self.cloud.rate_limit = None if value is None else FixedWindow(value[0], value[1])

    @property
    def cloud_tenant_id(self) -> str:
        """The Cloud tenant's id (32-character URL-safe)."""
        return self.cloud.tenant_id

    @property
    def cloud_user_id(self) -> str:
        """The id of the tenant user API keys are issued for by default (24 hex)."""
        return self.cloud.owner_id

    def cloud_issue_api_key(
        self, sub: str | None = None, expires_in: float | None = 86400 * 30, *, admin: bool = True
    ) -> str:
        """Issue a Cloud API key (ES384 JWT) for ``sub``; ``expires_in=None`` never expires.

        A new ``sub`` becomes a tenant user, a tenant admin unless ``admin=False``.
        """
        return self.cloud.issue_api_key(sub, expires_in, admin=admin)

    def cloud_revoke(self, key_or_jti: str) -> str:
        """Revoke a Cloud API key (the key or its jti); returns the jti."""
        return self.cloud.revoke(key_or_jti)

    def mint_jwt(
        self,
        user_id: str = "monitor",
        user_directory: str = "LAB",
        *,
        lifetime: float | None = 300.0,
        algorithm: str = "RS256",
        **claims: Any,
    ) -> str:
        """A JWT the JWT virtual proxy accepts (qs-jwt's claims), signed with its key."""
        key = (self.certs_dir / "jwt_signing_key.pem").read_bytes()
        now = int(time.time())
        payload: dict[str, Any] = {
            self.jwt_vp.user_id_claim: user_id,
            self.jwt_vp.user_directory_claim: user_directory,
            "aud": self.jwt_vp.audience,
            "iat": now - 30,  # backdated for clock skew, as qs-jwt users do
            **claims,
        }
        if lifetime is not None:
            payload["exp"] = now + int(lifetime)
        return jwt.encode(payload, key, algorithm=algorithm)

    def _tls_mode(self) -> ClientCertMode:
        return "required" if self._client_cert_mode == "required" else "optional"

    @property
    def virtual_proxies(self) -> dict[str, VirtualProxy]:
        """Every virtual proxy by prefix (``""`` is the default one)."""
        vps: list[VirtualProxy] = [
            self.ticket_vp,
            self.jwt_vp,
            self.header_vp,
            self.header_dynamic_vp,
        ]
        return {vp.prefix: vp for vp in vps}

    def proxy_session_count(self, user_directory: str, user_id: str, vp: str | None = None) -> int:
        """Live proxy sessions of a user (on one virtual proxy prefix, or on all)."""
        return len(self.proxy_sessions.find(vp=vp, user=user_key(user_directory, user_id)))

    def engine_session_count(self, user_directory: str, user_id: str) -> int:
        """Open engine websocket sessions of a user."""
        return self.engine_sessions[user_key(user_directory, user_id)]

    def engine_session_counts(self) -> list[dict[str, Any]]:
        """Open engine sessions per user, for ``GET /state``."""
        return [
            {"userDirectory": ud, "userId": uid, "count": n}
            for (ud, uid), n in sorted(self.engine_sessions.items())
            if n
        ]

    def user_name(self, user_directory: str, user_id: str) -> str:
        """The display name of a user (the id when none is known)."""
        key = user_key(user_directory, user_id)
        for (ud, uid), name in self.user_names.items():
            if user_key(ud, uid) == key:
                return name
        return user_id

    def url(self, service: ServiceName, path: str = "/", node: str | None = None) -> str:
        """``https://<host>:<port><path>`` of a service (the central node's unless ``node``)."""
        if service == "cloud":
            host = self.cloud_host
        else:
            host = (self.node(node) if node else self.central).host_name
        return f"https://{host}:{getattr(self.ports, service)}{path}"

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Write certificates, then bind every service on a free (or the requested) port.

        Site nodes share port numbers: when one is taken on another node's address, every node
        is rebound on fresh ports. If a port cannot be bound, whatever already started is
        stopped and the error raised.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stopping.clear()
        self._write_certificates()
        try:
            await self._start_services()
        except BaseException:
            await self.stop()
            raise
        self._started = True
        log.info("simulator listening: %s", asdict(self.ports))

    async def _start_services(self) -> None:
        await self._start_nodes()
        self.ports.cloud = await self._serve_shared(
            CLOUD_FACTORY(self), self._requested_ports.cloud, self.tls["cloud"]
        )
        self.ports.admin = await self._serve_shared(
            ADMIN_FACTORY(self), self._requested_ports.admin, None
        )

    async def _start_nodes(self) -> None:
        fixed = any(getattr(self._requested_ports, s) for s in NODE_SERVICES)
        for attempt in range(_BIND_ATTEMPTS):
            for service in NODE_SERVICES:
                setattr(self.ports, service, getattr(self._requested_ports, service))
            try:
                for node in sorted(self.nodes, key=lambda n: not n.is_central):
                    await self._start_node_listeners(node)
                return
            except OSError as exc:
                await asyncio.gather(*(self._stop_node_listeners(n) for n in self.nodes))
                if fixed or exc.errno != errno.EADDRINUSE or attempt == _BIND_ATTEMPTS - 1:
                    raise

    async def _start_node_listeners(self, node: Node) -> None:
        """Bind the node's listeners on the site's ports (picking them on the first node)."""
        for service in node.listeners():
            app = NODE_FACTORIES[service](self, node)
            runner, port = await self._serve(
                app, node.address, getattr(self.ports, service), node.tls[service]
            )
            node.runners[service] = runner
            setattr(self.ports, service, port)
        node.running = True
        node.refresh_states()

    async def _stop_node_listeners(self, node: Node, services: Sequence[str] | None = None) -> None:
        for ws in list(node.websockets):
            if services is None or "engine" in services or "frontend" in services:
                await ws.close(code=1001, message=b"service stopping")
        for service in list(services or node.runners):
            runner = node.runners.pop(service, None)
            if runner is not None:
                await runner.cleanup()

    async def stop(self) -> None:
        """Stop every listener; hung handlers and open websockets are ended first."""
        self.stopping.set()
        for ws in list(self.websockets):
            await ws.close(code=1001, message=b"simulator stopping")
        for node in self.nodes:
            await self._stop_node_listeners(node)
            node.running = False
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        self._started = False

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(
        self, app: web.Application, address: str, port: int, tls: ServiceTls | None
    ) -> tuple[web.AppRunner, int]:
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError:
                sock.close()
                raise
            site = web.SockSite(runner, sock, ssl_context=tls.main if tls else None)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        return runner, int(sock.getsockname()[1])

    async def _serve_shared(self, app: web.Application, port: int, tls: ServiceTls | None) -> int:
        runner, bound = await self._serve(app, self.bind, port, tls)
        self._runners.append(runner)
        return bound

    def service_app(
        self,
        service: ServiceName,
        render_error: ErrorRenderer = text_error,
        node: Node | None = None,
    ) -> web.Application:
        """A new application for ``service`` with its fault (and client-certificate) checks."""
        info = ServiceInfo(service, self.faults_for(node), self.stopping, render_error)
        middlewares = [fault_middleware(info)]
        if service in MUTUAL_SERVICES:
            middlewares.append(self._client_cert_middleware())
        app = web.Application(middlewares=middlewares)
        if node is not None:
            app[NODE_KEY] = node
        return app

    def _client_cert_middleware(self) -> Any:
        @web.middleware
        async def check(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
            # In "forbidden_403" mode the handshake lets certificate-less clients in (CERT_OPTIONAL)
            # and they get a 403 instead, the other behaviour reported for port 4242.
            transport = request.transport
            peer = transport.get_extra_info("peercert") if transport else None
            if not peer:
                return web.Response(status=403, text="Forbidden: a client certificate is required.")
            response: web.StreamResponse = await handler(request)
            return response

        return check

    # -- switches: nodes and services -----------------------------------------------------

    async def stop_node(self, name: str) -> Node:
        """Stop a node: every port refuses, its proxy sessions end, its services lose contact."""
        node = self.node(name)
        await self._stop_node_listeners(node)
        node.running = False
        self.proxy_sessions.drop_node(node.name)
        node.refresh_states()
        return node

    async def start_node(self, name: str) -> Node:
        """Start a stopped node again on the same address and ports."""
        node = self.node(name)
        if not node.running:
            node.stopped_services.clear()
            await self._start_node_listeners(node)
        return node

    async def stop_service(self, name: str, service: str) -> Node:
        """Stop a node's ``repository``, ``proxy`` or ``engine``: its port refuses connections."""
        node = self.node(name)
        listeners = {
            "repository": ["repository"],
            "proxy": ["proxy", "frontend"],
            "engine": ["engine"],
        }
        if service not in listeners:
            raise ValueError("only repository, proxy and engine have listeners to stop")
        node.stopped_services.add(service)
        await self._stop_node_listeners(node, listeners[service])
        if service == "proxy":
            self.proxy_sessions.drop_node(node.name)
        node.refresh_states()
        return node

    async def start_service(self, name: str, service: str) -> Node:
        """Start a stopped service of a node again."""
        node = self.node(name)
        node.stopped_services.discard(service)
        if node.running:
            for listener in node.listeners():
                if listener not in node.runners:
                    app = NODE_FACTORIES[listener](self, node)
                    port = getattr(self.ports, listener)
                    node.runners[listener], _ = await self._serve(
                        app, node.address, port, node.tls[listener]
                    )
        node.refresh_states()
        return node

    def set_service_state(
        self, name: str, service: str, state: str | None, timestamp: dt.datetime | None = None
    ) -> Node:
        """Set what ``/qrs/ServiceStatus/full`` says of one service (``None``: the natural state).

        Only the reported state changes; listeners stay as they are.
        """
        node = self.node(name)
        node.set_state(
            service, state if state is not None else node.natural_state(service), timestamp
        )
        return node

    def set_node_versions(
        self, name: str, *, build_version: str | None = None, engine_version: str | None = None
    ) -> Node:
        """Run another build on one node (``None``: the site's version)."""
        node = self.node(name)
        node.build_version = build_version
        node.engine_version = engine_version
        return node

    async def add_node(self, spec: NodeSpec) -> Node:
        """Add a node and start it; ``/qrs/servernodeconfiguration`` lists it at once."""
        if spec.central:
            raise ValueError("a site has exactly one central node")
        if any(spec.name.casefold() == n.name.casefold() for n in self.nodes):
            raise ValueError(f"a node named {spec.name!r} exists")
        taken = {n.address for n in self.nodes}
        address = spec.address or next_addresses(taken, 1)[0]
        if address in taken:
            raise ValueError(f"address {address} is taken by another node")
        node = Node(spec, spec.host_name or f"{spec.name}.{self.domain}", address)
        self.nodes.append(node)
        if self.ca is not None:
            self._write_node_certificates(node)
            if self._started:
                try:
                    await self._start_node_listeners(node)
                except OSError:
                    await self._stop_node_listeners(node)
                    self.nodes.remove(node)
                    raise
        return node

    async def remove_node(self, name: str) -> Node:
        """Remove a rim node: it stops and disappears from the QRS answers."""
        node = self.node(name)
        if node.is_central:
            raise ValueError("the central node cannot be removed")
        await self.stop_node(node.name)
        self.nodes.remove(node)
        return node

    # -- certificates ---------------------------------------------------------------------

    def _write_certificates(self) -> None:
        d = self.certs_dir
        central = self.central
        export = certs.write_qmc_export(
            d,
            central.host_name,
            client_valid_days=self.client_valid_days,
            server_valid_days=self.server_valid_days,
            keys=self.keys,
            server_san=self._server_san(central),
        )
        self.ca = export.ca
        self._write_key_variants(export.client.certificate)
        self._write_jwt_pair(export.ca)
        for node in self.nodes:
            self._write_node_certificates(node, export)
        self._write_cloud_certificate(export)

    def _server_san(self, node: Node) -> list[str]:
        # The single host keeps a name-only SAN, like a QMC export; site nodes also carry their
        # address so a client may connect by either.
        return [node.host_name, node.address] if self.site_mode else [node.host_name]

    def _node_dir(self, node: Node) -> Path:
        return self.certs_dir if not self.site_mode else self.certs_dir / "nodes" / node.name

    def _write_node_certificates(self, node: Node, export: certs.QmcExport | None = None) -> None:
        """The node's server certificate and the TLS contexts of its listeners."""
        assert self.ca is not None
        d = self._node_dir(node)
        d.mkdir(parents=True, exist_ok=True)
        if export is not None and node.is_central and not self.site_mode:
            pair = CertPair(export.server_file, export.server_key_file)
        else:
            nb, na = certs.validity(valid_days=self.server_valid_days)
            leaf = self.ca.issue(
                node.host_name,
                not_before=nb,
                not_after=na,
                server=True,
                key=self.keys.get("server"),
                san=self._server_san(node),
            )
            pair = CertPair(d / "server.pem", d / "server_key.pem")
            leaf.write(pair.cert_file, pair.key_file)
        node.original_cert_pem = pair.cert_file.read_bytes()
        source = self._alternate_source(node, d / "alt")
        root = self.certs_dir / "root.pem"
        for service in NODE_SERVICES:
            mutual = service in MUTUAL_SERVICES
            node.tls[service] = build_service_tls(
                service,
                self.faults_for(node),
                pair,
                source,
                client_ca=root if mutual else None,
                mode=self._tls_mode() if mutual else "none",
            )

    def _write_cloud_certificate(self, export: certs.QmcExport) -> None:
        assert self.ca is not None
        if not self.site_mode:
            pair = CertPair(export.server_file, export.server_key_file)
            alt = self.certs_dir / "alt"
            source = self._alternate_source(self.central, alt)
        else:
            d = self.certs_dir / "cloud"
            d.mkdir(parents=True, exist_ok=True)
            leaf = self.ca.issue(
                self.cloud_host, server=True, key=self.keys.get("server"), san=[self.cloud_host]
            )
            pair = CertPair(d / "server.pem", d / "server_key.pem")
            leaf.write(pair.cert_file, pair.key_file)
            source = self._alternate_source_for(self.cloud_host, d / "alt")
        self.tls["cloud"] = build_service_tls(
            "cloud", self.faults, pair, source, client_ca=None, mode="none"
        )

    def _alternate_source(self, node: Node, directory: Path) -> Callable[[FaultKind], CertPair]:
        return self._alternate_source_for(node.host_name, directory, self._server_san(node))

    def _alternate_source_for(
        self, host: str, directory: Path, san: list[str] | None = None
    ) -> Callable[[FaultKind], CertPair]:
        """Issues the ``cert_*`` fault certificates for ``host`` on first use (then cached)."""
        cache: dict[FaultKind, CertPair] = {}
        names = san or [host]

        def issue(kind: FaultKind) -> CertPair:
            if kind not in cache:
                directory.mkdir(parents=True, exist_ok=True)
                leaf = self._faulty_leaf(kind, host, names)
                pair = CertPair(
                    directory / f"{kind.value}.pem", directory / f"{kind.value}_key.pem"
                )
                leaf.write(pair.cert_file, pair.key_file)
                cache[kind] = pair
            return cache[kind]

        return issue

    def _faulty_leaf(self, kind: FaultKind, host: str, san: list[str]) -> certs.IssuedCertificate:
        """Server certificates for the ``cert_*`` faults: other host, expired, other CA, no SAN."""
        assert self.ca is not None
        key = self.keys.get("server")
        if kind is FaultKind.CERT_WRONG_HOST:
            return self.ca.issue(
                "wrong-host.invalid", san_dns=["wrong-host.invalid"], server=True, key=key
            )
        if kind is FaultKind.CERT_EXPIRED:
            nb, na = certs.validity(expired=True)
            return self.ca.issue(host, not_before=nb, not_after=na, server=True, key=key, san=san)
        if kind is FaultKind.CERT_UNTRUSTED:
            # Same subject and issuer name as the real CA, different key: only the signature
            # tells them apart, as when a client trusts another site's root.pem.
            return self._other_ca().issue(host, server=True, key=key, san=san)
        if kind is FaultKind.CERT_NO_SAN:
            # The host only in the subject CN, no SAN: as old self-made certificates are.
            return self.ca.issue(host, server=True, key=key)
        raise ValueError(f"{kind.value} is not a certificate fault")

    def _other_ca(self) -> certs.CertificateAuthority:
        assert self.ca is not None
        other = certs.CertificateAuthority.create(
            self.ca.root.common_name, key=self.keys.get("untrusted-ca")
        )
        alt = self.certs_dir / "alt"
        alt.mkdir(exist_ok=True)
        other.root.write(alt / "untrusted_root.pem")
        return other

    def regenerate_node_certificate(
        self, name: str, kind: CertificateKind = "other_ca", *, valid_days: float | None = None
    ) -> Path:
        """Replace one node's server certificate on every listener of that node (new handshakes).

        ``other_ca``: issued by another CA of the same name (as after a node was reinstalled);
        ``wrong_host``: for another host; ``expired``; ``renewed``: a fresh one from the site CA
        (``valid_days`` sets its lifetime). Returns the new certificate file.
        """
        node = self.node(name)
        if kind not in CERTIFICATE_KINDS:
            raise ValueError(f"certificate kind must be one of {', '.join(CERTIFICATE_KINDS)}")
        assert self.ca is not None, "start() the simulator first"
        san = self._server_san(node)
        key = self.keys.get("server")
        if kind == "other_ca":
            leaf = self._other_ca().issue(node.host_name, server=True, key=key, san=san)
        elif kind == "wrong_host":
            leaf = self._faulty_leaf(FaultKind.CERT_WRONG_HOST, node.host_name, san)
        elif kind == "expired":
            leaf = self._faulty_leaf(FaultKind.CERT_EXPIRED, node.host_name, san)
        else:
            nb, na = certs.validity(valid_days=valid_days)
            leaf = self.ca.issue(
                node.host_name, not_before=nb, not_after=na, server=True, key=key, san=san
            )
        d = self._node_dir(node)
        pair = CertPair(d / f"regenerated_{kind}.pem", d / f"regenerated_{kind}_key.pem")
        leaf.write(pair.cert_file, pair.key_file)
        for ctx in node.server_contexts():
            ctx.load_cert_chain(pair.cert_file, pair.key_file)
        node.certificate = kind
        return pair.cert_file

    def restore_node_certificate(self, name: str) -> None:
        """Serve the node's original server certificate again."""
        node = self.node(name)
        d = self._node_dir(node)
        for ctx in node.server_contexts():
            ctx.load_cert_chain(d / "server.pem", d / "server_key.pem")
        node.certificate = "original"

    def _write_key_variants(self, client: certs.IssuedCertificate) -> None:
        """Other encodings of the client key, as other exports and tools produce them."""
        d, pw = self.certs_dir, self.key_password
        certs.write_private(d / "client_key_pkcs8.pem", client.key_pem("pkcs8"))
        certs.write_private(d / "client_key_encrypted.pem", client.key_pem("pkcs1", pw))
        certs.write_private(d / "client_key_encrypted_pkcs8.pem", client.key_pem("pkcs8", pw))
        assert self.ca is not None
        client.write_pfx(d / "client.pfx", pw, ca=self.ca)

    def _write_jwt_pair(self, ca: certs.CertificateAuthority) -> None:
        nb, na = certs.validity(valid_days=self.jwt_cert_valid_days)
        pair = ca.issue("QlikSimJwtSigning", not_before=nb, not_after=na, key=self.keys.get("jwt"))
        pair.write(
            self.certs_dir / "jwt_signing_cert.pem",
            self.certs_dir / "jwt_signing_key.pem",
            key_format="pkcs8",
        )
        self.jwt_vp.certificate_pem = pair.cert_pem

    def issue_client_files(self, directory: Path, **kwargs: Any) -> certs.ClientFiles:
        """Client credentials from this CA; arguments as :func:`certs.write_client_files`."""
        assert self.ca is not None, "start() the simulator first"
        kwargs.setdefault("key", self.keys.get("client"))
        return certs.write_client_files(directory, self.ca, **kwargs)
