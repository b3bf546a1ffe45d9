"""``python -m exporter.sim`` (also ``qlik-sense-exporter sim``): run the simulator until Ctrl-C.

It writes the certificates (QMC-like export), a Cloud API key, a JWT for the JWT virtual proxy,
an OAuth client (``cloud_oauth_client.json``) and ``sim.json`` (ports, hosts and file paths, for
scripts) into ``--dir``, then prints where every service listens and a ready-to-paste curl
command. ``--nodes N`` runs a site of N nodes on 127.0.0.2… (names under ``qliksim.test``; the
banner prints ``/etc/hosts`` lines for tools that cannot take a resolver).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shlex
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from exporter.sim.certs import write_private
from exporter.sim.settings import Ports
from exporter.sim.simulator import Simulator

SERVICE_PORT_FLAGS = ("repository", "proxy", "engine", "frontend", "cloud", "admin")
DEMO_XRFKEY = "abcdefghijklmnop"


def build_parser() -> argparse.ArgumentParser:
    """The simulator's command-line flags."""
    p = argparse.ArgumentParser(
        prog="python -m exporter.sim",
        description="Run a Qlik Sense / Qlik Cloud simulator with real TLS.",
    )
    p.add_argument("--dir", type=Path, help="folder for certificates and files (default: temp)")
    p.add_argument("--host", default="localhost", help="host name in the server certificates")
    p.add_argument(
        "--nodes",
        type=int,
        help="run a multi-node site of N nodes (central + rims on 127.0.0.2, 127.0.0.3, …)",
    )
    p.add_argument(
        "--bind",
        default="127.0.0.1",
        help="address to listen on (the admin endpoint is unauthenticated: keep it local)",
    )
    for name in SERVICE_PORT_FLAGS:
        p.add_argument(f"--{name}-port", type=int, default=0, help=f"{name} port (0 = random)")
    p.add_argument("--build-version", default="31.43.0.0")
    p.add_argument("--build-date", default="4/12/2024 18:12:20 PM")
    p.add_argument("--engine-version", default="12.1823.6")
    p.add_argument("--engine-healthcheck-style", choices=("modern", "legacy"), default="modern")
    p.add_argument("--client-valid-days", type=float, help="client certificate lifetime (days)")
    p.add_argument("--server-valid-days", type=float, help="server certificate lifetime (days)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def simulator_from_args(args: argparse.Namespace) -> Simulator:
    """A (not yet started) simulator configured from parsed flags."""
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="qlik-sim-"))
    ports = Ports(**{n: getattr(args, f"{n}_port") for n in SERVICE_PORT_FLAGS})
    return Simulator(
        workdir,
        args.host,
        nodes=args.nodes,
        build_version=args.build_version,
        build_date=args.build_date,
        engine_version=args.engine_version,
        engine_healthcheck_style=args.engine_healthcheck_style,
        client_valid_days=args.client_valid_days,
        server_valid_days=args.server_valid_days,
        ports=ports,
        bind=args.bind,
    )


def write_credentials(sim: Simulator) -> dict[str, str]:
    """Write a Cloud API key, a virtual-proxy JWT and ``sim.json``; return the file map."""
    d = sim.certs_dir
    files = {name: str(d / name) for name in (
        "root.pem", "client.pem", "client_key.pem", "server.pem", "server_key.pem",
        "jwt_signing_key.pem", "jwt_signing_cert.pem", "client.pfx",
    )}  # fmt: skip
    write_private(d / "cloud_api_key", sim.cloud_issue_api_key(expires_in=86400 * 365).encode())
    write_private(d / "monitor.jwt", sim.mint_jwt(lifetime=86400 * 365).encode())
    client_id, secret = sim.cloud.create_oauth_client("monitoring")
    oauth = {"client_id": client_id, "client_secret": secret}
    write_private(d / "cloud_oauth_client.json", json.dumps(oauth).encode())
    files |= {"cloud_api_key": str(d / "cloud_api_key"), "monitor.jwt": str(d / "monitor.jwt")}
    files["cloud_oauth_client.json"] = str(d / "cloud_oauth_client.json")
    state = {
        "host": sim.host,
        "cloud_host": sim.cloud_host,
        "hosts": sim.hosts,
        "nodes": [
            {"name": n.name, "hostName": n.host_name, "address": n.address, "central": n.is_central}
            for n in sim.nodes
        ],
        "ports": asdict(sim.ports),
        "admin_url": f"http://127.0.0.1:{sim.ports.admin}",
        "key_password": sim.key_password,
        "cloud_tenant_id": sim.cloud_tenant_id,
        "cloud_user_id": sim.cloud_user_id,
        "files": files,
    }
    (d / "sim.json").write_text(json.dumps(state, indent=2) + "\n")
    return files


def describe(sim: Simulator) -> str:
    """Human-readable lines: where each service listens, and a curl for /qrs/about."""
    d, p = sim.certs_dir, sim.ports
    q = shlex.quote
    curl = " ".join(
        [
            "curl",
            f"--cacert {q(str(d / 'root.pem'))}",
            f"--cert {q(str(d / 'client.pem'))}",
            f"--key {q(str(d / 'client_key.pem'))}",
            *(
                [f"--resolve {sim.host}:{p.repository}:{sim.central.address}"]
                if sim.site_mode
                else []
            ),
            f"-H 'X-Qlik-Xrfkey: {DEMO_XRFKEY}'",
            "-H 'X-Qlik-User: UserDirectory=INTERNAL; UserId=sa_api'",
            q(f"https://{sim.host}:{p.repository}/qrs/about?xrfkey={DEMO_XRFKEY}"),
        ]
    )
    return "\n".join(
        [
            f"Qlik Sense simulator for host {sim.host!r}; files in {d}",
            f"  repository (QRS, mTLS)   https://{sim.host}:{p.repository}/qrs/about",
            f"  proxy API (QPS, mTLS)    https://{sim.host}:{p.proxy}/qps/session",
            f"  engine (mTLS)            https://{sim.host}:{p.engine}/engine/healthcheck"
            f"  wss://{sim.host}:{p.engine}/app/engineData",
            f"  virtual proxies          https://{sim.host}:{p.frontend}/{{jwt,hdr,hdrdyn}}/…",
            f"  Qlik Cloud tenant        https://{sim.cloud_host}:{p.cloud}/api/v1/users/me",
            f"  admin (plain HTTP)       http://127.0.0.1:{p.admin}/state",
            f"  Cloud API key in {d / 'cloud_api_key'}; JWT (LAB\\monitor) in {d / 'monitor.jwt'}",
            f"  Cloud OAuth client (id and secret) in {d / 'cloud_oauth_client.json'}",
            *_site_lines(sim),
            "",
            "Try:",
            f"  {curl}",
        ]
    )


def _site_lines(sim: Simulator) -> list[str]:
    """The nodes of a site, and /etc/hosts lines for tools that resolve names themselves."""
    if not sim.site_mode:
        return []
    lines = ["", "Site nodes (same ports on every node):"]
    for n in sim.nodes:
        roles = [s for s in ("engine", "proxy", "scheduler", "printing") if n.runs(s)]
        central = "central" if n.is_central else "rim"
        lines.append(f"  {n.host_name:<28} {n.address:<12} {central:<8} {', '.join(roles)}")
    lines += ["For /etc/hosts:", *(f"  {a} {h}" for h, a in sim.hosts.items())]
    return lines


async def run_forever(
    sim: Simulator, *, out: TextIO = sys.stdout, stop: asyncio.Event | None = None
) -> None:
    """Start ``sim``, write its credentials, print where it listens, and run until ``stop``.

    Without ``stop``, SIGINT and SIGTERM end it.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start()
        write_credentials(sim)
        print(describe(sim), file=out, flush=True)
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(run_forever(simulator_from_args(args)))
    except OSError as exc:  # e.g. a fixed port already in use
        print(f"simulator: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
