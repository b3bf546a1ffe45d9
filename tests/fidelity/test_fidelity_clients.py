"""Published Qlik clients (enigma.js, @qlik/api, qlik-sdk) against the simulator on 127.0.0.1.

The npm packages are pinned in ``package.json``/``package-lock.json`` next to this file and
installed into ``node_modules`` here on first use (``npm ci``, from the npm cache when it can).
qlik-sdk with OAuth (0.17.0, whose pins clash with the project's PyJWT) is installed with
``pip install --target .pydeps/…`` here on first use, apart from the project's environment.
Every client runs in a subprocess with a bounded time and an environment without proxies, so
nothing leaves this machine. See docs/fidelity.md.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exporter.sim import Simulator

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
QLIK_SDK_OAUTH = "qlik-sdk==0.17.0"
PYDEPS = HERE / ".pydeps" / QLIK_SDK_OAUTH.replace("==", "-")
NPM_TIMEOUT = 300.0
CLIENT_TIMEOUT = 30.0
LOCAL = "localhost,127.0.0.1,::1"


def _pinned() -> dict[str, str]:
    deps: dict[str, str] = json.loads((HERE / "package.json").read_text())["dependencies"]
    return deps


def _installed() -> bool:
    """Whether every pinned package is in ``node_modules`` at its pinned version."""
    for name, version in _pinned().items():
        manifest = NODE_MODULES / name / "package.json"
        if not manifest.is_file() or json.loads(manifest.read_text())["version"] != version:
            return False
    return True


def _offline_env(**extra: str) -> dict[str, str]:
    """The caller's environment minus proxies and Node/Python injections, local hosts unproxied."""
    drop = {"http_proxy", "https_proxy", "all_proxy", "node_options", "pythonpath"}
    env = {k: v for k, v in os.environ.items() if k.lower() not in drop}
    env.update(NO_PROXY=LOCAL, no_proxy=LOCAL, NODE_NO_WARNINGS="1")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """``tests/fidelity/node_modules`` at the pinned versions, ``npm ci`` installing if needed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "tests/fidelity needs Node.js >= 20 and npm on PATH (the clients are npm packages)"
        )
    with (HERE / ".npm-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (pytest-xdist, parallel runs)
        if not _installed():
            cmd = [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts"]
            # Only the configured registry is contacted (through any configured proxy), for the
            # pinned tarballs; no audit, funding or update-notifier calls.
            env = {
                **os.environ,
                "npm_config_update_notifier": "false",
                "npm_config_loglevel": "error",
            }
            try:
                done = subprocess.run(
                    cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=NPM_TIMEOUT
                )
            except subprocess.TimeoutExpired:
                pytest.fail(f"`npm ci` in {HERE} did not finish in {NPM_TIMEOUT:.0f} s")
            if done.returncode != 0 or not _installed():
                pytest.fail(
                    f"`npm ci` in {HERE} failed (exit {done.returncode}); the fidelity tests need "
                    f"the npm registry (or a warm npm cache) once:\n{done.stderr[-2000:]}"
                )
    return NODE_MODULES


@pytest.fixture(scope="module")
def qlik_sdk_oauth() -> Path:
    """A folder holding qlik-sdk 0.17.0 and its pinned dependencies (pip installs it once)."""
    marker = PYDEPS / "qlik_sdk-0.17.0.dist-info"
    with (HERE / ".pip-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_dir():
            cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            cmd += ["--no-warn-script-location", "--target", str(PYDEPS), QLIK_SDK_OAUTH]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"installing {QLIK_SDK_OAUTH} did not finish in {NPM_TIMEOUT:.0f} s")
            if not marker.is_dir():
                pytest.fail(
                    f"installing {QLIK_SDK_OAUTH} into {PYDEPS} failed (exit {done.returncode});"
                    " the fidelity tests need PyPI (or a warm pip cache) once:\n"
                    f"{done.stderr[-2000:]}"
                )
    return PYDEPS


async def _run(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run a client from this directory; ``(exit code, stdout, stderr)``, killed after 30 s."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=HERE,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLIENT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"{' '.join(argv)} did not finish in {CLIENT_TIMEOUT:.0f} s")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _run_json(*argv: str, env: dict[str, str]) -> Any:
    """Run a client that must succeed; its last stdout line as JSON."""
    code, out, err = await _run(*argv, env=env)
    if code != 0:
        pytest.fail(f"{' '.join(argv)} exited {code}:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def _certifi_naming(root_pem: Path, directory: Path) -> Path:
    """A ``certifi`` stand-in whose ``where()`` is ``root_pem``: the only trust qlik-sdk accepts."""
    package = directory / "certifi"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"def where():\n    return {str(root_pem)!r}\n\n\n"
        f"def contents():\n    with open(where()) as f:\n        return f.read()\n"
    )
    return directory


async def test_enigma_js_reads_engine_version(sim: Simulator, node_modules: Path) -> None:
    """enigma.js opens a certificate-authenticated engine session and reads the sim's version.

    enigma.js asks for the delta protocol; the version arrives as a JSON-Patch it applies.
    """
    port = str(sim.ports.engine)
    got = await _run_json(
        "node", "enigma_engine_version.js", port, str(sim.certs_dir), env=_offline_env()
    )
    assert got["engineVersion"] == {"qComponentVersion": sim.engine.version}
    assert sim.rpc_calls["EngineVersion", True] == 1
    # enigma.js patches the received frame in place, so only the flag is left to see here.
    reply = next(m for m in got["traffic"] if m.get("id") is not None and "result" in m)
    assert reply["delta"] is True


async def test_qlik_api_reads_users_me(sim: Simulator, node_modules: Path) -> None:
    """@qlik/api's ``users.getMyUser()`` with a simulator API key returns the tenant's user."""
    env = _offline_env(
        NODE_EXTRA_CA_CERTS=str(sim.certs_dir / "root.pem"),
        QLIK_API_KEY=sim.cloud_issue_api_key(sub=sim.cloud_user_id),
    )
    got = await _run_json("node", "qlik_api_users_me.mjs", f"localhost:{sim.ports.cloud}", env=env)
    assert got["status"] == 200
    assert (got["data"]["id"], got["data"]["tenantId"]) == (sim.cloud_user_id, sim.cloud_tenant_id)


async def test_qlik_sdk_reads_users_me(sim: Simulator, tmp_path: Path) -> None:
    """qlik-sdk's ``users.get_me()`` with a simulator API key returns the tenant's user."""
    shim = _certifi_naming(sim.certs_dir / "root.pem", tmp_path / "certifi-shim")
    env = _offline_env(
        PYTHONPATH=str(shim), QLIK_API_KEY=sim.cloud_issue_api_key(sub=sim.cloud_user_id)
    )
    host = f"https://localhost:{sim.ports.cloud}"
    got = await _run_json(sys.executable, "qlik_sdk_users_me.py", host, env=env)
    assert (got["id"], got["tenantId"]) == (sim.cloud_user_id, sim.cloud_tenant_id)


async def test_qlik_sdk_ignores_requests_ca_bundle(sim: Simulator) -> None:
    """qlik-sdk does not honour ``REQUESTS_CA_BUNDLE``, the limit docs/fidelity.md describes."""
    env = _offline_env(
        REQUESTS_CA_BUNDLE=str(sim.certs_dir / "root.pem"),
        QLIK_API_KEY=sim.cloud_issue_api_key(sub=sim.cloud_user_id),
    )
    host = f"https://localhost:{sim.ports.cloud}"
    code, _, err = await _run(sys.executable, "qlik_sdk_users_me.py", host, env=env)
    assert code != 0
    assert "CERTIFICATE_VERIFY_FAILED" in err


async def test_qlik_api_oauth2_reads_users_me_and_opens_a_session_app(
    sim: Simulator, node_modules: Path
) -> None:
    """@qlik/api with authType oauth2: client credentials, users/me, a Cloud session app.

    It fetches product-info.json unauthenticated, posts the grant to /oauth/token once, sends
    the token on REST and on the websocket upgrade, opens SessionApp_<n> with OpenDoc and reads
    EngineVersion (delta) and GetAppLayout.
    """
    client_id, secret = sim.cloud.create_oauth_client("monitoring")
    env = _offline_env(
        NODE_EXTRA_CA_CERTS=str(sim.certs_dir / "root.pem"),
        QLIK_CLIENT_ID=client_id,
        QLIK_CLIENT_SECRET=secret,
    )
    got = await _run_json("node", "qlik_api_oauth.mjs", f"localhost:{sim.ports.cloud}", env=env)
    assert got["status"] == 200
    bot = sim.cloud.oauth_client(client_id).user_id
    assert (got["data"]["id"], got["data"]["tenantId"]) == (bot, sim.cloud_tenant_id)
    assert sim.cloud.oauth.issued == 1
    assert got["engineVersion"] == {"qComponentVersion": sim.engine.version}
    assert got["layout"]["qIsSessionApp"] is True
    assert got["layout"]["qTitle"].startswith("SessionApp_")
    assert sim.rpc_calls["EngineVersion", True] == 1
    assert sim.rpc_calls["OpenDoc", True] == 1  # @qlik/api asks for deltas on OpenDoc too


async def test_qlik_sdk_oauth_client_credentials(
    sim: Simulator, tmp_path: Path, qlik_sdk_oauth: Path
) -> None:
    """qlik-sdk 0.17 (AuthType.OAuth2) gets a token with Basic client auth and reads users/me."""
    client_id, secret = sim.cloud.create_oauth_client("monitoring")
    shim = _certifi_naming(sim.certs_dir / "root.pem", tmp_path / "certifi-shim")
    env = _offline_env(
        PYTHONPATH=f"{shim}:{qlik_sdk_oauth}", QLIK_CLIENT_ID=client_id, QLIK_CLIENT_SECRET=secret
    )
    host = f"https://localhost:{sim.ports.cloud}"
    got = await _run_json(sys.executable, "qlik_sdk_oauth_users_me.py", host, env=env)
    assert got["token"] == {"token_type": "bearer", "expires_in": 21600, "scope": "user_default"}
    bot = sim.cloud.oauth_client(client_id).user_id
    assert (got["user"]["id"], got["user"]["tenantId"]) == (bot, sim.cloud_tenant_id)
    assert sim.cloud.oauth.issued == 1
