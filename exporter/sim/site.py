"""The nodes of a simulated Qlik Sense site, their services' states, and a resolver for them.

A site is a central node plus rim nodes (qlik-api-facts.md §9). Every node has its own loopback
address and host name and the same port numbers; it runs the repository always, the proxy (QPS
API and virtual proxies) where ``proxy`` is enabled and the engine where ``engine`` is enabled
— a service a node does not run has no listener, so its port refuses connections. Scheduler,
printing and app migration have no listener here; they exist only as ``ServiceStatus`` entries.

Service state as the QRS reports it (``/qrs/ServiceStatus/full``): a service the node does not
run is ``disabled``; the services of a stopped node (or a stopped service) are
``no_communication``; anything else is ``running`` unless set explicitly. That a disabled service
is listed as ``Disabled`` rather than left out is this simulator's assumption (unconfirmed).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from aiohttp.abc import AbstractResolver, ResolveResult

from exporter.sim.faults import NODE_SERVICES, Faults

if TYPE_CHECKING:
    import ssl

    from aiohttp import web

    from exporter.sim.tls import ServiceTls

SERVICE_TYPES = ("repository", "proxy", "scheduler", "engine", "app_migration", "printing")
"""QRS ``ServiceStatus.serviceType``: the position is the enum value (0 Repository … 5 Printing)."""

SERVICE_STATES = (
    "initializing",
    "certificates_not_installed",
    "running",
    "no_communication",
    "disabled",
    "unknown",
)
"""QRS ``ServiceStatus.serviceState``: the position is the enum value (0 Initializing, …)."""

NODE_PURPOSES = ("production", "development", "both")
"""QRS ``nodePurpose``: 0 Production, 1 Development, 2 ProductionAndDevelopment (= both)."""

Purpose = Literal["production", "development", "both"]

DEFAULT_DOMAIN = "qliksim.test"
"""Node host names end in this reserved (RFC 6761) domain: no real DNS ever answers for it."""

FIRST_SITE_ADDRESS = 2
"""Site nodes get 127.0.0.2, 127.0.0.3, …; 127.0.0.1 stays with the single-host simulator."""


def qrs_time(when: dt.datetime) -> str:
    """A QRS date: ISO 8601 in UTC with milliseconds, ``2024-01-31T19:44:28.951Z``."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """How to build one node; ``host_name`` and ``address`` are filled in when left out.

    ``resolvable=False`` leaves the node's name out of :attr:`Simulator.hosts`, for a node whose
    host name does not resolve.
    """

    name: str
    host_name: str | None = None
    address: str | None = None
    central: bool = False
    purpose: Purpose = "both"
    engine: bool = True
    proxy: bool = True
    scheduler: bool = True
    printing: bool = False
    resolvable: bool = True

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"bad node name {self.name!r}")
        if self.purpose not in NODE_PURPOSES:
            raise ValueError(f"purpose must be one of {', '.join(NODE_PURPOSES)}")
        if self.address is not None and not ipaddress.ip_address(self.address).is_loopback:
            raise ValueError(f"node address {self.address} is not a loopback address")


DEFAULT_SITE = (
    NodeSpec("central", central=True, printing=True),
    NodeSpec("rim1", purpose="production", scheduler=False),
    NodeSpec("rim2", purpose="development", proxy=False),
)


def addressed_site(first: int = FIRST_SITE_ADDRESS) -> list[NodeSpec]:
    """The default site with each node's host name its loopback address (127.0.0.2, …): a
    site any process on the machine can reach without a resolver (the demo, Prometheus
    tests that run the exporter as its own process)."""
    return [
        replace(spec, host_name=f"127.0.0.{first + i}", address=f"127.0.0.{first + i}")
        for i, spec in enumerate(DEFAULT_SITE)
    ]


"""Central (every service), a consumer rim node (engine + proxy), a reload rim node (engine +
scheduler, no proxy): three node kinds a monitor must tell apart."""


@dataclass(slots=True)
class ServiceStatus:
    """One ``ServiceStatus`` entry."""

    state: str
    timestamp: dt.datetime
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


class Node:
    """One node: its identity, flags, listeners, certificate and live state."""

    def __init__(self, spec: NodeSpec, host_name: str, address: str) -> None:
        self.id = str(uuid.uuid4())
        self.name = spec.name
        self.host_name = host_name
        self.address = address
        self.is_central = spec.central
        self.purpose: Purpose = spec.purpose
        self.engine_enabled = spec.engine
        self.proxy_enabled = spec.proxy
        self.scheduler_enabled = spec.scheduler
        self.printing_enabled = spec.printing
        self.resolvable = spec.resolvable
        self.created = _now()
        self.running = False
        self.build_version: str | None = None  # None: the site's
        self.engine_version: str | None = None
        self.faults = Faults(NODE_SERVICES)
        self.tls: dict[str, ServiceTls] = {}
        self.runners: dict[str, web.AppRunner] = {}
        self.stopped_services: set[str] = set()
        self.certificate: str = "original"  # or the kind of the regenerated one
        self.original_cert_pem: bytes = b""
        self.websockets: set[web.WebSocketResponse] = set()
        self.engine_sessions: Counter[tuple[str, str]] = Counter()
        self.engine_sessions_total = 0
        self.engine_users_seen: set[tuple[str, str]] = set()
        self.status: dict[str, ServiceStatus] = {
            s: ServiceStatus("", self.created) for s in SERVICE_TYPES
        }
        self.refresh_states()

    # -- services ---------------------------------------------------------------------------

    def runs(self, service: str) -> bool:
        """Whether the node runs ``service`` (a QRS service type or a listener name)."""
        return {
            "repository": True,
            "proxy": self.proxy_enabled,
            "frontend": self.proxy_enabled,
            "engine": self.engine_enabled,
            "scheduler": self.scheduler_enabled,
            "printing": self.printing_enabled,
            "app_migration": self.is_central,
        }[service]

    def listeners(self) -> list[str]:
        """The listeners this node opens (when running)."""
        return [
            s
            for s in NODE_SERVICES
            if self.runs(s) and ("proxy" if s == "frontend" else s) not in self.stopped_services
        ]

    def natural_state(self, service: str) -> str:
        """The state the QRS reports without an explicit override."""
        if not self.runs(service):
            return "disabled"
        if not self.running or service in self.stopped_services:
            return "no_communication"
        return "running"

    def refresh_states(self) -> None:
        """Recompute every service's state after a start, stop or flag change."""
        for service in SERVICE_TYPES:
            self.set_state(service, self.natural_state(service))

    def set_state(self, service: str, state: str, timestamp: dt.datetime | None = None) -> None:
        """Set one service's reported state; the timestamp moves only when the state changes."""
        if service not in SERVICE_TYPES:
            raise ValueError(f"unknown service {service!r}; one of {', '.join(SERVICE_TYPES)}")
        if state not in SERVICE_STATES:
            raise ValueError(f"unknown state {state!r}; one of {', '.join(SERVICE_STATES)}")
        entry = self.status[service]
        if entry.state != state or timestamp is not None:
            entry.state = state
            entry.timestamp = timestamp or _now()

    # -- QRS shapes -----------------------------------------------------------------------------

    def condensed_json(self) -> dict[str, Any]:
        """``ServerNodeConfigurationCondensed`` (help.qlik.com QRS model)."""
        return {"id": self.id, "name": self.name, "hostName": self.host_name, "privileges": None}

    def qrs_json(self, cluster_id: str) -> dict[str, Any]:
        """``ServerNodeConfiguration`` with the documented fields (help.qlik.com QRS model)."""
        stamp = qrs_time(self.created)
        return {
            "id": self.id,
            "createdDate": stamp,
            "modifiedDate": stamp,
            "modifiedByUserName": "INTERNAL\\sa_repository",
            "customProperties": [],
            "name": self.name,
            "hostName": self.host_name,
            "isCentral": self.is_central,
            "nodePurpose": NODE_PURPOSES.index(self.purpose),
            "engineEnabled": self.engine_enabled,
            "proxyEnabled": self.proxy_enabled,
            "schedulerEnabled": self.scheduler_enabled,
            "printingEnabled": self.printing_enabled,
            "failoverCandidate": self.is_central,
            "temporaryfilepath": "C:\\Windows\\TEMP\\",
            "roles": [],
            "serviceCluster": {"id": cluster_id, "name": "ServiceCluster", "privileges": None},
            "tags": [],
            "privileges": None,
            "schemaPath": "ServerNodeConfiguration",
        }

    def status_json(self) -> list[dict[str, Any]]:
        """This node's ``ServiceStatus`` entries, one per service type."""
        out = []
        for service in SERVICE_TYPES:
            entry = self.status[service]
            out.append(
                {
                    "id": entry.id,
                    "createdDate": qrs_time(self.created),
                    "modifiedDate": qrs_time(entry.timestamp),
                    "modifiedByUserName": "INTERNAL\\sa_repository",
                    "serverNodeConfiguration": self.condensed_json(),
                    "serviceType": SERVICE_TYPES.index(service),
                    "serviceState": SERVICE_STATES.index(entry.state),
                    "timestamp": qrs_time(entry.timestamp),
                    "privileges": None,
                    "schemaPath": "ServiceStatus",
                }
            )
        return out

    def admin_json(self) -> dict[str, Any]:
        """What the admin endpoint shows about the node."""
        return {
            "id": self.id,
            "name": self.name,
            "hostName": self.host_name,
            "address": self.address,
            "isCentral": self.is_central,
            "purpose": self.purpose,
            "engineEnabled": self.engine_enabled,
            "proxyEnabled": self.proxy_enabled,
            "schedulerEnabled": self.scheduler_enabled,
            "printingEnabled": self.printing_enabled,
            "resolvable": self.resolvable,
            "running": self.running,
            "listeners": self.listeners() if self.running else [],
            "certificate": self.certificate,
            "services": {
                s: {"state": e.state, "timestamp": qrs_time(e.timestamp)}
                for s, e in self.status.items()
            },
            "faults": self.faults.snapshot(),
        }

    def server_contexts(self) -> list[ssl.SSLContext]:
        """The main server contexts of every listener (where a new certificate is loaded)."""
        return [t.main for t in self.tls.values()]


def next_addresses(taken: set[str], count: int) -> list[str]:
    """``count`` loopback addresses from 127.0.0.2 on that are not in ``taken``."""
    out: list[str] = []
    n = FIRST_SITE_ADDRESS
    while len(out) < count:
        if n > 254 * 256:
            raise ValueError("no loopback addresses left for more nodes")
        address = f"127.0.{n // 255}.{n % 255}"
        if n % 255 and address not in taken:
            out.append(address)
        n += 1
    return out


HostMap = Mapping[str, str] | Callable[[], Mapping[str, str]]


def _lookup(hosts: HostMap, host: str) -> str | None:
    table = hosts() if callable(hosts) else hosts
    return {k.casefold(): v for k, v in table.items()}.get(host.rstrip(".").casefold())


class SiteResolver:
    """Resolves the site's node names to their loopback addresses and nothing else.

    Fits the exporter's injectable ``Resolver`` (``await resolve(host, port) -> [address]``); an
    unknown name raises ``socket.gaierror`` as for a name that does not exist. Host names
    compare case-insensitively. The mapping may be a callable, read on every call, so nodes added
    later resolve too. ``calls`` records every name asked for.
    """

    def __init__(self, hosts: HostMap) -> None:
        self.hosts = hosts
        self.calls: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        """The node's address, or ``gaierror(EAI_NONAME)``."""
        self.calls.append(host)
        address = _lookup(self.hosts, host)
        if address is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [address]


class AiohttpSiteResolver(AbstractResolver):
    """The same mapping for ``aiohttp.TCPConnector(resolver=…)`` (``localhost`` included)."""

    def __init__(self, hosts: HostMap) -> None:
        self.hosts = hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """One IPv4 result for a node name or ``localhost``; ``OSError`` for any other name."""
        address = "127.0.0.1" if host == "localhost" else _lookup(self.hosts, host)
        if address is None:
            raise OSError(socket.EAI_NONAME, f"{host} is not a node of the simulated site")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        """Nothing to release."""
