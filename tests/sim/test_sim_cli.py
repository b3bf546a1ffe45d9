"""The simulator's command line: flags, files written, the banner, and a clean stop."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

from sim_helpers import XRFKEY, call, qrs_headers

from exporter.sim.__main__ import build_parser, run_forever, simulator_from_args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_port_flags_fix_the_ports(tmp_path):
    """--repository-port and friends set fixed ports; 0 (the default) means random."""
    args = build_parser().parse_args(["--dir", str(tmp_path), "--repository-port", "14242"])
    sim = simulator_from_args(args)
    assert sim._requested_ports.repository == 14242
    assert sim._requested_ports.engine == 0


async def test_run_forever_prints_services_and_a_working_curl(tmp_path):
    """run_forever writes sim.json and prints every service and a curl for /qrs/about."""
    port = free_port()
    args = build_parser().parse_args(["--dir", str(tmp_path), "--repository-port", str(port)])
    out, stop = io.StringIO(), asyncio.Event()
    task = asyncio.create_task(run_forever(simulator_from_args(args), out=out, stop=stop))
    for _ in range(100):
        if "curl" in out.getvalue():
            break
        await asyncio.sleep(0.05)
    try:
        text = out.getvalue()
        assert f"https://localhost:{port}/qrs/about" in text
        assert f"--cacert {tmp_path / 'root.pem'}" in text
        assert "X-Qlik-Xrfkey: abcdefghijklmnop" in text
        state = json.loads((tmp_path / "sim.json").read_text())
        assert state["ports"]["repository"] == port
        ctx = ssl.create_default_context(cafile=tmp_path / "root.pem")
        ctx.load_cert_chain(tmp_path / "client.pem", tmp_path / "client_key.pem")
        url = f"https://localhost:{port}/qrs/about?xrfkey={XRFKEY}"
        assert (await call("GET", url, ctx, qrs_headers()))[0] == 200
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


def test_module_runs_and_stops_on_sigterm(tmp_path):
    """`python -m exporter.sim` starts, writes its files, and exits 0 on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter.sim", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "sim.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "sim.json").exists()
        assert (tmp_path / "cloud_api_key").stat().st_mode & 0o077 == 0
        os.kill(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0
    assert "curl --cacert" in output


def test_busy_fixed_port_exits_1(tmp_path):
    """A fixed port that is already taken makes the CLI exit 1 with a one-line reason."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "exporter.sim",
                "--dir",
                str(tmp_path),
                "--admin-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert proc.returncode == 1
    assert "cannot start" in proc.stderr


async def test_nodes_flag_runs_a_site_and_writes_hosts(tmp_path):
    """--nodes 3: sim.json names every node with its address; the banner's curl resolves."""
    args = build_parser().parse_args(["--dir", str(tmp_path), "--nodes", "3"])
    out, stop = io.StringIO(), asyncio.Event()
    task = asyncio.create_task(run_forever(simulator_from_args(args), out=out, stop=stop))
    for _ in range(100):
        if "curl" in out.getvalue():
            break
        await asyncio.sleep(0.05)
    try:
        text = out.getvalue()
        state = json.loads((tmp_path / "sim.json").read_text())
        assert state["hosts"] == {
            "central.qliksim.test": "127.0.0.2",
            "rim1.qliksim.test": "127.0.0.3",
            "rim2.qliksim.test": "127.0.0.4",
        }
        port = state["ports"]["repository"]
        assert f"--resolve central.qliksim.test:{port}:127.0.0.2" in text
        assert "127.0.0.3 rim1.qliksim.test" in text
        oauth = json.loads((tmp_path / "cloud_oauth_client.json").read_text())
        assert (tmp_path / "cloud_oauth_client.json").stat().st_mode & 0o077 == 0
        assert set(oauth) == {"client_id", "client_secret"}
        ctx = ssl.create_default_context(cafile=tmp_path / "root.pem")
        ctx.load_cert_chain(tmp_path / "client.pem", tmp_path / "client_key.pem")
        url = f"https://127.0.0.3:{port}/qrs/about?xrfkey={XRFKEY}"
        assert (await call("GET", url, ctx, qrs_headers()))[0] == 200
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
