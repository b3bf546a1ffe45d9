"""Alert delivery in the compose stack: deploy/compose/alertmanager.yml checked by amtool, its
routes tested by severity, and the real Alertmanager delivering what the real Prometheus fires.

The end-to-end test lays the compose files out as the containers see them, with three changes a
test needs: addresses on 127.0.0.1, intervals in seconds, and the webhook URLs pointed at a local
aiohttp receiver (their paths kept, so the receiver sees which route delivered). Prometheus runs
the shipped rules.yml (every ``for:`` shortened from minutes to seconds) against a scrape target
that refuses connections, so ``QlikExporterDown`` fires; a few alerts are also posted to
Alertmanager directly, to see the critical route, the inhibition and the null receiver at work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from ops_helpers import DEPLOY, RULES, AlertmanagerTools, PrometheusTools

COMPOSE_DIR = DEPLOY / "compose"
ALERTMANAGER_CONFIG = COMPOSE_DIR / "alertmanager.yml"
# The receiver each severity of rules.yml must reach.
ROUTES = {"critical": "on-call", "warning": "team", "info": "null"}
WEBHOOK_PATHS = {"on-call": "/qlik-sense/critical", "team": "/qlik-sense/warning"}
DELIVERY_SECONDS = 90.0


def alertmanager_config() -> dict[str, Any]:
    """The parsed shipped Alertmanager config."""
    data: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    return data


def rule_severities() -> set[str]:
    """Every ``severity`` that rules.yml gives an alert."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["labels"]["severity"] for group in groups for rule in group["rules"]}


def test_amtool_check_config_passes(alertmanager_tools: AlertmanagerTools) -> None:
    """``amtool check-config`` accepts the shipped file."""
    output = alertmanager_tools.amtool_run("check-config", ALERTMANAGER_CONFIG)
    assert "SUCCESS" in output


def test_every_rule_severity_has_a_route() -> None:
    """rules.yml uses only severities that alertmanager.yml routes explicitly."""
    assert rule_severities() <= set(ROUTES)


@pytest.mark.parametrize(("severity", "receiver"), [*ROUTES.items(), ("unknown", "null")])
def test_severity_routes_to_receiver(
    alertmanager_tools: AlertmanagerTools, severity: str, receiver: str
) -> None:
    """``amtool config routes test`` sends each severity to its receiver, anything else to null."""
    output = alertmanager_tools.amtool_run(
        "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", f"severity={severity}"
    )
    assert output.strip().splitlines()[-1] == receiver


def test_webhook_receivers_have_their_urls() -> None:
    """The two webhook examples post to the paths the end-to-end test tells apart; null has no
    integration at all."""
    receivers = {r["name"]: r for r in alertmanager_config()["receivers"]}
    assert receivers["null"] == {"name": "null"}
    for name, path in WEBHOOK_PATHS.items():
        (hook,) = receivers[name]["webhook_configs"]
        assert hook["url"].endswith(path)
        assert hook["send_resolved"] is True


def test_compose_prometheus_sends_alerts_to_compose_alertmanager() -> None:
    """Prometheus' alerting target is the compose Alertmanager service on the port it serves,
    and that service reads the shipped alertmanager.yml."""
    services = yaml.safe_load((COMPOSE_DIR / "compose.yml").read_text())["services"]
    alertmanager = services["alertmanager"]
    assert "./alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in alertmanager["volumes"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert "127.0.0.1:9093:9093" in alertmanager["ports"]
    assert "alertmanager" in services["prometheus"]["depends_on"]
    prometheus = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    (am,) = prometheus["alerting"]["alertmanagers"]
    assert am["static_configs"] == [{"targets": ["alertmanager:9093"]}]


# -- end to end -----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seconds_for_minutes(rules: str) -> str:
    """Every ``for: Nm`` in the rules as ``for: Ns``."""
    return re.sub(r"^(\s+for:\s*)(\d+)m\s*$", r"\1\2s", rules, flags=re.MULTILINE)


@dataclass
class Webhook:
    """A local webhook receiver: every payload it was sent, with the path it was sent to."""

    url: str
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def alerts(self, path: str) -> set[tuple[str, str]]:
        """(alertname, target) of every firing alert delivered to ``path``."""
        return {
            (alert["labels"]["alertname"], alert["labels"].get("target", ""))
            for got, payload in self.received
            if got == path
            for alert in payload["alerts"]
            if alert["status"] == "firing"
        }

    async def delivered(self, path: str, expected: set[tuple[str, str]]) -> None:
        """Return once every alert in ``expected`` was delivered to ``path``."""
        while True:
            self.arrived.clear()
            if expected <= self.alerts(path):
                return
            await self.arrived.wait()


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    """An aiohttp server on 127.0.0.1 that records every POST."""
    port = free_port()
    hook = Webhook(f"http://127.0.0.1:{port}")

    async def receive(request: web.Request) -> web.Response:
        hook.received.append((request.path, await request.json()))
        hook.arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield hook
    await runner.cleanup()


@dataclass(frozen=True, slots=True)
class Stack:
    """Alertmanager and Prometheus as started from the laid-out compose files."""

    alertmanager_url: str
    prometheus_url: str
    logs: list[Path]

    def diagnostics(self) -> str:
        """The tail of every process log."""
        return "\n".join(
            f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}" for log in self.logs
        )


def lay_out(tmp_path: Path, webhook_url: str, alertmanager_port: int) -> tuple[Path, Path]:
    """The compose files as the containers see them, changed only as the module doc says."""
    am_dir, prom_dir = tmp_path / "etc-alertmanager", tmp_path / "etc-prometheus"
    am_dir.mkdir()
    prom_dir.mkdir()
    am = alertmanager_config()
    for receiver in am["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = re.sub(r"^https?://[^/]+", webhook_url, hook["url"])
    am["route"].update(group_wait="1s", group_interval="1s")
    (am_dir / "alertmanager.yml").write_text(yaml.safe_dump(am))
    prom = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    prom["global"].update(scrape_interval="1s", evaluation_interval="1s")
    prom["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{alertmanager_port}"]}
    ]
    # Nothing listens there: the exporter is "down".
    prom["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{free_port()}"]}]
    (prom_dir / "prometheus.yml").write_text(yaml.safe_dump(prom))
    (prom_dir / "rules.yml").write_text(seconds_for_minutes(RULES.read_text()))
    return am_dir / "alertmanager.yml", prom_dir / "prometheus.yml"


def ready(url: str) -> bool:
    """Whether ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - 127.0.0.1
            return int(response.status) == 200
    except OSError:
        return False


@pytest.fixture
def stack(
    tmp_path: Path,
    webhook: Webhook,
    alertmanager_tools: AlertmanagerTools,
    prometheus_tools: PrometheusTools,
) -> Iterator[Stack]:
    """Alertmanager and Prometheus on free ports of 127.0.0.1, stopped afterwards."""
    am_port, prom_port = free_port(), free_port()
    am_config, prom_config = lay_out(tmp_path, webhook.url, am_port)
    commands = {
        "alertmanager.log": [
            str(alertmanager_tools.alertmanager),
            f"--config.file={am_config}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        "prometheus.log": [
            str(prometheus_tools.prometheus),
            f"--config.file={prom_config}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
    }
    running = Stack(
        f"http://127.0.0.1:{am_port}",
        f"http://127.0.0.1:{prom_port}",
        [tmp_path / name for name in commands],
    )
    procs = []
    try:
        for name, command in commands.items():
            with (tmp_path / name).open("wb") as log:
                procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        urls = [running.alertmanager_url + "/-/ready", running.prometheus_url + "/-/ready"]
        while not all(ready(url) for url in urls):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail(f"Alertmanager or Prometheus did not start\n{running.diagnostics()}")
            time.sleep(0.2)
        yield running
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def post_alerts(url: str, alerts: list[dict[str, str]]) -> None:
    """POST alerts to Alertmanager's API as Prometheus would (labels only)."""
    body = json.dumps([{"labels": labels} for labels in alerts]).encode()
    request = urllib.request.Request(  # noqa: S310 - 127.0.0.1
        url + "/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        assert response.status == 200


def sorted_items(labels: dict[str, str]) -> list[tuple[str, str]]:
    """A label set in a form that sorts."""
    return sorted(labels.items())


def alertmanager_alerts(url: str) -> list[dict[str, Any]]:
    """Every alert Alertmanager holds, with its status."""
    with urllib.request.urlopen(url + "/api/v2/alerts", timeout=5) as response:  # noqa: S310
        alerts: list[dict[str, Any]] = json.load(response)
    return alerts


@pytest.mark.slow
async def test_alerts_reach_the_webhook_of_their_severity(stack: Stack, webhook: Webhook) -> None:
    """QlikExporterDown fired by Prometheus reaches the warning webhook; posted critical alerts
    reach the critical one, except a probe failure that an authentication failure of the same
    check and node inhibits, the checks of an unreachable node, and a node that is unreachable
    because it refuses the credentials; an info alert reaches no webhook."""
    auth = {"severity": "critical", "check": "repository", "target": "central", "node": "n1"}
    down = {"severity": "critical", "target": "site", "node": "rim1"}
    refused = {"severity": "critical", "target": "site", "node": "rim2"}
    post_alerts(
        stack.alertmanager_url,
        [
            {"alertname": "QlikAuthenticationFailure", "reason": "unauthorized", **auth},
            {"alertname": "QlikProbeFailing", **auth},
            {"alertname": "QlikProbeFailing", **auth, "target": "rim"},
            {"alertname": "QlikProbeFailing", **auth, "node": "n2"},
            {"alertname": "QlikNodeUnreachable", **down},
            {"alertname": "QlikProbeFailing", **down, "check": "engine"},
            {"alertname": "QlikServiceNotRunning", **down, "service": "engine"},
            {"alertname": "QlikProbeFailing", **down, "node": "central", "check": "engine"},
            {"alertname": "QlikNodeUnreachable", **refused},
            {"alertname": "QlikAuthenticationFailure", **refused, "check": "proxy"},
            {"alertname": "QlikRepositoryVersionChanged", "severity": "info", "target": "rim"},
        ],
    )
    critical = {
        ("QlikAuthenticationFailure", "central"),
        ("QlikProbeFailing", "rim"),
        ("QlikProbeFailing", "central"),
        ("QlikNodeUnreachable", "site"),
        ("QlikProbeFailing", "site"),
        ("QlikAuthenticationFailure", "site"),
    }
    with contextlib.suppress(TimeoutError):  # the assertions below say what is missing
        async with asyncio.timeout(DELIVERY_SECONDS):
            await webhook.delivered(WEBHOOK_PATHS["on-call"], critical)
            await webhook.delivered(WEBHOOK_PATHS["team"], {("QlikExporterDown", "")})
    await asyncio.sleep(3)  # three group intervals: time for anything wrongly routed to arrive
    assert webhook.alerts(WEBHOOK_PATHS["on-call"]) == critical, stack.diagnostics()
    assert webhook.alerts(WEBHOOK_PATHS["team"]) == {("QlikExporterDown", "")}, stack.diagnostics()
    assert {path for path, _ in webhook.received} == set(WEBHOOK_PATHS.values())
    receivers = {payload["receiver"] for _, payload in webhook.received}
    assert receivers == set(WEBHOOK_PATHS)
    inhibited = [
        a["labels"]
        for a in alertmanager_alerts(stack.alertmanager_url)
        if a["status"]["inhibitedBy"]
    ]
    expected = [
        {"alertname": "QlikProbeFailing", **auth},
        {"alertname": "QlikProbeFailing", **down, "check": "engine"},
        {"alertname": "QlikServiceNotRunning", **down, "service": "engine"},
        {"alertname": "QlikNodeUnreachable", **refused},
    ]
    assert sorted(map(sorted_items, inhibited)) == sorted(map(sorted_items, expected))
