"""`--shard I/N` across real processes: together they probe every target exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.sim import Simulator
from tests.core.conftest import cert_target, closed_port


async def _targets_probed(port: int) -> set[str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    return {
        s.labels["target"]
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "qlik_probe_runs_total" and s.value >= 1
    }


async def test_two_shards_probe_every_target_exactly_once(sim: Simulator, tmp_path: Path) -> None:
    """Processes with --shard 0/2 and 1/2 on one config split the targets with no overlap."""
    names = [f"site-{i:02d}" for i in range(12)]
    targets = [
        cert_target(sim, name, checks=["repository"], interval="2s", timeout="2s") for name in names
    ]
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({"targets": targets}))
    ports = [closed_port(), closed_port()]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "exporter.cli",
            "--config.file",
            str(config),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--shard",
            f"{i}/2",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )
        for i, port in enumerate(ports)
    ]
    try:
        seen: list[set[str]] = [set(), set()]
        for _ in range(40):  # at most ~20 s, usually a few
            await asyncio.sleep(0.5)
            try:
                seen = [await _targets_probed(p) for p in ports]
            except aiohttp.ClientError:
                continue
            if seen[0] | seen[1] == set(names):
                break
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 10)
    assert seen[0] | seen[1] == set(names)
    assert seen[0] & seen[1] == set()
    assert seen[0]
    assert seen[1]
