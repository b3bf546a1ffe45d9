"""A faithful Qlik Sense stand-in with real TLS, for tests, benchmarks and the demo.

See DESIGN.md "The simulator" and reference/qlik-api-facts.md for the wire facts it follows.
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

__all__ = [
    "SERVICES",
    "EngineSettings",
    "FaultKind",
    "Faults",
    "HeaderVirtualProxy",
    "JwtVirtualProxy",
    "Ports",
    "Simulator",
    "TicketVirtualProxy",
]
