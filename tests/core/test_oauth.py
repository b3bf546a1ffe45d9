"""Qlik Cloud OAuth machine-to-machine against the simulator's tenant: the token request, its
cache, its failures, and its secrets."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from exporter.auth.oauth import _parse_token
from exporter.config import ConfigError, parse_config
from exporter.reasons import ProbeFailure, Reason
from exporter.runner import Prober, run_probe
from exporter.sim import Simulator
from exporter.transport import HttpSession, SystemResolver
from exporter.web import redacted_config_yaml
from tests.core.conftest import build, cloud_target


def oauth_target(
    sim: Simulator, client_id: str, secret: str, checks: list[str] | None = None, **auth: Any
) -> dict[str, Any]:
    """A Cloud target with an OAuth client of the simulator's tenant."""
    return {
        "checks": checks or ["tenant"],
        "name": "cloud-oauth",
        "type": "cloud",
        "host": sim.host,
        "port": sim.ports.cloud,
        "ca_file": str(sim.certs_dir / "root.pem"),
        "timeout": "5s",
        "auth": {"method": "oauth", "client_id": client_id, "client_secret": secret, **auth},
    }


async def test_token_is_requested_once_then_reused(sim: Simulator, tmp_path: Path) -> None:
    """The first run asks for a token (its own phase) and exports its expiry; later runs reuse
    it without asking again."""
    client_id, secret = sim.cloud.create_oauth_client()
    prober = Prober.build(build(oauth_target(sim, client_id, secret), tmp_path))
    issued = sim.cloud.oauth.issued
    first = await run_probe(prober, "tenant")
    assert first.success, first.error
    assert "token" in first.phases
    assert {"request", "read"} <= set(first.phases)
    [cred] = first.credentials
    assert cred.kind == "oauth_token"
    assert abs(cred.expires - (time.time() + sim.cloud.oauth.token_lifetime)) < 30
    second = await run_probe(prober, "tenant")
    assert second.success
    assert "token" not in second.phases
    assert sim.cloud.oauth.issued == issued + 1


async def test_token_older_than_max_age_is_renewed(sim: Simulator, tmp_path: Path) -> None:
    """With token_max_age 1s the secret is proven again after a second."""
    client_id, secret = sim.cloud.create_oauth_client()
    target = oauth_target(sim, client_id, secret, token_max_age="1s")
    prober = Prober.build(build(target, tmp_path))
    issued = sim.cloud.oauth.issued
    assert (await run_probe(prober, "tenant")).success
    await asyncio.sleep(1.1)
    assert (await run_probe(prober, "tenant")).success
    assert sim.cloud.oauth.issued == issued + 2


async def test_token_close_to_its_end_is_renewed(sim: Simulator, tmp_path: Path) -> None:
    """A token with less than 10 % of its lifetime left is replaced before use."""
    client_id, secret = sim.cloud.create_oauth_client()
    sim.cloud.oauth.token_lifetime = 2
    prober = Prober.build(build(oauth_target(sim, client_id, secret), tmp_path))
    issued = sim.cloud.oauth.issued
    assert (await run_probe(prober, "tenant")).success
    await asyncio.sleep(0.1)
    assert (await run_probe(prober, "tenant")).success
    assert sim.cloud.oauth.issued == issued + 1  # most of its life left: reused
    await asyncio.sleep(1.85)
    assert (await run_probe(prober, "tenant")).success
    assert sim.cloud.oauth.issued == issued + 2


@pytest.mark.parametrize(
    ("switch", "reason"),
    [("revoke", Reason.UNAUTHORIZED), ("forbid", Reason.FORBIDDEN), ("wrong", Reason.UNAUTHORIZED)],
)
async def test_refused_token_request_fails_the_run(
    sim: Simulator, tmp_path: Path, switch: str, reason: Reason
) -> None:
    """401 and 403 from the token endpoint are the run's reason."""
    client_id, secret = sim.cloud.create_oauth_client()
    if switch == "revoke":
        sim.cloud.revoke_oauth_client(client_id)
    elif switch == "forbid":
        sim.cloud.oauth_client(client_id).forbidden = True
    else:
        secret = "not-" + secret
    result = await run_probe(
        Prober.build(build(oauth_target(sim, client_id, secret), tmp_path)), "tenant"
    )
    assert result.reason == reason, result.error
    assert "/oauth/token" in result.error
    assert secret not in result.error


async def test_rate_limited_token_endpoint_is_not_asked_again_before_retry_after(
    sim: Simulator, tmp_path: Path
) -> None:
    """A 429 is rate_limited; until its Retry-After has passed the endpoint is left alone."""
    client_id, secret = sim.cloud.create_oauth_client()
    sim.cloud.rate_limit_oauth_client(client_id, 0, window=60)
    prober = Prober.build(build(oauth_target(sim, client_id, secret), tmp_path))
    first = await run_probe(prober, "tenant")
    assert first.reason == Reason.RATE_LIMITED, first.error
    sim.cloud.rate_limit_oauth_client(client_id, None)
    issued = sim.cloud.oauth.issued
    second = await run_probe(prober, "tenant")
    assert second.reason == Reason.RATE_LIMITED
    assert "asked to wait" in second.error
    assert sim.cloud.oauth.issued == issued


async def test_rotated_secret_file_is_used_on_the_next_token_request(
    sim: Simulator, tmp_path: Path
) -> None:
    """A wrong secret in the file fails; the right one written there works on the next run."""
    client_id, secret = sim.cloud.create_oauth_client()
    secret_file = tmp_path / "secret"
    secret_file.write_text("stale-secret\n")
    target = oauth_target(sim, client_id, secret)
    del target["auth"]["client_secret"]
    target["auth"]["client_secret_file"] = str(secret_file)
    prober = Prober.build(build(target, tmp_path))
    assert (await run_probe(prober, "tenant")).reason == Reason.UNAUTHORIZED
    secret_file.write_text(secret + "\n")
    assert (await run_probe(prober, "tenant")).success


async def test_secret_and_token_appear_nowhere(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither the client secret nor the access token shows in logs (debug included), the
    result, or /-/config."""
    caplog.set_level(logging.DEBUG)
    client_id, secret = sim.cloud.create_oauth_client()
    config = parse_config({"targets": [oauth_target(sim, client_id, secret)]}, base_dir=tmp_path)
    prober = Prober.build(config.targets[0])
    result = await run_probe(prober, "tenant")
    assert result.success
    session = HttpSession(resolver=SystemResolver())
    token = (await prober.auth.prepare(session)).headers["Authorization"].split()[1]
    await session.close()
    texts = [caplog.text, repr(result), "\n".join(result.log), redacted_config_yaml(config)]
    texts.append(repr(prober.auth))
    for text in texts:
        assert secret not in text
        assert token not in text
    assert client_id in redacted_config_yaml(config)  # the id is not secret


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"token_type": "bearer", "expires_in": 60}', "lacks an access_token"),
        (b'{"access_token": "t", "expires_in": "soon"}', "expires_in is not a number"),
        (b'{"access_token": "t"}', "lacks expires_in/expires_at"),
        (b'{"access_token": "t", "expires_in": 60, "token_type": "mac"}', "not bearer"),
        (b"[]", "not a JSON object"),
    ],
)
def test_token_answer_without_the_documented_fields_is_invalid_response(
    body: bytes, message: str
) -> None:
    """A 200 from the token endpoint that is not a usable token is invalid_response."""
    with pytest.raises(ProbeFailure) as failure:
        _parse_token(body, "POST /oauth/token")
    assert failure.value.reason == Reason.INVALID_RESPONSE
    assert message in failure.value.message


def test_expires_at_is_accepted_without_expires_in() -> None:
    """qlik.dev documents expires_at; a token that has only it is accepted."""
    token = _parse_token(b'{"access_token": "t", "expires_at": "2099-01-01T00:00:00.000Z"}', "x")
    assert token.expires == 4070908800.0


@pytest.mark.parametrize(
    ("auth", "line"),
    [
        (
            {"method": "oauth", "client_id": "c", "client_secret": "s"},
            "targets[0].auth.method: oauth is not valid for type qseow"
            " (use certificate, jwt, header)",
        ),
        (
            {"method": "oauth", "client_id": "c"},
            "targets[0].auth.client_secret: required"
            " (give client_secret, client_secret_file or client_secret_env)",
        ),
        (
            {"method": "oauth", "client_id": "c", "client_secret_file": "empty"},
            "targets[0].auth.client_secret_file: empty is empty",
        ),
    ],
)
def test_bad_oauth_config_is_one_line(tmp_path: Path, auth: dict[str, Any], line: str) -> None:
    """oauth on QSEoW, a missing secret and an empty secret file are one line each."""
    (tmp_path / "empty").write_text("")
    kind = "qseow" if "client_secret" in auth and auth["client_secret"] == "s" else "cloud"
    target = {"name": "t", "type": kind, "host": "h", "auth": auth}
    with pytest.raises(ConfigError) as err:
        parse_config({"targets": [target]}, base_dir=tmp_path)
    assert err.value.errors == [line]


@pytest.mark.parametrize("method", ["oauth", "apikey"])
async def test_cloud_engine_session_opens_a_session_app(
    sim: Simulator, tmp_path: Path, method: str
) -> None:
    """engine_session on Cloud: a session app over the tenant's websocket with the bearer
    token (API key or OAuth), OnConnected, then EngineVersion."""
    if method == "oauth":
        client_id, secret = sim.cloud.create_oauth_client()
        target = oauth_target(sim, client_id, secret, checks=["tenant", "engine_session"])
    else:
        key = sim.cloud_issue_api_key(sub=sim.cloud_user_id)
        target = cloud_target(sim, key, checks=["tenant", "engine_session"])
    result = await run_probe(Prober.build(build(target, tmp_path)), "engine_session")
    assert result.success, result.error
    assert result.values.engine_version
    assert any("/app/SessionApp_" in line for line in result.log)


async def test_cloud_engine_session_with_a_revoked_key_is_refused(
    sim: Simulator, tmp_path: Path
) -> None:
    """A refused upgrade on Cloud maps as for QSEoW: 401 is unauthorized."""
    key = sim.cloud_issue_api_key(sub=sim.cloud_user_id)
    sim.cloud_revoke(key)
    target = cloud_target(sim, key, checks=["engine_session"])
    result = await run_probe(Prober.build(build(target, tmp_path)), "engine_session")
    assert result.reason == Reason.UNAUTHORIZED, result.error
