"""Every simulator fault × every check it applies to yields exactly one expected reason.

One test per fault case: the fault is set on every service of a faulty simulator, and every
auth method runs every check it supports against it concurrently, while a healthy target on a
second, fault-free simulator is probed in the same loop. The expected reason of each
(fault, auth, check) comes from one table, :func:`expected`, where the websocket check and the
checks a fault does not touch are spelled out.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exporter.reasons import Reason
from exporter.results import ProbeResult
from exporter.runner import Prober, run_probe
from exporter.sim import Simulator
from exporter.sim.faults import SERVICES, FaultKind
from tests.core.conftest import build, cert_target, cloud_target, header_target, jwt_target

TIMEOUT = "1s"
HEALTHY_TIMEOUT = "5s"
DIRECT = ("repository", "proxy", "engine", "engine_session")  # certificate auth
VIA_PROXY = ("repository", "proxy", "engine")  # jwt and header auth, service `frontend`
CLOUD = ("tenant",)


@dataclass(frozen=True, slots=True)
class Case:
    """One fault as set on every service, with its test id."""

    id: str
    kind: FaultKind
    params: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("delay_within_timeout", FaultKind.DELAY, {"seconds": 0.05}),
    Case("delay_beyond_timeout", FaultKind.DELAY, {"seconds": 1.6}),
    Case("hang", FaultKind.HANG),
    Case("reset", FaultKind.RESET),
    Case("status_401", FaultKind.STATUS, {"status": 401}),
    Case("status_403", FaultKind.STATUS, {"status": 403}),
    Case("status_404", FaultKind.STATUS, {"status": 404}),
    Case("status_429", FaultKind.STATUS, {"status": 429, "retry_after": 1}),
    Case("status_500", FaultKind.STATUS, {"status": 500}),
    Case("status_503", FaultKind.STATUS, {"status": 503}),
    Case("malformed_json", FaultKind.MALFORMED_JSON),
    Case("wrong_shape", FaultKind.WRONG_SHAPE),
    Case("oversized", FaultKind.OVERSIZED, {"size_mb": 8.0}),
    Case("cert_wrong_host", FaultKind.CERT_WRONG_HOST),
    Case("cert_expired", FaultKind.CERT_EXPIRED),
    Case("cert_untrusted", FaultKind.CERT_UNTRUSTED),
    Case("cert_no_san", FaultKind.CERT_NO_SAN),
    Case("engine_fatal", FaultKind.ENGINE_FATAL),
    Case("engine_no_connected", FaultKind.ENGINE_NO_CONNECTED),
    Case("wrong_user", FaultKind.WRONG_USER),
]

# Faults that act on every request and connection of a service, with the same reason for every
# check, websocket included (the upgrade is an HTTP request and a TLS handshake too).
_UNIFORM: dict[FaultKind, Reason] = {
    FaultKind.HANG: Reason.TIMEOUT,
    FaultKind.RESET: Reason.SERVER_ERROR,
    FaultKind.CERT_WRONG_HOST: Reason.HOSTNAME_MISMATCH,
    FaultKind.CERT_NO_SAN: Reason.HOSTNAME_MISMATCH,
    FaultKind.CERT_EXPIRED: Reason.SERVER_CERTIFICATE_EXPIRED,
    FaultKind.CERT_UNTRUSTED: Reason.SERVER_CERTIFICATE_UNTRUSTED,
    FaultKind.MALFORMED_JSON: Reason.INVALID_RESPONSE,
    FaultKind.WRONG_SHAPE: Reason.INVALID_RESPONSE,
}
_STATUS: dict[int, Reason] = {
    401: Reason.UNAUTHORIZED,
    403: Reason.FORBIDDEN,
    404: Reason.NOT_FOUND,
    429: Reason.RATE_LIMITED,
    500: Reason.SERVER_ERROR,
    503: Reason.SERVER_ERROR,
}


def expected(case: Case, auth: str, check: str) -> Reason | None:
    """The one reason ``check`` of an ``auth`` target must fail with (None: it succeeds).

    Where the websocket check (engine_session) differs from the HTTP checks:
    - ``oversized`` replaces HTTP bodies only; engine frames are untouched, so it succeeds.
    - ``malformed_json``/``wrong_shape`` cut or reshape the EngineVersion reply frame instead.
    - ``engine_fatal``/``engine_no_connected`` act only on the websocket greeting.
    ``wrong_user`` acts only on whoami (proxy check through a virtual proxy); a Cloud API key
    has no configured user to compare with, so the tenant check cannot notice it.
    """
    kind = case.kind
    if kind is FaultKind.DELAY:
        return Reason.TIMEOUT if case.params["seconds"] >= 1.0 else None
    if kind is FaultKind.STATUS:
        return _STATUS[case.params["status"]]
    if kind in _UNIFORM:
        return _UNIFORM[kind]
    if kind is FaultKind.OVERSIZED:
        return None if check == "engine_session" else Reason.INVALID_RESPONSE
    if kind is FaultKind.ENGINE_FATAL:
        return Reason.SESSION_REJECTED if check == "engine_session" else None
    if kind is FaultKind.ENGINE_NO_CONNECTED:
        return Reason.TIMEOUT if check == "engine_session" else None
    if kind is FaultKind.WRONG_USER:
        return Reason.WRONG_USER if auth in ("jwt", "header") and check == "proxy" else None
    raise AssertionError(f"no expectation for {kind}")


def test_every_fault_kind_is_in_the_matrix() -> None:
    """The matrix covers every fault kind the simulator can inject."""
    assert {c.kind for c in CASES} == set(FaultKind)


def runtime(target: dict[str, Any], base_dir: Path) -> Prober:
    """A long-lived runtime as the daemon keeps it, its credentials already loaded once.

    Loading and checking a client key takes a CPU-bound ~0.1 s that the daemon pays once per
    target, not per probe; paying it for a dozen fresh runtimes at once would eat the 1 s
    timeout of the probes that run alongside.
    """
    rt = Prober.build(build(target, base_dir))
    rt.auth.holdings()  # loads and checks the files, cached for the probes
    return rt


def _targets(sim: Simulator, base_dir: Path) -> dict[str, tuple[Prober, tuple[str, ...]]]:
    key = sim.cloud_issue_api_key(sub=sim.cloud_user_id)
    return {
        "certificate": (runtime(cert_target(sim, timeout=TIMEOUT), base_dir), DIRECT),
        "jwt": (runtime(jwt_target(sim, timeout=TIMEOUT), base_dir), VIA_PROXY),
        "header": (runtime(header_target(sim, timeout=TIMEOUT), base_dir), VIA_PROXY),
        "cloud": (runtime(cloud_target(sim, key, timeout=TIMEOUT), base_dir), CLOUD),
    }


def _tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """Exporter log records (not the simulator's) that carry a traceback."""
    ours = [
        r
        for r in records
        if r.name == "asyncio"
        or (r.name.startswith("exporter") and not r.name.startswith("exporter.sim"))
    ]
    return [f"{r.name}: {r.getMessage()}" for r in ours if r.exc_info]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_fault_yields_expected_reason_on_every_check(
    sim: Simulator,
    healthy_sim: Simulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: Case,
) -> None:
    """Each check fails with exactly its expected reason, untraced, while a healthy target works."""
    caplog.set_level(logging.DEBUG)
    for service in SERVICES:
        sim.faults.set(service, case.kind, **case.params)
    runs: list[tuple[str, str, Any]] = []
    for auth, (rt, checks) in _targets(sim, tmp_path).items():
        runs += [(auth, check, run_probe(rt, check)) for check in checks]
    good = runtime(cert_target(healthy_sim, name="healthy", timeout=HEALTHY_TIMEOUT), tmp_path)
    healthy_runs = [run_probe(good, check) for check in DIRECT]
    results: list[ProbeResult] = await asyncio.wait_for(
        asyncio.gather(*(r[2] for r in runs), *healthy_runs), timeout=15
    )
    got = {(auth, check): res for (auth, check, _), res in zip(runs, results, strict=False)}
    mismatches = {
        f"{auth}/{check}": (res.reason, expected(case, auth, check), res.error)
        for (auth, check), res in got.items()
        if res.reason != expected(case, auth, check)
    }
    assert mismatches == {}
    for res in got.values():
        assert res.success is (res.reason is None)
        if not res.success:
            assert res.error
    for res in results[len(runs) :]:
        assert res.success, f"healthy {res.check}: {res.reason} {res.error}"
    assert _tracebacks(caplog.records) == []
