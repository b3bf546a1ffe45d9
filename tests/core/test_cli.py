"""The command line and the served daemon, end to end against the simulator."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli import main, serve
from exporter.reasons import HINTS, Reason
from exporter.settings import Settings
from exporter.sim import Simulator
from tests.core.conftest import cert_target, closed_port


def _config(path: Path, *targets: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"targets": list(targets)}))
    return path


def _free_port() -> int:
    return closed_port()


def _value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in an exposition, whatever the label order."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


async def test_probe_command_prints_a_report_and_exits_zero(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`probe TARGET` prints host, port, build version and date like Ctrl-Q's connection-test."""
    config = _config(tmp_path / "c.yml", cert_target(sim, "central", checks=["repository"]))
    code = await asyncio.to_thread(main, ["--config.file", str(config), "probe", "central"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"Testing repository of target central: {sim.host} port {sim.ports.repository}" in out
    assert "build version: 31.43.0.0" in out
    assert "build date: 4/12/2024 18:12:20 PM" in out
    assert "  client: CN=QlikClient" in out


async def test_probe_command_reports_reason_and_exits_nonzero(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failing probe prints the reason and the error and exits 1."""
    target = cert_target(sim, "down", checks=["repository"], ports={"repository": closed_port()})
    config = _config(tmp_path / "c.yml", target)
    code = await asyncio.to_thread(main, ["probe", "down", "--config.file", str(config)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED" in out
    assert "reason=connect_refused" in out


def test_probe_command_unknown_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown target name is a usage error naming it."""
    config = _config(tmp_path / "c.yml")
    assert main(["probe", "nope", "--config.file", str(config)]) == 2
    assert "unknown target 'nope'" in capsys.readouterr().err


async def test_served_daemon_metrics_probe_reload_and_sighup(
    sim: Simulator, tmp_path: Path
) -> None:
    """The real server exposes results, runs /probe, reloads on POST and on SIGHUP."""
    config = _config(
        tmp_path / "c.yml",
        cert_target(sim, "a", checks=["repository"], interval="1s", timeout="1s"),
    )
    port = _free_port()
    settings = Settings(config_file=config, web_listen_address=f"127.0.0.1:{port}")
    ready = asyncio.Event()
    server = asyncio.create_task(serve(settings, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await asyncio.sleep(1.5)
            text = await (await http.get(f"{base}/metrics")).text()
            assert _value(text, "qlik_probe_success", target="a", check="repository") == 1
            resp = await http.get(f"{base}/probe", params={"target": "a"})
            assert resp.status == 200
            probe_text = await resp.text()
            assert _value(probe_text, "qlik_probe_success", target="a", check="repository") == 1
            assert (await http.get(f"{base}/probe", params={"target": "zz"})).status == 400
            _config(
                config, cert_target(sim, "b", checks=["repository"], interval="1s", timeout="1s")
            )
            assert (await http.post(f"{base}/-/reload")).status == 200
            await asyncio.sleep(1.5)
            text = await (await http.get(f"{base}/metrics")).text()
            assert 'target="b"' in text
            assert 'target="a"' not in text
            config.write_text("targets: [{name: c}]\n")
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.sleep(0.5)
            text = await (await http.get(f"{base}/metrics")).text()
            assert _value(text, "qlik_exporter_config_last_reload_successful") == 0
            assert 'target="b"' in text
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


async def test_demo_config_with_a_short_interval_is_valid(sim: Simulator, tmp_path: Path) -> None:
    """`demo --interval 2s` gives a valid config: the timeout shrinks with the interval."""
    from exporter.cli import demo_config
    from exporter.config import parse_config

    config = parse_config(demo_config(sim, interval="2s"), base_dir=tmp_path)
    assert {t.timeout for t in config.targets} == {2.0}
    from exporter import catalog

    assert {t.auth.method for t in config.targets} == set(catalog.METHODS)  # one per method


def test_report_says_expired_for_an_expired_certificate() -> None:
    """The probe report says EXPIRED, not a negative number of days left."""
    import time

    from exporter.reasons import Reason
    from exporter.report import format_target
    from exporter.results import CertificateInfo, ProbeResult

    now = time.time()
    result = ProbeResult(
        target="t",
        check="repository",
        success=False,
        reason=Reason.SERVER_CERTIFICATE_EXPIRED,
        error="expired",
        started=now,
        finished=now,
        duration=0.01,
        certificates=[
            CertificateInfo(
                "server_repository", "h", "h-CA", "1", now - 90 * 86400, now - 2 * 86400
            ),
            CertificateInfo("client", "QlikClient", "h-CA", "2", now - 86400, now + 10 * 86400),
        ],
    )
    lines = format_target([result], "h", {"repository": 4242})
    assert any("server_repository" in line and "EXPIRED 2.0 days ago" in line for line in lines)
    assert any("client" in line and "10.0 days left  WARNING" in line for line in lines)


async def test_serve_on_a_busy_port_says_so_in_one_line_and_exits_one(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A port already in use is one clear log line and exit code 1, not a traceback."""
    import socket

    config = _config(tmp_path / "c.yml", cert_target(sim, "a", checks=["repository"]))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        code = await serve(Settings(config_file=config, web_listen_address=address))
    assert code == 1
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == "cannot listen"
    assert record.address == address  # type: ignore[attr-defined]
    assert "address already in use" in record.error.lower()  # type: ignore[attr-defined]
    assert record.exc_info is None


@pytest.mark.parametrize(
    "version", ["31\x1b[2J\x1b[31mFAKE", "31\nTesting repository: OK", "31\r\x07\x9b"]
)
async def test_probe_report_shows_server_strings_escaped(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str
) -> None:
    """A build version holding terminal escapes or line breaks is printed escaped, on one
    line, never interpreted by the terminal."""
    sim.build_version = version
    config = _config(tmp_path / "c.yml", cert_target(sim, "central", checks=["repository"]))
    code = await asyncio.to_thread(main, ["--config.file", str(config), "probe", "central"])
    out = capsys.readouterr().out
    assert code == 0
    assert not any(c in out for c in "\x1b\r\x07\x9b")
    [line] = [line for line in out.splitlines() if "build version:" in line]
    assert line == "  build version: " + version.encode("unicode_escape").decode("ascii")


async def test_probe_report_summary_hints_and_certificates_once(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every check, a hint for each failure, the certificates once, and a summary line."""
    sim.faults.set("engine", "hang")
    target = cert_target(sim, "central", timeout="1s")
    config = _config(tmp_path / "c.yml", target)
    code = await asyncio.to_thread(main, ["--config.file", str(config), "probe", "central"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[-1] == "2 of 4 checks OK; engine: timeout, engine_session: timeout"
    assert out.count("  hint: " + HINTS[Reason.TIMEOUT]) == 2
    assert sum(line.startswith("  client: CN=QlikClient") for line in out) == 1
    assert sum(line.startswith("  root: ") for line in out) == 1


async def test_probe_json_output_for_scripts(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--output json is one document with each check, its reason and hint, and the summary."""
    sim.faults.set("proxy", "status", status=503)
    config = _config(tmp_path / "c.yml", cert_target(sim, "central"))
    argv = ["--config.file", str(config), "probe", "central", "--output", "json"]
    code = await asyncio.to_thread(main, argv)
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["ok"] is False
    assert doc["summary"] == "3 of 4 checks OK; proxy: server_error"
    checks = {c["check"]: c for c in doc["checks"]}
    assert checks["proxy"]["reason"] == "server_error"
    assert checks["proxy"]["hint"] == HINTS[Reason.SERVER_ERROR]
    assert checks["repository"]["details"]["build version"] == "31.43.0.0"
    assert {c["source"] for c in doc["certificates"]} >= {"client", "root"}


def test_probe_of_an_unknown_target_lists_the_configured_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in the target name is answered with the valid names, exit 2."""
    target = {
        "name": "central",
        "type": "qseow",
        "host": "h",
        "auth": {"method": "header", "header_name": "X-U", "user_id": "u"},
    }
    other = dict(target, name="rim")
    config = _config(tmp_path / "c.yml", target, other)
    assert main(["--config.file", str(config), "probe", "centrl"]) == 2
    assert (
        capsys.readouterr().err.strip() == "unknown target 'centrl'; the config has: central, rim"
    )


def test_hints_are_the_readme_failure_reason_table() -> None:
    """The probe report's hints and the README's reason table are the same text."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    rows = readme[readme.index("| reason | typical cause |") :].splitlines()[2:]
    table = {}
    for row in rows:
        if not row.startswith("|"):
            break
        reason, cause = (c.strip() for c in row.strip("|").split("|"))
        table[reason.strip("`")] = cause
    assert table == {r.value: hint for r, hint in HINTS.items()}


def test_report_does_not_warn_about_an_oauth_token_the_exporter_renews() -> None:
    """An OAuth access token hours from its end is shown without the 30-day warning."""
    import time

    from exporter.report import format_target
    from exporter.results import CredentialInfo, ProbeResult

    now = time.time()
    result = ProbeResult("t", "tenant", True, None, "", now, now, 0.01)
    result.credentials = [
        CredentialInfo("oauth_token", now + 0.25 * 86400),
        CredentialInfo("apikey", now + 0.25 * 86400),
    ]
    lines = format_target([result], "h", {"tenant": 443})
    [oauth] = [line for line in lines if "oauth_token" in line]
    [apikey] = [line for line in lines if "apikey" in line]
    assert "WARNING" not in oauth
    assert "renewed" in oauth
    assert "WARNING: under 30 days" in apikey


@pytest.fixture
async def addressed(tmp_path: Path) -> Any:
    """A three-node site whose host names are their addresses (no resolver needed)."""
    from exporter.sim.site import addressed_site

    async with Simulator(tmp_path / "site", nodes=addressed_site()) as site:
        yield site


async def test_probe_of_a_discovered_site_lists_each_node_services_and_licence(
    addressed: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`probe prod` on a discover: true target: the nodes first, each check on each node that
    runs it, the service states per node, the licence; a stopped rim engine in the summary."""
    site = addressed
    site.set_service_state("rim1", "engine", "no_communication")
    await site.stop_service("rim1", "engine")
    target = cert_target(
        site, "prod", discover=True, checks=["repository", "engine", "services", "license"]
    )
    config = _config(tmp_path / "c.yml", target)
    code = await asyncio.to_thread(main, ["probe", "prod", "--config.file", str(config)])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"Testing discovery of target prod: 127.0.0.2 port {site.ports.repository}"
    assert (
        "  node 127.0.0.3: rim1, rim node, purpose production; runs repository, proxy, engine"
        in lines
    )
    for node in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        assert f"Testing repository of target prod: {node} port {site.ports.repository}" in lines
        assert f"Testing engine of target prod: {node} port {site.ports.engine}" in lines
    assert "engine no_communication" in out.split("services on 127.0.0.3: ")[1].splitlines()[0]
    assert "  access professional: 60 of 100 available" in lines
    assert lines[-1] == "8 of 9 checks OK; engine on 127.0.0.3: connect_refused"
