"""A faithful Qlik Sense stand-in with real TLS, for tests, benchmarks and the demo.

A single host (``Simulator(dir)``) or a multi-node site (``Simulator(dir, nodes=3)``) plus a Qlik
Cloud tenant; see :mod:`exporter.sim.simulator` for the API, :mod:`exporter.sim.admin` for the
HTTP switches, DESIGN.md "The simulator" and reference/qlik-api-facts.md for the wire facts.
"""

from exporter.sim.faults import SERVICES, FaultKind, Faults
from exporter.sim.settings import (
    EngineSettings,
    HeaderVirtualProxy,
    JwtVirtualProxy,
    Ports,
    TicketVirtualProxy,
)
from exporter.sim.simulator import Simulator
from exporter.sim.site import DEFAULT_SITE, Node, NodeSpec, SiteResolver

__all__ = [
    "DEFAULT_SITE",
    "SERVICES",
    "EngineSettings",
    "FaultKind",
    "Faults",
    "HeaderVirtualProxy",
    "JwtVirtualProxy",
    "Node",
    "NodeSpec",
    "Ports",
    "Simulator",
    "SiteResolver",
    "TicketVirtualProxy",
]
