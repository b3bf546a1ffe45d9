"""Qlik Cloud: OAuth client credentials, the tenant licence, product-info and session apps."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time

import aiohttp
import pytest
from sim_helpers import TIMEOUT, call

from exporter.sim import Simulator


def url(sim: Simulator, path: str) -> str:
    return sim.url("cloud", path)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def grant(sim: Simulator, ctx, client_id: str, secret: str) -> tuple[int, dict]:
    body = {"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials"}
    status, _, text = await call("POST", url(sim, "/oauth/token"), ctx, json=body)
    return status, json.loads(text) if text else {}


async def token_for(sim: Simulator, ctx) -> tuple[str, str, str]:
    client_id, secret = sim.cloud.create_oauth_client("monitoring")
    status, body = await grant(sim, ctx, client_id, secret)
    assert status == 200, body
    return client_id, secret, body["access_token"]


async def test_client_credentials_json_grant(sim, sim_tls):
    """A JSON client-credentials request gets a bearer token with expires_in and expires_at."""
    client_id, secret = sim.cloud.create_oauth_client()
    before = time.time()
    status, body = await grant(sim, sim_tls, client_id, secret)
    assert status == 200
    assert set(body) == {"access_token", "token_type", "expires_in", "expires_at", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 21600
    expires_at = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
    assert before + 21600 - 2 <= expires_at <= time.time() + 21600 + 1
    assert body["scope"] == "user_default"
    assert secret not in json.dumps(body)


async def test_client_credentials_form_grant(sim, sim_tls):
    """The same request form-encoded works too."""
    client_id, secret = sim.cloud.create_oauth_client()
    form = {"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials"}
    status, _, text = await call("POST", url(sim, "/oauth/token"), sim_tls, data=form)
    assert status == 200
    assert json.loads(text)["access_token"]


async def test_client_credentials_with_basic_authentication(sim, sim_tls):
    """Client id and secret in Authorization: Basic (as qlik-sdk sends them) work too."""
    client_id, secret = sim.cloud.create_oauth_client()
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    body = {"grant_type": "client_credentials", "scope": "user_default"}
    status, _, text = await call(
        "POST", url(sim, "/oauth/token"), sim_tls, {"Authorization": f"Basic {basic}"}, json=body
    )
    assert status == 200
    assert json.loads(text)["token_type"] == "bearer"


async def test_token_works_on_every_endpoint(sim, sim_tls):
    """The access token is accepted on users/me (the client's admin bot), tenants/me, licences."""
    client_id, _, token = await token_for(sim, sim_tls)
    status, _, text = await call("GET", url(sim, "/api/v1/users/me"), sim_tls, bearer(token))
    assert status == 200
    user = json.loads(text)
    assert user["tenantId"] == sim.cloud_tenant_id
    assert user["name"] == "monitoring"
    assert client_id in user["subject"]
    assert user["assignedRoles"][0]["name"] == "TenantAdmin"
    for path in ("/api/v1/tenants/me", "/api/v1/licenses/status", "/api/v1/licenses/overview"):
        assert (await call("GET", url(sim, path), sim_tls, bearer(token)))[0] == 200


@pytest.mark.parametrize(
    ("body", "status", "title"),
    [
        (
            {"grant_type": "client_credentials", "client_id": "nope", "client_secret": "x"},
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "password", "client_id": "a", "client_secret": "b"},
            400,
            "unsupported_grant_type",
        ),
        ({"grant_type": "client_credentials"}, 400, "invalid_request"),
        (["not", "an", "object"], 400, "invalid_request"),
    ],
)
async def test_refused_token_requests(sim, sim_tls, body, status, title):
    """Bad requests are 400, bad credentials 401, with the OAuth errors body (status a string)."""
    got, _, text = await call("POST", url(sim, "/oauth/token"), sim_tls, json=body)
    assert got == status
    error = json.loads(text)["errors"][0]
    assert (error["title"], error["status"]) == (title, str(status))


async def test_wrong_secret_is_401_without_echoing_it(sim, sim_tls):
    """A wrong secret for a real client is 401, and the body does not contain the secret."""
    client_id, _ = sim.cloud.create_oauth_client()
    status, body = await grant(sim, sim_tls, client_id, "wrong-secret-value")
    assert status == 401
    assert "wrong-secret-value" not in json.dumps(body)


async def test_revoked_client_gets_no_token_and_its_tokens_stop(sim, sim_tls):
    """Revoking a client: 401 on the token endpoint and on its already issued tokens."""
    client_id, secret, token = await token_for(sim, sim_tls)
    sim.cloud.revoke_oauth_client(client_id)
    assert (await grant(sim, sim_tls, client_id, secret))[0] == 401
    assert (await call("GET", url(sim, "/api/v1/users/me"), sim_tls, bearer(token)))[0] == 401


async def test_rate_limited_client_gets_429_with_retry_after(sim, sim_tls):
    """A rate-limited client: 429 with retry-after and the documented body; lifting restores."""
    client_id, secret = sim.cloud.create_oauth_client()
    sim.cloud.rate_limit_oauth_client(client_id, 1, 30)
    assert (await grant(sim, sim_tls, client_id, secret))[0] == 200
    body = {"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials"}
    status, headers, text = await call("POST", url(sim, "/oauth/token"), sim_tls, json=body)
    assert status == 429
    assert 1 <= int(headers["retry-after"]) <= 30
    assert json.loads(text)["errors"][0]["code"] == "HTTP-429"
    sim.cloud.rate_limit_oauth_client(client_id, None)
    assert (await grant(sim, sim_tls, client_id, secret))[0] == 200


async def test_forbidden_client_gets_403(sim, sim_tls):
    """A client marked forbidden (disabled / too many tokens) gets 403."""
    client_id, secret = sim.cloud.create_oauth_client()
    sim.cloud.oauth_client(client_id).forbidden = True
    assert (await grant(sim, sim_tls, client_id, secret))[0] == 403


async def test_expired_token_is_refused(sim, sim_tls):
    """With a 1 s lifetime the token reports expires_in 1 and is refused after it."""
    sim.cloud.oauth.token_lifetime = 1
    client_id, secret = sim.cloud.create_oauth_client()
    status, body = await grant(sim, sim_tls, client_id, secret)
    assert (status, body["expires_in"]) == (200, 1)
    await asyncio.sleep(1.1)
    me = url(sim, "/api/v1/users/me")
    assert (await call("GET", me, sim_tls, bearer(body["access_token"])))[0] == 401


async def test_revoke_endpoint_ends_a_token(sim, sim_tls):
    """POST /oauth/revoke {token} makes the token unusable."""
    _, _, token = await token_for(sim, sim_tls)
    status, _, _ = await call("POST", url(sim, "/oauth/revoke"), sim_tls, json={"token": token})
    assert status == 200
    assert (await call("GET", url(sim, "/api/v1/users/me"), sim_tls, bearer(token)))[0] == 401


async def test_unknown_bearer_is_401(sim, sim_tls):
    """A made-up opaque token is refused like a bad API key."""
    status, _, _ = await call("GET", url(sim, "/api/v1/users/me"), sim_tls, bearer("x" * 64))
    assert status == 401


async def test_licence_status_and_overview_shapes(sim, sim_tls):
    """licenses/status: status Ok and a date interval; overview: allotments with units used."""
    key = sim.cloud_issue_api_key()
    _, _, text = await call("GET", url(sim, "/api/v1/licenses/status"), sim_tls, bearer(key))
    status = json.loads(text)
    assert status["status"] == "Ok"
    start, end = status["valid"].split("/")
    assert dt.date.fromisoformat(start) < dt.date.fromisoformat(end)
    assert {"trial", "product", "type", "origin", "deactivated"} <= set(status)
    _, _, text = await call("GET", url(sim, "/api/v1/licenses/overview"), sim_tls, bearer(key))
    overview = json.loads(text)
    names = {a["name"]: a for a in overview["allotments"]}
    assert set(names) == {"professional", "analyzer", "analyzer_time"}
    assert (names["professional"]["units"], names["professional"]["unitsUsed"]) == (50, 12)
    assert names["analyzer_time"]["usageClass"] == "time"
    assert overview["licenseKey"] in sim.cloud.license.material


async def test_licence_switches(sim, sim_tls):
    """expire() → Expired with a past end; set_allotment and exhaust change the units."""
    key = sim.cloud_issue_api_key()
    lic = sim.cloud.license
    lic.expire()
    lic.set_allotment("professional", units=10, units_used=3)
    lic.set_allotment("analyzer", units=5)
    lic.exhaust()
    _, _, text = await call("GET", url(sim, "/api/v1/licenses/status"), sim_tls, bearer(key))
    status = json.loads(text)
    assert status["status"] == "Expired"
    assert dt.date.fromisoformat(status["valid"].split("/")[1]) < dt.datetime.now(dt.UTC).date()
    _, _, text = await call("GET", url(sim, "/api/v1/licenses/overview"), sim_tls, bearer(key))
    units = {a["name"]: (a["units"], a["unitsUsed"]) for a in json.loads(text)["allotments"]}
    assert units["professional"] == (10, 10)
    assert units["analyzer"] == (5, 5)


async def test_licences_need_a_tenant_admin(sim, sim_tls):
    """A non-admin user's key gets 403 on both licence endpoints but 200 on users/me."""
    key = sim.cloud_issue_api_key("plainuser", admin=False)
    for path in ("/api/v1/licenses/status", "/api/v1/licenses/overview"):
        status, _, text = await call("GET", url(sim, path), sim_tls, bearer(key))
        assert status == 403
        assert json.loads(text)["errors"][0]["status"] == 403
    assert (await call("GET", url(sim, "/api/v1/users/me"), sim_tls, bearer(key)))[0] == 200


async def test_product_info_needs_no_authentication(sim, sim_tls):
    """product-info.json answers without a bearer; its deploymentType reads as Cloud."""
    status, _, text = await call(
        "GET", url(sim, "/resources/autogenerated/product-info.json"), sim_tls
    )
    assert status == 200
    kind = json.loads(text)["composition"]["deploymentType"].lower()
    assert kind not in {"qliksenseserver", "qliksensedesktop", "qliksensemobile", "cloud-console"}
    assert (await call("GET", url(sim, "/api/v1/users/me"), sim_tls))[0] == 401


async def cloud_ws(session: aiohttp.ClientSession, sim: Simulator, ctx, token: str, app: str):
    return await session.ws_connect(
        url(sim, f"/app/{app}").replace("https", "wss"), ssl=ctx, headers=bearer(token)
    )


async def receive(ws) -> dict:
    return json.loads(await ws.receive_str(timeout=3))


@pytest.mark.parametrize("credential", ["api_key", "oauth"])
async def test_session_app_over_the_cloud_websocket(sim, sim_tls, credential):
    """SessionApp_<id>: auth info then OnConnected; EngineVersion; GetActiveDoc is the app."""
    if credential == "oauth":
        _, _, token = await token_for(sim, sim_tls)
    else:
        token = sim.cloud_issue_api_key()
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        ws = await cloud_ws(session, sim, sim_tls, token, "SessionApp_4f2a9c")
        first, second = await receive(ws), await receive(ws)
        assert first["method"] == "OnAuthenticationInformation"
        assert first["params"]["mustAuthenticate"] is False
        assert second == {
            "jsonrpc": "2.0",
            "method": "OnConnected",
            "params": {"qSessionState": "SESSION_CREATED"},
        }
        await ws.send_json(
            {"jsonrpc": "2.0", "id": 1, "method": "EngineVersion", "handle": -1, "params": []}
        )
        assert (await receive(ws))["result"]["qVersion"]["qComponentVersion"] == "12.1823.6"
        await ws.send_json(
            {"jsonrpc": "2.0", "id": 2, "method": "GetActiveDoc", "handle": -1, "params": []}
        )
        doc = (await receive(ws))["result"]["qReturn"]
        assert (doc["qType"], doc["qGenericId"]) == ("Doc", "SessionApp_4f2a9c")
        await ws.send_json(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "OpenDoc",
                "handle": -1,
                "params": ["SessionApp_4f2a9c"],
            }
        )
        assert (await receive(ws))["result"]["qReturn"]["qHandle"] == doc["qHandle"]
        await ws.close()


async def test_cloud_websocket_without_a_valid_bearer_is_401(sim, sim_tls):
    """The upgrade without a bearer, or with a revoked token, is refused with 401."""
    client_id, _, token = await token_for(sim, sim_tls)
    sim.cloud.revoke_oauth_client(client_id)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for headers in ({}, bearer(token)):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await session.ws_connect(
                    url(sim, "/app/SessionApp_1").replace("https", "wss"),
                    ssl=sim_tls,
                    headers=headers,
                )
            assert info.value.status == 401
