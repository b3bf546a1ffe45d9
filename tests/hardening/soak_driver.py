"""The exporter side of the soak, run in its own process by ``test_soak.py``.

``python -m tests.hardening.soak_driver CONFIG ADMIN_URL`` loads CONFIG into a real daemon
(runtimes and result store, no scheduler: this driver fires the probes), serves the real app,
and runs concurrent batches of probes of every configured target and check. Before each batch
it sets a random fault per simulator service through the simulator's admin endpoint, and during
each batch it scrapes ``/metrics``. It prints one JSON object with the figures to stdout.

The simulator runs in another process (the test's), so the RSS and file descriptors measured
here are the exporter's own, not the simulator's, and not what earlier tests left in a shared
interpreter's heap.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from exporter.config import load_config
from exporter.daemon import Daemon
from exporter.results import ProbeResult
from exporter.runner import Prober, run_probe
from exporter.sim.faults import SERVICES
from exporter.web import create_app, run_server

BATCH = 32

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
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def sample() -> dict[str, int]:
    """RSS, fds and asyncio tasks after a full garbage collection."""
    gc.collect()
    return {"rss": rss_bytes(), "fds": open_fds(), "tasks": len(asyncio.all_tasks())}


async def soak(
    config: Path, admin: str, probes_max: int, warmup: int, seconds: float
) -> dict[str, Any]:
    """Run the soak; the figures as a JSON-able dict."""
    daemon = Daemon(config)
    loaded = load_config(config)
    daemon.apply(loaded)
    probers = {t.name: Prober.build(t) for t in loaded.targets}
    pairs = [(probers[name].for_node(node), check) for name, node, check in daemon.jobs()]
    runner, port = await run_server(create_app(daemon), "127.0.0.1:0")
    http = aiohttp.ClientSession()
    rng = random.Random(20_000)
    kinds = list(FAULTS)
    weights = [f[2] for f in FAULTS]
    figures: dict[str, Any] = {"probes": 0, "failures": 0, "scrapes": 0, "unexpected": []}
    reasons: dict[str, int] = {}

    async def set_random_faults() -> None:
        async with http.delete(f"{admin}/faults") as resp:
            resp.raise_for_status()
        for service in SERVICES:
            kind, params, _ = rng.choices(kinds, weights)[0]
            if kind is not None:
                body = {"service": service, "kind": kind, **params}
                async with http.post(f"{admin}/faults", json=body) as resp:
                    resp.raise_for_status()

    async def scrape() -> None:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            body = await resp.text()
            if resp.status != 200 or "qlik_probe_success" not in body:
                figures["unexpected"].append(f"/metrics answered {resp.status}")
        figures["scrapes"] += 1

    async def batch() -> None:
        await set_random_faults()
        chosen = [rng.choice(pairs) for _ in range(BATCH)]
        results: list[ProbeResult] = await asyncio.wait_for(
            asyncio.gather(*(run_probe(rt, c) for rt, c in chosen), scrape()), timeout=30
        )
        for result in results[:BATCH]:
            daemon.store.record(result)
            if result.success is not (result.reason is None):
                figures["unexpected"].append(f"success={result.success} reason={result.reason}")
            if not result.success:
                figures["failures"] += 1
                reasons[str(result.reason)] = reasons.get(str(result.reason), 0) + 1
            if "unexpected error" in result.error:
                figures["unexpected"].append(result.error)
        figures["probes"] += BATCH

    figures["start"] = sample()
    started = time.perf_counter()
    try:
        while figures["probes"] < warmup:
            await batch()
        await asyncio.sleep(0.2)  # let aborted connections finish closing on both sides
        figures["warm"] = sample()
        while figures["probes"] < probes_max and time.perf_counter() - started < seconds:
            await batch()
        async with http.delete(f"{admin}/faults") as resp:
            resp.raise_for_status()
        await asyncio.sleep(0.2)
        figures["end"] = sample()
    finally:
        await http.close()
        await runner.cleanup()
    figures["seconds"] = time.perf_counter() - started
    figures["reasons"] = reasons
    figures["unexpected"] = figures["unexpected"][:20]
    return figures


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the soak, print the figures as JSON."""
    p = argparse.ArgumentParser(prog="python -m tests.hardening.soak_driver")
    p.add_argument("config", type=Path)
    p.add_argument("admin", help="the simulator's admin URL, http://127.0.0.1:PORT")
    p.add_argument("--probes", type=int, default=20_000)
    p.add_argument("--warmup", type=int, default=1_500)
    p.add_argument("--seconds", type=float, default=120.0)
    args = p.parse_args(argv)
    # Thousands of expected "probe failed" warnings are not what is measured; results are.
    logging.disable(logging.CRITICAL)
    figures = asyncio.run(soak(args.config, args.admin, args.probes, args.warmup, args.seconds))
    json.dump(figures, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
