"""A hostile target costs that target only: an endless 1-byte-chunk stream and an engine that
floods notifications, beside a healthy target on a short interval, leave the healthy target's
run count and latency as they are."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from exporter.config import load_config
from exporter.daemon import Daemon
from exporter.reasons import Reason
from exporter.sim import Simulator
from tests.core.conftest import cert_target
from tests.unit.transport_peers import HOST, CraftedServer, frame, make_pki, switching

RUN_FOR = 6.0
Writer = asyncio.StreamWriter


def _endless_chunks(head: bytes) -> Callable[[Writer], Awaitable[None]]:
    async def write(writer: Writer) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"1\r\nx\r\n" * 512)
            await writer.drain()

    return write


def _notification_flood(head: bytes) -> Callable[[Writer], Awaitable[None]]:
    note = frame(0x1, b'{"jsonrpc":"2.0","method":"OnNotification","params":{"n":1}}')

    async def write(writer: Writer) -> None:
        writer.write(switching(head) + frame(0x1, b'{"method":"OnConnected","params":{}}'))
        while True:
            writer.write(note * 256)
            await writer.drain()

    return write


async def test_hostile_targets_do_not_slow_a_healthy_one(sim: Simulator, tmp_path: Path) -> None:
    """Every healthy run on schedule and fast while two hostile servers stream garbage."""
    pki = make_pki()
    # The hostile servers' CA, and the site's (which issued the client certificate).
    ca_file = tmp_path / "hostile-ca.pem"
    ca_file.write_bytes(pki.ca.cert_pem.bytes() + (sim.certs_dir / "root.pem").read_bytes())
    chunks = await CraftedServer(pki.server_context(), _endless_chunks).start()
    flood = await CraftedServer(pki.server_context(), _notification_flood).start()
    hostile = [
        cert_target(
            sim,
            name,
            host=HOST,
            ca_file=str(ca_file),
            checks=[check],
            interval="1s",
            timeout="1s",
            ports={"repository": port, "engine": port},
        )
        for name, check, port in (
            ("chunks", "repository", chunks.port),
            ("flood", "engine_session", flood.port),
        )
    ]
    healthy = cert_target(sim, "healthy", checks=["repository"], interval="1s", timeout="1s")
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({"targets": [healthy, *hostile]}))
    daemon = Daemon(config)
    daemon.start(load_config(config))
    try:
        await asyncio.sleep(RUN_FOR)
    finally:
        await daemon.stop()
        await chunks.stop()
        await flood.stop()
    series = {s.target: s for s in daemon.store.snapshot()}
    ok = series["healthy"]
    assert ok.runs >= RUN_FOR - 1.5
    assert ok.failures == {}, ok.failures
    assert ok.latency_buckets[2] == ok.latency_count  # every healthy run within 250 ms
    for name in ("chunks", "flood"):
        latest = series[name].latest
        assert latest is not None
        assert latest.reason == Reason.INVALID_RESPONSE, (name, latest.reason, latest.error)
        assert latest.duration < 0.9  # bounded by bytes and frames, not by the timeout
        assert len(latest.log) <= 101
