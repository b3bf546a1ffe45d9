"""Every metric family the exporter exposes: name, type, HELP text and label names.

Metric names, labels and HELP texts are a user contract (dashboards and alert rules match on
them), so each is written here once and everything else refers to these objects.
"""

from __future__ import annotations

from typing import Final


class Family:
    """One metric family; counters and histograms are named without their suffix."""

    __slots__ = ("header", "help", "labels", "name", "sample", "type")

    def __init__(self, name: str, type_: str, help_: str, labels: str = "") -> None:
        self.name = name
        self.type = type_
        self.help = help_
        self.labels = tuple(labels.split())  # written space-separated, like namedtuple fields
        # The sample name of a gauge or counter (histograms add _bucket, _count and _sum).
        self.sample = f"{name}_total" if type_ == "counter" else name
        doc = help_.replace("\\", r"\\").replace("\n", r"\n")
        self.header = f"# HELP {self.sample} {doc}\n# TYPE {self.sample} {type_}\n"

    def __repr__(self) -> str:
        return f"Family({self.name!r})"


def _gauge(name: str, help_: str, labels: str = "") -> Family:
    return Family(name, "gauge", help_, labels)


def _last_run(name: str, help_: str, labels: str) -> Family:
    """A gauge holding a value from the last scheduled run, which its HELP says."""
    return _gauge(name, f"{help_} Value from the last scheduled run.", labels)


PROBE_SUCCESS: Final = _last_run(
    "qlik_probe_success",
    "1 if the last scheduled run of the check succeeded, else 0.",
    "target node check",
)
PROBE_DURATION: Final = _last_run(
    "qlik_probe_duration_seconds",
    "Wall time of the last scheduled run of the check.",
    "target node check",
)
PROBE_PHASE_DURATION: Final = _last_run(
    "qlik_probe_phase_duration_seconds",
    "Time each phase (resolve, connect, tls, token = an OAuth token request, request = time to "
    "first byte, read) took in the last scheduled run.",
    "target node check phase",
)
PROBE_LATENCY: Final = Family(
    "qlik_probe_latency_seconds",
    "histogram",
    "Wall time of every scheduled run of the check, for SLOs.",
    "target node check",
)
PROBE_RUNS: Final = Family(
    "qlik_probe_runs", "counter", "Scheduled runs of the check started.", "target node check"
)
PROBE_FAILURES: Final = Family(
    "qlik_probe_failures",
    "counter",
    "Failed scheduled runs of the check, by reason.",
    "target node check reason",
)
PROBE_LAST_RUN: Final = _gauge(
    "qlik_probe_last_run_timestamp_seconds",
    "When the last scheduled run of the check finished (unix seconds).",
    "target node check",
)
PROBE_LAST_SUCCESS: Final = _gauge(
    "qlik_probe_last_success_timestamp_seconds",
    "When a scheduled run of the check last succeeded (unix seconds).",
    "target node check",
)
REPOSITORY_BUILD: Final = _last_run(
    "qlik_repository_build_info",
    "Repository build version and date from /qrs/about; always 1.",
    "target node build_version build_date",
)
ENGINE_BUILD: Final = _last_run(
    "qlik_engine_build_info",
    "Engine version from the healthcheck or EngineVersion; always 1.",
    "target node version",
)
PROXY_SESSIONS: Final = _last_run(
    "qlik_proxy_sessions",
    "Proxy sessions reported by the proxy check.",
    "target node virtual_proxy",
)
CLOUD_TENANT: Final = _last_run(
    "qlik_cloud_tenant_info",
    "The Qlik Cloud tenant and user the API key belongs to; always 1.",
    "target tenant_id user_id user_status",
)
CERT_NOT_AFTER: Final = _last_run(
    "qlik_certificate_not_after_timestamp_seconds",
    "When the certificate expires (unix seconds); exported even when expired or untrusted.",
    "target node source subject_cn issuer_cn serial",
)
CERT_NOT_BEFORE: Final = _last_run(
    "qlik_certificate_not_before_timestamp_seconds",
    "When the certificate becomes valid (unix seconds).",
    "target node source subject_cn issuer_cn serial",
)
CERT_HOSTNAME_MATCH: Final = _last_run(
    "qlik_certificate_hostname_match",
    "1 if the server certificate covers the target host (also with tls_verify: false).",
    "target node check",
)
CREDENTIAL_EXPIRY: Final = _last_run(
    "qlik_credential_expiry_timestamp_seconds",
    "When the JWT, API key or OAuth access token expires (unix seconds).",
    "target node kind",
)
LICENSE_EXPIRED: Final = _last_run(
    "qlik_license_expired",
    "1 if Qlik says the site's or tenant's licence has expired, else 0.",
    "target",
)
LICENSE_EXPIRY: Final = _last_run(
    "qlik_license_expiry_timestamp_seconds",
    "When the licence expires (unix seconds); absent when it does not expire.",
    "target",
)
LICENSE_ACCESS_TOTAL: Final = _last_run(
    "qlik_license_access_total",
    "Access allocations of the licence by type (QSEoW) or allotment (Qlik Cloud).",
    "target type",
)
LICENSE_ACCESS_AVAILABLE: Final = _last_run(
    "qlik_license_access_available",
    "Access allocations still available by type (QSEoW) or allotment (Qlik Cloud).",
    "target type",
)
SERVICE_STATE: Final = _last_run(
    "qlik_service_state",
    "1 for the state the repository reports for the service on the node, 0 for each remaining "
    "state.",
    "target node service state",
)
SERVICE_STATUS_TIME: Final = _last_run(
    "qlik_service_status_timestamp_seconds",
    "When the repository recorded the service's state on the node (unix seconds).",
    "target node service",
)
DISCOVERY_SUCCESS: Final = _gauge(
    "qlik_discovery_success",
    "1 if the last discovery of the site's nodes succeeded, else 0 (the last good node list is "
    "kept).",
    "target",
)
DISCOVERY_NODES: Final = _gauge(
    "qlik_discovery_nodes", "Nodes in the target's current node list.", "target"
)
DISCOVERY_LAST_SUCCESS: Final = _gauge(
    "qlik_discovery_last_success_timestamp_seconds",
    "When a discovery of the site's nodes last succeeded (unix seconds).",
    "target",
)
NODE_INFO: Final = _gauge(
    "qlik_node_info",
    "One per node in the target's current node list: its QMC name, whether it is the central "
    "node and its purpose; always 1.",
    "target node node_name central purpose",
)

# By the EngineHealth field each one publishes.
ENGINE_HEALTH: Final = {
    "sessions_active": _last_run(
        "qlik_engine_sessions_active",
        "Active engine sessions from the engine healthcheck.",
        "target node",
    ),
    "users_active": _last_run(
        "qlik_engine_users_active",
        "Active engine users from the engine healthcheck.",
        "target node",
    ),
    "apps_loaded": _last_run(
        "qlik_engine_apps_loaded",
        "Apps loaded in the engine, from the engine healthcheck.",
        "target node",
    ),
    "memory_committed_bytes": _last_run(
        "qlik_engine_memory_committed_bytes",
        "Committed engine memory from the engine healthcheck.",
        "target node",
    ),
    "cpu_utilization_ratio": _last_run(
        "qlik_engine_cpu_utilization_ratio",
        "Engine CPU utilization (0-1) from the engine healthcheck.",
        "target node",
    ),
    "saturated": _last_run(
        "qlik_engine_saturated",
        "1 if the engine healthcheck reports the engine saturated.",
        "target node",
    ),
}

# Self-metrics: only with a daemon status (never in /probe registries).
EXPORTER_BUILD: Final = _gauge(
    "qlik_exporter_build_info",
    "Exporter version and Python version; always 1.",
    "version python_version",
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
CHECKS: Final = _gauge(
    "qlik_exporter_checks", "(target, node, check) series with results in the store."
)
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
    LICENSE_EXPIRED,
    LICENSE_EXPIRY,
    LICENSE_ACCESS_TOTAL,
    LICENSE_ACCESS_AVAILABLE,
    SERVICE_STATE,
    SERVICE_STATUS_TIME,
    DISCOVERY_SUCCESS,
    DISCOVERY_NODES,
    DISCOVERY_LAST_SUCCESS,
    NODE_INFO,
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
