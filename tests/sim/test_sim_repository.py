"""The repository (QRS, 4242): mutual TLS, xrfkey, X-Qlik-User and /qrs/about."""

from __future__ import annotations

import json
import ssl

import aiohttp
import pytest
from sim_helpers import QLIK_USER, XRFKEY, XSRF_BODY, call, qrs_headers

from exporter.sim import Simulator


def about_url(sim: Simulator, query: str = f"xrfkey={XRFKEY}") -> str:
    return sim.url("repository", f"/qrs/about?{query}")


async def test_about_returns_all_documented_fields(sim, sim_mtls):
    """GET /qrs/about answers the About model with every documented field."""
    status, headers, body = await call("GET", about_url(sim), sim_mtls, qrs_headers())
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {
        "buildVersion": "31.43.0.0",
        "buildDate": "4/12/2024 18:12:20 PM",
        "databaseProvider": "Devart.Data.PostgreSql",
        "nodeType": 1,
        "sharedPersistence": True,
        "requiresBootstrap": False,
        "singleNodeOnly": False,
        "schemaPath": "About",
    }


async def test_about_build_version_and_date_are_configurable(tmp_path):
    """The build version and date come from the Simulator's arguments."""
    async with Simulator(
        tmp_path, build_version="30.4.0.0", build_date="10/8/2021 12:43:37 PM"
    ) as s:
        ctx = ssl.create_default_context(cafile=s.certs_dir / "root.pem")
        ctx.load_cert_chain(s.certs_dir / "client.pem", s.certs_dir / "client_key.pem")
        status, _, body = await call("GET", about_url(s), ctx, qrs_headers())
    assert status == 200
    assert '"buildVersion": "30.4.0.0"' in body
    assert '"buildDate": "10/8/2021 12:43:37 PM"' in body


async def test_ping_answers_ping_successful(sim, sim_mtls):
    """GET /qrs/ssl/ping answers "Ping successful"."""
    url = sim.url("repository", f"/qrs/ssl/ping?xrfkey={XRFKEY}")
    status, _, body = await call("GET", url, sim_mtls, qrs_headers())
    assert (status, body) == (200, '"Ping successful"')


@pytest.mark.parametrize(
    ("query", "header_key"),
    [
        pytest.param(f"xrfkey={XRFKEY}", "ABCDEFGHIJKLMNOP", id="mismatch"),
        pytest.param("", XRFKEY, id="query-missing"),
        pytest.param(f"xrfkey={XRFKEY}", None, id="header-missing"),
        pytest.param("xrfkey=abc", "abc", id="too-short"),
        pytest.param("xrfkey=abcdefghijklmnopq", "abcdefghijklmnopq", id="too-long"),
        pytest.param("xrfkey=abcdefgh-ijklmno", "abcdefgh-ijklmno", id="bad-character"),
    ],
)
async def test_bad_xrfkey_gets_403_xsrf_body(sim, sim_mtls, query, header_key):
    """A missing, mismatched or malformed xrfkey gets 403 with the XSRF text."""
    status, _, body = await call(
        "GET", about_url(sim, query), sim_mtls, qrs_headers(key=header_key)
    )
    assert (status, body) == (403, XSRF_BODY)


async def test_xrfkey_parameter_name_is_case_insensitive(sim, sim_mtls):
    """`Xrfkey=` (Butler SOS's spelling) is accepted like `xrfkey=`."""
    status, _, _ = await call("GET", about_url(sim, f"Xrfkey={XRFKEY}"), sim_mtls, qrs_headers())
    assert status == 200


@pytest.mark.parametrize(
    "user",
    [
        pytest.param("UserDirectory=INTERNAL; UserId=sa_api", id="with-space"),
        pytest.param("UserDirectory=INTERNAL;UserId=sa_api", id="no-space-ctrl-q"),
        pytest.param("UserDirectory=LAB; UserId=G%C3%B6ran%20S", id="url-encoded"),
        pytest.param("userdirectory=INTERNAL; userid=sa_api;", id="lowercase-trailing-semicolon"),
    ],
)
async def test_x_qlik_user_variants_are_accepted(sim, sim_mtls, user):
    """X-Qlik-User is accepted with or without the space after `;` and with %-encoding."""
    status, _, _ = await call("GET", about_url(sim), sim_mtls, qrs_headers(user=user))
    assert status == 200


@pytest.mark.parametrize(
    ("user", "fragment"),
    [
        pytest.param(None, "Missing X-Qlik-User", id="missing"),
        pytest.param("INTERNAL\\sa_api", "Malformed X-Qlik-User", id="domain-backslash"),
        pytest.param("UserDirectory=INTERNAL", "Malformed X-Qlik-User", id="no-user-id"),
        pytest.param("UserDirectory=X; UserId=%FF%FE", "Malformed X-Qlik-User", id="bad-utf8"),
    ],
)
async def test_missing_or_garbled_x_qlik_user_gets_403(sim, sim_mtls, user, fragment):
    """A missing or garbled X-Qlik-User gets 403 with a body that says what is wrong."""
    status, _, body = await call("GET", about_url(sim), sim_mtls, qrs_headers(user=user))
    assert status == 403
    assert fragment in body


async def test_disabled_user_gets_403(sim, sim_mtls):
    """A user in `disabled_users` is refused (directory and id compare case-insensitively)."""
    sim.disabled_users.add(("internal", "SA_API"))
    status, _, body = await call("GET", about_url(sim), sim_mtls, qrs_headers(user=QLIK_USER))
    assert status == 403
    assert "disabled" in body


async def test_no_client_certificate_fails_the_handshake(sim, sim_tls):
    """Without a client certificate the TLS handshake is refused (CERT_REQUIRED)."""
    with pytest.raises(aiohttp.ClientError):
        await call("GET", about_url(sim), sim_tls, qrs_headers())


async def test_no_client_certificate_gets_403_in_forbidden_mode(sim, sim_tls):
    """In `forbidden_403` mode a certificate-less client gets HTTP 403 instead."""
    sim.client_cert_mode = "forbidden_403"
    status, _, body = await call("GET", about_url(sim), sim_tls, qrs_headers())
    assert status == 403
    assert "client certificate" in body


async def test_client_certificate_from_foreign_ca_is_rejected(sim, foreign_ca_client_cert):
    """A QlikClient certificate from another CA of the same name is refused in the handshake."""
    ctx = ssl.create_default_context(cafile=sim.certs_dir / "root.pem")
    ctx.load_cert_chain(foreign_ca_client_cert.cert_file, foreign_ca_client_cert.key_file)
    with pytest.raises(aiohttp.ClientError):
        await call("GET", about_url(sim), ctx, qrs_headers())


async def test_expired_client_certificate_is_rejected(sim, expired_client_cert):
    """An expired client certificate from the right CA is refused in the handshake."""
    ctx = ssl.create_default_context(cafile=sim.certs_dir / "root.pem")
    ctx.load_cert_chain(expired_client_cert.cert_file, expired_client_cert.key_file)
    with pytest.raises(aiohttp.ClientError):
        await call("GET", about_url(sim), ctx, qrs_headers())


async def test_server_certificate_names_host_in_san(sim, sim_mtls):
    """The server certificate verifies for `localhost` with hostname checking on."""
    assert sim_mtls.check_hostname
    status, _, _ = await call("GET", about_url(sim), sim_mtls, qrs_headers())
    assert status == 200


async def test_connecting_by_ip_fails_hostname_check(sim, sim_mtls):
    """Connecting by 127.0.0.1 fails verification: the SAN names only the host (like a QMC cert)."""
    url = f"https://127.0.0.1:{sim.ports.repository}/qrs/about?xrfkey={XRFKEY}"
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await call("GET", url, sim_mtls, qrs_headers())
