"""The samples the result store makes, generated in one place for both consumers.

:func:`series_samples` gives one (target, check) series' rows, :func:`target_samples` one
target's (from its :class:`~exporter.targetview.TargetView`) and :func:`daemon_samples` the
self-metrics. The prometheus_client collector (:mod:`exporter.metrics`, rows grouped with
:func:`by_family`) and the cached text renderer (:mod:`exporter.exposition`) both consume
them, so the two formats cannot disagree. A new metric is a family in
:mod:`exporter.families` and a row here.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable, Sequence
from typing import Final

from exporter import __version__
from exporter import families as F
from exporter.catalog import DISCOVERY
from exporter.families import Family
from exporter.reasons import Reason
from exporter.results import (
    LATENCY_BUCKETS,
    PHASES,
    SERVICE_STATES,
    LicenseInfo,
    SeriesSnapshot,
    ServiceState,
)
from exporter.state import DaemonStatus
from exporter.targetview import TargetView

Labels = tuple[tuple[str, str], ...]
# An extra label that tells a row's samples apart: (name, its value in each sample).
Extra = tuple[str, tuple[str, ...]]
# Samples of one family, name and labels: (family, sample name, labels, extra label or None,
# values), one sample per value, or a single one without an extra label. Reasons, buckets and
# phases make most samples, so they travel as runs; the rows of a series share one labels
# tuple, so a consumer formats it once per series.
Row = tuple[Family, str, Labels, Extra | None, Sequence[float]]
# Rows grouped under their families, in exposition order.
Families = list[tuple[Family, list[Row]]]

_FAILURE_EXTRA: Final = ("reason", tuple(r.value for r in Reason))
_REASON_INDEX: Final = {reason: i for i, reason in enumerate(_FAILURE_EXTRA[1])}
_NO_FAILURES: Final = (0.0,) * len(_REASON_INDEX)
_LE_EXTRA: Final = ("le", (*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf"))
_BUCKET: Final = F.PROBE_LATENCY.name + "_bucket"
_COUNT: Final = F.PROBE_LATENCY.name + "_count"
_SUM: Final = F.PROBE_LATENCY.name + "_sum"


def by_family(families: Iterable[Family], rows: Iterable[Row]) -> Families:
    """``rows`` under each of ``families`` (every one listed, also when it has no rows)."""
    grouped: dict[Family, list[Row]] = {family: [] for family in families}
    for row in rows:
        grouped[row[0]].append(row)
    return list(grouped.items())


def series_samples(s: SeriesSnapshot) -> list[Row]:
    """One (target, node, check) series' samples: counters, histogram and its last run's
    values (a discovery series: the discovery families)."""
    if s.check == DISCOVERY:
        return _discovery_samples(s)
    lab: Labels = (("target", s.target), ("node", s.node), ("check", s.check))
    failures = list(_NO_FAILURES)
    for reason, n in s.failures.items():
        if (i := _REASON_INDEX.get(reason)) is not None:
            failures[i] = float(n)
    count = (float(s.latency_count),)
    buckets = [*map(float, s.latency_buckets), *count]
    out: list[Row] = [
        (F.PROBE_RUNS, F.PROBE_RUNS.sample, lab, None, (float(s.runs),)),
        (F.PROBE_FAILURES, F.PROBE_FAILURES.sample, lab, _FAILURE_EXTRA, failures),
        (F.PROBE_LATENCY, _BUCKET, lab, _LE_EXTRA, buckets),
        (F.PROBE_LATENCY, _COUNT, lab, None, count),
        (F.PROBE_LATENCY, _SUM, lab, None, (s.latency_sum,)),
    ]
    if s.last_success is not None:
        out.append(_one(F.PROBE_LAST_SUCCESS, lab, s.last_success))
    r = s.latest
    if r is None:
        return out
    out.append(_one(F.PROBE_SUCCESS, lab, 1.0 if r.success else 0.0))
    out.append(_one(F.PROBE_DURATION, lab, r.duration))
    out.append(_one(F.PROBE_LAST_RUN, lab, r.finished))
    if phases := r.phases:
        present = tuple([p for p in PHASES if p in phases])
        values = [phases[p] for p in present]
        family = F.PROBE_PHASE_DURATION
        out.append((family, family.sample, lab, ("phase", present), values))
    if r.hostname_match is not None:
        out.append(_one(F.CERT_HOSTNAME_MATCH, lab, 1.0 if r.hostname_match else 0.0))
    return out


def _discovery_samples(s: SeriesSnapshot) -> list[Row]:
    """A discovery series: its success, the node list it keeps (also after a failure), and
    when it last succeeded; never qlik_probe_* (discovery is not a check)."""
    lab: Labels = (("target", s.target),)
    r = s.latest
    out: list[Row] = []
    if r is not None:
        nodes = r.values.nodes or ()
        out.append(_one(F.DISCOVERY_SUCCESS, lab, 1.0 if r.success else 0.0))
        out.append(_one(F.DISCOVERY_NODES, lab, float(len(nodes))))
        for n in nodes:
            central = "true" if n.central else "false"
            out.append(_info(F.NODE_INFO, s.target, n.host_name, n.name, central, n.purpose))
    if s.last_success is not None:
        out.append(_one(F.DISCOVERY_LAST_SUCCESS, lab, s.last_success))
    return out


def target_samples(view: TargetView) -> list[Row]:
    """One target's values: per node its build, engine and proxy; the tenant, certificates,
    credentials, licence and services."""
    target = view.target
    out: list[Row] = []
    for n in view.nodes:
        if n.build is not None:
            out.append(_info(F.REPOSITORY_BUILD, target, n.node, *n.build))
    for n in view.nodes:
        if n.engine_version is not None:
            out.append(_info(F.ENGINE_BUILD, target, n.node, n.engine_version))
    for k, f in F.ENGINE_HEALTH.items():  # by family, so a target's rows make one piece each
        for n in view.nodes:
            if (health := n.engine_health) is not None:
                out.append(_one(f, (("target", target), ("node", n.node)), getattr(health, k)))
    for n in view.nodes:
        if (proxy := n.proxy_sessions) is not None:
            lab = _labels(F.PROXY_SESSIONS, target, n.node, proxy[0])
            out.append(_one(F.PROXY_SESSIONS, lab, proxy[1]))
    if (t := view.tenant) is not None:
        out.append(_info(F.CLOUD_TENANT, target, t.tenant_id, t.user_id, t.user_status))
    after: list[Row] = []
    before: list[Row] = []
    names = F.CERT_NOT_AFTER.labels
    for c in view.certificates:
        values = (target, c.node, c.source, c.subject_cn, c.issuer_cn, c.serial)
        lab = tuple(zip(names, values, strict=True))
        after.append((F.CERT_NOT_AFTER, F.CERT_NOT_AFTER.sample, lab, None, (c.not_after,)))
        before.append((F.CERT_NOT_BEFORE, F.CERT_NOT_BEFORE.sample, lab, None, (c.not_before,)))
    out += after  # by family: a target's certificates then make one piece of text each
    out += before
    for cred in view.credentials:
        lab = _labels(F.CREDENTIAL_EXPIRY, target, "", cred.kind)
        out.append(_one(F.CREDENTIAL_EXPIRY, lab, cred.expires))
    if (lic := view.license) is not None:
        out += _license_samples(target, lic)
    if view.services is not None:
        out += _service_samples(target, view.services)
    return out


def _license_samples(target: str, lic: LicenseInfo) -> list[Row]:
    lab: Labels = (("target", target),)
    out = [_one(F.LICENSE_EXPIRED, lab, 1.0 if lic.expired else 0.0)]
    if lic.expires is not None:
        out.append(_one(F.LICENSE_EXPIRY, lab, lic.expires))
    for family, index in ((F.LICENSE_ACCESS_TOTAL, 0), (F.LICENSE_ACCESS_AVAILABLE, 1)):
        kinds = tuple(lic.access)
        if kinds:
            values = [lic.access[k][index] for k in kinds]
            out.append((family, family.sample, lab, ("type", kinds), values))
    return out


def _service_samples(target: str, services: Sequence[ServiceState]) -> list[Row]:
    out: list[Row] = []
    times: list[Row] = []
    family = F.SERVICE_STATE
    for s in services:
        lab: Labels = (("target", target), ("node", s.node), ("service", s.service))
        values = [1.0 if state == s.state else 0.0 for state in SERVICE_STATES]
        out.append((family, family.sample, lab, ("state", SERVICE_STATES), values))
        if s.timestamp is not None:
            times.append(_one(F.SERVICE_STATUS_TIME, lab, s.timestamp))
    return out + times


def daemon_samples(status: DaemonStatus, checks: int, begun: float) -> list[Row]:
    """The self-metrics; ``begun`` is when this scrape started (``time.perf_counter()``)."""
    values: dict[Family, float | None] = {
        F.RELOAD_SUCCESSFUL: 1.0 if status.reload_ok else 0.0,
        F.RELOAD_SUCCESS_TIME: status.last_reload_success_ts,
        F.TARGETS: status.targets,
        F.START_TIME: status.started,
        F.READY: 1.0 if status.ready else 0.0,
        F.SCHEDULER_JOBS: status.scheduler_jobs,
        F.CHECKS: checks,
        F.COLLECT_DURATION: time.perf_counter() - begun,
    }
    out = [_info(F.EXPORTER_BUILD, __version__, platform.python_version())]
    out += [_one(family, (), value) for family, value in values.items() if value is not None]
    return out


def _labels(family: Family, *values: str) -> Labels:
    return tuple(zip(family.labels, values, strict=True))


def _one(family: Family, labels: Labels, value: float) -> Row:
    return family, family.sample, labels, None, (float(value),)


def _info(family: Family, *values: str) -> Row:
    """An info family's one sample (value 1) with ``values`` as its labels, in order."""
    return _one(family, _labels(family, *values), 1.0)
