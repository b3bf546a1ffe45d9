"""Faults on demand: each kind, per service, flipped without restarting listeners."""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import aiohttp
import pytest
from sim_helpers import QLIK_USER, TIMEOUT, XRFKEY, call, qrs_headers

from exporter.sim import Simulator


def about(sim: Simulator) -> str:
    return sim.url("repository", f"/qrs/about?xrfkey={XRFKEY}")


async def test_delay_answers_normally_after_the_delay(sim, sim_mtls):
    """`delay` waits the given seconds, then answers normally."""
    sim.faults.set("repository", "delay", seconds=0.3)
    started = time.monotonic()
    status, _, _ = await call("GET", about(sim), sim_mtls, qrs_headers())
    assert status == 200
    assert time.monotonic() - started >= 0.3


async def test_hang_never_answers_until_the_client_gives_up(sim, sim_mtls):
    """`hang` leaves the request unanswered; the client's own timeout ends it."""
    sim.faults.set("repository", "hang")
    timeout = aiohttp.ClientTimeout(total=0.5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(TimeoutError):
            await session.get(about(sim), ssl=sim_mtls, headers=qrs_headers())


async def test_stop_does_not_hang_with_a_hung_request(tmp_path):
    """stop() returns promptly while a `hang` fault holds a request open."""
    sim = Simulator(tmp_path)
    await sim.start()
    sim.faults.set("repository", "hang")
    ctx = ssl.create_default_context(cafile=sim.certs_dir / "root.pem")
    ctx.load_cert_chain(sim.certs_dir / "client.pem", sim.certs_dir / "client_key.pem")
    pending = asyncio.create_task(call("GET", about(sim), ctx, qrs_headers()))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await asyncio.wait_for(sim.stop(), timeout=5)
    assert time.monotonic() - started < 3
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)


async def test_reset_aborts_the_connection(sim, sim_mtls):
    """`reset` aborts the TCP connection before any answer."""
    sim.faults.set("repository", "reset")
    with pytest.raises(aiohttp.ClientError):
        await call("GET", about(sim), sim_mtls, qrs_headers())


@pytest.mark.parametrize("status", [401, 403, 404, 500, 503])
async def test_status_answers_the_given_code(sim, sim_mtls, status):
    """`status` answers any status code instead of the real response."""
    sim.faults.set("repository", "status", status=status)
    got, _, _ = await call("GET", about(sim), sim_mtls, qrs_headers())
    assert got == status


async def test_status_429_on_cloud_has_retry_after_and_documented_body(sim, sim_tls):
    """A 429 fault on the Cloud tenant carries retry-after and the rate-limit body."""
    sim.faults.set("cloud", "status", status=429, retry_after=7)
    key = sim.cloud_issue_api_key()
    url = sim.url("cloud", "/api/v1/users/me")
    status, headers, body = await call("GET", url, sim_tls, {"Authorization": f"Bearer {key}"})
    assert (status, headers["retry-after"]) == (429, "7")
    error = json.loads(body)["errors"][0]
    assert error["code"] == "HTTP-429"
    assert error["detail"] == "You need to wait 7 seconds until limit is lifted."


async def test_times_limits_how_often_a_fault_fires(sim, sim_mtls):
    """A fault set with times=1 fires once, then the service answers normally."""
    sim.faults.set("repository", "status", status=500, times=1)
    assert (await call("GET", about(sim), sim_mtls, qrs_headers()))[0] == 500
    assert (await call("GET", about(sim), sim_mtls, qrs_headers()))[0] == 200


async def test_malformed_json_is_not_parseable(sim, sim_mtls):
    """`malformed_json` answers 200, application/json, with a body that does not parse."""
    sim.faults.set("repository", "malformed_json")
    status, headers, body = await call("GET", about(sim), sim_mtls, qrs_headers())
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


async def test_wrong_shape_is_valid_json_of_another_shape(sim, sim_mtls):
    """`wrong_shape` answers valid JSON whose top-level type is not the documented one."""
    sim.faults.set("repository", "wrong_shape")
    status, _, body = await call("GET", about(sim), sim_mtls, qrs_headers())
    assert status == 200
    assert isinstance(json.loads(body), list)


async def test_oversized_sends_a_body_of_many_megabytes(sim, sim_mtls):
    """`oversized` answers a body of the requested size in MB."""
    sim.faults.set("repository", "oversized", size_mb=12)
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(about(sim), ssl=sim_mtls, headers=qrs_headers()) as resp,
    ):
        assert resp.content_length == 12 * 1024 * 1024
        body = await resp.read()
    assert len(body) == 12 * 1024 * 1024


def verify_error(exc: BaseException) -> str:
    cert_error = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLCertVerificationError) else exc
    return str(cert_error)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("cert_wrong_host", "Hostname mismatch"),
        ("cert_expired", "certificate has expired"),
        ("cert_untrusted", "certificate verify failed"),
    ],
)
async def test_certificate_faults_fail_verification(sim, sim_mtls, kind, message):
    """Certificate faults make the server present a bad certificate on the next handshake."""
    sim.faults.set("repository", kind)
    with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
        await call("GET", about(sim), sim_mtls, qrs_headers())
    assert message in str(info.value)
    sim.faults.clear("repository")
    assert (await call("GET", about(sim), sim_mtls, qrs_headers()))[0] == 200


async def test_certificate_fault_applies_to_clients_connecting_by_ip(sim, sim_mtls):
    """A client connecting by IP (no SNI sent) still gets the faulty certificate."""
    sim_mtls.check_hostname = False
    sim.faults.set("repository", "cert_expired")
    url = f"https://127.0.0.1:{sim.ports.repository}/qrs/about?xrfkey={XRFKEY}"
    with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
        await call("GET", url, sim_mtls, qrs_headers())
    assert "certificate has expired" in str(info.value)


async def test_certificate_fault_is_per_service(sim, sim_mtls, sim_tls):
    """A certificate fault on the front end leaves the repository's certificate alone."""
    sim.faults.set("frontend", "cert_expired")
    assert (await call("GET", about(sim), sim_mtls, qrs_headers()))[0] == 200
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await call("GET", sim.url("frontend", "/jwt/qps/user"), sim_tls)


async def test_certificate_fault_on_cloud_port(sim, sim_tls):
    """Certificate faults work on the server-TLS-only Cloud port too."""
    sim.faults.set("cloud", "cert_untrusted")
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await call("GET", sim.url("cloud", "/api/v1/users/me"), sim_tls)


async def engine_socket(session: aiohttp.ClientSession, sim: Simulator, ctx: ssl.SSLContext):
    url = sim.url("engine", "/app/engineData").replace("https", "wss")
    return await session.ws_connect(url, ssl=ctx, headers={"X-Qlik-User": QLIK_USER})


async def test_engine_fatal_sends_fatal_notification_then_closes(sim, sim_mtls):
    """`engine_fatal` sends the configured fatal notification, not OnConnected, then closes."""
    sim.faults.set("engine", "engine_fatal", method="OnSessionTimedOut")
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await engine_socket(session, sim, sim_mtls)
        note = json.loads(await ws.receive_str(timeout=3))
        assert note == {
            "jsonrpc": "2.0",
            "method": "OnSessionTimedOut",
            "params": {"severity": "fatal"},
        }
        msg = await ws.receive(timeout=3)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_engine_no_connected_skips_the_greeting_but_answers(sim, sim_mtls):
    """`engine_no_connected` sends no OnConnected, yet still answers EngineVersion."""
    sim.faults.set("engine", "engine_no_connected")
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await engine_socket(session, sim, sim_mtls)
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.3)
        request = {"jsonrpc": "2.0", "id": 1, "method": "EngineVersion", "handle": -1}
        await ws.send_json(request)
        reply = json.loads(await ws.receive_str(timeout=3))
        assert reply["result"]["qVersion"]["qComponentVersion"] == sim.engine.version
        await ws.close()


async def test_engine_malformed_json_garbles_replies(sim, sim_mtls):
    """`malformed_json` on the engine garbles JSON-RPC replies."""
    sim.faults.set("engine", "malformed_json")
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await engine_socket(session, sim, sim_mtls)
        await ws.receive_str(timeout=3)
        await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "EngineVersion", "handle": -1})
        with pytest.raises(json.JSONDecodeError):
            json.loads(await ws.receive_str(timeout=3))
        await ws.close()


async def test_engine_status_fault_refuses_the_upgrade(sim, sim_mtls):
    """A `status` fault on the engine answers the websocket upgrade with that status."""
    sim.faults.set("engine", "status", status=503)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await engine_socket(session, sim, sim_mtls)
    assert info.value.status == 503


async def test_wrong_user_makes_whoami_answer_for_someone_else(sim, sim_tls):
    """`wrong_user` on the front end makes whoami answer for another user."""
    sim.faults.set("frontend", "wrong_user", user_id="intruder")
    url = sim.url("frontend", "/hdr/qps/user")
    _, _, body = await call("GET", url, sim_tls, {"X-Sso-User": "monitor"})
    assert json.loads(body)["userId"] == "intruder"


async def test_wrong_user_on_cloud_changes_the_user_id(sim, sim_tls):
    """`wrong_user` on the Cloud tenant makes users/me answer another id than the key's sub."""
    sim.faults.set("cloud", "wrong_user")
    key = sim.cloud_issue_api_key()
    url = sim.url("cloud", "/api/v1/users/me")
    _, _, body = await call("GET", url, sim_tls, {"Authorization": f"Bearer {key}"})
    assert json.loads(body)["id"] != sim.cloud_user_id


@pytest.mark.parametrize(
    ("service", "kind", "params", "match"),
    [
        ("nosuch", "delay", {"seconds": 1}, "unknown service"),
        ("repository", "nosuch", {}, "unknown fault kind"),
        ("repository", "delay", {}, "needs parameter 'seconds'"),
        ("repository", "delay", {"seconds": 1, "typo": 2}, "takes no parameter"),
        ("repository", "status", {"status": 99}, "status must be"),
    ],
)
def test_invalid_fault_settings_are_rejected(sim, service, kind, params, match):
    """Unknown services, kinds or parameters, and missing ones, raise ValueError."""
    with pytest.raises(ValueError, match=match):
        sim.faults.set(service, kind, **params)


async def test_clear_one_service_leaves_others(sim):
    """faults.clear(service) clears only that service's faults."""
    sim.faults.set("repository", "status", status=500)
    sim.faults.set("engine", "hang")
    sim.faults.clear("repository")
    snapshot = sim.faults.snapshot()
    assert snapshot["repository"] == []
    assert snapshot["engine"] == [{"kind": "hang", "remaining": None}]
