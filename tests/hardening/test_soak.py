"""A bounded soak: thousands of probes with random faults leak no memory, fds or tasks.

Probes of every auth method and check run in concurrent batches against the simulator, each
batch under a random fault per service (success, status codes, resets, malformed and
wrong-shaped bodies, oversized bodies, short delays, server certificate faults). RSS and open
file descriptors are read at the start, after warm-up and at the end; results go into the
real daemon's result store and ``/metrics`` of the real app is scraped throughout.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from exporter.config import load_config
from exporter.daemon import Exporter
from exporter.results import ProbeResult
from exporter.runner import run_probe
from exporter.sim import Simulator
from exporter.sim.faults import SERVICES
from tests.core.conftest import cert_target, cloud_target, header_target, jwt_target

MAX_PROBES = 20_000
MAX_SECONDS = 120.0  # CI budget; the achieved count and rate are printed
WARMUP_PROBES = 1_500
BATCH = 32
MAX_FD_GROWTH = 10
MAX_RSS_GROWTH = 30 * 1024 * 1024

# (kind, params, weight): about half the batches run with no fault on a service.
FAULTS: list[tuple[str | None, dict[str, Any], int]] = [
    (None, {}, 20),
    ("status", {"status": 401}, 2),
    ("status", {"status": 403}, 2),
    ("status", {"status": 404}, 2),
    ("status", {"status": 429, "retry_after": 1}, 2),
    ("status", {"status": 500}, 2),
    ("status", {"status": 503}, 2),
    ("reset", {}, 3),
    ("malformed_json", {}, 3),
    ("wrong_shape", {}, 3),
    ("oversized", {"size_mb": 4.5}, 1),
    ("delay", {"seconds": 0.01}, 2),
    ("cert_wrong_host", {}, 1),
    ("cert_expired", {}, 1),
    ("cert_untrusted", {}, 1),
    ("engine_fatal", {}, 1),
    ("wrong_user", {}, 1),
]


def rss_bytes() -> int:
    """Resident set size of this process (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def measure() -> tuple[int, int]:
    """(RSS, fds) after a full garbage collection."""
    gc.collect()
    return rss_bytes(), open_fds()


def _config(sim: Simulator) -> dict[str, Any]:
    key = sim.cloud_issue_api_key(sub=sim.cloud_user_id)
    over = {"timeout": "2s", "interval": "1h"}
    return {
        "targets": [
            cert_target(sim, "soak-cert", **over),
            jwt_target(sim, "soak-jwt", **over),
            header_target(sim, "soak-header", **over),
            cloud_target(sim, key, "soak-cloud", **over),
        ]
    }


def _set_random_faults(sim: Simulator, rng: random.Random) -> None:
    sim.faults.clear()
    kinds = [f for f in FAULTS]
    weights = [f[2] for f in FAULTS]
    for service in SERVICES:
        kind, params, _ = rng.choices(kinds, weights)[0]
        if kind is not None:
            sim.faults.set(service, kind, **params)


@pytest.mark.slow
async def test_soak_keeps_memory_fds_and_tasks_flat(sim: Simulator, tmp_path: Path) -> None:
    """Up to 20,000 faulty probes in at most two minutes leave RSS, fds and tasks flat."""
    config_file = tmp_path / "soak.yml"
    config_file.write_text(yaml.safe_dump(_config(sim)))
    daemon = Exporter(config_file)
    daemon.apply(load_config(config_file))  # runtimes and store, no scheduler: the soak drives
    pairs = [(rt, c) for rt in daemon._runtimes.values() for c in rt.target.enabled_checks]
    from exporter.web import create_app, run_server

    runner, port = await run_server(create_app(daemon), "127.0.0.1:0")
    http = aiohttp.ClientSession()
    rng = random.Random(20_000)
    scrapes = failures = probes = 0
    unexpected: list[str] = []

    async def scrape() -> None:
        nonlocal scrapes
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            body = await resp.text()
            assert resp.status == 200
            assert "qlik_probe_success" in body
        scrapes += 1

    async def batch() -> None:
        nonlocal probes, failures
        _set_random_faults(sim, rng)
        chosen = [rng.choice(pairs) for _ in range(BATCH)]
        results: list[ProbeResult] = await asyncio.wait_for(
            asyncio.gather(*(run_probe(rt, c) for rt, c in chosen), scrape()), timeout=30
        )
        for result in results[:BATCH]:
            daemon.store.record(result)
            assert result.success is (result.reason is None)
            failures += not result.success
            if "unexpected error" in result.error:
                unexpected.append(result.error)
        for rt, _ in chosen:
            rt.backoff_until = 0.0
        probes += BATCH

    # Thousands of expected "probe failed" warnings, and the simulator's error records whose
    # tracebacks hold whole request frames, would otherwise pile up in pytest's log capture
    # and be measured as the exporter's memory (hundreds of MiB). Result errors are checked.
    logging.disable(logging.CRITICAL)
    rss0, fds0 = measure()
    tasks0 = len(asyncio.all_tasks())
    started = time.perf_counter()
    try:
        while probes < WARMUP_PROBES:
            await batch()
        await asyncio.sleep(0.2)  # let aborted connections finish closing on both sides
        rss1, fds1 = measure()
        tasks1 = len(asyncio.all_tasks())
        while probes < MAX_PROBES and time.perf_counter() - started < MAX_SECONDS:
            await batch()
        sim.faults.clear()
        await asyncio.sleep(0.2)
        rss2, fds2 = measure()
        tasks2 = len(asyncio.all_tasks())
    finally:
        logging.disable(logging.NOTSET)
        await http.close()
        await runner.cleanup()
    elapsed = time.perf_counter() - started
    mib = 1024 * 1024
    print(
        f"\nsoak: {probes} probes ({failures} failed, as injected) in {elapsed:.1f} s "
        f"= {probes / elapsed:.0f} probes/s; {scrapes} /metrics scrapes\n"
        f"  RSS  start {rss0 / mib:.1f} MiB, after warm-up {rss1 / mib:.1f} MiB, "
        f"end {rss2 / mib:.1f} MiB\n"
        f"  fds  start {fds0}, after warm-up {fds1}, end {fds2}\n"
        f"  tasks start {tasks0}, after warm-up {tasks1}, end {tasks2}"
    )
    assert unexpected == []
    assert 0 < failures < probes
    assert fds2 - fds1 <= MAX_FD_GROWTH
    assert rss2 - rss1 <= MAX_RSS_GROWTH
    assert tasks2 <= tasks1
