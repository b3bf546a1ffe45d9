"""``discovery``: a QSEoW site's nodes, from ``GET /qrs/servernodeconfiguration/full``.

Run by the daemon for a ``discover: true`` target every ``discovery_interval`` (not a check a
user lists). Each ``ServerNodeConfiguration`` names the node (``hostName``, ``name``), whether it
is the central node (``isCentral``), its purpose (``nodePurpose`` 0 Production, 1 Development,
2 Both) and which services it runs (``proxyEnabled``, ``engineEnabled``) — help.qlik.com
RepositoryServiceAPI model ``ServerNodeConfiguration`` (docs/fidelity.md). The host names come
from the server and the exporter connects to them, so each must be a plain host name.
"""

from __future__ import annotations

import re
from typing import Any, Final

from exporter.checks.context import ProbeContext
from exporter.results import NODE_PURPOSES, CheckValues, NodeInfo

PATH: Final = "/qrs/servernodeconfiguration/full"
# A site has a handful of nodes, large ones dozens; beyond this the answer is not a site.
MAX_NODES: Final = 1000
# RFC 1123 host names and IPv4 addresses: letters, digits, '-', '.', up to 253 characters.
_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST: Final = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?")


async def run(ctx: ProbeContext) -> CheckValues:
    """The site's nodes, each once, in the repository's order."""
    entries = ctx.json(await ctx.request(PATH, xrfkey=True))
    if not isinstance(entries, list):
        raise ctx.invalid(f"{PATH} did not return a list")
    if not entries:
        raise ctx.invalid(f"{PATH} returned no nodes")
    if len(entries) > MAX_NODES:
        raise ctx.invalid(f"{PATH} returned {len(entries)} nodes (at most {MAX_NODES})")
    nodes: dict[str, NodeInfo] = {}
    for i, entry in enumerate(entries):
        node = _node(ctx, i, entry)
        nodes.setdefault(node.host_name, node)
    central = sum(n.central for n in nodes.values())
    details = {"nodes": f"{len(nodes)} ({central} central)"}
    for n in nodes.values():
        services = ["repository"] + ["proxy"] * n.proxy + ["engine"] * n.engine
        role = "central node" if n.central else "rim node"
        details[f"node {n.host_name}"] = (
            f"{n.name}, {role}, purpose {n.purpose}; runs {', '.join(services)}"
        )
    return CheckValues(nodes=tuple(nodes.values()), details=details)


def _node(ctx: ProbeContext, i: int, entry: Any) -> NodeInfo:
    if not isinstance(entry, dict):
        raise ctx.invalid(f"node [{i}] is not an object")
    host = entry.get("hostName")
    if not isinstance(host, str) or not _HOST.fullmatch(host.lower()):
        raise ctx.invalid(f"node [{i}] has no valid hostName")
    name = entry.get("name")
    purpose = entry.get("nodePurpose")
    flags = {k: entry.get(k) for k in ("isCentral", "proxyEnabled", "engineEnabled")}
    if not isinstance(name, str):
        raise ctx.invalid(f"node [{i}] ({host.lower()}) has no name")
    if not isinstance(purpose, int) or isinstance(purpose, bool) or purpose not in (0, 1, 2):
        raise ctx.invalid(f"node [{i}] ({host.lower()}) has an unknown nodePurpose")
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ctx.invalid(f"node [{i}] ({host.lower()}) has no boolean {key}")
    return NodeInfo(
        host_name=host.lower().rstrip("."),
        name=name[:200],
        central=bool(flags["isCentral"]),
        purpose=NODE_PURPOSES[purpose],
        proxy=bool(flags["proxyEnabled"]),
        engine=bool(flags["engineEnabled"]),
    )
