"""What a target's latest results say about it, merged once for ``/metrics`` and the status page.

Each check learns part of a target (the repository its build, the engine its version and
health, every check the certificates it saw), so a target's view takes each value from the
newest result that has it and keeps every certificate and credential seen in the latest
results.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter

from exporter.results import (
    CertificateInfo,
    CredentialInfo,
    EngineHealth,
    LicenseInfo,
    NodeInfo,
    SeriesSnapshot,
    ServiceState,
    TenantInfo,
)

_finished = attrgetter("finished")


@dataclass(slots=True)
class NodeView:
    """One node's newest values: what the checks that ran on it learned about it."""

    node: str
    build: tuple[str, str] | None = None  # (build_version, build_date) of the repository
    engine_version: str | None = None
    engine_health: EngineHealth | None = None
    proxy_sessions: tuple[str, int] | None = None  # (virtual_proxy, count)


@dataclass(slots=True)  # not frozen: built per target per scrape, and frozen __init__ is slow
class TargetView:
    """One target's newest values and the certificates and credentials it uses (a value: the
    text renderer compares views to reuse a target's text)."""

    target: str
    nodes: tuple[NodeView, ...] = ()  # by node name; a node appears once a check ran on it
    tenant: TenantInfo | None = None
    certificates: tuple[CertificateInfo, ...] = ()  # one per (node, source, serial)
    credentials: tuple[CredentialInfo, ...] = ()  # one per kind
    license: LicenseInfo | None = None
    services: tuple[ServiceState, ...] | None = None
    discovered: tuple[NodeInfo, ...] | None = None  # the node list discovery keeps

    def node(self, name: str) -> NodeView | None:
        """The view of node ``name``, if a check ran on it."""
        return next((n for n in self.nodes if n.node == name), None)


def target_view(target: str, series: Iterable[SeriesSnapshot]) -> TargetView:
    """The view of ``target`` from the latest results of its ``series``."""
    latest = sorted([s.latest for s in series if s.latest is not None], key=_finished)
    view = TargetView(target)
    nodes: dict[str, NodeView] = {}
    certs: dict[tuple[str, str, str], CertificateInfo] = {}
    creds: dict[str, CredentialInfo] = {}
    for r in latest:  # oldest first, so newer values win
        v = r.values
        if v.nodes is not None:  # discovery: a site's node list, not a node of its own
            view.discovered = v.nodes
            continue
        n = nodes.get(r.node)
        if n is None:
            n = nodes[r.node] = NodeView(r.node)
        n.build = v.repository_build or n.build
        n.engine_version = v.engine_version or n.engine_version
        n.engine_health = v.engine_health or n.engine_health
        n.proxy_sessions = v.proxy_sessions or n.proxy_sessions
        view.tenant = v.tenant or view.tenant
        view.license = v.license or view.license
        view.services = v.services if v.services is not None else view.services
        for c in r.certificates:
            certs[c.node, c.source, c.serial] = c
        for cred in r.credentials:
            creds[cred.kind] = cred
    view.nodes = tuple(nodes[name] for name in sorted(nodes))
    view.certificates = tuple(certs.values())
    view.credentials = tuple(creds.values())
    return view


def by_target(snapshots: Sequence[SeriesSnapshot]) -> Iterator[tuple[str, list[SeriesSnapshot]]]:
    """``snapshots`` (sorted by target, as the store gives them) grouped by target."""
    for target, group in groupby(snapshots, key=lambda s: s.target):
        yield target, list(group)
