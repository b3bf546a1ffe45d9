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
    SeriesSnapshot,
    ServiceState,
    TenantInfo,
)

_finished = attrgetter("finished")


@dataclass(slots=True)  # not frozen: built per target per scrape, and frozen __init__ is slow
class TargetView:
    """One target's newest values and the certificates and credentials it uses (a value: the
    text renderer compares views to reuse a target's text)."""

    target: str
    build: tuple[str, str] | None = None  # (build_version, build_date) of the repository
    engine_version: str | None = None
    engine_health: EngineHealth | None = None
    proxy_sessions: tuple[str, int] | None = None  # (virtual_proxy, count)
    tenant: TenantInfo | None = None
    certificates: tuple[CertificateInfo, ...] = ()  # one per (source, serial)
    credentials: tuple[CredentialInfo, ...] = ()  # one per kind
    license: LicenseInfo | None = None
    services: tuple[ServiceState, ...] | None = None


def target_view(target: str, series: Iterable[SeriesSnapshot]) -> TargetView:
    """The view of ``target`` from the latest results of its ``series``."""
    latest = sorted([s.latest for s in series if s.latest is not None], key=_finished)
    build = engine_version = health = proxy = tenant = lic = services = None
    certs: dict[tuple[str, str], CertificateInfo] = {}
    creds: dict[str, CredentialInfo] = {}
    for r in latest:  # oldest first, so newer values win
        v = r.values
        build = v.repository_build or build
        engine_version = v.engine_version or engine_version
        health = v.engine_health or health
        proxy = v.proxy_sessions or proxy
        tenant = v.tenant or tenant
        lic = v.license or lic
        services = v.services if v.services is not None else services
        for c in r.certificates:
            certs[c.source, c.serial] = c
        for cred in r.credentials:
            creds[cred.kind] = cred
    return TargetView(
        target,
        build,
        engine_version,
        health,
        proxy,
        tenant,
        tuple(certs.values()),
        tuple(creds.values()),
        lic,
        services,
    )


def by_target(snapshots: Sequence[SeriesSnapshot]) -> Iterator[tuple[str, list[SeriesSnapshot]]]:
    """``snapshots`` (sorted by target, as the store gives them) grouped by target."""
    for target, group in groupby(snapshots, key=lambda s: s.target):
        yield target, list(group)
