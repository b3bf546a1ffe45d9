"""The collector: exact metric names, labels and values from constructed probe results."""

from __future__ import annotations

import dataclasses
import platform
import random
import re
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.exposition import RenderCache, render_text
from exporter.metrics import QlikCollector, build_families, probe_registry
from exporter.reasons import Reason
from exporter.results import (
    CertificateInfo,
    CheckValues,
    CredentialInfo,
    EngineHealth,
    ProbeResult,
    ResultStore,
    TenantInfo,
)
from exporter.state import DaemonStatus

NODE = "sense.example.com"  # the host every run below connected to
TC = {"target": "central", "node": NODE, "check": "repository"}


def result(target: str = "central", check: str = "repository", **kw: Any) -> ProbeResult:
    fields: dict[str, Any] = {
        "success": True,
        "reason": None,
        "error": "",
        "started": 1000.0,
        "finished": 1000.5,
        "duration": 0.5,
    }
    fields.update(kw)
    fields.setdefault("node", NODE)
    return ProbeResult(target=target, check=check, **fields)


def registry_of(*results: ProbeResult, status: DaemonStatus | None = None) -> CollectorRegistry:
    store = ResultStore()
    for r in results:
        store.record_start(r.target, r.check, r.node)
        store.record(r)
    registry = CollectorRegistry()
    registry.register(QlikCollector(store, status=None if status is None else lambda: status))
    return registry


def cert(source: str, serial: str, not_after: float = 2e9, cn: str = "host") -> CertificateInfo:
    return CertificateInfo(source, cn, "Sense-CA", serial, 1.5e9, not_after)


def test_success_duration_and_timestamps_are_exported_per_target_and_check() -> None:
    """A successful run exports success 1, its duration and its finish time."""
    reg = registry_of(result(duration=0.25, finished=1234.0))
    assert reg.get_sample_value("qlik_probe_success", TC) == 1.0
    assert reg.get_sample_value("qlik_probe_duration_seconds", TC) == 0.25
    assert reg.get_sample_value("qlik_probe_last_run_timestamp_seconds", TC) == 1234.0
    assert reg.get_sample_value("qlik_probe_last_success_timestamp_seconds", TC) == 1234.0
    assert reg.get_sample_value("qlik_probe_runs_total", TC) == 1.0


def test_failed_run_has_success_zero_and_no_last_success() -> None:
    """A run that never succeeded exports success 0 and no last-success timestamp."""
    reg = registry_of(result(success=False, reason=Reason.TIMEOUT, error="timed out"))
    assert reg.get_sample_value("qlik_probe_success", TC) == 0.0
    assert reg.get_sample_value("qlik_probe_last_success_timestamp_seconds", TC) is None


def test_failures_total_has_a_zero_for_every_reason() -> None:
    """Every reason of the closed set has a sample, 0 unless it happened, so increase() works."""
    reg = registry_of(result(success=False, reason=Reason.UNAUTHORIZED))
    for reason in Reason:
        value = reg.get_sample_value("qlik_probe_failures_total", {**TC, "reason": reason.value})
        assert value == (1.0 if reason is Reason.UNAUTHORIZED else 0.0), reason


def test_phase_durations_are_exported_for_the_phases_present() -> None:
    """Each measured phase gets a sample; phases not measured are absent."""
    reg = registry_of(result(phases={"connect": 0.01, "tls": 0.02, "request": 0.1}))
    assert reg.get_sample_value("qlik_probe_phase_duration_seconds", {**TC, "phase": "tls"}) == 0.02
    absent = reg.get_sample_value("qlik_probe_phase_duration_seconds", {**TC, "phase": "resolve"})
    assert absent is None


def test_latency_histogram_has_cumulative_buckets_sum_and_count() -> None:
    """The histogram's buckets are cumulative up to +Inf, with sum and count of all runs."""
    reg = registry_of(result(duration=0.07), result(duration=3.0), result(duration=100.0))
    bucket = "qlik_probe_latency_seconds_bucket"
    assert reg.get_sample_value(bucket, {**TC, "le": "0.05"}) == 0.0
    assert reg.get_sample_value(bucket, {**TC, "le": "0.1"}) == 1.0
    assert reg.get_sample_value(bucket, {**TC, "le": "5.0"}) == 2.0
    assert reg.get_sample_value(bucket, {**TC, "le": "60.0"}) == 2.0
    assert reg.get_sample_value(bucket, {**TC, "le": "+Inf"}) == 3.0
    assert reg.get_sample_value("qlik_probe_latency_seconds_count", TC) == 3.0
    assert reg.get_sample_value("qlik_probe_latency_seconds_sum", TC) == 103.07


def test_removed_target_disappears_from_the_next_collection() -> None:
    """After the store forgets a target, none of its series are collected."""
    store = ResultStore()
    for r in (result("a"), result("b")):
        store.record(r)
    registry = CollectorRegistry()
    registry.register(QlikCollector(store))
    store.retain([("a", NODE, "repository")])
    labels = {"target": "a", "node": NODE, "check": "repository"}
    assert registry.get_sample_value("qlik_probe_success", labels)
    assert b'target="b"' not in generate_latest(registry)


def test_repository_build_info_comes_from_the_newest_result_that_has_it() -> None:
    """The build info is taken from the most recent result of any check carrying it."""
    old = result(check="repository", finished=1.0, values=CheckValues(repository_build=("1", "d1")))
    new = result(check="proxy", finished=2.0, values=CheckValues(repository_build=("2", "d2")))
    reg = registry_of(old, new)
    labels = {"target": "central", "node": NODE, "build_version": "2", "build_date": "d2"}
    assert reg.get_sample_value("qlik_repository_build_info", labels) == 1.0
    stale = {"target": "central", "node": NODE, "build_version": "1", "build_date": "d1"}
    assert reg.get_sample_value("qlik_repository_build_info", stale) is None


def test_engine_health_and_version_are_exported_per_target() -> None:
    """Healthcheck numbers become qlik_engine_* gauges and the version an info metric."""
    health = EngineHealth(3, 2, 5, 1e9, 0.25, 0)
    reg = registry_of(
        result(check="engine", values=CheckValues(engine_health=health, engine_version="12.1"))
    )
    target = {"target": "central", "node": NODE}
    assert reg.get_sample_value("qlik_engine_sessions_active", target) == 3.0
    assert reg.get_sample_value("qlik_engine_users_active", target) == 2.0
    assert reg.get_sample_value("qlik_engine_apps_loaded", target) == 5.0
    assert reg.get_sample_value("qlik_engine_memory_committed_bytes", target) == 1e9
    assert reg.get_sample_value("qlik_engine_cpu_utilization_ratio", target) == 0.25
    assert reg.get_sample_value("qlik_engine_saturated", target) == 0.0
    info = {"target": "central", "node": NODE, "version": "12.1"}
    assert reg.get_sample_value("qlik_engine_build_info", info) == 1.0


def test_proxy_sessions_and_tenant_info_are_exported() -> None:
    """Proxy session counts carry the virtual proxy; tenant info carries tenant and user."""
    tenant = TenantInfo("t-1", "u-1", "active", "My tenant")
    reg = registry_of(
        result(check="proxy", values=CheckValues(proxy_sessions=("jwt", 4))),
        result("cloud", "tenant", values=CheckValues(tenant=tenant)),
    )
    proxy = {"target": "central", "node": NODE, "virtual_proxy": "jwt"}
    assert reg.get_sample_value("qlik_proxy_sessions", proxy) == 4.0
    info = {"target": "cloud", "tenant_id": "t-1", "user_id": "u-1", "user_status": "active"}
    assert reg.get_sample_value("qlik_cloud_tenant_info", info) == 1.0


def test_certificates_are_deduplicated_by_source_and_serial_across_checks() -> None:
    """The client certificate seen by two checks yields one series, server certs one each."""
    reg = registry_of(
        result(
            check="repository", certificates=[cert("client", "0a"), cert("server_repository", "1f")]
        ),
        result(check="proxy", certificates=[cert("client", "0a"), cert("server_proxy", "1f")]),
    )
    text = generate_latest(reg).decode()
    lines = [x for x in text.splitlines() if x.startswith("qlik_certificate_not_after")]
    assert len(lines) == 3
    labels = {
        "target": "central",
        "node": "",
        "source": "client",
        "subject_cn": "host",
        "issuer_cn": "Sense-CA",
    }
    assert (
        reg.get_sample_value(
            "qlik_certificate_not_after_timestamp_seconds", {**labels, "serial": "0a"}
        )
        == 2e9
    )
    assert (
        reg.get_sample_value(
            "qlik_certificate_not_before_timestamp_seconds", {**labels, "serial": "0a"}
        )
        == 1.5e9
    )


def test_hostname_match_and_credential_expiry_are_exported() -> None:
    """hostname_match becomes a 0/1 gauge per check; credentials an expiry per kind."""
    reg = registry_of(
        result(hostname_match=False, credentials=[CredentialInfo("jwt", 1.9e9)]),
        result(check="proxy"),
    )
    assert reg.get_sample_value("qlik_certificate_hostname_match", TC) == 0.0
    proxy = {"target": "central", "node": NODE, "check": "proxy"}
    assert reg.get_sample_value("qlik_certificate_hostname_match", proxy) is None
    kind = {"target": "central", "node": "", "kind": "jwt"}
    assert reg.get_sample_value("qlik_credential_expiry_timestamp_seconds", kind) == 1.9e9


def test_self_metrics_come_from_the_exporter_status() -> None:
    """The status adds build info, reload outcome, target count and readiness."""
    status = DaemonStatus(
        reload_ok=False, last_reload_success_ts=99.0, targets=3, started=10.0, ready=True
    )
    reg = registry_of(result(), status=status)
    build = {"version": __version__, "python_version": platform.python_version()}
    assert reg.get_sample_value("qlik_exporter_build_info", build) == 1.0
    assert reg.get_sample_value("qlik_exporter_config_last_reload_successful") == 0.0
    assert (
        reg.get_sample_value("qlik_exporter_config_last_reload_success_timestamp_seconds") == 99.0
    )
    assert reg.get_sample_value("qlik_exporter_targets") == 3.0
    assert reg.get_sample_value("qlik_exporter_ready") == 1.0
    assert reg.get_sample_value("qlik_exporter_checks") == 1.0


def test_probe_registry_holds_only_the_given_results_and_no_self_metrics() -> None:
    """/probe's registry has the probed target's series and nothing about the exporter."""
    reg = probe_registry([result("central", "engine", success=False, reason=Reason.DNS)])
    engine = {"target": "central", "node": NODE, "check": "engine"}
    assert reg.get_sample_value("qlik_probe_success", engine) == 0.0
    assert reg.get_sample_value("qlik_probe_failures_total", {**engine, "reason": "dns"}) == 1.0
    assert b"qlik_exporter_" not in generate_latest(reg)


def test_fast_text_renderer_matches_generate_latest() -> None:
    """render_text parses to exactly the samples generate_latest gives, escaping included."""
    odd = cert("client", "01", cn='we"ird\\cn\nx')
    store = ResultStore()
    store.record(result(certificates=[odd], phases={"tls": 0.1}, duration=float("inf")))
    store.record(result("b", success=False, reason=Reason.TIMEOUT))
    collector = QlikCollector(store)
    registry = CollectorRegistry()
    registry.register(collector)

    def samples(text: bytes) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        families = text_string_to_metric_families(text.decode())
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value) for f in families for s in f.samples
        }

    assert samples(collector.render_text()) == samples(generate_latest(registry))


def test_every_family_has_help_that_says_where_values_come_from() -> None:
    """Per-run gauges say in HELP that they hold the last scheduled run's value."""
    text = generate_latest(registry_of(result())).decode()
    assert "# HELP qlik_probe_success 1 if the last scheduled run" in text
    assert "# TYPE qlik_probe_runs_total counter" in text
    assert "# TYPE qlik_probe_latency_seconds histogram" in text


def _random_result(
    rng: random.Random, target: str, node: str, check: str, now: float
) -> ProbeResult:
    ok = rng.random() < 0.6
    serial = f"{rng.randrange(3):02x}"  # rotating certificates change label sets
    values = CheckValues(
        repository_build=rng.choice([None, ("31.43.0.0", "4/12/2024"), ("31.44.0.0", "x")]),
        engine_version=rng.choice([None, "12.1823.6"]),
        engine_health=rng.choice([None, EngineHealth(3, 2, 1, 1e9, 0.25, rng.random() < 0.5)]),
        proxy_sessions=rng.choice([None, ("jwt", rng.randrange(5))]),
        tenant=rng.choice([None, TenantInfo("t1", "u1", "active")]),
    )
    return result(
        target,
        check,
        success=ok,
        reason=None if ok else rng.choice(list(Reason)),
        finished=now,
        duration=rng.choice([0.01, 0.3, 7.0, float("inf")]),
        phases={p: rng.random() for p in rng.sample(["resolve", "connect", "tls", "read"], 2)},
        values=values,
        certificates=[
            cert("client", serial, not_after=now + 1e6),
            dataclasses.replace(cert("server_" + check, "aa"), node=node),
        ],
        node=node,
        credentials=[CredentialInfo("jwt", now + rng.randrange(100))] if rng.random() < 0.3 else [],
        hostname_match=rng.choice([None, True, False]),
    )


def test_cached_render_equals_a_fresh_render_after_every_change() -> None:
    """One RenderCache reused across 400 random changes (runs, results, removed and re-added
    targets) always renders exactly what an uncached render of the same store gives."""
    rng = random.Random(7)
    store = ResultStore()
    cache = RenderCache()
    keys = [
        (t, n, c)
        for t in ("a", "b", "c", 'q"uote')
        for n in ("n1.example.com", "n2.example.com")
        for c in ("repository", "engine", "proxy")
    ]
    for step in range(400):
        target, node, check = rng.choice(keys)
        action = rng.random()
        if action < 0.1:
            store.record_start(target, check, node)
        elif action < 0.8:
            store.record(_random_result(rng, target, node, check, 1000.0 + step))
        elif action < 0.9:
            store.retain(k for k in keys if k[:2] != (target, node))  # the node leaves the site
        else:
            store.retain(k for k in keys if k[0] != target)  # the target leaves the config
        cached = QlikCollector(store, cache=cache).render_text()
        assert cached == render_text(build_families(store.snapshot())), step
    assert set(cache.series) == {(s.target, s.node, s.check) for s in store.snapshot()}


def test_one_cache_over_two_stores_never_shows_the_other_stores_values() -> None:
    """Versions are unique across stores, so a cache never serves another store's text."""
    cache = RenderCache()
    first, second = ResultStore(), ResultStore()
    first.record(result(duration=1.0))
    second.record(result(duration=2.0))
    assert b"qlik_probe_duration_seconds{" in QlikCollector(first, cache=cache).render_text()
    text = QlikCollector(second, cache=cache).render_text().decode()
    series = f'target="central",node="{NODE}",check="repository"'
    assert f"qlik_probe_duration_seconds{{{series}}} 2.0" in text
    assert f"qlik_probe_duration_seconds{{{series}}} 1.0" not in text


def test_infinities_and_nan_are_written_as_prometheus_spells_them() -> None:
    """Non-finite values render as +Inf, -Inf and NaN in the text path, as in the collector's."""
    store = ResultStore()
    phases = {"tls": float("inf"), "read": float("-inf")}
    store.record(result(duration=float("nan"), phases=phases))
    text = QlikCollector(store).render_text().decode()
    series = f'target="central",node="{NODE}",check="repository"'
    assert f"qlik_probe_duration_seconds{{{series}}} NaN\n" in text
    assert f"qlik_probe_latency_seconds_sum{{{series}}} NaN\n" in text
    assert f'qlik_probe_phase_duration_seconds{{{series},phase="tls"}} +Inf\n' in text
    assert f'qlik_probe_phase_duration_seconds{{{series},phase="read"}} -Inf\n' in text
    assert not re.search(r" (-?inf|nan)$", text, re.MULTILINE)
