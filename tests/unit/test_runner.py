"""``run_probe`` around ``classify``: outside cancellation, and the certificate inspection.

The inspection is a second, non-verifying handshake that fetches a server certificate the
probe could not verify, for its expiry metrics. It must happen after a verification failure
and only then, within what is left of the probe's timeout, and leave no socket behind; a
local TLS server counts the connections to show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from exporter.reasons import Reason
from exporter.results import ProbeResult
from exporter.runner import INSPECT_TIMEOUT, Prober, _cancelled_from_outside, run_probe
from exporter.sim import Simulator
from tests.core.conftest import FixedResolver, build, cert_target, closed_port
from tests.core.test_oauth import oauth_target
from tests.unit.tls_helpers import CountingServer, http_response

HOST = "sense.example.test"


async def test_an_outside_cancellation_propagates_instead_of_becoming_a_timeout(
    sim: Simulator, tmp_path: Path
) -> None:
    """Cancelling a running probe (the daemon stopping) cancels it: no result, no timeout."""
    sim.faults.set("repository", "hang")
    prober = Prober.build(build(cert_target(sim, timeout="5s"), tmp_path))
    task = asyncio.create_task(run_probe(prober, "repository"))
    await asyncio.sleep(0.5)
    assert not task.done()
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 1.0


async def test_cancelled_from_outside_tells_an_outside_cancel_from_an_inner_one() -> None:
    """Only a cancel() of the probe's own task counts as coming from outside."""

    async def cancelled_then_asked() -> bool:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            return _cancelled_from_outside()
        return False

    async def raised_inside() -> bool:
        try:
            raise asyncio.CancelledError  # e.g. a library cancelling its own future
        except asyncio.CancelledError:
            return _cancelled_from_outside()

    assert await asyncio.create_task(cancelled_then_asked()) is True
    assert await asyncio.create_task(raised_inside()) is False
    answers: list[bool] = []
    asyncio.get_running_loop().call_soon(lambda: answers.append(_cancelled_from_outside()))
    await asyncio.sleep(0)
    assert answers == [False]  # a plain callback runs in no task at all


@pytest.fixture(scope="module")
def site_ca() -> trustme.CA:
    """The CA the target trusts (its ``ca_file``)."""
    return trustme.CA()


def _server_ctx(ca: trustme.CA, name: str = HOST, **dates: dt.datetime) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(name, common_name=name, **dates).configure_cert(ctx)  # type: ignore[arg-type]
    return ctx


async def _probe(
    server: CountingServer, ca: trustme.CA, tmp_path: Path, limit: str = "5s"
) -> ProbeResult:
    """The repository check of a header-auth target on ``server``, trusting ``ca``."""
    ca.cert_pem.write_to_path(str(tmp_path / "root.pem"))
    target = {
        "name": "site",
        "type": "qseow",
        "host": HOST,
        "port": server.port,
        "virtual_proxy": "hdr",
        "ca_file": "root.pem",
        "timeout": limit,
        "auth": {"method": "header", "header_name": "X-Monitor-User", "user_id": "monitor"},
    }
    prober = Prober.build(build(target, tmp_path))
    return await run_probe(prober, "repository", resolver=FixedResolver())


NOW = dt.datetime.now(dt.UTC)


@pytest.mark.parametrize(
    ("make_ctx", "reason", "hostname_match"),
    [
        (lambda ca: _server_ctx(trustme.CA()), Reason.SERVER_CERTIFICATE_UNTRUSTED, True),
        (
            lambda ca: _server_ctx(ca, not_after=NOW - dt.timedelta(days=1)),
            Reason.SERVER_CERTIFICATE_EXPIRED,
            True,
        ),
        (lambda ca: _server_ctx(ca, "other.example.test"), Reason.HOSTNAME_MISMATCH, False),
    ],
    ids=["untrusted", "expired", "wrong-host"],
)
async def test_a_verification_failure_opens_one_inspection_connection(
    site_ca: trustme.CA,
    tmp_path: Path,
    make_ctx: object,
    reason: Reason,
    hostname_match: bool,
) -> None:
    """After a verification failure, one more connection fetches the certificate for its
    metrics, and it is closed when the probe returns."""
    assert callable(make_ctx)
    async with CountingServer(make_ctx(site_ca)) as server:
        result = await _probe(server, site_ca, tmp_path)
        assert result.reason == reason
        assert server.accepted == 2
        assert await server.all_closed()
    [info] = [c for c in result.certificates if c.source == "server_repository"]
    assert info.subject_cn == (HOST if hostname_match else "other.example.test")
    assert result.hostname_match is hostname_match


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("500 Internal Server Error", Reason.SERVER_ERROR),
        ("404 Not Found", Reason.NOT_FOUND),
        ("401 Unauthorized", Reason.UNAUTHORIZED),
    ],
)
async def test_other_failures_after_a_good_handshake_open_no_second_connection(
    site_ca: trustme.CA, tmp_path: Path, status: str, reason: Reason
) -> None:
    """A verified server that answers with an error status is not connected to again, and its
    certificate comes from the probe's own handshake."""
    async with CountingServer(_server_ctx(site_ca), status=status) as server:
        result = await _probe(server, site_ca, tmp_path)
        assert result.reason == reason
        assert server.accepted == 1
        assert await server.all_closed()
    assert [c.source for c in result.certificates if c.source.startswith("server_")] == [
        "server_repository"
    ]
    assert result.hostname_match is True


async def test_a_failed_handshake_opens_no_second_connection(
    site_ca: trustme.CA, tmp_path: Path
) -> None:
    """A port without TLS fails the handshake: nothing to inspect, no certificate, no retry."""
    async with CountingServer(None) as server:
        result = await _probe(server, site_ca, tmp_path)
        assert result.reason == Reason.TLS_HANDSHAKE
        assert server.accepted == 1
        assert await server.all_closed()
    assert not [c for c in result.certificates if c.source.startswith("server_")]
    assert result.hostname_match is None


async def test_the_inspection_stays_within_the_probe_timeout(
    site_ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An inspection started late gets only what is left of the timeout, not its own 2s;
    giving up is a debug line, not part of the probe's failure."""
    assert INSPECT_TIMEOUT == 2.0
    slow = CountingServer(_server_ctx(trustme.CA()), delays=[1.2, 3.0])
    with caplog.at_level(logging.DEBUG, logger="exporter.probe"):
        async with slow as server:
            result = await _probe(server, site_ca, tmp_path, limit="2s")
        assert result.reason == Reason.SERVER_CERTIFICATE_UNTRUSTED, (
            result.error,
            result.duration,
            result.phases,
        )
        assert server.accepted == 2  # started, with ~0.8s left
        assert result.duration < 2.6  # not 1.2s + the inspection's own 2s
    assert not [c for c in result.certificates if c.source.startswith("server_")]
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.DEBUG, "server certificate inspection failed: TimeoutError") in messages


async def test_a_failed_probe_logs_one_warning_with_its_fields(
    site_ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure is one ``probe failed`` warning whose fields the JSON log shows (the duration
    to 0.1 ms), and the last line of the run's own log."""
    results = []
    with caplog.at_level(logging.DEBUG, logger="exporter.probe"):
        async with CountingServer(_server_ctx(site_ca), status="503 Busy") as server:
            for _ in range(3):  # three durations: one may have a 0 as its fifth decimal
                results.append(await _probe(server, site_ca, tmp_path))
    records = [r for r in caplog.records if r.name == "exporter.probe"]
    assert len(records) == 3
    for record, result in zip(records, results, strict=True):
        assert (record.levelno, record.getMessage()) == (logging.WARNING, "probe failed")
        keys = ("target", "node", "check", "reason", "error", "duration")
        fields = {k: getattr(record, k) for k in keys}
        assert fields == {
            "target": "site",
            "node": HOST,
            "check": "repository",
            "reason": "server_error",
            "error": result.error,
            "duration": round(result.duration, 4),
        }
        assert result.error.endswith(": 503 Busy")
        assert result.log[-1] == f"failed: reason=server_error error={result.error}"
        assert result.success is False


async def test_a_successful_probe_logs_one_debug_line_with_its_fields(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Success is quiet: one debug line with target, check and duration, nothing in the run's
    log about failing."""
    prober = Prober.build(build(cert_target(sim), tmp_path))
    results = []
    with caplog.at_level(logging.DEBUG, logger="exporter.probe"):
        for _ in range(3):
            results.append(await run_probe(prober, "repository"))
    records = [r for r in caplog.records if r.name == "exporter.probe"]
    assert len(records) == 3
    for record, result in zip(records, results, strict=True):
        assert result.success
        assert (record.levelno, record.getMessage()) == (logging.DEBUG, "probe succeeded")
        fields = {k: getattr(record, k) for k in ("target", "node", "check", "duration")}
        assert fields == {
            "target": "cert",
            "node": sim.host,
            "check": "repository",
            "duration": round(result.duration, 4),
        }
        assert not hasattr(record, "reason")
        assert not any(line.startswith("failed:") for line in result.log)


async def test_a_result_carries_its_times_and_the_run_log(
    site_ca: trustme.CA, tmp_path: Path
) -> None:
    """Start and finish are wall-clock times around the run, the duration lies between them,
    a success has no error, and the run's log has every request the check made."""
    before = time.time()
    async with CountingServer(_server_ctx(site_ca), answer=_virtual_proxy("200 OK")) as server:
        result = await _probe(server, site_ca, tmp_path)
    after = time.time()
    assert result.success is True
    assert (result.reason, result.error) == (None, "")
    assert before <= result.started <= result.finished <= after
    assert 0 < result.duration <= result.finished - result.started + 0.01
    assert result.log[0] == (f"GET https://{HOST}:{server.port}/hdr/qrs/about -> 200 OK")
    assert result.log[1] == f"DELETE https://{HOST}:{server.port}/hdr/qps/user -> 200 OK"


async def test_a_task_that_swallowed_a_cancellation_still_gets_results(tmp_path: Path) -> None:
    """Only a CancelledError is passed on: a failure in a task with a pending (swallowed)
    cancellation is still a result, never an exception."""
    target = {
        "name": "site",
        "type": "qseow",
        "host": "127.0.0.1",
        "port": closed_port(),
        "virtual_proxy": "hdr",
        "auth": {"method": "header", "header_name": "X-Monitor-User", "user_id": "monitor"},
    }
    prober = Prober.build(build(target, tmp_path))

    async def swallow_then_probe() -> ProbeResult:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):  # its cancelling() count stays 1
            await asyncio.sleep(1)
        return await run_probe(prober, "repository")

    result = await asyncio.create_task(swallow_then_probe())
    assert result.reason == Reason.CONNECT_REFUSED


ABOUT = b'{"buildVersion": "31.43.0.0", "buildDate": "4/12/2024 18:12:20 PM"}'
SESSION_COOKIE = "X-Qlik-Session-hdr=s3ss10n; Path=/; Secure; HttpOnly"


def _virtual_proxy(logout_status: str) -> Callable[[str], bytes]:
    """A header virtual proxy: /qrs/about opens a proxy session, DELETE /qps/user ends it."""

    def answer(head: str) -> bytes:
        if head.startswith("GET /hdr/qrs/about?xrfkey="):
            return http_response("200 OK", ABOUT, [f"Set-Cookie: {SESSION_COOKIE}"])
        if head.startswith("DELETE /hdr/qps/user "):
            return http_response(logout_status, b'{"session": "inactive"}')
        return http_response("404 Not Found")

    return answer


async def test_the_proxy_session_is_ended_with_its_cookie_not_the_credentials(
    site_ca: trustme.CA, tmp_path: Path
) -> None:
    """The logout sends the session cookie only: the user header would open a new session."""
    answer = _virtual_proxy("200 OK")
    async with CountingServer(_server_ctx(site_ca), answer=answer) as server:
        result = await _probe(server, site_ca, tmp_path)
    assert result.success, result.error
    assert [r.split(" ", 2)[:2] for r in server.requests][1] == ["DELETE", "/hdr/qps/user"]
    login, logout = server.requests
    assert "X-Monitor-User: monitor\r\n" in login
    assert "X-Monitor-User" not in logout
    assert "Cookie: X-Qlik-Session-hdr=s3ss10n\r\n" in logout
    assert server.accepted == 1  # on the kept-alive connection


async def test_a_failed_logout_leaves_the_probe_successful_with_a_note(
    site_ca: trustme.CA, tmp_path: Path
) -> None:
    """The check answered; a logout that fails is a line in the run's log, not a failure."""
    answer = _virtual_proxy("500 Internal Server Error")
    async with CountingServer(_server_ctx(site_ca), answer=answer) as server:
        result = await _probe(server, site_ca, tmp_path)
    assert result.success, result.error
    assert result.reason is None
    assert "logout failed: ProbeFailure" in result.log
    assert len(server.requests) == 2


async def test_the_auth_method_prepares_over_the_runs_own_session(
    sim: Simulator, tmp_path: Path
) -> None:
    """An OAuth token is fetched on the probe's session: its request is a phase of the run."""
    client_id, secret = sim.cloud.create_oauth_client()
    target = oauth_target(sim, client_id, secret)
    result = await run_probe(Prober.build(build(target, tmp_path)), "tenant")
    assert result.success, result.error
    assert "token" in result.phases
