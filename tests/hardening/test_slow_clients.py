"""The exporter's own HTTP side against slow and many clients ("slowloris"): a request head
has a deadline, connections have a cap, and the process keeps its descriptors for probes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from exporter import runtime
from exporter.web import run_server

CAP = 16


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def server() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/", _hello)
    runner, port = await run_server(app, "127.0.0.1:0", max_connections=CAP, header_timeout=1.0)
    yield port
    await runner.cleanup()


async def _slow_client(port: int) -> float:
    """Open a connection, send half a request head, and wait: seconds until the server hangs
    up (or 5 when it never does)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    try:
        async with asyncio.timeout(5):
            while await reader.read(1024):
                pass
    except TimeoutError:
        return 5.0
    except ConnectionError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return time.perf_counter() - started


async def test_slow_request_heads_are_cut_off_and_connections_capped(server: int) -> None:
    """Sixty clients that never finish their head: the first CAP are closed after the 1 s head
    deadline, the rest at once; afterwards a normal request is served."""
    held = await asyncio.gather(*(_slow_client(server) for _ in range(60)))
    at_deadline = [t for t in held if 0.8 < t < 2.0]
    at_once = [t for t in held if t < 0.5]
    assert len(at_deadline) + len(at_once) == 60, sorted(held)
    assert len(at_deadline) <= CAP
    assert len(at_once) >= 60 - CAP
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server}/") as resp:
        assert (resp.status, await resp.text()) == (200, "hello")


def test_the_guard_holds_on_uvloop() -> None:
    """On uvloop (the daemon's default where installed, whose transports are not asyncio's
    classes) slow heads are cut off at the deadline, the cap holds, and requests are served."""

    async def scenario() -> None:
        assert runtime.loop_name(asyncio.get_running_loop()) == "uvloop"
        app = web.Application()
        app.router.add_get("/", _hello)
        runner, port = await run_server(app, "127.0.0.1:0", max_connections=CAP, header_timeout=1.0)
        try:
            await test_slow_request_heads_are_cut_off_and_connections_capped(port)
        finally:
            await runner.cleanup()

    runtime.run(scenario(), "uvloop")


async def test_a_prompt_client_is_served_while_slow_ones_wait_their_deadline(server: int) -> None:
    """Slow clients below the cap do not delay a client that sends its request at once."""
    slow = [asyncio.ensure_future(_slow_client(server)) for _ in range(CAP // 2)]
    await asyncio.sleep(0.1)
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server}/") as resp:
        assert resp.status == 200
    assert time.perf_counter() - started < 0.5
    assert all(0.8 < t < 2.0 for t in await asyncio.gather(*slow))


async def test_running_out_of_descriptors_is_one_quiet_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """asyncio reports every failed accept; with no descriptors left that is one warning per
    ten seconds, without a traceback, while other loop errors still reach the old handler."""
    import errno
    import logging

    from exporter.listener import quiet_accept_errors

    loop = asyncio.get_running_loop()
    seen: list[str] = []
    loop.set_exception_handler(lambda _, context: seen.append(context["message"]))
    try:
        quiet_accept_errors(loop)
        quiet_accept_errors(loop)  # a second listener does not stack another handler
        caplog.set_level(logging.WARNING, logger="exporter.listener")
        for _ in range(100):
            exc = OSError(errno.EMFILE, "Too many open files")
            loop.call_exception_handler({"message": "accept failed", "exception": exc})
        loop.call_exception_handler({"message": "something else", "exception": ValueError()})
    finally:
        loop.set_exception_handler(None)
    records = [r for r in caplog.records if r.name == "exporter.listener"]
    assert len(records) == 1
    assert records[0].exc_info is None
    assert "LimitNOFILE" in records[0].getMessage()
    assert seen == ["something else"]
