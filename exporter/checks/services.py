"""``services``: the state of every service on every node of a QSEoW site, as the repository
sees it (``GET /qrs/ServiceStatus/full``). A site check: it runs once per target.

Each entry names its node (``serverNodeConfiguration.hostName``), its ``serviceType`` (0
Repository, 1 Proxy, 2 Scheduler, 3 Engine, 4 AppMigration, 5 Printing) and its
``serviceState`` (0 Initializing, 1 CertificatesNotInstalled, 2 Running, 3 NoCommunication,
4 Disabled, 5 Unknown) with its ``timestamp`` (qlik-api-facts.md §9; docs/fidelity.md).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from exporter.checks.context import ProbeContext
from exporter.results import SERVICE_STATES, CheckValues, ServiceState

SERVICES: Final = ("repository", "proxy", "scheduler", "engine", "app_migration", "printing")
STATES: Final = SERVICE_STATES


async def run(ctx: ProbeContext) -> CheckValues:
    """Every (node, service) with its state and the time the repository recorded it."""
    entries = ctx.json(await ctx.request("/qrs/ServiceStatus/full", xrfkey=True))
    if not isinstance(entries, list):
        raise ctx.invalid("/qrs/ServiceStatus/full did not return a list")
    states = [_state(ctx, entry) for entry in entries]
    running = sum(s.state == "running" for s in states)
    details = {"services running": f"{running} of {len(states)}"}
    for node in dict.fromkeys(s.node for s in states):
        here = [f"{s.service} {s.state}" for s in states if s.node == node]
        details[f"services on {node}"] = ", ".join(here)
    return CheckValues(services=tuple(states), details=details)


def _state(ctx: ProbeContext, entry: Any) -> ServiceState:
    if not isinstance(entry, dict):
        raise ctx.invalid("a ServiceStatus entry is not an object")
    node = entry.get("serverNodeConfiguration")
    host = node.get("hostName") if isinstance(node, dict) else None
    kind, state = entry.get("serviceType"), entry.get("serviceState")
    if not isinstance(host, str) or not host:
        raise ctx.invalid("a ServiceStatus entry lacks serverNodeConfiguration.hostName")
    if not _index(kind, SERVICES) or not _index(state, STATES):
        raise ctx.invalid("a ServiceStatus entry has an unknown serviceType or serviceState")
    assert isinstance(kind, int)
    assert isinstance(state, int)
    return ServiceState(
        node=host.lower()[:253],
        service=SERVICES[kind],
        state=STATES[state],
        timestamp=_timestamp(entry.get("timestamp")),
    )


def _index(value: object, names: tuple[str, ...]) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names)


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
