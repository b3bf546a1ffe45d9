"""The alert rules and the dashboard against a real Prometheus scraping a real exporter process.

One stack per module: the simulator in a thread of this process, the exporter as a subprocess
(``qlik-sense-exporter --config.file F --web.listen-address 127.0.0.1:PORT``) probing it every
2 seconds, and Debian's Prometheus scraping the exporter and evaluating the rules every second.
Two faults are on: one target presents an expired client certificate, and one JWT target sends a
token signed by a key the virtual proxy does not trust. The rules are loaded from
deploy/prometheus/rules.yml with every ``for:`` shortened from minutes to seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from dashboard_helpers import panel_queries, variable_queries
from ops_helpers import AUTH_REASONS, RULES, PrometheusTools

from exporter.sim import Simulator
from exporter.sim.site import addressed_site

pytestmark = pytest.mark.slow

ACTIVE = {"pending", "firing"}
# What the two faults must raise, as (alertname, target).
EXPECTED_ALERTS = {
    ("QlikProbeFailing", "expired-cert"),
    ("QlikProbeFailing", "bad-jwt"),
    ("QlikAuthenticationFailure", "expired-cert"),
    ("QlikAuthenticationFailure", "bad-jwt"),
    ("QlikCertificateExpired", "expired-cert"),
    ("QlikLicenseExpiresWithin7Days", "central"),
    ("QlikServiceNotRunning", "central"),
    ("QlikProbeFailing", "central"),  # the stopped engine of rim1, and only there
}
JOB = "qlik-sense-exporter"
TARGETS = {"central", "central-jwt", "cloud", "expired-cert", "bad-jwt"}
WAIT_SECONDS = 120.0
SETTLE_SECONDS = 5.0
# Series only a target with `discover: true` exports: the dashboard's queries of them must
# return data once the stack's config has such a target, and cannot before.
DISCOVERY_SERIES = re.compile(r"\bqlik_(node_info|discovery_\w+)\b")


@dataclass(frozen=True, slots=True)
class Stack:
    """The running stack: Prometheus' URL and where the processes log."""

    prometheus_url: str
    exporter_url: str
    logs: dict[str, Path]
    discovers: bool

    def api(self, path: str, **params: str) -> Any:
        """GET a Prometheus API path and return its ``data``."""
        url = f"{self.prometheus_url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - 127.0.0.1
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query."""
        result: list[dict[str, Any]] = self.api("/api/v1/query", query=expr)["result"]
        return result

    def active_alerts(self) -> list[dict[str, Any]]:
        """Alerts that are pending or firing."""
        alerts: list[dict[str, Any]] = self.api("/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["state"] in ACTIVE]

    def diagnostics(self) -> str:
        """The tail of every process log, for failure messages."""
        tails = [
            f"--- {name} ---\n{path.read_text(errors='replace')[-3000:]}"
            for name, path in self.logs.items()
            if path.exists()
        ]
        return "\n".join(tails)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float, what: str, stack: Stack) -> None:
    """Poll ``condition`` every 0.5 s until it holds; fail with the logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{stack.diagnostics()}")


def serving(proc: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    """True when ``url`` answers 200; fails at once, with the log, if ``proc`` has exited."""
    if proc.poll() is not None:
        output = log.read_text(errors="replace")[-3000:]
        pytest.fail(f"{proc.args!r} exited with status {proc.returncode}:\n{output}")
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - 127.0.0.1
        return int(response.status) == 200


def shortened_rules(text: str) -> str:
    """The rules with every ``for:`` of N minutes turned into N seconds (hours into minutes)."""
    data = yaml.safe_load(text)
    for group in data["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = re.sub(
                    r"(\d+)([mh])", lambda m: m[1] + {"m": "s", "h": "m"}[m[2]], rule["for"]
                )
    return yaml.safe_dump(data, sort_keys=False)


def foreign_jwt(audience: str) -> str:
    """A well-formed JWT for LAB\\monitor, valid for a year, signed by an untrusted key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    claims = {
        "userId": "monitor",
        "userDirectory": "LAB",
        "aud": audience,
        "iat": now,
        "exp": now + dt.timedelta(days=365),
    }
    return jwt.encode(claims, key, algorithm="RS256")


def exporter_config(sim: Simulator, folder: Path) -> dict[str, Any]:
    """Three targets (certificate, JWT, Cloud), healthy but for the site's licence and one
    service, and the two faulty ones, every 2 s."""
    d = sim.certs_dir
    expired = sim.issue_client_files(folder / "expired", expired=True)
    token_file = folder / "bad.jwt"
    token_file.write_text(foreign_jwt(sim.jwt_vp.audience) + "\n")
    token_file.chmod(0o600)
    api_key_file = folder / "cloud.key"
    api_key = sim.cloud_issue_api_key(sub=sim.cloud_user_id, expires_in=365 * 86400)
    api_key_file.write_text(api_key + "\n")
    api_key_file.chmod(0o600)
    ports = {"repository": sim.ports.repository, "proxy": sim.ports.proxy}
    ports["engine"] = sim.ports.engine
    # The site's licence ends in 5 days, its scheduler has lost contact and rim1's engine is
    # stopped: "central" (discovering the site) must raise exactly the licence, service and
    # probe-failing alerts, the last for rim1's engine checks only.
    sim.license.set_end(dt.datetime.now(dt.UTC) + dt.timedelta(days=5))
    sim.set_service_state(sim.nodes[0].name, "scheduler", "no_communication")

    def certificate(cert: Path, key: Path) -> dict[str, str]:
        return {
            "method": "certificate",
            "cert_file": str(cert),
            "key_file": str(key),
            "user_directory": "INTERNAL",
            "user_id": "sa_api",
        }

    frontend = {"host": sim.host, "port": sim.ports.frontend, "virtual_proxy": sim.jwt_vp.prefix}
    return {
        "defaults": {"interval": "2s", "timeout": "2s", "ca_file": str(d / "root.pem")},
        "targets": [
            {
                "name": "central",
                "type": "qseow",
                "host": sim.host,
                "discover": True,
                "discovery_interval": "5s",
                "ports": ports,
                "checks": [
                    "repository",
                    "proxy",
                    "engine",
                    "engine_session",
                    "services",
                    "license",
                ],
                "auth": certificate(d / "client.pem", d / "client_key.pem"),
            },
            {
                "name": "central-jwt",
                "type": "qseow",
                **frontend,
                "checks": ["repository", "proxy"],
                "auth": {
                    "method": "jwt",
                    "signing_key_file": str(d / "jwt_signing_key.pem"),
                    "signing_cert_file": str(d / "jwt_signing_cert.pem"),
                    "audience": sim.jwt_vp.audience,
                    "user_directory": "LAB",
                    "user_id": "monitor",
                },
            },
            {
                "name": "cloud",
                "type": "cloud",
                "host": sim.cloud_host,
                "port": sim.ports.cloud,
                "checks": ["tenant"],
                "auth": {"method": "apikey", "api_key_file": str(api_key_file)},
            },
            {
                "name": "expired-cert",
                "type": "qseow",
                "host": sim.host,
                "ports": ports,
                "checks": ["repository"],
                "auth": certificate(expired.cert_file, expired.key_file),
            },
            {
                "name": "bad-jwt",
                "type": "qseow",
                **frontend,
                "checks": ["repository"],
                "auth": {"method": "jwt", "token_file": str(token_file)},
            },
        ],
    }


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """A three-node site on 127.0.0.2-4 (named by address, so the exporter's own process
    reaches it) with rim1's engine stopped, and the Cloud tenant on 127.0.0.1; served by an
    event loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="simulator", daemon=True)
    thread.start()
    sim = Simulator(tmp_path_factory.mktemp("sim"), nodes=addressed_site())
    try:
        asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=60)
        asyncio.run_coroutine_threadsafe(sim.stop_service("rim1", "engine"), loop).result(10)
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process bound to 127.0.0.1 with its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a process we started, killing it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(
    simulator: Simulator,
    prometheus_tools: PrometheusTools,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The exporter probing the simulator and Prometheus scraping it, both ready."""
    folder = tmp_path_factory.mktemp("stack")
    command = shutil.which("qlik-sense-exporter")
    if command is None:
        pytest.fail("qlik-sense-exporter is not installed: pip install -e '.[dev]'")
    config = folder / "qlik-sense-exporter.yml"
    settings = exporter_config(simulator, folder)
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    discovers = any(t.get("discover") for t in settings["targets"])
    exporter_port, prometheus_port = free_port(), free_port()
    (folder / "rules.yml").write_text(shortened_rules(RULES.read_text(encoding="utf-8")))
    prometheus_config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
            }
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config, sort_keys=False))
    logs = {"exporter": folder / "exporter.log", "prometheus": folder / "prometheus.log"}
    stack = Stack(
        f"http://127.0.0.1:{prometheus_port}", f"http://127.0.0.1:{exporter_port}", logs, discovers
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        exporter_args = [command, "--config.file", str(config)]
        exporter_args += ["--web.listen-address", f"127.0.0.1:{exporter_port}"]
        exporter = start(exporter_args, logs["exporter"])
        procs.append(exporter)
        ready = f"{stack.exporter_url}/metrics"
        wait_for(lambda: serving(exporter, ready, logs["exporter"]), 30, "the exporter", stack)
        prometheus_args = [
            str(prometheus_tools.prometheus),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ]
        prometheus = start(prometheus_args, logs["prometheus"])
        procs.append(prometheus)
        ready = f"{stack.prometheus_url}/-/ready"
        wait_for(lambda: serving(prometheus, ready, logs["prometheus"]), 60, "Prometheus", stack)
        yield stack
    finally:
        for proc in reversed(procs):
            stop(proc)


def active_pairs(stack: Stack) -> set[tuple[str, str]]:
    """(alertname, target) of every pending or firing alert."""
    return {
        (a["labels"]["alertname"], a["labels"].get("target", "")) for a in stack.active_alerts()
    }


def label_values(stack: Stack, series: str, label: str) -> set[str]:
    """What Grafana's ``label_values(series, label)`` lists."""
    values: list[str] = stack.api(f"/api/v1/label/{label}/values", **{"match[]": series})
    return set(values)


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    """Each panel query, with All selected, returns at least one series from real data (those
    of discovery's series once a target of the stack discovers its site)."""
    queries = [
        (title, ref, q)
        for title, ref, q in panel_queries()
        if stack.discovers or not DISCOVERY_SERIES.search(q)
    ]

    def empty() -> list[str]:
        return [f"{title} [{ref}]: {q}" for title, ref, q in queries if not stack.query(q)]

    wait_for(lambda: not empty(), WAIT_SECONDS, "data for every dashboard query", stack)


def test_every_dashboard_variable_lists_values(stack: Stack) -> None:
    """Each query variable, with All selected in the ones before it, lists at least one value."""
    queries = variable_queries()

    def empty() -> list[str]:
        return [name for name, (s, label) in queries.items() if not label_values(stack, s, label)]

    wait_for(lambda: not empty(), WAIT_SECONDS, "values for every dashboard variable", stack)


def test_target_variable_lists_only_the_chosen_jobs_targets(stack: Stack) -> None:
    """The Target variable lists every target of the chosen job, and none for another job."""
    mine = variable_queries({"job": JOB})["target"]
    wait_for(
        lambda: label_values(stack, *mine) == TARGETS,
        WAIT_SECONDS,
        f"targets {sorted(TARGETS)} in the Target variable for job {JOB}",
        stack,
    )
    other = variable_queries({"job": "another-job"})["target"]
    assert label_values(stack, *other) == set()


def test_faults_raise_their_alerts(stack: Stack) -> None:
    """The expired client certificate and the rejected JWT put their alerts in pending or firing."""
    wait_for(
        lambda: active_pairs(stack) >= EXPECTED_ALERTS,
        WAIT_SECONDS,
        f"alerts {sorted(EXPECTED_ALERTS)} (active: {sorted(active_pairs(stack))})",
        stack,
    )
    labels = [a["labels"] for a in stack.active_alerts()]
    auth = {
        (x["target"], x["reason"]) for x in labels if x["alertname"] == "QlikAuthenticationFailure"
    }
    assert ("bad-jwt", "unauthorized") in auth, labels
    assert {r for t, r in auth if t == "expired-cert"} <= AUTH_REASONS, labels
    expired = {
        (x["target"], x["source"]) for x in labels if x["alertname"] == "QlikCertificateExpired"
    }
    assert expired == {("expired-cert", "client")}, labels
    site = {
        (x.get("node", ""), x.get("check", ""))
        for x in labels
        if x["alertname"] == "QlikProbeFailing" and x["target"] == "central"
    }
    assert {node for node, _ in site} == {"127.0.0.3"}, labels
    assert {check for _, check in site} <= {"engine", "engine_session"}, labels


def test_healthy_targets_raise_no_alerts(stack: Stack) -> None:
    """No other alert is pending or firing once the expected ones are, a few evaluations later."""
    wait_for(
        lambda: active_pairs(stack) >= EXPECTED_ALERTS, WAIT_SECONDS, "the expected alerts", stack
    )
    time.sleep(SETTLE_SECONDS)
    unexpected = active_pairs(stack) - EXPECTED_ALERTS
    assert unexpected == set(), stack.diagnostics()
