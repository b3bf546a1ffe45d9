"""``/probe`` runs only configured targets, names what it refuses, and limits concurrency.

The real app over the real daemon; the daemon's resolver records every name it is asked for,
and a trap listener on 127.0.0.1 counts every connection, so a ``target=`` that looks like a
URL or a host is proven never to be dialled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from exporter.config import load_config
from exporter.daemon import Daemon
from exporter.sim import Simulator
from tests.core.conftest import FixedResolver, cert_target


class Trap:
    """A TCP listener that only counts the connections it gets."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Count and hang up."""
        self.connections += 1
        writer.close()


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    """A listening trap on a free loopback port."""
    t = Trap()
    server = await asyncio.start_server(t.on_connect, "127.0.0.1", 0)
    t.port = int(server.sockets[0].getsockname()[1])
    try:
        yield t
    finally:
        server.close()


@pytest.fixture
async def app_url(sim: Simulator, tmp_path: Path) -> AsyncIterator[tuple[str, FixedResolver]]:
    """The real app on a free port, over a daemon with one target ``only`` (1 s timeout)."""
    from exporter.web import create_app, run_server

    config_file = tmp_path / "config.yml"
    target = cert_target(sim, "only", checks=["repository", "engine"], timeout="1s")
    config_file.write_text(yaml.safe_dump({"targets": [target]}))
    resolver = FixedResolver()
    daemon = Daemon(config_file, resolver=resolver)
    daemon.apply(load_config(config_file))
    runner, port = await run_server(create_app(daemon), "127.0.0.1:0")
    try:
        yield f"http://127.0.0.1:{port}", resolver
    finally:
        await runner.cleanup()


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


async def test_configured_target_is_probed(app_url: tuple[str, FixedResolver]) -> None:
    """A configured target is probed and its metrics returned."""
    base, _ = app_url
    status, body = await _get(f"{base}/probe?target=only&check=repository")
    assert status == 200
    assert 'qlik_probe_success{check="repository",node="localhost",target="only"} 1' in body


@pytest.mark.parametrize(
    "name",
    [
        "https://127.0.0.1:{port}/",
        "127.0.0.1:{port}",
        "127.0.0.1",
        "localhost",
        "evil.example.com",
        "only/../only",
        "ONLY",
    ],
)
async def test_unknown_target_is_refused_by_name_without_any_connection(
    app_url: tuple[str, FixedResolver], trap: Trap, name: str
) -> None:
    """A target= that is not configured gets 400 naming it, and nothing is resolved or dialled."""
    base, resolver = app_url
    name = name.format(port=trap.port)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/probe", params={"target": name}) as resp,
    ):
        status, body = resp.status, await resp.text()
    assert status == 400
    assert "unknown target" in body
    assert repr(name) in body
    await asyncio.sleep(0.05)
    assert resolver.calls == []
    assert trap.connections == 0


async def test_missing_target_is_refused(app_url: tuple[str, FixedResolver]) -> None:
    """/probe without target= is a 400 that says what is missing."""
    base, _ = app_url
    status, body = await _get(f"{base}/probe")
    assert status == 400
    assert "missing target" in body


@pytest.mark.parametrize("check", ["tenant", "engine_session", "nosuchcheck"])
async def test_check_not_enabled_is_refused_by_name(
    app_url: tuple[str, FixedResolver], check: str
) -> None:
    """A check the target does not run gets 400 naming the check and the enabled ones."""
    base, resolver = app_url
    status, body = await _get(f"{base}/probe?target=only&check={check}")
    assert status == 400
    assert repr(check) in body
    assert "repository, engine" in body
    assert resolver.calls == []


async def test_concurrent_probes_of_one_target_are_limited(
    sim: Simulator, app_url: tuple[str, FixedResolver]
) -> None:
    """Eight simultaneous /probe calls for a hanging target: a few run, the rest get 429."""
    base, _ = app_url
    sim.faults.set("repository", "hang")
    url = f"{base}/probe?target=only&check=repository"
    results = await asyncio.wait_for(asyncio.gather(*(_get(url) for _ in range(8))), timeout=20)
    statuses = sorted(status for status, _ in results)
    admitted = statuses.count(200)
    assert 1 <= admitted <= 3, statuses
    assert statuses.count(429) == 8 - admitted, statuses
    refused = next(body for status, body in results if status == 429)
    assert "'only'" in refused
