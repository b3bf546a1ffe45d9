"""The HTTP endpoints, against a fake daemon state, through aiohttp's test client."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer

from exporter.config import Config, parse_config
from exporter.reasons import Reason
from exporter.results import CertificateInfo, ProbeResult, ResultStore
from exporter.state import DaemonStatus
from exporter.web import create_app, run_server

SECRET = "s3cr3t-api-key-value"


class FakeState:
    """A stand-in for the daemon: a fixed config, a store, and scripted probes."""

    def __init__(self, config: Config) -> None:
        self.store = ResultStore()
        self.config = config
        self.status = DaemonStatus(True, 100.0, len(config.targets), 50.0, True)
        self.reload_errors: list[str] = []
        self.probe_gate: asyncio.Event | None = None
        self.probe_started = asyncio.Event()
        self.probes = 0

    async def reload(self) -> list[str]:
        return self.reload_errors

    async def probe(self, target: str, check: str | None) -> list[ProbeResult]:
        self.probes += 1
        self.probe_started.set()
        if self.probe_gate is not None:
            await self.probe_gate.wait()
        return [
            ProbeResult(
                target=target,
                check=check or "tenant",
                success=False,
                reason=Reason.UNAUTHORIZED,
                error="401 from /api/v1/users/me",
                started=1.0,
                finished=2.0,
                duration=1.0,
                log=["GET https://tenant/api/v1/users/me", "answered 401"],
                node="t.eu.qlikcloud.com",
            )
        ]


def make_config(tmp_path: Path) -> Config:
    auth = {"method": "apikey", "api_key": SECRET}
    target = {"name": "cloud", "type": "cloud", "host": "t.eu.qlikcloud.com", "auth": auth}
    return parse_config({"targets": [target]}, base_dir=tmp_path)


@pytest.fixture
def state(tmp_path: Path) -> FakeState:
    return FakeState(make_config(tmp_path))


@pytest.fixture
async def client(state: FakeState) -> AsyncIterator[TestClient[object, object]]:
    async with TestClient(TestServer(create_app(state))) as c:
        yield c


def record(state: FakeState, **kw: object) -> None:
    fields: dict[str, object] = {
        "target": "cloud",
        "check": "tenant",
        "node": "t.eu.qlikcloud.com",
        "success": True,
        "reason": None,
        "error": "",
        "started": 1.0,
        "finished": 2.0,
        "duration": 0.2,
    }
    fields.update(kw)
    state.store.record(ProbeResult(**fields))  # type: ignore[arg-type]


async def test_metrics_returns_store_series_in_the_text_format(
    client: TestClient[object, object], state: FakeState
) -> None:
    """/metrics serves the store's series, self-metrics and process metrics as text 0.0.4."""
    record(state)
    resp = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    body = await resp.text()
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'qlik_probe_success{target="cloud",node="t.eu.qlikcloud.com",check="tenant"} 1.0' in body
    assert "qlik_exporter_targets " in body
    assert "process_" in body or "python_info" in body


async def test_metrics_is_gzipped_when_the_client_accepts_it(
    client: TestClient[object, object], state: FakeState
) -> None:
    """With Accept-Encoding: gzip the body is gzip and decompresses to the exposition."""
    record(state)
    resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert resp.headers["Content-Encoding"] == "gzip"
    assert b"qlik_probe_success" in gzip.decompress(await resp.read())


async def test_metrics_speaks_openmetrics_when_asked(
    client: TestClient[object, object], state: FakeState
) -> None:
    """An OpenMetrics Accept header gets the OpenMetrics format, ending in # EOF."""
    record(state)
    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).endswith("# EOF\n")


async def test_probe_returns_only_that_targets_metrics(
    client: TestClient[object, object], state: FakeState
) -> None:
    """/probe runs the target now and returns its series on a fresh registry."""
    record(state, target="other")
    resp = await client.get("/probe", params={"target": "cloud"})
    body = await resp.text()
    assert resp.status == 200
    assert 'qlik_probe_success{check="tenant",node="t.eu.qlikcloud.com",target="cloud"} 0.0' in body
    assert "other" not in body
    assert "qlik_exporter_" not in body


async def test_probe_without_target_is_a_400(client: TestClient[object, object]) -> None:
    """A /probe without target= is rejected with a message saying so."""
    resp = await client.get("/probe")
    assert resp.status == 400
    assert "missing target" in await resp.text()


async def test_probe_of_an_unknown_target_is_a_400_naming_it(
    client: TestClient[object, object], state: FakeState
) -> None:
    """Only configured targets can be probed; the message names the unknown one."""
    resp = await client.get("/probe", params={"target": "nope"})
    assert resp.status == 400
    assert "unknown target 'nope'" in await resp.text()
    assert state.probes == 0


async def test_probe_of_an_unknown_check_is_a_400_naming_it(
    client: TestClient[object, object],
) -> None:
    """A check the target doesn't run is rejected, naming it and the enabled checks."""
    resp = await client.get("/probe", params={"target": "cloud", "check": "engine"})
    text = await resp.text()
    assert resp.status == 400
    assert "unknown check 'engine'" in text
    assert "tenant" in text


async def test_probe_debug_returns_the_probe_log_and_metrics(
    client: TestClient[object, object],
) -> None:
    """debug=true gives the log lines, reason and error as text, then the metrics."""
    resp = await client.get("/probe", params={"target": "cloud", "debug": "true"})
    text = await resp.text()
    assert resp.content_type == "text/plain"
    assert "failed (reason: unauthorized)" in text
    assert "Error: 401 from /api/v1/users/me" in text
    assert "answered 401" in text
    assert "qlik_probe_success" in text


async def test_a_probe_beyond_the_per_target_limit_gets_429(state: FakeState) -> None:
    """While a target's probe runs and its queue is full, another /probe is refused with 429."""
    state.probe_gate = asyncio.Event()
    app = create_app(state, probe_concurrency=1, probe_queue=0)
    async with TestClient(TestServer(app)) as c:
        first = asyncio.create_task(c.get("/probe", params={"target": "cloud"}))
        await state.probe_started.wait()
        refused = await c.get("/probe", params={"target": "cloud"})
        assert refused.status == 429
        assert "too many /probe requests for target 'cloud'" in await refused.text()
        state.probe_gate.set()
        assert (await first).status == 200


async def test_a_queued_probe_runs_after_the_running_one(state: FakeState) -> None:
    """A /probe that fits in the queue waits for the running one and then succeeds."""
    state.probe_gate = asyncio.Event()
    app = create_app(state, probe_concurrency=1, probe_queue=1)
    async with TestClient(TestServer(app)) as c:
        first = asyncio.create_task(c.get("/probe", params={"target": "cloud"}))
        await state.probe_started.wait()
        second = asyncio.create_task(c.get("/probe", params={"target": "cloud"}))
        state.probe_gate.set()
        assert [(await first).status, (await second).status] == [200, 200]
        assert state.probes == 2


async def test_healthy_is_always_ok(client: TestClient[object, object]) -> None:
    """/-/healthy answers 200 OK."""
    resp = await client.get("/-/healthy")
    assert (resp.status, await resp.text()) == (200, "OK\n")


async def test_ready_is_503_until_the_daemon_is_ready(
    client: TestClient[object, object], state: FakeState
) -> None:
    """/-/ready follows the status's ready flag."""
    state.status = DaemonStatus(True, None, 0, 0.0, ready=False)
    assert (await client.get("/-/ready")).status == 503
    state.status = DaemonStatus(True, None, 0, 0.0, ready=True)
    assert (await client.get("/-/ready")).status == 200


async def test_reload_success_and_failure(
    client: TestClient[object, object], state: FakeState
) -> None:
    """POST /-/reload says reloaded, or 500 with each error line when rejected."""
    resp = await client.post("/-/reload")
    assert (resp.status, await resp.text()) == (200, "config reloaded\n")
    state.reload_errors = ["targets[0].host: required", "targets[1].auth: unknown key"]
    resp = await client.post("/-/reload")
    text = await resp.text()
    assert resp.status == 500
    assert "targets[0].host: required\ntargets[1].auth: unknown key" in text


async def test_reload_with_get_is_a_405(client: TestClient[object, object]) -> None:
    """GET /-/reload is refused with 405, a short message and an Allow header."""
    resp = await client.get("/-/reload")
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert "use POST" in await resp.text()


async def test_unknown_path_is_a_short_404(client: TestClient[object, object]) -> None:
    """An unknown path gets a one-line 404."""
    resp = await client.get("/nope")
    assert resp.status == 404
    assert (await resp.text()).startswith("404 Not Found: no endpoint at /nope")


async def test_handler_errors_are_500_without_a_traceback(
    client: TestClient[object, object], state: FakeState
) -> None:
    """An unexpected exception in a handler becomes a short 500, no traceback."""

    async def broken(target: str, check: str | None) -> list[ProbeResult]:
        raise RuntimeError("boom internal detail")

    state.probe = broken  # type: ignore[method-assign]
    resp = await client.get("/probe", params={"target": "cloud"})
    text = await resp.text()
    assert resp.status == 500
    assert "Traceback" not in text
    assert "boom" not in text


async def test_config_redacts_every_secret(client: TestClient[object, object]) -> None:
    """/-/config shows the config as YAML with secrets as <secret>, never their value."""
    resp = await client.get("/-/config")
    text = await resp.text()
    assert resp.status == 200
    assert "api_key: <secret>" in text
    assert SECRET not in text
    assert "host: t.eu.qlikcloud.com" in text


async def test_config_never_shows_a_secret_files_content(tmp_path: Path) -> None:
    """A secret read from a file shows as <secret> and its path, not its content."""
    key_file = tmp_path / "cloud.key"
    key_file.write_text("file-secret-content\n")
    auth = {"method": "apikey", "api_key_file": str(key_file)}
    data = {"targets": [{"name": "c", "type": "cloud", "host": "h", "auth": auth}]}
    state = FakeState(parse_config(data, base_dir=tmp_path))
    async with TestClient(TestServer(create_app(state))) as c:
        text = await (await c.get("/-/config")).text()
    assert "file-secret-content" not in text
    assert str(key_file) in text


async def test_status_page_lists_checks_and_escapes_html(
    client: TestClient[object, object], state: FakeState
) -> None:
    """The status page shows each check's result, and escapes every value it prints."""
    record(
        state,
        success=False,
        reason=Reason.TIMEOUT,
        error="<script>alert(1)</script>",
        certificates=[CertificateInfo("client", "<img src=x>", "ca", "01", 0.0, 1.0)],
    )
    resp = await client.get("/")
    page = await resp.text()
    assert resp.content_type == "text/html"
    assert "<script>" not in page
    assert "<img" not in page
    assert "&lt;img src=x&gt;" in page
    assert "timeout" in page
    assert "/probe?target=cloud&amp;check=tenant&amp;debug=true" in page
    assert '<span class="days red">' in page  # expired, in the dashboard's red


async def test_run_server_binds_a_free_port_and_serves(state: FakeState) -> None:
    """run_server with port 0 binds, reports the port and serves plain HTTP."""
    runner, port = await run_server(create_app(state), "127.0.0.1:0", None)
    try:
        assert port > 0
        async with (
            ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/-/healthy") as resp,
        ):
            assert resp.status == 200
    finally:
        await runner.cleanup()
