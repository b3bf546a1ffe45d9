"""Builders for targets of every auth method against the simulator, and a probe helper."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from exporter.config import Target, parse_config
from exporter.results import ProbeResult
from exporter.runner import Prober, run_probe
from exporter.sim import Simulator
from exporter.transport import Resolver


def cert_target(sim: Simulator, name: str = "cert", **over: Any) -> dict[str, Any]:
    """A certificate-auth QSEoW target straight to the simulator's services."""
    d = sim.certs_dir
    target: dict[str, Any] = {
        "name": name,
        "type": "qseow",
        "host": sim.host,
        "ca_file": str(d / "root.pem"),
        "checks": ["repository", "proxy", "engine", "engine_session"],
        "ports": {
            "repository": sim.ports.repository,
            "proxy": sim.ports.proxy,
            "engine": sim.ports.engine,
        },
        "timeout": "5s",
        "auth": {
            "method": "certificate",
            "cert_file": str(d / "client.pem"),
            "key_file": str(d / "client_key.pem"),
            "user_directory": "INTERNAL",
            "user_id": "sa_api",
        },
    }
    return _merge(target, over)


def jwt_target(sim: Simulator, name: str = "jwt", **over: Any) -> dict[str, Any]:
    """A JWT target minting tokens with the key pair the simulator's JWT proxy trusts."""
    d = sim.certs_dir
    target: dict[str, Any] = {
        "name": name,
        "type": "qseow",
        "host": sim.host,
        "port": sim.ports.frontend,
        "virtual_proxy": sim.jwt_vp.prefix,
        "ca_file": str(d / "root.pem"),
        "checks": ["repository", "proxy", "engine"],
        "timeout": "5s",
        "auth": {
            "method": "jwt",
            "signing_key_file": str(d / "jwt_signing_key.pem"),
            "signing_cert_file": str(d / "jwt_signing_cert.pem"),
            "audience": sim.jwt_vp.audience,
            "user_directory": "LAB",
            "user_id": "monitor",
        },
    }
    return _merge(target, over)


def header_target(
    sim: Simulator, name: str = "header", *, dynamic: bool = False, **over: Any
) -> dict[str, Any]:
    """A header-auth target through the static (or dynamic-directory) header proxy."""
    vp = sim.header_dynamic_vp if dynamic else sim.header_vp
    auth: dict[str, Any] = {"method": "header", "header_name": vp.header_name, "user_id": "monitor"}
    if dynamic:
        assert vp.pattern is not None
        auth |= {"header_pattern": vp.pattern, "user_directory": "LAB"}
    target: dict[str, Any] = {
        "name": name,
        "type": "qseow",
        "host": sim.host,
        "port": sim.ports.frontend,
        "virtual_proxy": vp.prefix,
        "ca_file": str(sim.certs_dir / "root.pem"),
        "checks": ["repository", "proxy", "engine"],
        "timeout": "5s",
        "auth": auth,
    }
    return _merge(target, over)


def cloud_target(sim: Simulator, api_key: str, name: str = "cloud", **over: Any) -> dict[str, Any]:
    """A Qlik Cloud target with an API key issued by the simulator's tenant."""
    target: dict[str, Any] = {
        "name": name,
        "type": "cloud",
        "host": sim.host,
        "port": sim.ports.cloud,
        "ca_file": str(sim.certs_dir / "root.pem"),
        "timeout": "5s",
        "auth": {"method": "apikey", "api_key": api_key},
    }
    return _merge(target, over)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if key == "auth":
            base["auth"] = {**base["auth"], **value}
        elif value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def build(target: dict[str, Any], base_dir: Path) -> Target:
    """Validate one target dict as the config loader would."""
    return parse_config({"targets": [target]}, base_dir=base_dir).targets[0]


async def probe(
    target: dict[str, Any],
    check: str,
    base_dir: Path,
    *,
    resolver: Resolver | None = None,
    rt: Prober | None = None,
) -> ProbeResult:
    """Run one check of one target dict once."""
    rt = rt or Prober.build(build(target, base_dir))
    return await run_probe(rt, check, resolver=resolver)


class FixedResolver:
    """Resolves every name to loopback, or fails like an unknown name; never touches DNS."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        """127.0.0.1, or a ``gaierror`` as for a name that does not exist."""
        self.calls.append(host)
        if self.fail:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return ["127.0.0.1"]


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
