"""The front end (virtual proxies): JWT, header and ticket auth, whoami, logout, sessions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sim_helpers import TIMEOUT, XRFKEY, XSRF_BODY, call, mint_jwt

from exporter.sim import Simulator

XRF = {"X-Qlik-Xrfkey": XRFKEY}


def hs256_token(secret: bytes, claims: dict) -> str:
    """Sign by hand: PyJWT itself refuses a PEM as an HMAC secret."""

    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"aud": "qlik.api/login/jwt-session", **claims}).encode())
    sig = b64(hmac.new(secret, head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **XRF}


def about(sim: Simulator, vp: str = "jwt") -> str:
    return sim.url("frontend", f"/{vp}/qrs/about?xrfkey={XRFKEY}")


async def test_jwt_vp_accepts_a_valid_token(sim, sim_tls):
    """A valid RS256 token on the JWT vp gets /qrs/about and a session cookie."""
    status, headers, body = await call("GET", about(sim), sim_tls, bearer(mint_jwt(sim.certs_dir)))
    assert status == 200
    assert json.loads(body)["schemaPath"] == "About"
    assert "X-Qlik-Session-jwt=" in headers["Set-Cookie"]
    assert sim.proxy_session_count("LAB", "monitor", vp="jwt") == 1


@pytest.mark.parametrize("algorithm", ["RS384", "RS512"])
async def test_jwt_vp_accepts_rs384_and_rs512(sim, sim_tls, algorithm):
    """RS384 and RS512 tokens are accepted like RS256."""
    token = mint_jwt(sim.certs_dir, algorithm=algorithm)
    status, _, _ = await call("GET", about(sim), sim_tls, bearer(token))
    assert status == 200


async def test_jwt_vp_rejects_a_bad_signature(sim, sim_tls):
    """A token signed by another key gets 401."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = mint_jwt(sim.certs_dir, key=other)
    status, _, _ = await call("GET", about(sim), sim_tls, bearer(token))
    assert status == 401


async def test_jwt_vp_rejects_a_wrong_audience(sim, sim_tls):
    """A token for another audience gets 401."""
    token = mint_jwt(sim.certs_dir, aud="someone-else")
    status, _, _ = await call("GET", about(sim), sim_tls, bearer(token))
    assert status == 401


async def test_jwt_vp_rejects_an_expired_token(sim, sim_tls):
    """An expired token gets 401."""
    token = mint_jwt(sim.certs_dir, lifetime=-60)
    status, _, _ = await call("GET", about(sim), sim_tls, bearer(token))
    assert status == 401


async def test_jwt_vp_rejects_a_token_without_exp(sim, sim_tls):
    """A token without `exp` gets 401 (exp is required by default)."""
    token = mint_jwt(sim.certs_dir, exp=None)
    status, _, _ = await call("GET", about(sim), sim_tls, bearer(token))
    assert status == 401


async def test_jwt_vp_rejects_hs256_signed_with_the_certificate(sim, sim_tls):
    """An HS256 token keyed with the public certificate (algorithm confusion) gets 401."""
    secret = (sim.certs_dir / "jwt_signing_cert.pem").read_bytes()
    token = hs256_token(secret, {"userId": "x", "userDirectory": "y", "exp": 2**31})
    status, _, _ = await call("GET", about(sim), sim_tls, bearer(token))
    assert status == 401


async def test_jwt_vp_rejects_a_token_missing_the_user_claim(sim, sim_tls):
    """A token without the configured user-id claim gets 401."""
    token = mint_jwt(sim.certs_dir, userId=None)
    status, _, _ = await call("GET", about(sim), sim_tls, bearer(token))
    assert status == 401


async def test_jwt_vp_claim_names_are_configurable(sim, sim_tls):
    """With claim names UserId/UserDirectory the VP reads those claims."""
    sim.jwt_vp.user_id_claim, sim.jwt_vp.user_directory_claim = "UserId", "UserDirectory"
    token = mint_jwt(sim.certs_dir, userId=None, userDirectory=None, UserId="u1", UserDirectory="D")
    status, _, _ = await call("GET", about(sim), sim_tls, bearer(token))
    assert status == 200
    assert sim.proxy_session_count("D", "u1") == 1


async def test_jwt_vp_without_credentials_is_401(sim, sim_tls):
    """A JWT vp call with neither a token nor a cookie gets 401."""
    status, _, _ = await call("GET", about(sim), sim_tls, XRF)
    assert status == 401


async def test_vp_still_requires_xrfkey_for_qrs(sim, sim_tls):
    """/{vp}/qrs/about without the xrfkey header gets the XSRF 403."""
    token = mint_jwt(sim.certs_dir)
    status, _, body = await call("GET", about(sim), sim_tls, {"Authorization": f"Bearer {token}"})
    assert (status, body) == (403, XSRF_BODY)


async def test_engine_healthcheck_through_vp(sim, sim_tls):
    """/{vp}/engine/healthcheck answers the engine healthcheck for an authenticated caller."""
    url = sim.url("frontend", "/jwt/engine/healthcheck")
    status, _, body = await call("GET", url, sim_tls, bearer(mint_jwt(sim.certs_dir)))
    assert status == 200
    assert json.loads(body)["version"] == sim.engine.version


async def test_static_header_vp_authenticates_by_header(sim, sim_tls):
    """The `hdr` vp takes the user id from its header and the directory from its config."""
    url = sim.url("frontend", "/hdr/qps/user")
    status, _, body = await call("GET", url, sim_tls, {"X-Sso-User": "monitor"})
    assert status == 200
    assert json.loads(body)["userDirectory"] == "LAB"
    assert json.loads(body)["userId"] == "monitor"


async def test_dynamic_header_vp_parses_the_pattern(sim, sim_tls):
    """The `hdrdyn` vp reads directory and user from `$ud\\$id`."""
    url = sim.url("frontend", "/hdrdyn/qps/user")
    status, _, body = await call("GET", url, sim_tls, {"X-Sso-Identity": "CORP\\anna"})
    assert status == 200
    reply = json.loads(body)
    assert (reply["userDirectory"], reply["userId"]) == ("CORP", "anna")


async def test_dynamic_header_not_matching_the_pattern_is_401(sim, sim_tls):
    """A dynamic header value without the separator gets 401."""
    url = sim.url("frontend", f"/hdrdyn/qrs/about?xrfkey={XRFKEY}")
    status, _, _ = await call("GET", url, sim_tls, {"X-Sso-Identity": "anna", **XRF})
    assert status == 401


async def test_header_vp_without_header_is_401(sim, sim_tls):
    """A header vp call without its header or a cookie gets 401."""
    status, _, _ = await call("GET", about(sim, "hdr"), sim_tls, XRF)
    assert status == 401


async def test_header_vp_rejects_reserved_header_names():
    """The QMC refuses X-Qlik-User (and similar) as a header-auth header name."""
    from exporter.sim import HeaderVirtualProxy

    with pytest.raises(ValueError, match="reserved"):
        HeaderVirtualProxy(header_name="X-Qlik-User")


async def test_whoami_inactive_without_credentials(sim, sim_tls):
    """GET /{vp}/qps/user without credentials answers session inactive with a loginUri."""
    status, _, body = await call("GET", sim.url("frontend", "/jwt/qps/user"), sim_tls)
    assert status == 200
    reply = json.loads(body)
    assert reply["session"] == "inactive"
    assert "loginUri" in reply


async def test_whoami_answers_the_user_with_logout_uri(sim, sim_tls):
    """GET /{vp}/qps/user with a token answers userDirectory, userId, userName, logoutUri."""
    url = sim.url("frontend", "/jwt/qps/user")
    status, _, body = await call("GET", url, sim_tls, bearer(mint_jwt(sim.certs_dir)))
    assert status == 200
    assert json.loads(body) == {
        "userDirectory": "LAB",
        "userId": "monitor",
        "userName": "Monitor",
        "logoutUri": f"https://localhost:{sim.ports.frontend}/jwt/qps/user",
    }


async def test_sessions_pile_up_without_logout(sim, sim_tls):
    """Each bearer call without the cookie creates a new proxy session."""
    for _ in range(3):
        await call("GET", about(sim), sim_tls, bearer(mint_jwt(sim.certs_dir)))
    assert sim.proxy_session_count("LAB", "monitor", vp="jwt") == 3


async def test_cookie_reuses_the_session(sim, sim_tls):
    """A request with the session cookie is authenticated by it and creates no new session."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        async with s.get(about(sim), ssl=sim_tls, headers=bearer(mint_jwt(sim.certs_dir))) as r:
            assert r.status == 200
        async with s.get(about(sim), ssl=sim_tls, headers=XRF) as r:
            assert r.status == 200
    assert sim.proxy_session_count("LAB", "monitor", vp="jwt") == 1


async def test_logout_ends_all_sessions_of_the_user_on_that_vp(sim, sim_tls):
    """DELETE /{vp}/qps/user ends every session of that user on that vp only."""
    for _ in range(2):
        await call("GET", about(sim), sim_tls, bearer(mint_jwt(sim.certs_dir)))
    sim.proxy_sessions.create("hdr", "LAB", "monitor")
    url = sim.url("frontend", "/jwt/qps/user")
    status, _, _ = await call("DELETE", url, sim_tls, bearer(mint_jwt(sim.certs_dir)))
    assert status == 200
    assert sim.proxy_session_count("LAB", "monitor", vp="jwt") == 0
    assert sim.proxy_session_count("LAB", "monitor", vp="hdr") == 1


async def test_unknown_prefix_is_404(sim, sim_tls):
    """A prefix that names no virtual proxy gets 404."""
    status, _, _ = await call("GET", about(sim, "nosuchvp"), sim_tls, XRF)
    assert status == 404


async def test_default_vp_redirects_unauthenticated_to_login(sim, sim_tls):
    """The default (ticket) vp answers an unauthenticated call with 302 to a login URI."""
    url = sim.url("frontend", f"/qrs/about?xrfkey={XRFKEY}")
    status, headers, _ = await call("GET", url, sim_tls, XRF, allow_redirects=False)
    assert status == 302
    assert "/internal_forms_authentication/" in headers["Location"]


async def test_ticket_logs_in_on_the_default_vp(sim, sim_tls):
    """A ticket from the QPS API, redeemed with ?qlikTicket=, creates a session."""
    ticket = sim.tickets.issue("", "LAB", "anna")
    url = sim.url("frontend", f"/qps/user?qlikTicket={ticket.ticket}")
    status, headers, body = await call("GET", url, sim_tls)
    assert status == 200
    assert json.loads(body)["userId"] == "anna"
    assert "X-Qlik-Session=" in headers["Set-Cookie"]


async def test_disabled_user_is_refused_through_the_vp(sim, sim_tls):
    """A disabled user with a valid token gets 403."""
    sim.disabled_users.add(("LAB", "monitor"))
    status, _, _ = await call("GET", about(sim), sim_tls, bearer(mint_jwt(sim.certs_dir)))
    assert status == 403


async def test_engine_websocket_through_vp_needs_cookie_and_csrf_token(sim, sim_tls):
    """/{vp}/app/engineData works with the session cookie and ?qlik-csrf-token=."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        url = sim.url("frontend", "/jwt/qps/csrftoken")
        async with s.get(url, ssl=sim_tls, headers=bearer(mint_jwt(sim.certs_dir))) as r:
            token = r.headers["qlik-csrf-token"]
        ws_url = sim.url("frontend", f"/jwt/app/engineData?qlik-csrf-token={token}")
        ws = await s.ws_connect(ws_url.replace("https", "wss"), ssl=sim_tls)
        first = json.loads(await ws.receive_str(timeout=3))
        assert first["method"] == "OnAuthenticationInformation"
        assert first["params"]["userId"] == "monitor"
        await ws.close()


async def test_engine_websocket_through_vp_without_csrf_token_is_403(sim, sim_tls):
    """A proxied websocket upgrade without qlik-csrf-token gets 403."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        url = sim.url("frontend", "/jwt/qps/user")
        async with s.get(url, ssl=sim_tls, headers=bearer(mint_jwt(sim.certs_dir))):
            pass
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(sim.url("frontend", "/jwt/app/engineData"), ssl=sim_tls)
    assert info.value.status == 403


async def test_bearer_on_websocket_upgrade_is_refused_before_any_session(sim, sim_tls):
    """A JWT on the upgrade (no cookie) gets 401 and leaves no proxy session and no cookie."""
    token = mint_jwt(sim.certs_dir)
    url = sim.url("frontend", "/jwt/app/engineData").replace("https", "wss")
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(url, ssl=sim_tls, headers={"Authorization": f"Bearer {token}"})
        assert info.value.status == 401
        assert info.value.headers is not None
        assert "Set-Cookie" not in info.value.headers
        assert not session.cookie_jar.filter_cookies(sim.url("frontend", "/jwt/"))
    assert sim.proxy_session_count("LAB", "monitor") == 0


async def test_header_auth_on_websocket_upgrade_is_refused_before_any_session(sim, sim_tls):
    """Header-VP credentials on the upgrade alone do not open a proxy session either."""
    url = sim.url("frontend", "/hdr/app/engineData").replace("https", "wss")
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(url, ssl=sim_tls, headers={"X-Sso-User": "monitor"})
    assert info.value.status == 401
    assert sim.proxy_session_count("LAB", "monitor") == 0


async def test_product_info_is_served_without_authentication(sim, sim_tls):
    """/resources/autogenerated/product-info.json says QlikSenseServer, no login needed."""
    url = sim.url("frontend", "/resources/autogenerated/product-info.json")
    status, _, body = await call("GET", url, sim_tls)
    assert status == 200
    assert json.loads(body)["composition"]["deploymentType"] == "QlikSenseServer"
