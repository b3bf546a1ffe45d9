"""Every metric family the exporter exposes: name, type, HELP text and label names.

Metric names, labels and HELP texts are a user contract (dashboards and alert rules match on
them), so each is written here once and everything else refers to these objects.
"""

from __future__ import annotations

from typing import Final

_CACHED = "Value from the last scheduled run."
_TC = ("target", "check")
_CERT = ("target", "source", "subject_cn", "issuer_cn", "serial")


class Family:
    """One metric family; counters and histograms are named without their suffix."""

    __slots__ = ("header", "help", "labels", "name", "sample", "type")

    def __init__(self, name: str, type_: str, help_: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.type = type_
        self.help = help_
        self.labels = labels
        # The sample name of a gauge or counter (histograms add _bucket, _count and _sum).
        self.sample = f"{name}_total" if type_ == "counter" else name
        doc = help_.replace("\\", r"\\").replace("\n", r"\n")
        self.header = f"# HELP {self.sample} {doc}\n# TYPE {self.sample} {type_}\n"

    def __repr__(self) -> str:
        return f"Family({self.name!r})"


def _gauge(name: str, help_: str, labels: tuple[str, ...] = ()) -> Family:
    return Family(name, "gauge", help_, labels)


PROBE_SUCCESS: Final = _gauge(
    "qlik_probe_success",
    f"1 if the last scheduled run of the check succeeded, else 0. {_CACHED}",
    _TC,
)
PROBE_DURATION: Final = _gauge(
    "qlik_probe_duration_seconds",
    f"Wall time of the last scheduled run of the check. {_CACHED}",
    _TC,
)
PROBE_PHASE_DURATION: Final = _gauge(
    "qlik_probe_phase_duration_seconds",
    "Time each phase (resolve, connect, tls, request = time to first byte, read) took in the "
    f"last scheduled run. {_CACHED}",
    (*_TC, "phase"),
)
PROBE_LATENCY: Final = Family(
    "qlik_probe_latency_seconds",
    "histogram",
    "Wall time of every scheduled run of the check, for SLOs.",
    _TC,
)
PROBE_RUNS: Final = Family(
    "qlik_probe_runs", "counter", "Scheduled runs of the check started.", _TC
)
PROBE_FAILURES: Final = Family(
    "qlik_probe_failures",
    "counter",
    "Failed scheduled runs of the check, by reason.",
    (*_TC, "reason"),
)
PROBE_LAST_RUN: Final = _gauge(
    "qlik_probe_last_run_timestamp_seconds",
    "When the last scheduled run of the check finished (unix seconds).",
    _TC,
)
PROBE_LAST_SUCCESS: Final = _gauge(
    "qlik_probe_last_success_timestamp_seconds",
    "When a scheduled run of the check last succeeded (unix seconds).",
    _TC,
)
REPOSITORY_BUILD: Final = _gauge(
    "qlik_repository_build_info",
    f"Repository build version and date from /qrs/about; always 1. {_CACHED}",
    ("target", "build_version", "build_date"),
)
ENGINE_BUILD: Final = _gauge(
    "qlik_engine_build_info",
    f"Engine version from the healthcheck or EngineVersion; always 1. {_CACHED}",
    ("target", "version"),
)
# By the EngineHealth field each one publishes.
ENGINE_HEALTH: Final = {
    "sessions_active": _gauge(
        "qlik_engine_sessions_active",
        f"Active engine sessions from the engine healthcheck. {_CACHED}",
        ("target",),
    ),
    "users_active": _gauge(
        "qlik_engine_users_active",
        f"Active engine users from the engine healthcheck. {_CACHED}",
        ("target",),
    ),
    "apps_loaded": _gauge(
        "qlik_engine_apps_loaded",
        f"Apps loaded in the engine, from the engine healthcheck. {_CACHED}",
        ("target",),
    ),
    "memory_committed_bytes": _gauge(
        "qlik_engine_memory_committed_bytes",
        f"Committed engine memory from the engine healthcheck. {_CACHED}",
        ("target",),
    ),
    "cpu_utilization_ratio": _gauge(
        "qlik_engine_cpu_utilization_ratio",
        f"Engine CPU utilization (0-1) from the engine healthcheck. {_CACHED}",
        ("target",),
    ),
    "saturated": _gauge(
        "qlik_engine_saturated",
        f"1 if the engine healthcheck reports the engine saturated. {_CACHED}",
        ("target",),
    ),
}
PROXY_SESSIONS: Final = _gauge(
    "qlik_proxy_sessions",
    f"Proxy sessions reported by the proxy check. {_CACHED}",
    ("target", "virtual_proxy"),
)
CLOUD_TENANT: Final = _gauge(
    "qlik_cloud_tenant_info",
    f"The Qlik Cloud tenant and user the API key belongs to; always 1. {_CACHED}",
    ("target", "tenant_id", "user_id", "user_status"),
)
CERT_NOT_AFTER: Final = _gauge(
    "qlik_certificate_not_after_timestamp_seconds",
    "When the certificate expires (unix seconds); exported even when expired or untrusted. "
    f"{_CACHED}",
    _CERT,
)
CERT_NOT_BEFORE: Final = _gauge(
    "qlik_certificate_not_before_timestamp_seconds",
    f"When the certificate becomes valid (unix seconds). {_CACHED}",
    _CERT,
)
CERT_HOSTNAME_MATCH: Final = _gauge(
    "qlik_certificate_hostname_match",
    f"1 if the server certificate covers the target host (also with tls_verify: false). {_CACHED}",
    _TC,
)
CREDENTIAL_EXPIRY: Final = _gauge(
    "qlik_credential_expiry_timestamp_seconds",
    f"When the JWT or API key expires (unix seconds), from its exp claim. {_CACHED}",
    ("target", "kind"),
)

# Self-metrics: only with a daemon status (never in /probe registries).
EXPORTER_BUILD: Final = _gauge(
    "qlik_exporter_build_info",
    "Exporter version and Python version; always 1.",
    ("version", "python_version"),
)
RELOAD_SUCCESSFUL: Final = _gauge(
    "qlik_exporter_config_last_reload_successful",
    "1 if the last config (re)load succeeded, 0 after a rejected reload.",
)
RELOAD_SUCCESS_TIME: Final = _gauge(
    "qlik_exporter_config_last_reload_success_timestamp_seconds",
    "When the config was last loaded successfully (unix seconds).",
)
TARGETS: Final = _gauge("qlik_exporter_targets", "Targets in the loaded config (this shard's).")
START_TIME: Final = _gauge(
    "qlik_exporter_start_time_seconds", "When the exporter started (unix seconds)."
)
READY: Final = _gauge(
    "qlik_exporter_ready", "1 when the config is loaded and the scheduler is running."
)
SCHEDULER_JOBS: Final = _gauge("qlik_exporter_scheduler_jobs", "Probe jobs in the scheduler.")
CHECKS: Final = _gauge("qlik_exporter_checks", "(target, check) pairs with results in the store.")
COLLECT_DURATION: Final = _gauge(
    "qlik_exporter_collect_duration_seconds",
    "Time this scrape spent building metric families from the result store.",
)

# Exposition order.
PROBE_FAMILIES: Final = (
    PROBE_SUCCESS,
    PROBE_DURATION,
    PROBE_PHASE_DURATION,
    PROBE_LATENCY,
    PROBE_RUNS,
    PROBE_FAILURES,
    PROBE_LAST_RUN,
    PROBE_LAST_SUCCESS,
    REPOSITORY_BUILD,
    ENGINE_BUILD,
    *ENGINE_HEALTH.values(),
    PROXY_SESSIONS,
    CLOUD_TENANT,
    CERT_NOT_AFTER,
    CERT_NOT_BEFORE,
    CERT_HOSTNAME_MATCH,
    CREDENTIAL_EXPIRY,
)
SELF_FAMILIES: Final = (
    EXPORTER_BUILD,
    RELOAD_SUCCESSFUL,
    RELOAD_SUCCESS_TIME,
    TARGETS,
    START_TIME,
    READY,
    SCHEDULER_JOBS,
    CHECKS,
    COLLECT_DURATION,
)
