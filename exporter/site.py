"""Which check runs on which node of a site: the plan the daemon schedules and ``probe`` runs.

Without discovery (or before its first success) a target's checks run against its ``host``.
With a node list, the catalog's node checks run on every node that runs their service —
``repository`` on every node, ``proxy`` where ``proxyEnabled``, ``engine`` and
``engine_session`` where ``engineEnabled`` — and site checks (``services``, ``license``) once,
against ``host``.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter import catalog
from exporter.config import Target
from exporter.results import NodeInfo

# One run is one (node host, check).
Run = tuple[str, str]


def node_runs(node: NodeInfo, check: str) -> bool:
    """Whether ``node`` runs the service ``check`` talks to (its port names the service)."""
    service = catalog.CHECKS[check].port
    if service == "proxy":
        return node.proxy
    if service == "engine":
        return node.engine
    return True  # every node runs a repository service


def plan(target: Target, nodes: Sequence[NodeInfo] | None) -> list[Run]:
    """The (node, check) runs of ``target`` given its node list (None: not discovered)."""
    if not target.discover or not nodes:
        return [(target.host, check) for check in target.enabled_checks]
    runs: list[Run] = []
    for check in target.enabled_checks:
        if catalog.CHECKS[check].scope == "site":
            runs.append((target.host, check))
        else:
            runs += [(n.host_name, check) for n in nodes if node_runs(n, check)]
    return runs
