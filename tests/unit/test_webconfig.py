"""The exporter-toolkit web config: validation errors, real TLS, client certificates, basic auth."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import exporter.webconfig as webconfig
from exporter.web import run_server
from exporter.webconfig import WebConfigError, basic_auth_middleware, load_web_config

PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def hello_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _hello)
    return app


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def errors_of(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    with pytest.raises(WebConfigError) as info:
        load_web_config(write(tmp_path, data))
    return info.value.errors


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls_files(tmp_path: Path, ca: trustme.CA) -> dict[str, str]:
    """A server certificate for 127.0.0.1 in files named relative to the web config."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    return {"cert_file": "server.crt", "key_file": "server.key"}


def client_context(ca: trustme.CA, client_cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if client_cert is not None:
        client_cert.configure_cert(ctx)
    return ctx


@pytest.fixture
async def auth_client() -> AsyncIterator[TestClient[object, object]]:
    app = web.Application(middlewares=[basic_auth_middleware({"alice": HASH})])
    app.router.add_get("/", _hello)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_request_without_credentials_gets_401_with_basic_challenge(
    auth_client: TestClient[object, object],
) -> None:
    """No Authorization header: 401 and a WWW-Authenticate: Basic challenge."""
    resp = await auth_client.get("/")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic")


async def test_wrong_password_gets_401(auth_client: TestClient[object, object]) -> None:
    """A known user with a wrong password is refused."""
    resp = await auth_client.get("/", headers=basic("alice", "wrong"))
    assert resp.status == 401


async def test_unknown_user_gets_401(auth_client: TestClient[object, object]) -> None:
    """An unknown user is refused (after a bcrypt check against a dummy hash)."""
    resp = await auth_client.get("/", headers=basic("mallory", PASSWORD))
    assert resp.status == 401


async def test_malformed_authorization_header_gets_401(
    auth_client: TestClient[object, object],
) -> None:
    """A Basic header that isn't base64 user:password is refused, not an error."""
    resp = await auth_client.get("/", headers={"Authorization": "Basic !!not-base64"})
    assert resp.status == 401


async def test_valid_credentials_pass(auth_client: TestClient[object, object]) -> None:
    """The right user and password reach the handler."""
    resp = await auth_client.get("/", headers=basic("alice", PASSWORD))
    assert (resp.status, await resp.text()) == (200, "hello")


async def test_unknown_user_still_pays_a_bcrypt_check(
    monkeypatch: pytest.MonkeyPatch, auth_client: TestClient[object, object]
) -> None:
    """Unknown users run bcrypt too, so response time does not reveal which users exist."""
    calls: list[bytes] = []
    real = webconfig._checkpw
    monkeypatch.setattr(webconfig, "_checkpw", lambda p, h: calls.append(h) or real(p, h))
    await auth_client.get("/", headers=basic("mallory", PASSWORD))
    assert len(calls) == 1
    assert calls[0] != HASH.encode()


async def test_successful_verification_is_cached(
    monkeypatch: pytest.MonkeyPatch, auth_client: TestClient[object, object]
) -> None:
    """Repeated scrapes with the same good credentials pay bcrypt once."""
    calls: list[bytes] = []
    real = webconfig._checkpw
    monkeypatch.setattr(webconfig, "_checkpw", lambda p, h: calls.append(h) or real(p, h))
    for _ in range(3):
        resp = await auth_client.get("/", headers=basic("alice", PASSWORD))
        assert resp.status == 200
    assert len(calls) == 1


async def test_failed_verification_is_not_cached(
    monkeypatch: pytest.MonkeyPatch, auth_client: TestClient[object, object]
) -> None:
    """Every wrong attempt pays bcrypt again (no shortcut for guessing)."""
    calls: list[bytes] = []
    real = webconfig._checkpw
    monkeypatch.setattr(webconfig, "_checkpw", lambda p, h: calls.append(h) or real(p, h))
    for _ in range(2):
        await auth_client.get("/", headers=basic("alice", "wrong"))
    assert len(calls) == 2


async def test_tls_server_serves_a_client_that_trusts_the_ca(
    tmp_path: Path, ca: trustme.CA, server_tls_files: dict[str, str]
) -> None:
    """With tls_server_config the server speaks real TLS with the configured certificate."""
    config = load_web_config(write(tmp_path, {"tls_server_config": server_tls_files}))
    runner, port = await run_server(hello_app(), "127.0.0.1:0", config)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"https://127.0.0.1:{port}/", ssl=client_context(ca)) as resp,
        ):
            assert (resp.status, await resp.text()) == (200, "hello")
    finally:
        await runner.cleanup()


async def test_required_client_certificate_refuses_a_client_without_one(
    tmp_path: Path, ca: trustme.CA, server_tls_files: dict[str, str]
) -> None:
    """RequireAndVerifyClientCert: no client certificate, no connection."""
    tls = {**server_tls_files, "client_ca_file": "ca.crt"}
    tls["client_auth_type"] = "RequireAndVerifyClientCert"
    config = load_web_config(write(tmp_path, {"tls_server_config": tls}))
    runner, port = await run_server(hello_app(), "127.0.0.1:0", config)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
                async with session.get(f"https://127.0.0.1:{port}/", ssl=client_context(ca)) as r:
                    await r.read()
    finally:
        await runner.cleanup()


async def test_required_client_certificate_admits_a_client_with_one(
    tmp_path: Path, ca: trustme.CA, server_tls_files: dict[str, str]
) -> None:
    """RequireAndVerifyClientCert: a certificate from the client CA gets through."""
    tls = {**server_tls_files, "client_ca_file": "ca.crt"}
    tls["client_auth_type"] = "RequireAndVerifyClientCert"
    config = load_web_config(write(tmp_path, {"tls_server_config": tls}))
    runner, port = await run_server(hello_app(), "127.0.0.1:0", config)
    ctx = client_context(ca, ca.issue_cert("prometheus@example.com"))
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"https://127.0.0.1:{port}/", ssl=ctx) as resp,
        ):
            assert resp.status == 200
    finally:
        await runner.cleanup()


async def test_run_server_applies_basic_auth_from_the_web_config(tmp_path: Path) -> None:
    """basic_auth_users in the web config guard the app run_server serves."""
    config = load_web_config(write(tmp_path, {"basic_auth_users": {"alice": HASH}}))
    runner, port = await run_server(hello_app(), "127.0.0.1:0", config)
    url = f"http://127.0.0.1:{port}/"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 401
            async with session.get(url, headers=basic("alice", PASSWORD)) as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()


def test_empty_web_config_means_plain_http_without_auth(tmp_path: Path) -> None:
    """An empty file is valid: no TLS context and no users."""
    path = tmp_path / "web.yml"
    path.write_text("")
    config = load_web_config(path)
    assert config.ssl_context() is None
    assert config.users == {}


def test_http_server_config_is_accepted(tmp_path: Path) -> None:
    """http_server_config is accepted (and has nothing to apply here)."""
    load_web_config(write(tmp_path, {"http_server_config": {"http2": True}}))


def test_unknown_key_is_rejected_with_its_path(
    tmp_path: Path, server_tls_files: dict[str, str]
) -> None:
    """An unknown key under tls_server_config is named with its path."""
    errors = errors_of(tmp_path, {"tls_server_config": {**server_tls_files, "bogus": 1}})
    assert errors == ["tls_server_config.bogus: unknown key"]


def test_missing_certificate_file_is_named_relative_to_the_web_config(tmp_path: Path) -> None:
    """A cert_file that doesn't exist is reported with its path and the value given."""
    (tmp_path / "server.key").write_text("x")
    errors = errors_of(
        tmp_path, {"tls_server_config": {"cert_file": "no.crt", "key_file": "server.key"}}
    )
    assert errors == ["tls_server_config.cert_file: file not found: no.crt"]


def test_missing_key_file_is_required(tmp_path: Path, server_tls_files: dict[str, str]) -> None:
    """tls_server_config without key_file says key_file is required."""
    errors = errors_of(tmp_path, {"tls_server_config": {"cert_file": "server.crt"}})
    assert errors == ["tls_server_config.key_file: required"]


def test_invalid_client_auth_type_is_rejected(
    tmp_path: Path, server_tls_files: dict[str, str]
) -> None:
    """A client_auth_type outside the toolkit's set is an error on that key."""
    tls = {**server_tls_files, "client_auth_type": "Sometimes"}
    (error,) = errors_of(tmp_path, {"tls_server_config": tls})
    assert error.startswith("tls_server_config.client_auth_type: ")


def test_client_ca_without_client_auth_type_is_rejected(
    tmp_path: Path, server_tls_files: dict[str, str]
) -> None:
    """A client CA with no client auth policy is an error, as in the Go toolkit."""
    tls = {**server_tls_files, "client_ca_file": "ca.crt"}
    (error,) = errors_of(tmp_path, {"tls_server_config": tls})
    assert error.startswith("tls_server_config.client_ca_file: set client_auth_type")


def test_unsupported_cipher_suites_are_rejected_not_ignored(
    tmp_path: Path, server_tls_files: dict[str, str]
) -> None:
    """cipher_suites can't be honoured, so it is refused with a reason."""
    tls = {**server_tls_files, "cipher_suites": ["TLS_AES_128_GCM_SHA256"]}
    (error,) = errors_of(tmp_path, {"tls_server_config": tls})
    assert error.startswith("tls_server_config.cipher_suites: not supported")


def test_a_password_hash_that_is_not_bcrypt_is_rejected(tmp_path: Path) -> None:
    """basic_auth_users values must be bcrypt hashes; the error names the user only."""
    (error,) = errors_of(tmp_path, {"basic_auth_users": {"alice": "plaintext-password"}})
    assert error.startswith("basic_auth_users.alice: not a bcrypt hash")
    assert "plaintext-password" not in error


def test_unloadable_certificate_is_reported(tmp_path: Path) -> None:
    """Files that exist but aren't a certificate and key are one clear error."""
    (tmp_path / "server.crt").write_text("not a cert")
    (tmp_path / "server.key").write_text("not a key")
    tls = {"cert_file": "server.crt", "key_file": "server.key"}
    (error,) = errors_of(tmp_path, {"tls_server_config": tls})
    assert error.startswith("tls_server_config: cannot load the certificate")


def test_missing_web_config_file_is_reported(tmp_path: Path) -> None:
    """A web config path that doesn't exist is one error naming it."""
    with pytest.raises(WebConfigError) as info:
        load_web_config(tmp_path / "absent.yml")
    assert info.value.errors == [f"{tmp_path / 'absent.yml'}: web config file not found"]


@pytest.mark.parametrize(
    "hashed",
    [
        "$2b$ab$" + "a" * 53,  # the cost is not a number
        "$2b$99$" + "a" * 53,  # a cost bcrypt refuses
        "$2b$12$" + "!" * 53,  # not bcrypt's base64 alphabet
    ],
)
def test_a_malformed_bcrypt_hash_is_rejected_at_load(tmp_path: Path, hashed: str) -> None:
    """Shaped like bcrypt is not enough: the hash must be one bcrypt can check."""
    (error,) = errors_of(tmp_path, {"basic_auth_users": {"alice": hashed}})
    assert error.startswith("basic_auth_users.alice: not a bcrypt hash")


def test_an_encrypted_server_key_is_an_error_not_a_passphrase_prompt(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """OpenSSL would ask for a pass phrase on the terminal; the exporter says what is wrong."""
    from cryptography.hazmat.primitives import serialization

    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    (tmp_path / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret-pass"),
        )
    )
    tls = {"cert_file": "server.crt", "key_file": "server.key"}
    (error,) = errors_of(tmp_path, {"tls_server_config": tls})
    assert error == (
        "tls_server_config: cannot load the certificate, key or client CA: "
        "key_file is encrypted; encrypted keys are not supported here"
    )


def test_every_bad_hash_is_reported_with_its_user(tmp_path: Path) -> None:
    """Two users with bad hashes give two lines, each naming its user."""
    users = {"alice": "plain", "bob": HASH, "carol": "$1$md5$x"}
    assert sorted(errors_of(tmp_path, {"basic_auth_users": users})) == [
        "basic_auth_users.alice: not a bcrypt hash (expected $2y$/$2b$/$2a$...)",
        "basic_auth_users.carol: not a bcrypt hash (expected $2y$/$2b$/$2a$...)",
    ]


async def test_a_flood_of_wrong_passwords_is_refused_not_queued() -> None:
    """Beyond a few waiting bcrypt checks, more attempts get 429 at once; a scraper whose
    credentials were verified before still gets in during the flood."""
    costly = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=12)).decode()  # ~0.25 s
    app = hello_app()
    app.middlewares.append(basic_auth_middleware({"alice": costly}))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/", headers=basic("alice", PASSWORD))).status == 200
        flood = [client.get("/", headers=basic("alice", f"wrong{i}")) for i in range(40)]
        tasks = [asyncio.ensure_future(f) for f in flood]
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        scrape = await client.get("/", headers=basic("alice", PASSWORD))
        assert scrape.status == 200
        assert time.perf_counter() - started < 0.2  # not behind 40 bcrypt checks (10 s)
        statuses = [r.status for r in await asyncio.gather(*tasks)]
    assert statuses.count(429) >= 40 - webconfig.MAX_WAITING - 1
    assert set(statuses) <= {401, 429}
