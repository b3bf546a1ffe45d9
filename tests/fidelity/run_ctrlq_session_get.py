"""Run Ctrl-Q's ``qseow session-get`` against a three-node simulator site and check its output.

Not a pytest module: Ctrl-Q cannot be installed from the npm registry (see docs/fidelity.md), so
this needs a checkout of its source. Usage::

    CTRLQ_SRC=/path/to/ctrl-q/src python tests/fidelity/run_ctrlq_session_get.py

with ``commander table axios upath uuid winston winston-daily-rotate-file yesno`` installed in
``$CTRLQ_SRC/../node_modules`` at Ctrl-Q's locked versions. Exits 0 when Ctrl-Q lists exactly the
sessions the site holds, each on the proxy that holds it, and 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from exporter.sim import Simulator

HERE = Path(__file__).resolve().parent


def _json_tail(out: str) -> list[dict[str, str]]:
    start = out.index("\n[")
    parsed: list[dict[str, str]] = json.loads(out[start:])
    return parsed


async def main() -> int:
    """Start the site, seed sessions on two proxies, run Ctrl-Q, compare."""
    async with Simulator(Path(tempfile.mkdtemp(prefix="ctrlq-site-")), nodes=3) as sim:
        sim.proxy_sessions.create("", "LAB", "anna", "Anna A")
        sim.proxy_sessions.create("jwt", "LAB", "bob", node="rim1")
        sim.proxy_sessions.create("hdr", "LAB", "carol", node="rim1")
        d = sim.certs_dir
        drop = {"http_proxy", "https_proxy", "all_proxy", "node_options"}
        env = {k: v for k, v in os.environ.items() if k.lower() not in drop}
        env.update(SIM_HOSTS=json.dumps(sim.hosts), NODE_NO_WARNINGS="1")
        argv = [
            "node", str(HERE / "ctrlq_session_get.mjs"), "qseow", "session-get",
            "--host", sim.host, "--qrs-port", str(sim.ports.repository),
            "--qps-port", str(sim.ports.proxy), "--secure", "true",
            "--auth-user-dir", "INTERNAL", "--auth-user-id", "sa_api",
            "--auth-cert-file", str(d / "client.pem"),
            "--auth-cert-key-file", str(d / "client_key.pem"),
            "--auth-root-cert-file", str(d / "root.pem"),
            "--output-format", "json",
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    print(text, err.decode(), sep="\n")
    got = sorted((s["vpPrefix"], s["proxyName"], s["userId"]) for s in _json_tail(text))
    want = [("", "central", "anna"), ("hdr", "rim1", "carol"), ("jwt", "rim1", "bob")]
    print("OK" if got == want else f"MISMATCH: got {got}, want {want}")
    return 0 if proc.returncode == 0 and got == want else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
