"""Every auth method × check against the simulator over real TLS, and every failure reason."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from exporter.reasons import Reason
from exporter.runner import Prober
from exporter.sim import Simulator
from tests.core.conftest import (
    FixedResolver,
    build,
    cert_target,
    closed_port,
    cloud_target,
    header_target,
    jwt_target,
    probe,
)

CERT_CHECKS = ["repository", "proxy", "engine", "engine_session"]
PROXY_CHECKS = ["repository", "proxy", "engine"]


@pytest.mark.parametrize("check", CERT_CHECKS)
async def test_certificate_auth_check_succeeds(sim: Simulator, tmp_path: Path, check: str) -> None:
    """Certificate auth succeeds on every direct check and times every phase."""
    result = await probe(cert_target(sim), check, tmp_path)
    assert result.success, result.error
    assert result.reason is None
    assert {"resolve", "connect", "request", "read"} <= set(result.phases)
    assert result.hostname_match is True
    sources = {c.source for c in result.certificates}
    assert {"client", "root", f"server_{check}"} <= sources


async def test_repository_reports_build_version_and_real_build_date(
    sim: Simulator, tmp_path: Path
) -> None:
    """The repository check reads buildVersion and the verbatim odd buildDate of /qrs/about."""
    result = await probe(cert_target(sim), "repository", tmp_path)
    assert result.values.repository_build == ("31.43.0.0", "4/12/2024 18:12:20 PM")
    assert result.phases["tls"] > 0


async def test_proxy_check_counts_sessions_of_the_virtual_proxy(
    sim: Simulator, tmp_path: Path
) -> None:
    """The direct proxy check reports the session count of the default virtual proxy."""
    result = await probe(cert_target(sim), "proxy", tmp_path)
    assert result.success, result.error
    assert result.values.proxy_sessions is not None
    assert result.values.proxy_sessions[0] == ""


async def test_engine_check_reads_health_numbers(sim: Simulator, tmp_path: Path) -> None:
    """The engine check parses the healthcheck into version and gauges."""
    result = await probe(cert_target(sim), "engine", tmp_path)
    health = result.values.engine_health
    assert result.values.engine_version == sim.engine.version
    assert health is not None
    assert health.apps_loaded == len(sim.engine.apps) or health.apps_loaded >= 0
    assert health.memory_committed_bytes > 0
    assert 0 <= health.cpu_utilization_ratio <= 1


async def test_engine_check_accepts_the_old_comitted_spelling(tmp_path: Path) -> None:
    """An old engine's `comitted` field and missing `saturated` still parse."""
    async with Simulator(tmp_path / "sim", engine_healthcheck_style="legacy") as sim:
        result = await probe(cert_target(sim), "engine", tmp_path)
    assert result.success, result.error
    assert result.values.engine_health is not None
    assert result.values.engine_health.memory_committed_bytes > 0
    assert result.values.engine_health.saturated == 0


async def test_engine_session_gets_engine_version(sim: Simulator, tmp_path: Path) -> None:
    """The websocket check waits for OnConnected and reads EngineVersion."""
    result = await probe(cert_target(sim), "engine_session", tmp_path)
    assert result.success, result.error
    assert result.values.engine_version == sim.engine.version


async def test_engine_session_skips_authentication_information_first(tmp_path: Path) -> None:
    """OnAuthenticationInformation before OnConnected is tolerated."""
    async with Simulator(tmp_path / "sim", engine_auth_info_first=True) as sim:
        result = await probe(cert_target(sim), "engine_session", tmp_path)
    assert result.success, result.error


@pytest.mark.parametrize("check", PROXY_CHECKS)
@pytest.mark.parametrize("kind", ["jwt", "header", "header_dynamic"])
async def test_virtual_proxy_auth_check_succeeds(
    sim: Simulator, tmp_path: Path, kind: str, check: str
) -> None:
    """JWT and header auth succeed through their virtual proxies on every check."""
    target = {
        "jwt": lambda: jwt_target(sim),
        "header": lambda: header_target(sim),
        "header_dynamic": lambda: header_target(sim, dynamic=True),
    }[kind]()
    result = await probe(target, check, tmp_path)
    assert result.success, result.error
    assert result.hostname_match is True
    assert f"server_{check}" in {c.source for c in result.certificates}


async def test_minted_jwt_exports_signing_certificate(sim: Simulator, tmp_path: Path) -> None:
    """A minted-JWT target reports its signing certificate as source jwt_signing."""
    result = await probe(jwt_target(sim), "repository", tmp_path)
    assert "jwt_signing" in {c.source for c in result.certificates}


async def test_static_jwt_token_file_works_and_reports_expiry(
    sim: Simulator, tmp_path: Path
) -> None:
    """A static token file is sent as is and its exp is exported."""
    import jwt as pyjwt

    key = (sim.certs_dir / "jwt_signing_key.pem").read_bytes()
    exp = int(time.time()) + 3600
    token = pyjwt.encode(
        {"userId": "monitor", "userDirectory": "LAB", "aud": sim.jwt_vp.audience, "exp": exp},
        key,
        algorithm="RS256",
    )
    token_file = tmp_path / "monitor.jwt"
    token_file.write_text(token)
    target = jwt_target(sim)
    target["auth"] = {"method": "jwt", "token_file": str(token_file)}
    result = await probe(target, "repository", tmp_path)
    assert result.success, result.error
    assert [(c.kind, c.expires) for c in result.credentials] == [("jwt", float(exp))]


async def test_probes_through_a_virtual_proxy_do_not_pile_up_sessions(
    sim: Simulator, tmp_path: Path
) -> None:
    """After many probes the simulator holds no live proxy session for the monitor user."""
    rt = Prober.build(build(jwt_target(sim), tmp_path))
    hrt = Prober.build(build(header_target(sim), tmp_path))
    for _ in range(10):
        for check in PROXY_CHECKS:
            assert (await probe({}, check, tmp_path, rt=rt)).success
            assert (await probe({}, check, tmp_path, rt=hrt)).success
    assert sim.proxy_session_count("LAB", "monitor", vp=sim.jwt_vp.prefix) == 0
    assert sim.proxy_session_count("LAB", "monitor", vp=sim.header_vp.prefix) == 0


async def test_cloud_tenant_check_reads_user_and_tenant(sim: Simulator, tmp_path: Path) -> None:
    """The tenant check reports tenant id, user id and status, and the API key's expiry."""
    key = sim.cloud_issue_api_key(sub=sim.cloud_user_id, expires_in=86400 * 20)
    result = await probe(cloud_target(sim, key), "tenant", tmp_path)
    assert result.success, result.error
    tenant = result.values.tenant
    assert tenant is not None
    assert (tenant.tenant_id, tenant.user_id, tenant.user_status) == (
        sim.cloud_tenant_id,
        sim.cloud_user_id,
        "active",
    )
    assert [c.kind for c in result.credentials] == ["apikey"]
    assert abs(result.credentials[0].expires - (time.time() + 86400 * 20)) < 60


# -- every reason of the closed set, each from a matching fault ---------------------------


def _cert(sim: Simulator, **over: Any) -> dict[str, Any]:
    return cert_target(sim, **over)


async def _reason(
    sim: Simulator, tmp_path: Path, target: dict[str, Any], check: str, **kw: Any
) -> Reason | None:
    result = await probe(target, check, tmp_path, **kw)
    assert not result.success
    assert result.error
    return result.reason


async def test_reason_dns(sim: Simulator, tmp_path: Path) -> None:
    """A name that does not resolve fails as dns."""
    target = _cert(sim, host="qlik.example.invalid")
    assert (
        await _reason(sim, tmp_path, target, "repository", resolver=FixedResolver(fail=True))
        == "dns"
    )


async def test_reason_connect_refused(sim: Simulator, tmp_path: Path) -> None:
    """Nothing listening fails as connect_refused."""
    target = _cert(sim, ports={"repository": closed_port()})
    assert await _reason(sim, tmp_path, target, "repository") == Reason.CONNECT_REFUSED


async def test_reason_timeout_from_hang(sim: Simulator, tmp_path: Path) -> None:
    """A hanging service fails as timeout within the target's timeout."""
    sim.faults.set("repository", "hang")
    started = time.perf_counter()
    assert await _reason(sim, tmp_path, _cert(sim, timeout="1s"), "repository") == Reason.TIMEOUT
    assert time.perf_counter() - started < 1.8


async def test_reason_tls_handshake_against_plain_http(sim: Simulator, tmp_path: Path) -> None:
    """A port that does not speak TLS fails as tls_handshake."""
    target = _cert(sim, ports={"repository": sim.ports.admin})
    assert await _reason(sim, tmp_path, target, "repository") == Reason.TLS_HANDSHAKE


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("cert_untrusted", Reason.SERVER_CERTIFICATE_UNTRUSTED),
        ("cert_expired", Reason.SERVER_CERTIFICATE_EXPIRED),
        ("cert_wrong_host", Reason.HOSTNAME_MISMATCH),
        ("cert_no_san", Reason.HOSTNAME_MISMATCH),
    ],
)
async def test_reason_server_certificate_problems(
    sim: Simulator, tmp_path: Path, fault: str, reason: Reason
) -> None:
    """A bad server certificate fails with its reason and is still exported."""
    sim.faults.set("repository", fault)
    result = await probe(_cert(sim), "repository", tmp_path)
    assert result.reason == reason
    server = [c for c in result.certificates if c.source == "server_repository"]
    assert len(server) == 1
    if fault == "cert_expired":
        assert server[0].not_after < time.time()
    # SAN only, as browsers and Go do: the handshake and the metric agree.
    assert result.hostname_match is (fault not in ("cert_wrong_host", "cert_no_san"))


async def test_reason_client_certificate_rejected(
    sim: Simulator, tmp_path: Path, foreign_ca_client_cert: Any
) -> None:
    """A client certificate from another CA is refused by the service."""
    target = _cert(
        sim,
        ca_file=None,
        tls_verify=False,
        auth={
            "cert_file": str(foreign_ca_client_cert.cert_file),
            "key_file": str(foreign_ca_client_cert.key_file),
        },
    )
    assert await _reason(sim, tmp_path, target, "repository") == Reason.CLIENT_CERTIFICATE_REJECTED


async def test_reason_credential_invalid_for_expired_client_certificate(
    sim: Simulator, tmp_path: Path, expired_client_cert: Any
) -> None:
    """An expired client certificate fails before connecting, with its expiry exported."""
    target = _cert(
        sim,
        auth={
            "cert_file": str(expired_client_cert.cert_file),
            "key_file": str(expired_client_cert.key_file),
        },
    )
    result = await probe(target, "repository", tmp_path)
    assert result.reason == Reason.CREDENTIAL_INVALID
    assert "expired" in result.error
    assert result.phases == {}
    client = [c for c in result.certificates if c.source == "client"]
    assert client
    assert client[0].not_after < time.time()


async def test_reason_unauthorized_for_jwt_signed_by_another_key(
    sim: Simulator, tmp_path: Path
) -> None:
    """A JWT the virtual proxy cannot verify gets 401: unauthorized."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "other_key.pem"
    key_file.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    target = jwt_target(sim, auth={"signing_key_file": str(key_file), "signing_cert_file": None})
    target["auth"].pop("signing_cert_file")
    assert await _reason(sim, tmp_path, target, "repository") == Reason.UNAUTHORIZED


async def test_reason_forbidden_for_disabled_user(sim: Simulator, tmp_path: Path) -> None:
    """A user the repository refuses gets 403: forbidden."""
    sim.disabled_users.add(("INTERNAL", "sa_api"))
    assert await _reason(sim, tmp_path, _cert(sim), "repository") == Reason.FORBIDDEN


async def test_reason_xrfkey_rejected(sim: Simulator, tmp_path: Path) -> None:
    """The documented XSRF 403 body (e.g. a proxy stripped the header) is xrfkey_rejected."""
    sim.faults.set(
        "repository",
        "status",
        status=403,
        body="XSRF prevention check failed. Possible XSRF discovered.",
    )
    assert await _reason(sim, tmp_path, _cert(sim), "repository") == Reason.XRFKEY_REJECTED


async def test_reason_not_found_for_unknown_virtual_proxy(sim: Simulator, tmp_path: Path) -> None:
    """A virtual proxy prefix that does not exist is not_found."""
    target = jwt_target(sim, virtual_proxy="nosuchproxy")
    assert await _reason(sim, tmp_path, target, "repository") == Reason.NOT_FOUND


async def test_reason_rate_limited_carries_retry_after(sim: Simulator, tmp_path: Path) -> None:
    """A 429 is rate_limited, and the result says how long the server asked to wait."""
    key = sim.cloud_issue_api_key(sub=sim.cloud_user_id)
    sim.faults.set("cloud", "status", status=429, retry_after=13)
    result = await probe(cloud_target(sim, key), "tenant", tmp_path)
    assert result.reason == Reason.RATE_LIMITED
    assert result.retry_after == 13


async def test_reason_server_error(sim: Simulator, tmp_path: Path) -> None:
    """A 5xx is server_error."""
    sim.faults.set("repository", "status", status=503)
    assert await _reason(sim, tmp_path, _cert(sim), "repository") == Reason.SERVER_ERROR


@pytest.mark.parametrize("fault", ["malformed_json", "wrong_shape", "oversized"])
async def test_reason_invalid_response(sim: Simulator, tmp_path: Path, fault: str) -> None:
    """A body that is not the documented shape is invalid_response."""
    sim.faults.set("repository", fault)
    assert await _reason(sim, tmp_path, _cert(sim), "repository") == Reason.INVALID_RESPONSE


@pytest.mark.parametrize("fault", ["engine_fatal", "engine_no_connected"])
async def test_reason_for_engine_greeting_faults(
    sim: Simulator, tmp_path: Path, fault: str
) -> None:
    """A fatal notification is session_rejected; a missing OnConnected ends in timeout."""
    sim.faults.set("engine", fault)
    expected = Reason.SESSION_REJECTED if fault == "engine_fatal" else Reason.TIMEOUT
    target = _cert(sim, timeout="1s")
    assert await _reason(sim, tmp_path, target, "engine_session") == expected


async def test_reason_session_rejected_over_parallel_session_limit(
    sim: Simulator, tmp_path: Path
) -> None:
    """Over the per-user session limit the engine's fatal notification is session_rejected."""
    import aiohttp

    headers = {"X-Qlik-User": "UserDirectory=INTERNAL; UserId=sa_api"}
    from tests.conftest import client_ssl_context

    d = sim.certs_dir
    ctx = client_ssl_context(d / "root.pem", d / "client.pem", d / "client_key.pem")
    url = f"wss://{sim.host}:{sim.ports.engine}/app/engineData"
    async with aiohttp.ClientSession() as http:
        held = [
            await http.ws_connect(url, ssl=ctx, headers=headers)
            for _ in range(sim.engine.max_parallel_sessions)
        ]
        try:
            reason = await _reason(sim, tmp_path, _cert(sim), "engine_session")
        finally:
            await asyncio.gather(*(ws.close() for ws in held))
    assert reason == Reason.SESSION_REJECTED


async def test_reason_wrong_user(sim: Simulator, tmp_path: Path) -> None:
    """whoami answering for another user is wrong_user."""
    sim.faults.set("frontend", "wrong_user")
    assert await _reason(sim, tmp_path, jwt_target(sim), "proxy") == Reason.WRONG_USER


async def test_reason_unauthorized_for_revoked_api_key(sim: Simulator, tmp_path: Path) -> None:
    """A revoked Cloud API key gets 401: unauthorized."""
    key = sim.cloud_issue_api_key(sub=sim.cloud_user_id)
    sim.cloud_revoke(key)
    assert await _reason(sim, tmp_path, cloud_target(sim, key), "tenant") == Reason.UNAUTHORIZED


def test_every_reason_has_a_test() -> None:
    """This module produces every reason of the closed set from a simulator fault."""
    source = Path(__file__).read_text()
    missing = [
        r.value for r in Reason if f"Reason.{r.name}" not in source and f'"{r.value}"' not in source
    ]
    assert missing == []


async def test_ca_bundle_exports_only_the_roots_that_anchor_what_was_used(
    sim: Simulator, tmp_path: Path
) -> None:
    """With the system CA bundle plus Qlik's root as ca_file, only Qlik's root (issuer of the
    client and server certificates) is exported as ``root``, not every CA in the bundle."""
    bundle = _bundle(tmp_path / "bundle.pem", Path("/etc/ssl/certs/ca-certificates.crt"), sim)
    result = await probe(cert_target(sim, ca_file=str(bundle)), "repository", tmp_path)
    assert result.success, result.error
    roots = [c for c in result.certificates if c.source == "root"]
    client = next(c for c in result.certificates if c.source == "client")
    assert [r.subject_cn for r in roots] == [client.issuer_cn]
    assert {c.source for c in result.certificates} == {"client", "root", "server_repository"}


async def test_single_root_ca_file_is_exported_even_when_nothing_answers(
    sim: Simulator, tmp_path: Path
) -> None:
    """Qlik's root.pem alone stays exported when the service is down: its expiry matters."""
    target = cert_target(sim, ports={"repository": closed_port()})
    result = await probe(target, "repository", tmp_path)
    assert result.reason == Reason.CONNECT_REFUSED
    assert [c.source for c in result.certificates] == ["client", "root"]


def _bundle(path: Path, system: Path, sim: Simulator) -> Path:
    """The system's CA bundle followed by the simulator's root CA, as one ca_file."""
    path.write_bytes(system.read_bytes() + (sim.certs_dir / "root.pem").read_bytes())
    return path
