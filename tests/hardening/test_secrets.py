"""No secret ever leaves the exporter: not in logs, results, reports, endpoints or CLI output.

Every auth method runs through its failure modes at debug level; everything the exporter says
is collected — every log record (raw, and through the logfmt and JSON formatters), every
ProbeResult's error, log and repr, ``format_report``, the real app's ``/metrics``,
``/probe?debug=true``, ``/`` and ``/-/config``, and the stdout/stderr of
``qlik-sense-exporter probe --log.level debug`` — and searched for every secret value.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from exporter.auth import oauth
from exporter.auth.jwt import JwtMethod
from exporter.config import load_config
from exporter.daemon import Daemon
from exporter.logs import JsonFormatter, LogfmtFormatter
from exporter.report import format_target
from exporter.results import ProbeResult
from exporter.runner import Prober, run_probe
from exporter.sim import Simulator
from exporter.sim.faults import SERVICES
from tests.core.conftest import cert_target, cloud_target, jwt_target

FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("status", {"status": 401}),
    ("status", {"status": 403}),
    ("status", {"status": 500}),
    ("cert_expired", {}),
    ("cert_untrusted", {}),
    ("cert_wrong_host", {}),
]


def _pem_lines(path: Path) -> list[str]:
    """The base64 lines of a PEM private key (any one of them is a leak)."""
    return [
        line
        for line in path.read_text().splitlines()
        if line and not line.startswith("-----") and ":" not in line
    ]


class Secrets:
    """Every secret of the test config, and the minted JWTs seen at run time."""

    def __init__(self, sim: Simulator, tmp: Path) -> None:
        self.api_key = sim.cloud_issue_api_key(sub=sim.cloud_user_id)
        self.revoked_key = sim.cloud_issue_api_key(sub=sim.cloud_user_id)
        sim.cloud_revoke(self.revoked_key)
        self.static_jwt = sim.mint_jwt(lifetime=3600)
        self.expired_jwt = sim.mint_jwt(lifetime=-60)
        self.key_password = sim.key_password
        self.wrong_password = "not-the-right-key-password-0815"
        self.minted: list[str] = []
        _, self.oauth_secret = sim.cloud.create_oauth_client("secrets-test")
        self.oauth_client = _
        revoked_id, self.revoked_oauth_secret = sim.cloud.create_oauth_client("revoked")
        sim.cloud.revoke_oauth_client(revoked_id)
        self.revoked_oauth_client = revoked_id
        d = sim.certs_dir
        self.pem = _pem_lines(d / "client_key.pem") + _pem_lines(d / "jwt_signing_key.pem")
        self.pem += _pem_lines(d / "client_key_encrypted.pem")

    def values(self) -> Iterator[tuple[str, str]]:
        """(name, value) of every secret, PEM lines included."""
        yield "api_key", self.api_key
        yield "revoked_key", self.revoked_key
        yield "static_jwt", self.static_jwt
        yield "expired_jwt", self.expired_jwt
        yield "key_password", self.key_password
        yield "wrong_password", self.wrong_password
        yield "oauth_client_secret", self.oauth_secret
        yield "revoked_oauth_client_secret", self.revoked_oauth_secret
        for i, token in enumerate(self.minted):
            if token.count(".") == 2:  # a minted JWT
                yield f"minted_jwt[{i}]", token
                yield f"minted_jwt[{i}] signature", token.rsplit(".", 1)[1]
            else:  # an OAuth access token the tenant issued
                yield f"oauth_access_token[{i}]", token
        for i, line in enumerate(self.pem):
            yield f"pem line {i}", line


def _targets(sim: Simulator, s: Secrets) -> list[dict[str, Any]]:
    d = sim.certs_dir
    enc = {"key_file": str(d / "client_key_encrypted.pem"), "key_password": s.key_password}
    wrong = {"key_file": str(d / "client_key_encrypted.pem"), "key_password": s.wrong_password}
    short = {"timeout": "2s"}
    return [
        cert_target(sim, "cert-enc", auth=enc, **short),
        cert_target(sim, "cert-wrong-pw", auth=wrong, **short),
        jwt_target(sim, "jwt-minted", **short),
        _static(jwt_target(sim, "jwt-static", **short), s.static_jwt),
        _static(jwt_target(sim, "jwt-expired", **short), s.expired_jwt),
        cloud_target(sim, s.api_key, "cloud", **short),
        cloud_target(sim, s.revoked_key, "cloud-revoked", **short),
        _oauth(cloud_target(sim, "unused", "cloud-oauth", **short), s.oauth_client, s.oauth_secret),
        _oauth(
            cloud_target(sim, "unused", "cloud-oauth-revoked", **short),
            s.revoked_oauth_client,
            s.revoked_oauth_secret,
        ),
    ]


def _oauth(target: dict[str, Any], client_id: str, secret: str) -> dict[str, Any]:
    """``target`` with an OAuth client instead of an API key."""
    target["auth"] = {"method": "oauth", "client_id": client_id, "client_secret": secret}
    return target


def _static(target: dict[str, Any], token: str) -> dict[str, Any]:
    """``target`` with a static inline token instead of minting keys."""
    target["auth"] = {"method": "jwt", "token": token}
    return target


def _leaks(text: str, secrets: Secrets) -> list[str]:
    return [name for name, value in secrets.values() if value and value in text]


@pytest.fixture
def minted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every JWT the exporter mints and every OAuth access token it is given."""
    tokens: list[str] = []
    real = JwtMethod._mint
    real_parse = oauth._parse_token

    def mint(self: JwtMethod) -> str:
        token = real(self)
        tokens.append(token)
        return token

    def parse(body: bytes, where: str) -> Any:
        token = real_parse(body, where)
        tokens.append(token.value)
        return token

    monkeypatch.setattr(JwtMethod, "_mint", mint)
    monkeypatch.setattr(oauth, "_parse_token", parse)
    return tokens


def _probe_text(result: ProbeResult, target: Any) -> str:
    parts = [result.error, "\n".join(result.log), repr(result)]
    parts += format_target([result], target.host, {result.check: target.port})
    return "\n".join(parts)


async def test_no_secret_in_logs_results_reports_endpoints_or_cli_output(
    sim: Simulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    minted: list[str],
) -> None:
    """Every auth method through every failure mode leaks no secret anywhere it reports."""
    caplog.set_level(logging.DEBUG)
    secrets = Secrets(sim, tmp_path)
    config_file = tmp_path / "config.yml"
    config_file.write_text(yaml.safe_dump({"targets": _targets(sim, secrets)}))
    config = load_config(config_file)
    daemon = Daemon(config_file)
    daemon.apply(config)
    texts: list[str] = []

    async def run_all() -> None:
        probers = {t.name: Prober.build(t) for t in config.targets}
        runs = [(probers[name].for_node(node), check) for name, node, check in daemon.jobs()]
        results = await asyncio.gather(*(run_probe(rt, c) for rt, c in runs))
        for (rt, _), result in zip(runs, results, strict=True):
            daemon.store.record(result)
            texts.append(_probe_text(result, rt.target))

    await run_all()  # no fault: successes, wrong password, expired token, revoked key
    for kind, params in FAULTS:
        sim.faults.clear()
        for service in SERVICES:
            sim.faults.set(service, kind, **params)
        await run_all()
    sim.faults.clear()

    from exporter.web import create_app, run_server

    runner, port = await run_server(create_app(daemon), "127.0.0.1:0")
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            paths = ["/metrics", "/", "/-/config"]
            paths += [f"/probe?target={t.name}&debug=true" for t in config.targets]
            for path in paths:
                async with http.get(base + path) as resp:
                    assert resp.status == 200, path
                    texts.append(await resp.text())
    finally:
        await runner.cleanup()

    cli = await _cli_probe(config_file, [t.name for t in config.targets])
    assert any(t.count(".") == 2 for t in minted), "no JWT was minted, so none was searched for"
    assert any(t.count(".") != 2 for t in minted), "no OAuth token was issued to search for"
    secrets.minted = minted
    logfmt, as_json = LogfmtFormatter(), JsonFormatter()
    for record in caplog.records:
        texts += [record.getMessage(), logfmt.format(record), as_json.format(record)]
    texts.append(caplog.text)
    everything = "\n".join(texts)
    assert "reason=credential_invalid" in everything  # the failure modes really ran
    assert "reason=unauthorized" in everything
    assert _leaks(everything, secrets) == []
    assert _leaks(cli, secrets) == []


async def _cli_probe(config_file: Path, targets: list[str]) -> str:
    """stdout and stderr of ``qlik-sense-exporter probe`` for each target, at debug level."""
    out = []
    for name in targets:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from exporter.cli import main; raise SystemExit(main())",
            "--log.level",
            "debug",
            "probe",
            name,
            "--config.file",
            str(config_file),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
        text = stdout.decode() + stderr.decode()
        assert proc.returncode in (0, 1), text
        assert f"target {name}" in text
        out.append(text)
    return "\n".join(out)
