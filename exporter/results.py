"""What one probe run learned, and the store of the latest result per target and check.

Data flows one way: the runner produces a :class:`ProbeResult`, the scheduler puts it in the
:class:`ResultStore`, and the collector in :mod:`exporter.metrics` turns the store into metric
families on every scrape.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.reasons import Reason

# ``token``: a token endpoint call the run needed first (OAuth), on the same connection.
PHASES = ("resolve", "connect", "tls", "token", "request", "read")


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """One certificate a target uses: a configured file or a server's certificate."""

    source: str  # client, root, jwt_signing, server_<check>
    subject_cn: str
    issuer_cn: str
    serial: str  # lowercase hex
    not_before: float  # unix seconds
    not_after: float  # unix seconds
    node: str = ""  # the node a server certificate came from; "" for a configured file


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    """A token-style credential with an expiry (``jwt``, ``apikey`` or ``oauth_token``)."""

    kind: str
    expires: float  # unix seconds

    @property
    def renewed(self) -> bool:
        """Whether the exporter renews it itself (an OAuth access token lives hours): its
        expiry is information, never a warning."""
        return self.kind == "oauth_token"


@dataclass(frozen=True, slots=True)
class EngineHealth:
    """The numbers from ``/engine/healthcheck`` the exporter publishes."""

    sessions_active: float
    users_active: float
    apps_loaded: float
    memory_committed_bytes: float
    cpu_utilization_ratio: float
    saturated: float


@dataclass(frozen=True, slots=True)
class TenantInfo:
    """Who the Cloud API key belongs to, from ``/api/v1/users/me``."""

    tenant_id: str
    user_id: str
    user_status: str
    tenant_name: str = ""


@dataclass(frozen=True, slots=True)
class LicenseInfo:
    """The licence of a site or tenant, from the ``license`` check (never licence material)."""

    expired: bool
    expires: float | None  # unix seconds; None when the licence does not expire
    access: dict[str, tuple[float, float]]  # access type or allotment -> (total, available)


# The states of qlik_service_state, in the QRS serviceState enum's order (0 … 5).
SERVICE_STATES = (
    "initializing",
    "certificates_not_installed",
    "running",
    "no_communication",
    "disabled",
    "unknown",
)


@dataclass(frozen=True, slots=True)
class ServiceState:
    """One service on one node of a site, from the ``services`` check."""

    node: str  # the node's host name
    service: str  # repository, proxy, scheduler, engine, app_migration, printing
    state: str  # initializing, certificates_not_installed, running, no_communication, ...
    timestamp: float | None  # when the repository recorded the state (unix seconds)


# ``nodePurpose`` 0, 1, 2 of a ServerNodeConfiguration, as qlik_node_info's ``purpose``.
NODE_PURPOSES = ("production", "development", "both")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node of a site, from discovery (``/qrs/servernodeconfiguration/full``)."""

    host_name: str  # what the exporter connects to: the ``node`` label
    name: str  # the node's name in the QMC
    central: bool
    purpose: str  # production, development or both
    proxy: bool  # proxyEnabled: runs a proxy service
    engine: bool  # engineEnabled: runs an engine service


@dataclass(slots=True)
class CheckValues:
    """Values a check parsed out of a successful answer, each optional."""

    repository_build: tuple[str, str] | None = None  # (build_version, build_date)
    engine_version: str | None = None
    engine_health: EngineHealth | None = None
    proxy_sessions: tuple[str, int] | None = None  # (virtual_proxy, count)
    tenant: TenantInfo | None = None
    license: LicenseInfo | None = None
    services: tuple[ServiceState, ...] | None = None
    nodes: tuple[NodeInfo, ...] | None = None  # discovery: the site's nodes
    details: dict[str, str] = field(default_factory=dict)  # human-readable extras for `probe`


@dataclass(slots=True)
class ProbeResult:
    """The outcome of one run of one check against one target."""

    target: str
    check: str
    success: bool
    reason: Reason | None
    error: str  # detailed, secret-free error text; "" on success
    started: float  # unix seconds
    finished: float  # unix seconds
    duration: float  # seconds (monotonic)
    phases: dict[str, float] = field(default_factory=dict)
    values: CheckValues = field(default_factory=CheckValues)
    certificates: list[CertificateInfo] = field(default_factory=list)
    credentials: list[CredentialInfo] = field(default_factory=list)
    hostname_match: bool | None = None
    retry_after: float | None = None  # seconds the server asked to wait before the next run
    log: list[str] = field(default_factory=list)  # the probe's own log lines (for debug=true)
    node: str = ""  # the host the run connected to (a discovered node or the target's host)


@dataclass(slots=True)
class _Series:
    latest: ProbeResult | None = None
    runs: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    last_success: float | None = None
    failing_since: float | None = None
    latency_buckets: list[int] = field(default_factory=list)
    latency_sum: float = 0.0
    latency_count: int = 0
    version: int = 0


# Every change to any series in any store takes the next number, so a version identifies one
# state of one series process-wide (renderers cache text by it; see exporter.metrics).
_VERSIONS = itertools.count(1)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ResultStore:
    """Latest result and running counters for every (target, node, check), safe across threads.

    The scrape handler reads a snapshot from a worker thread while probes write from the event
    loop, so every access goes through one lock and readers get copies.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], _Series] = {}

    def record_start(self, target: str, check: str, node: str = "") -> None:
        """Count a run as started (``qlik_probe_runs_total``)."""
        with self._lock:
            s = self._get(target, node, check)
            s.runs += 1
            s.version = next(_VERSIONS)

    def record(self, result: ProbeResult) -> None:
        """Store a finished run's result and update its counters and histogram."""
        with self._lock:
            s = self._get(result.target, result.node, result.check)
            s.latest = result
            if result.success:
                s.last_success = result.finished
                s.failing_since = None
            else:
                if s.failing_since is None:
                    s.failing_since = result.finished
                if result.reason is not None:
                    s.failures[result.reason.value] = s.failures.get(result.reason.value, 0) + 1
            for i, bound in enumerate(LATENCY_BUCKETS):
                if result.duration <= bound:
                    s.latency_buckets[i] += 1
            s.latency_sum += result.duration
            s.latency_count += 1
            s.version = next(_VERSIONS)

    def retain(self, keys: Iterable[tuple[str, str, str]]) -> None:
        """Forget every (target, node, check) not in ``keys``: removed targets and nodes leave
        ``/metrics``."""
        keep = set(keys)
        with self._lock:
            for key in list(self._series):
                if key not in keep:
                    del self._series[key]

    def snapshot(self) -> list[SeriesSnapshot]:
        """A consistent copy of everything, sorted by target, node and check."""
        with self._lock:
            return [
                SeriesSnapshot(
                    target=t,
                    node=n,
                    check=c,
                    latest=s.latest,
                    runs=s.runs,
                    failures=dict(s.failures),
                    last_success=s.last_success,
                    failing_since=s.failing_since,
                    latency_buckets=tuple(s.latency_buckets),
                    latency_sum=s.latency_sum,
                    latency_count=s.latency_count,
                    version=s.version,
                )
                for (t, n, c), s in sorted(self._series.items())
            ]

    def _get(self, target: str, node: str, check: str) -> _Series:
        s = self._series.get((target, node, check))
        if s is None:
            s = _Series(latency_buckets=[0] * len(LATENCY_BUCKETS))
            self._series[(target, node, check)] = s
        return s


@dataclass(slots=True)  # not frozen: every scrape copies every series, a frozen __init__ is slow
class SeriesSnapshot:
    """A copy of one (target, node, check) for the collector and the status page; treat as
    read-only."""

    target: str
    node: str
    check: str
    latest: ProbeResult | None
    runs: int
    failures: dict[str, int]
    last_success: float | None
    latency_buckets: tuple[int, ...]  # cumulative counts (runs <= each LATENCY_BUCKETS bound)
    latency_sum: float
    latency_count: int
    version: int  # changes whenever anything above changes; unique across stores
    failing_since: float | None = None  # when the current run of failures began (unix seconds)
