"""The collector that turns the result store into metrics.

:class:`QlikCollector` builds fresh metric families on every ``collect()`` from
:meth:`ResultStore.snapshot` (and, for ``/metrics``, a :class:`DaemonStatus`), so a target
removed from the store disappears from the next scrape. Names and HELP texts are in
:mod:`exporter.families`, the samples come from :mod:`exporter.samples`, and
:meth:`QlikCollector.render_text` writes the same samples as text (:mod:`exporter.exposition`).
Probe values are the cached outcome of the last scheduled run; scraping never probes.

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

import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client.core import Metric
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

from exporter.exposition import RenderCache, families_text, render_snapshots
from exporter.families import PROBE_FAMILIES, SELF_FAMILIES, Family
from exporter.results import ProbeResult, ResultStore, SeriesSnapshot
from exporter.samples import (
    Families,
    Row,
    by_family,
    daemon_samples,
    series_samples,
    target_samples,
)
from exporter.state import DaemonStatus
from exporter.targetview import by_target, target_view


class QlikCollector:
    """A prometheus_client collector over a :class:`ResultStore`.

    ``status`` (called on every scrape, possibly from a worker thread) adds the
    ``qlik_exporter_*`` self-metrics; leave it out for ``/probe`` registries.
    :meth:`render_text` renders the same samples straight to the text format, which is
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
        families = PROBE_FAMILIES if self._status is None else (*PROBE_FAMILIES, *SELF_FAMILIES)
        for family in families:
            yield _metric(family, [])

    def collect(self) -> Iterator[Metric]:
        """Fresh families from the store's snapshot (and the daemon's status)."""
        begun = time.perf_counter()
        snapshots = self._store.snapshot()
        families = build_families(snapshots)
        if self._status is not None:
            rows = daemon_samples(self._status(), len(snapshots), begun)
            families += by_family(SELF_FAMILIES, rows)
        for family, rows in families:
            yield _metric(family, rows)

    def render_text(self) -> bytes:
        """The families in the Prometheus text format 0.0.4 (what ``generate_latest`` gives).

        Series unchanged since the last render with the same :class:`RenderCache` are reused.
        """
        begun = time.perf_counter()
        snapshots = self._store.snapshot()
        out = render_snapshots(snapshots, self._cache)
        if self._status is not None:
            rows = daemon_samples(self._status(), len(snapshots), begun)
            out.append(families_text(by_family(SELF_FAMILIES, rows)))
        return "".join(out).encode()


def build_families(snapshots: Sequence[SeriesSnapshot]) -> Families:
    """Every probe family with its samples from ``snapshots`` (sorted by target)."""
    rows = [row for s in snapshots for row in series_samples(s)]
    for target, group in by_target(snapshots):
        rows += target_samples(target_view(target, group))
    return by_family(PROBE_FAMILIES, rows)


def _metric(family: Family, rows: list[Row]) -> Metric:
    """A prometheus_client family from rows (label dicts built once per series)."""
    metric = Metric(family.name, family.help, family.type)
    samples = metric.samples
    dicts: dict[int, dict[str, str]] = {}
    for _, sample_name, base, extra, values in rows:
        labels = dicts.get(id(base))
        if labels is None:
            labels = dicts[id(base)] = dict(base)
        if extra is None:
            samples.append(Sample(sample_name, labels, values[0]))
        else:
            key, extra_values = extra
            samples += [
                Sample(sample_name, {**labels, key: v}, value)
                for v, value in zip(extra_values, values, strict=True)
            ]
    return metric


def probe_registry(results: Iterable[ProbeResult]) -> CollectorRegistry:
    """A fresh registry holding only the metrics of ``results`` (for ``/probe``)."""
    store = ResultStore()
    for result in results:
        store.record_start(result.target, result.check, result.node)
        store.record(result)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QlikCollector(store))
    return registry
