"""The Qlik Cloud tenant: API keys, /api/v1/users/me, /api/v1/tenants/me, errors, rate limits."""

from __future__ import annotations

import json
import re

import jwt
import pytest
from sim_helpers import call

from exporter.sim import Simulator


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def me(sim: Simulator, what: str = "users") -> str:
    return sim.url("cloud", f"/api/v1/{what}/me")


async def test_api_key_has_the_documented_claims_and_header(sim):
    """An issued key is an ES384 JWT with kid and aud/iss/jti/sub/subType/tenantId/iat/exp."""
    key = sim.cloud_issue_api_key()
    header = jwt.get_unverified_header(key)
    claims = jwt.decode(key, options={"verify_signature": False})
    assert header["alg"] == "ES384"
    assert header["kid"]
    assert claims["aud"] == "qlik.api"
    assert claims["iss"] == "qlik.api/api-keys"
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", claims["jti"]
    )
    assert claims["sub"] == sim.cloud_user_id
    assert claims["subType"] == "user"
    assert claims["tenantId"] == sim.cloud_tenant_id
    assert claims["exp"] > claims["iat"]


async def test_api_key_without_expiry_has_no_exp(sim, sim_tls):
    """A key issued with expires_in=None has no exp claim and still works."""
    key = sim.cloud_issue_api_key(expires_in=None)
    assert "exp" not in jwt.decode(key, options={"verify_signature": False})
    status, _, _ = await call("GET", me(sim), sim_tls, auth(key))
    assert status == 200


async def test_users_me_returns_the_key_owner(sim, sim_tls):
    """GET /api/v1/users/me answers the User whose id is the key's sub, in the key's tenant."""
    status, _, body = await call("GET", me(sim), sim_tls, auth(sim.cloud_issue_api_key()))
    assert status == 200
    user = json.loads(body)
    assert user["id"] == sim.cloud_user_id
    assert user["tenantId"] == sim.cloud_tenant_id
    assert user["status"] == "active"
    assert {"name", "email", "subject", "assignedRoles", "createdAt", "links"} <= set(user)


async def test_tenants_me_returns_the_tenant(sim, sim_tls):
    """GET /api/v1/tenants/me answers the Tenant with id, name, hostnames and status."""
    status, _, body = await call(
        "GET", me(sim, "tenants"), sim_tls, auth(sim.cloud_issue_api_key())
    )
    assert status == 200
    tenant = json.loads(body)
    assert tenant["id"] == sim.cloud_tenant_id
    assert tenant["hostnames"] == ["localhost"]
    assert {"name", "status", "region", "datacenter", "created", "links"} <= set(tenant)


def assert_401_error_body(status: int, body: str) -> None:
    assert status == 401
    reply = json.loads(body)
    assert reply["errors"][0]["status"] == 401
    assert reply["errors"][0]["code"]
    assert reply["errors"][0]["title"]
    assert reply["traceId"]


async def test_revoked_key_is_401(sim, sim_tls):
    """A revoked key gets 401 with the documented error body."""
    key = sim.cloud_issue_api_key()
    sim.cloud_revoke(key)
    assert_401_error_body(*(await call("GET", me(sim), sim_tls, auth(key)))[::2])


async def test_revoke_by_jti(sim, sim_tls):
    """Revoking by jti works like revoking by key."""
    key = sim.cloud_issue_api_key()
    sim.cloud_revoke(jwt.decode(key, options={"verify_signature": False})["jti"])
    status, _, _ = await call("GET", me(sim), sim_tls, auth(key))
    assert status == 401


async def test_expired_key_is_401(sim, sim_tls):
    """An expired key gets 401."""
    key = sim.cloud_issue_api_key(expires_in=-10)
    assert_401_error_body(*(await call("GET", me(sim), sim_tls, auth(key)))[::2])


@pytest.mark.parametrize("key", ["garbage", "a.b.c", ""])
async def test_garbage_key_is_401(sim, sim_tls, key):
    """A key that is not a valid JWT gets 401."""
    assert_401_error_body(*(await call("GET", me(sim), sim_tls, auth(key)))[::2])


async def test_key_from_another_tenant_is_401(sim, sim_tls, tmp_path):
    """A key issued by another tenant (other signing key) gets 401."""
    async with Simulator(tmp_path / "other") as other:
        key = other.cloud_issue_api_key()
    status, _, _ = await call("GET", me(sim), sim_tls, auth(key))
    assert status == 401


async def test_rate_limit_answers_429_with_retry_after(sim, sim_tls):
    """Over the configured limit the tenant answers 429, retry-after and the documented body."""
    sim.cloud_rate_limit = (2, 60.0)
    key = sim.cloud_issue_api_key()
    for _ in range(2):
        assert (await call("GET", me(sim), sim_tls, auth(key)))[0] == 200
    status, headers, body = await call("GET", me(sim), sim_tls, auth(key))
    assert status == 429
    assert 1 <= int(headers["retry-after"]) <= 60
    error = json.loads(body)["errors"][0]
    assert error["code"] == "HTTP-429"
    assert error["title"] == "API rate limit reached."
    assert re.fullmatch(r"You need to wait \d+ seconds until limit is lifted\.", error["detail"])


async def test_rate_limit_is_off_by_default(sim, sim_tls):
    """Without a configured limit many calls all succeed."""
    key = sim.cloud_issue_api_key()
    for _ in range(5):
        assert (await call("GET", me(sim), sim_tls, auth(key)))[0] == 200


async def test_qlik_sdk_reads_users_me(sim, monkeypatch):
    """The published qlik-sdk client gets the user from the tenant with an issued key."""
    import asyncio

    import requests.adapters
    from qlik_sdk import AuthType, Config, Qlik

    # qlik-sdk sends prepared requests, which ignore REQUESTS_CA_BUNDLE; trust the sim's root.
    monkeypatch.setattr(
        requests.adapters, "DEFAULT_CA_BUNDLE_PATH", str(sim.certs_dir / "root.pem")
    )
    host = f"https://localhost:{sim.ports.cloud}"
    qlik = Qlik(Config(host=host, auth_type=AuthType.APIKey, api_key=sim.cloud_issue_api_key()))
    user = await asyncio.wait_for(asyncio.to_thread(qlik.users.get_me), timeout=10)
    user = user if isinstance(user, dict) else vars(user)
    assert user["id"] == sim.cloud_user_id
    assert user["tenantId"] == sim.cloud_tenant_id
