"""The collector that turns the result store into metrics (families: :mod:`exporter.families`).

:class:`QlikCollector` builds fresh metric families on every ``collect()`` from
:meth:`ResultStore.snapshot` (and, for ``/metrics``, an :class:`DaemonStatus`), so a target
removed from the store disappears from the next scrape. Probe values are the cached outcome of
the last scheduled run; scraping never probes.

A sample of what it emits (one target, one check, trimmed)::

    # HELP qlik_probe_success 1 if the last scheduled run of the check succeeded, else 0.
    # TYPE qlik_probe_success gauge
    qlik_probe_success{target="central",check="repository"} 1.0
    qlik_probe_duration_seconds{target="central",check="repository"} 0.0831
    qlik_probe_phase_duration_seconds{target="central",check="repository",phase="tls"} 0.012
    qlik_probe_latency_seconds_bucket{target="central",check="repository",le="0.1"} 41.0
    qlik_probe_latency_seconds_bucket{target="central",check="repository",le="+Inf"} 42.0
    qlik_probe_latency_seconds_count{target="central",check="repository"} 42.0
    qlik_probe_latency_seconds_sum{target="central",check="repository"} 3.61
    qlik_probe_runs_total{target="central",check="repository"} 42.0
    qlik_probe_failures_total{target="central",check="repository",reason="dns"} 0.0
    qlik_probe_failures_total{target="central",check="repository",reason="timeout"} 1.0
    qlik_probe_last_run_timestamp_seconds{target="central",check="repository"} 1.7e+09
    qlik_probe_last_success_timestamp_seconds{target="central",check="repository"} 1.7e+09
    qlik_repository_build_info{target="central",build_version="14.173.4",build_date="..."} 1.0
    qlik_engine_build_info{target="central",version="12.1477.0"} 1.0
    qlik_engine_sessions_active{target="central"} 3.0
    qlik_proxy_sessions{target="central",virtual_proxy="jwt"} 2.0
    qlik_cloud_tenant_info{target="cloud-eu",tenant_id="t1",user_id="u1",user_status="active"} 1.0
    qlik_certificate_not_after_timestamp_seconds{target="central",source="server_repository",
        subject_cn="sense.example.com",issuer_cn="Sense-CA",serial="1f"} 1.8e+09
    qlik_certificate_hostname_match{target="central",check="repository"} 1.0
    qlik_credential_expiry_timestamp_seconds{target="central-jwt",kind="jwt"} 1.8e+09
    qlik_exporter_build_info{version="0.1.0",python_version="3.11.7"} 1.0
    qlik_exporter_config_last_reload_successful 1.0
    qlik_exporter_config_last_reload_success_timestamp_seconds 1.7e+09
    qlik_exporter_targets 4.0

Self-metrics beyond DESIGN.md (all ``qlik_exporter_*``, emitted only with a status):

- ``qlik_exporter_start_time_seconds``: when the exporter process started (unix seconds).
- ``qlik_exporter_ready``: 1 when the config is loaded and the scheduler is running.
- ``qlik_exporter_scheduler_jobs``: scheduled probe jobs (absent if the daemon doesn't say).
- ``qlik_exporter_checks``: (target, check) pairs with results in the store.
- ``qlik_exporter_collect_duration_seconds``: time this scrape spent building the metric
  families from the store (for the text format, rendering included).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import groupby
from typing import Final

from prometheus_client.core import (
    Metric,
)
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

from exporter import __version__
from exporter import families as F
from exporter.reasons import Reason
from exporter.results import (
    LATENCY_BUCKETS,
    PHASES,
    CertificateInfo,
    ProbeResult,
    ResultStore,
    SeriesSnapshot,
)
from exporter.state import DaemonStatus

_BY_NAME: Final = {f.name: f for f in (*F.PROBE_FAMILIES, *F.SELF_FAMILIES)}
_CERT_LABELS: Final = F.CERT_NOT_AFTER.labels

_REASONS: Final = tuple(r.value for r in Reason)
_LE: Final = (*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf")
_BUCKET: Final = F.PROBE_LATENCY.name + "_bucket"
_COUNT: Final = F.PROBE_LATENCY.name + "_count"
_SUM: Final = F.PROBE_LATENCY.name + "_sum"
_SELF_NAMES: Final = frozenset(f.name for f in F.SELF_FAMILIES)

Labels = tuple[tuple[str, str], ...]
# One sample: (sample name, labels shared by a series, extra label name or None, its value,
# value). Sharing the series' labels tuple lets both renderers format it once per series.
Row = tuple[str, Labels, str | None, str, float]
Families = list[tuple[str, list[Row]]]


class QlikCollector:
    """A prometheus_client collector over a :class:`ResultStore`.

    ``status`` (called on every scrape, possibly from a worker thread) adds the
    ``qlik_exporter_*`` self-metrics; leave it out for ``/probe`` registries.
    :meth:`render_text` renders the same families straight to the text format, which is
    an order of magnitude faster than ``generate_latest`` on large stores.
    """

    def __init__(
        self,
        store: ResultStore,
        *,
        status: Callable[[], DaemonStatus] | None = None,
        cache: RenderCache | None = None,
    ) -> None:
        self._store = store
        self._status = status
        self._cache = RenderCache() if cache is None else cache

    def describe(self) -> Iterator[Metric]:
        """The families without samples, so registering never runs a collection."""
        for name in _BY_NAME:
            if self._status is not None or name not in _SELF_NAMES:
                yield _metric(name, [])

    def collect(self) -> Iterator[Metric]:
        """Fresh families from the store's snapshot (and the exporter status)."""
        for name, rows in self._families():
            yield _metric(name, rows)

    def render_text(self) -> bytes:
        """The families in the Prometheus text format 0.0.4 (what ``generate_latest`` gives).

        Series unchanged since the last render with the same :class:`RenderCache` are reused.
        """
        begun = time.perf_counter()
        snapshots = self._store.snapshot()
        out = render_snapshots(snapshots, self._cache)
        if self._status is not None:
            selfs = _self_families(self._status(), len(snapshots), begun)
            out.extend(_HEADERS[name] + _rows_text(rows) for name, rows in selfs)
        return "".join(out).encode()

    def _families(self) -> Families:
        begun = time.perf_counter()
        snapshots = self._store.snapshot()
        families = build_families(snapshots)
        if self._status is not None:
            families += _self_families(self._status(), len(snapshots), begun)
        return families


def build_families(snapshots: Sequence[SeriesSnapshot]) -> Families:
    """Every probe family as rows, filled from ``snapshots`` (sorted by target)."""
    fams: dict[str, list[Row]] = {f.name: [] for f in F.PROBE_FAMILIES}
    _add_series(fams, snapshots)
    for target, group in groupby(snapshots, key=lambda s: s.target):
        latest = sorted((s.latest for s in group if s.latest is not None), key=lambda r: r.finished)
        _add_target_values(fams, target, latest)
    return list(fams.items())


def _add_series(fams: dict[str, list[Row]], snapshots: Sequence[SeriesSnapshot]) -> None:
    """The per-(target, check) rows: the hot loop, so it appends plain tuples."""
    success = fams[F.PROBE_SUCCESS.name]
    duration = fams[F.PROBE_DURATION.name]
    phases = fams[F.PROBE_PHASE_DURATION.name]
    latency = fams[F.PROBE_LATENCY.name]
    failures = fams[F.PROBE_FAILURES.name]
    last_run = fams[F.PROBE_LAST_RUN.name]
    last_ok = fams[F.PROBE_LAST_SUCCESS.name]
    hostname = fams[F.CERT_HOSTNAME_MATCH.name]
    for s in snapshots:
        lab: Labels = (("target", s.target), ("check", s.check))
        fams[F.PROBE_RUNS.name].append((F.PROBE_RUNS.sample, lab, None, "", float(s.runs)))
        got = s.failures
        failures.extend(
            (F.PROBE_FAILURES.sample, lab, "reason", r, float(got.get(r, 0))) for r in _REASONS
        )
        counts = (*s.latency_buckets, s.latency_count)
        latency.extend(
            (_BUCKET, lab, "le", le, float(n)) for le, n in zip(_LE, counts, strict=True)
        )
        latency.append((_COUNT, lab, None, "", float(s.latency_count)))
        latency.append((_SUM, lab, None, "", s.latency_sum))
        if s.last_success is not None:
            last_ok.append((F.PROBE_LAST_SUCCESS.name, lab, None, "", s.last_success))
        r = s.latest
        if r is None:
            continue
        success.append((F.PROBE_SUCCESS.name, lab, None, "", 1.0 if r.success else 0.0))
        duration.append((F.PROBE_DURATION.name, lab, None, "", r.duration))
        last_run.append((F.PROBE_LAST_RUN.name, lab, None, "", r.finished))
        phases.extend(
            (F.PROBE_PHASE_DURATION.name, lab, "phase", p, r.phases[p])
            for p in PHASES
            if p in r.phases
        )
        if r.hostname_match is not None:
            match = 1.0 if r.hostname_match else 0.0
            hostname.append((F.CERT_HOSTNAME_MATCH.name, lab, None, "", match))


def _add_target_values(fams: dict[str, list[Row]], target: str, latest: list[ProbeResult]) -> None:
    """Per-target values as rows of ``fams``."""
    for name, labels, value in _target_samples(target, latest):
        fams[name].append((name, labels, None, "", value))


def _target_samples(target: str, latest: list[ProbeResult]) -> list[tuple[str, Labels, float]]:
    """Per-target samples (family, labels, value), each value from the newest result that has
    it (``latest`` is oldest first), in exposition order."""
    build = engine_version = health = proxy = tenant = None
    certs: dict[tuple[str, str], CertificateInfo] = {}
    creds: dict[str, float] = {}
    for r in latest:
        v = r.values
        build = v.repository_build or build
        engine_version = v.engine_version or engine_version
        health = v.engine_health or health
        proxy = v.proxy_sessions or proxy
        tenant = v.tenant or tenant
        certs.update(((c.source, c.serial), c) for c in r.certificates)
        creds.update((c.kind, c.expires) for c in r.credentials)

    out: list[tuple[str, Labels, float]] = []
    tl = ("target", target)

    def add(name: str, labels: Labels, value: float) -> None:
        out.append((name, (tl, *labels), value))

    if build is not None:
        add(
            F.REPOSITORY_BUILD.name,
            (("build_version", build[0]), ("build_date", build[1])),
            1.0,
        )
    if engine_version is not None:
        add(F.ENGINE_BUILD.name, (("version", engine_version),), 1.0)
    if health is not None:
        for field, family in F.ENGINE_HEALTH.items():
            add(family.name, (), float(getattr(health, field)))
    if proxy is not None:
        add(F.PROXY_SESSIONS.name, (("virtual_proxy", proxy[0]),), float(proxy[1]))
    if tenant is not None:
        ids = (tenant.tenant_id, tenant.user_id, tenant.user_status)
        add(F.CLOUD_TENANT.name, tuple(zip(_TENANT_LABELS, ids, strict=True)), 1.0)
    for c in certs.values():
        cert = (c.source, c.subject_cn, c.issuer_cn, c.serial)
        lab = (tl, *zip(_CERT_LABELS[1:], cert, strict=True))  # one tuple for both samples
        out.append((F.CERT_NOT_AFTER.name, lab, c.not_after))
        out.append((F.CERT_NOT_BEFORE.name, lab, c.not_before))
    for kind, expires in creds.items():
        add(F.CREDENTIAL_EXPIRY.name, (("kind", kind),), expires)
    return out


_TENANT_LABELS: Final = ("tenant_id", "user_id", "user_status")


def _self_families(status: DaemonStatus, checks: int, begun: float) -> Families:
    build: Labels = (("version", __version__), ("python_version", platform.python_version()))
    values: dict[str, float | None] = {
        F.RELOAD_SUCCESSFUL.name: 1.0 if status.reload_ok else 0.0,
        F.RELOAD_SUCCESS_TIME.name: status.last_reload_success_ts,
        F.TARGETS.name: float(status.targets),
        F.START_TIME.name: status.started,
        F.READY.name: 1.0 if status.ready else 0.0,
        F.SCHEDULER_JOBS.name: (
            None if status.scheduler_jobs is None else float(status.scheduler_jobs)
        ),
        F.CHECKS.name: float(checks),
        F.COLLECT_DURATION.name: time.perf_counter() - begun,
    }
    name = F.EXPORTER_BUILD.name
    out: Families = [(name, [(name, build, None, "", 1.0)])]
    for name, value in values.items():
        out.append((name, [] if value is None else [(name, (), None, "", value)]))
    return out


def _metric(name: str, rows: list[Row]) -> Metric:
    """A prometheus_client family from rows (label dicts built once per series)."""
    family = _BY_NAME[name]
    metric = Metric(name, family.help, family.type)
    samples = metric.samples
    dicts: dict[int, dict[str, str]] = {}
    for sample_name, base, extra, extra_value, value in rows:
        labels = dicts.get(id(base))
        if labels is None:
            labels = dicts[id(base)] = dict(base)
        if extra is not None:
            labels = {**labels, extra: extra_value}
        samples.append(Sample(sample_name, labels, value))
    return metric


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")
    return value


_SPECIAL: Final = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}  # Go spellings


def render_text(families: Families) -> bytes:
    """Rows in the Prometheus text format 0.0.4; series labels are formatted once each."""
    return "".join(_HEADERS[name] + _rows_text(rows) for name, rows in families).encode()


def _rows_text(rows: list[Row]) -> str:
    out: list[str] = []
    append = out.append
    formatted: dict[int, str] = {}
    for sample_name, base, extra, extra_value, value in rows:
        labels = formatted.get(id(base))
        if labels is None:
            labels = formatted[id(base)] = _labels_text(base)
        if extra is not None:
            pair = f'{extra}="{_escape(extra_value)}"'
            labels = f"{labels},{pair}" if labels else pair
        append(
            f"{sample_name}{{{labels}}} {_num(value)}\n"
            if labels
            else f"{sample_name} {_num(value)}\n"
        )
    return "".join(out)


def _num(value: float) -> str:
    """A sample value as client_python writes it (Go's spellings of the infinities and NaN)."""
    text = repr(value)
    return _SPECIAL[text] if text[-1] in "fn" else text


_HEADERS: Final = {name: family.header for name, family in _BY_NAME.items()}
_PROBE_FAMILIES: Final = tuple(f.name for f in F.PROBE_FAMILIES)
# Label suffixes of the fixed extra labels, formatted once: ',reason="timeout"} ' and so on.
_FAILURE_SUFFIXES: Final = tuple((r, f',reason="{r}"}} ') for r in _REASONS)
_LE_SUFFIXES: Final = tuple(f',le="{le}"}} ' for le in _LE)
_PHASE_SUFFIXES: Final = tuple((p, f',phase="{p}"}} ') for p in PHASES)

# One rendered piece: (family name, its sample lines for one series or one target).
Piece = tuple[str, str]


class RenderCache:
    """The rendered text of every (target, check) series and every target's values.

    A scrape re-renders only the series whose store version changed since the last scrape (and
    the targets that own them); the rest is reused. Entries not seen in a scrape are dropped,
    so removed targets do not linger. Concurrent scrapes in worker threads may share one
    cache: entries are replaced whole, and losing a race only renders a series twice.
    """

    __slots__ = ("labels", "series", "targets")

    def __init__(self) -> None:
        self.series: dict[tuple[str, str], tuple[int, tuple[Piece, ...]]] = {}
        self.targets: dict[str, tuple[tuple[tuple[str, int], ...], tuple[Piece, ...]]] = {}
        self.labels: dict[Labels, str] = {}  # formatted per-target label sets


def render_snapshots(snapshots: Sequence[SeriesSnapshot], cache: RenderCache) -> list[str]:
    """Every probe family of ``snapshots`` as text, in exposition order, reusing ``cache``."""
    chunks: dict[str, list[str]] = {name: [] for name in _PROBE_FAMILIES}
    old_series, old_targets = cache.series, cache.targets
    new_series: dict[tuple[str, str], tuple[int, tuple[Piece, ...]]] = {}
    new_targets: dict[str, tuple[tuple[tuple[str, int], ...], tuple[Piece, ...]]] = {}
    labels = cache.labels
    if len(labels) > 8 * len(snapshots) + 64:  # rotated certificates' label sets: start afresh
        labels = cache.labels = {}
    for s in snapshots:
        key = (s.target, s.check)
        entry = old_series.get(key)
        if entry is None or entry[0] != s.version:
            entry = (s.version, _series_text(s))
        new_series[key] = entry
        for name, text in entry[1]:
            chunks[name].append(text)
    for target, grouped in groupby(snapshots, key=lambda s: s.target):
        group = list(grouped)
        versions = tuple((s.check, s.version) for s in group)
        cached = old_targets.get(target)
        if cached is None or cached[0] != versions:
            cached = (versions, _target_text(target, group, labels))
        new_targets[target] = cached
        for name, text in cached[1]:
            chunks[name].append(text)
    cache.series, cache.targets = new_series, new_targets
    out: list[str] = []
    for name in _PROBE_FAMILIES:
        out.append(_HEADERS[name])
        out.extend(chunks[name])
    return out


def _series_text(s: SeriesSnapshot) -> tuple[Piece, ...]:
    """One series' sample lines, by family: the same samples as :func:`_add_series` rows."""
    lab = f'{{target="{_escape(s.target)}",check="{_escape(s.check)}"'
    closed = lab + "} "
    got = s.failures
    fail = F.PROBE_FAILURES.sample + lab
    bucket = _BUCKET + lab
    counts = (*s.latency_buckets, s.latency_count)
    out: list[Piece] = [
        (F.PROBE_RUNS.name, f"{F.PROBE_RUNS.sample}{closed}{float(s.runs)!r}\n"),
        (
            F.PROBE_FAILURES.name,
            "".join([f"{fail}{sfx}{float(got.get(r, 0))!r}\n" for r, sfx in _FAILURE_SUFFIXES]),
        ),
        (
            F.PROBE_LATENCY.name,
            "".join(
                [
                    f"{bucket}{sfx}{float(n)!r}\n"
                    for sfx, n in zip(_LE_SUFFIXES, counts, strict=True)
                ]
            )
            + f"{_COUNT}{closed}{float(s.latency_count)!r}\n"
            + f"{_SUM}{closed}{_num(s.latency_sum)}\n",
        ),
    ]
    if s.last_success is not None:
        name = F.PROBE_LAST_SUCCESS.name
        out.append((name, f"{name}{closed}{_num(s.last_success)}\n"))
    r = s.latest
    if r is None:
        return tuple(out)
    name = F.PROBE_SUCCESS.name
    out.append((name, f"{name}{closed}{'1.0' if r.success else '0.0'}\n"))
    name = F.PROBE_DURATION.name
    out.append((name, f"{name}{closed}{_num(r.duration)}\n"))
    name = F.PROBE_LAST_RUN.name
    out.append((name, f"{name}{closed}{_num(r.finished)}\n"))
    name = F.PROBE_PHASE_DURATION.name
    phases = "".join(
        [f"{name}{lab}{sfx}{_num(r.phases[p])}\n" for p, sfx in _PHASE_SUFFIXES if p in r.phases]
    )
    if phases:
        out.append((name, phases))
    if r.hostname_match is not None:
        name = F.CERT_HOSTNAME_MATCH.name
        out.append((name, f"{name}{closed}{'1.0' if r.hostname_match else '0.0'}\n"))
    return tuple(out)


def _target_text(
    target: str, group: list[SeriesSnapshot], labels_text: dict[Labels, str]
) -> tuple[Piece, ...]:
    """One target's values (build, engine, proxy, tenant, certificates, credentials) as text.

    ``labels_text`` memoizes formatted label sets: a target's certificates and build rarely
    change while its checks' results do, every run.
    """
    latest = sorted((s.latest for s in group if s.latest is not None), key=lambda r: r.finished)
    out: list[Piece] = []
    for name, labels, value in _target_samples(target, latest):
        text = labels_text.get(labels)
        if text is None:
            text = labels_text[labels] = _labels_text(labels)
        out.append((name, f"{name}{{{text}}} {_num(value)}\n"))
    return tuple(out)


def _labels_text(labels: Labels) -> str:
    return ",".join([f'{k}="{_escape(v)}"' for k, v in labels])


def probe_registry(results: Iterable[ProbeResult]) -> CollectorRegistry:
    """A fresh registry holding only the metrics of ``results`` (for ``/probe``)."""
    store = ResultStore()
    for result in results:
        store.record_start(result.target, result.check)
        store.record(result)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QlikCollector(store))
    return registry
