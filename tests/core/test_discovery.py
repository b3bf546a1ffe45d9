"""Site discovery against the simulator's three-node site: which check runs where, the node
label, node changes between discoveries, a discovery outage, DNS per node, a 200-node answer."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import ConfigError, load_config
from exporter.daemon import MAX_RUNS_PER_TARGET, Daemon
from exporter.metrics import QlikCollector
from exporter.reasons import Reason
from exporter.sim import Simulator
from exporter.sim.site import NodeSpec
from tests.core.conftest import cert_target

CHECKS = ["repository", "proxy", "engine", "services", "license"]


def _write(path: Path, site: Simulator, **over: Any) -> Path:
    target = cert_target(site, "prod", **{"discover": True, "checks": CHECKS, **over})
    path.write_text(yaml.safe_dump({"targets": [target]}))
    return path


def _daemon(site: Simulator, tmp_path: Path, **over: Any) -> Daemon:
    daemon = Daemon(_write(tmp_path / "config.yml", site, **over), resolver=site.resolver())
    daemon.apply(daemon.read_config())
    return daemon


def _host(site: Simulator, name: str) -> str:
    return site.node(name).host_name


def _samples(daemon: Daemon) -> list[Any]:
    text = QlikCollector(daemon.store).render_text().decode()
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


async def _run_all(daemon: Daemon) -> None:
    await asyncio.gather(*(daemon.run_job(t, c, n) for t, n, c in daemon.jobs()))


async def test_before_discovery_the_target_probes_its_host_alone(
    site: Simulator, tmp_path: Path
) -> None:
    daemon = _daemon(site, tmp_path)
    assert daemon.jobs() == [("prod", site.host, c) for c in CHECKS]
    assert daemon.nodes("prod") is None


async def test_each_check_runs_on_every_node_that_runs_its_service(
    site: Simulator, tmp_path: Path
) -> None:
    """repository everywhere, proxy where proxyEnabled (not rim2), engine where engineEnabled,
    services and licence once against host."""
    daemon = _daemon(site, tmp_path)
    found = await daemon.run_discovery("prod")
    assert found is not None
    assert found.success, found.error
    central, rim1, rim2 = (_host(site, n) for n in ("central", "rim1", "rim2"))
    assert sorted(daemon.jobs()) == sorted(
        [
            ("prod", central, "repository"),
            ("prod", rim1, "repository"),
            ("prod", rim2, "repository"),
            ("prod", central, "proxy"),
            ("prod", rim1, "proxy"),
            ("prod", central, "engine"),
            ("prod", rim1, "engine"),
            ("prod", rim2, "engine"),
            ("prod", site.host, "services"),
            ("prod", site.host, "license"),
        ]
    )
    nodes = daemon.nodes("prod")
    assert nodes is not None
    assert {(n.host_name, n.name, n.central, n.purpose) for n in nodes} == {
        (central, "central", True, "both"),
        (rim1, "rim1", False, "production"),
        (rim2, "rim2", False, "development"),
    }


async def test_every_per_probe_series_carries_the_node_it_ran_on(
    site: Simulator, tmp_path: Path
) -> None:
    daemon = _daemon(site, tmp_path)
    await daemon.run_discovery("prod")
    await _run_all(daemon)
    samples = _samples(daemon)
    hosts = {n.host_name for n in site.nodes}
    success = {
        (s.labels["node"], s.labels["check"]): s.value
        for s in samples
        if s.name == "qlik_probe_success"
    }
    assert len(success) == 10
    assert set(success.values()) == {1.0}, success
    per_node = [
        "qlik_probe_runs_total",
        "qlik_probe_latency_seconds_count",
        "qlik_certificate_hostname_match",
        "qlik_repository_build_info",
        "qlik_engine_build_info",
        "qlik_engine_sessions_active",
        "qlik_proxy_sessions",
    ]
    for name in per_node:
        nodes = {s.labels["node"] for s in samples if s.name == name}
        assert nodes, name
        assert nodes <= hosts, (name, nodes)
    assert {s.labels["node"] for s in samples if s.name == "qlik_repository_build_info"} == hosts
    certs = [s for s in samples if s.name == "qlik_certificate_not_after_timestamp_seconds"]
    files = {s.labels["node"] for s in certs if not s.labels["source"].startswith("server_")}
    servers = {s.labels["node"] for s in certs if s.labels["source"].startswith("server_")}
    assert files == {""}  # the client certificate and its CA: no node
    assert servers == hosts  # each node's own server certificate
    info = {
        s.labels["node"]: (s.labels["node_name"], s.labels["central"], s.labels["purpose"])
        for s in samples
        if s.name == "qlik_node_info"
    }
    assert info == {
        _host(site, "central"): ("central", "true", "both"),
        _host(site, "rim1"): ("rim1", "false", "production"),
        _host(site, "rim2"): ("rim2", "false", "development"),
    }
    value = {s.name: s.value for s in samples if s.name.startswith("qlik_discovery_")}
    assert value["qlik_discovery_success"] == 1.0
    assert value["qlik_discovery_nodes"] == 3.0
    assert value["qlik_discovery_last_success_timestamp_seconds"] > 0
    assert not [
        s for s in samples if s.name.startswith("qlik_probe") and s.labels["check"] == "discovery"
    ]


async def test_node_added_and_removed_between_discoveries(site: Simulator, tmp_path: Path) -> None:
    """A node added in the site is probed from the next discovery on; a removed node's series
    (counters included) disappear; the other nodes keep their counters."""
    daemon = _daemon(site, tmp_path)
    await daemon.run_discovery("prod")
    await _run_all(daemon)
    await _run_all(daemon)
    rim1, central = _host(site, "rim1"), _host(site, "central")
    rim3 = (await site.add_node(NodeSpec("rim3", purpose="production", proxy=False))).host_name
    await site.remove_node("rim1")
    assert all(n != rim3 for _, n, _ in daemon.jobs())  # not before the next discovery
    found = await daemon.run_discovery("prod")
    assert found is not None
    assert found.success
    nodes = {n for _, n, _ in daemon.jobs()}
    assert rim3 in nodes
    assert rim1 not in nodes
    await _run_all(daemon)
    samples = _samples(daemon)
    runs = {
        (s.labels["node"], s.labels["check"]): s.value
        for s in samples
        if s.name == "qlik_probe_runs_total"
    }
    assert runs[(central, "repository")] == 3.0  # kept across the change
    assert runs[(rim3, "repository")] == 1.0
    assert runs[(rim3, "engine")] == 1.0
    assert (rim3, "proxy") not in runs  # rim3 runs no proxy
    assert not [s for s in samples if s.labels.get("node") == rim1]
    assert {s.labels["node"] for s in samples if s.name == "qlik_node_info"} == {
        central,
        _host(site, "rim2"),
        rim3,
    }


async def test_a_discovery_outage_keeps_the_last_node_list(site: Simulator, tmp_path: Path) -> None:
    daemon = _daemon(site, tmp_path)
    await daemon.run_discovery("prod")
    jobs = daemon.jobs()
    central = site.node("central")
    central.faults.set("repository", "status", status=503, times=1)
    failed = await daemon.run_discovery("prod")
    assert failed is not None
    assert not failed.success
    assert failed.reason is Reason.SERVER_ERROR
    assert daemon.jobs() == jobs
    samples = _samples(daemon)
    value = {s.name: s.value for s in samples if s.name.startswith("qlik_discovery_")}
    assert value["qlik_discovery_success"] == 0.0
    assert value["qlik_discovery_nodes"] == 3.0  # the list it keeps
    assert len([s for s in samples if s.name == "qlik_node_info"]) == 3
    again = await daemon.run_discovery("prod")
    assert again is not None
    assert again.success


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"hostName": "central"}, "did not return a list"),
        ([], "returned no nodes"),
        ([{"name": "x", "isCentral": True}], "has no valid hostName"),
        ([{"hostName": "evil/host", "name": "x"}], "has no valid hostName"),
        (
            [
                {
                    "hostName": "a.example.com",
                    "name": "a",
                    "isCentral": True,
                    "nodePurpose": 7,
                    "proxyEnabled": True,
                    "engineEnabled": True,
                }
            ],
            "unknown nodePurpose",
        ),
        (
            [
                {
                    "hostName": "a.example.com",
                    "name": "a",
                    "isCentral": "yes",
                    "nodePurpose": 0,
                    "proxyEnabled": True,
                    "engineEnabled": True,
                }
            ],
            "no boolean isCentral",
        ),
    ],
)
async def test_a_node_list_of_another_shape_is_invalid_and_keeps_the_last_list(
    site: Simulator, tmp_path: Path, body: Any, why: str
) -> None:
    daemon = _daemon(site, tmp_path)
    await daemon.run_discovery("prod")
    jobs = daemon.jobs()
    site.node("central").faults.set("repository", "wrong_shape", body=body, times=1)
    failed = await daemon.run_discovery("prod")
    assert failed is not None
    assert failed.reason is Reason.INVALID_RESPONSE
    assert why in failed.error
    assert daemon.jobs() == jobs


async def test_a_node_whose_name_does_not_resolve_fails_as_dns_alone(
    site: Simulator, tmp_path: Path
) -> None:
    daemon = _daemon(site, tmp_path)
    ghost = await site.add_node(NodeSpec("ghost", purpose="production", resolvable=False))
    await daemon.run_discovery("prod")
    await _run_all(daemon)
    success = {
        (s.labels["node"], s.labels["check"]): s.value
        for s in _samples(daemon)
        if s.name == "qlik_probe_success"
    }
    failed = {key for key, v in success.items() if v == 0.0}
    assert failed == {(ghost.host_name, c) for c in ("repository", "proxy", "engine")}
    latest = daemon.store.snapshot()
    reasons = {s.latest.reason for s in latest if s.node == ghost.host_name and s.latest}
    assert reasons == {Reason.DNS}


async def test_a_stopped_node_fails_alone(site: Simulator, tmp_path: Path) -> None:
    daemon = _daemon(site, tmp_path)
    await daemon.run_discovery("prod")
    await site.stop_node("rim2")
    await _run_all(daemon)
    rim2 = _host(site, "rim2")
    by_node: dict[str, set[float]] = {}
    for s in _samples(daemon):
        if s.name == "qlik_probe_success":
            by_node.setdefault(s.labels["node"], set()).add(s.value)
    assert by_node.pop(rim2) == {0.0}
    assert all(values == {1.0} for values in by_node.values()), by_node


def test_discover_needs_certificate_auth(site: Simulator, tmp_path: Path) -> None:
    target = cert_target(site, "prod", discover=True, checks=["repository"])
    target["auth"] = {"method": "header", "header_name": "X-Sso-User", "user_id": "u"}
    target["virtual_proxy"] = "hdr"
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"targets": [target]}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any("discover" in e and "certificate" in e for e in err.value.errors), err.value.errors


@pytest.mark.parametrize("interval", ["0s", "200h"])
def test_discovery_interval_is_bounded(site: Simulator, tmp_path: Path, interval: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path / "c.yml", site, discovery_interval=interval))
    assert any("discovery_interval" in e for e in err.value.errors), err.value.errors


class _CountingResolver:
    """Maps every name to the central node, and records how many resolutions overlap."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.active = 0
        self.peak = 0
        self.calls = 0

    async def resolve(self, host: str, port: int) -> list[str]:
        self.calls += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(0.01)
            if host.startswith("missing"):
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [self.address]
        finally:
            self.active -= 1


async def test_two_hundred_nodes_run_with_bounded_concurrency(
    site: Simulator, tmp_path: Path
) -> None:
    """A 200-node answer is accepted whole, and at most MAX_RUNS_PER_TARGET runs of the
    target are in flight at once, however many jobs are due together."""
    nodes = [
        {
            "hostName": f"node{i:03d}.example.com",
            "name": f"node{i:03d}",
            "isCentral": i == 0,
            "nodePurpose": 0,
            "proxyEnabled": False,
            "engineEnabled": i % 2 == 0,
        }
        for i in range(200)
    ]
    resolver = _CountingResolver(site.node("central").address)
    # Every name leads to the central node, whose certificate names none of them.
    config = _write(tmp_path / "c.yml", site, checks=["repository", "engine"], tls_verify=False)
    daemon = Daemon(config, resolver=resolver)
    daemon.apply(daemon.read_config())
    site.node("central").faults.set("repository", "wrong_shape", body=nodes, times=1)
    found = await daemon.run_discovery("prod")
    assert found is not None
    assert found.success, found.error
    jobs = daemon.jobs()
    assert len(jobs) == 300
    resolver.peak = resolver.calls = 0
    results = await asyncio.wait_for(
        asyncio.gather(*(daemon.run_job(t, c, n) for t, n, c in jobs)), timeout=120
    )
    assert len(results) == 300
    assert resolver.calls == 300
    assert all(r is not None and r.success for r in results)
    assert 1 < resolver.peak <= MAX_RUNS_PER_TARGET
    assert len(daemon.store.snapshot()) == 301  # every run, and the discovery


async def _until(predicate: Any, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not predicate():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.05)


async def test_the_scheduler_discovers_at_once_and_reschedules_per_node(
    site: Simulator, tmp_path: Path
) -> None:
    """Discovery is scheduled first, at once; its node list becomes one job per (node, check)
    plus the discovery job; a reload that keeps host and discover keeps the node list."""
    config = _write(tmp_path / "c.yml", site, interval="1h", discovery_interval="1h")
    daemon = Daemon(config, resolver=site.resolver())
    daemon.start(daemon.read_config())
    try:
        scheduler = daemon.scheduler
        assert scheduler is not None
        assert "prod//discovery" in {j.id for j in scheduler.get_jobs()}
        await _until(lambda: daemon.nodes("prod") is not None)
        ids = {j.id for j in scheduler.get_jobs()}
        expected = {f"prod/{n}/{c}" for _, n, c in daemon.jobs()} | {"prod//discovery"}
        assert ids == expected
        assert len(ids) == 11
        assert f"prod/{_host(site, 'rim2')}/engine" in ids
        _write(config, site, checks=["repository"], interval="1h", discovery_interval="1h")
        assert await daemon.reload() == []
        assert daemon.nodes("prod") is not None  # kept: same host, still discovered
        ids = {j.id for j in scheduler.get_jobs()}
        assert ids == {f"prod/{n.host_name}/repository" for n in site.nodes} | {"prod//discovery"}
    finally:
        await daemon.stop()


async def test_status_page_shows_each_node_and_the_discovery(
    site: Simulator, tmp_path: Path
) -> None:
    """One row per check per node (the failing node first), the discovery's own row, and one
    targets row per node with its QMC name and role."""
    import re
    import time

    from exporter.state import DaemonStatus
    from exporter.statuspage import render_status_page

    daemon = _daemon(site, tmp_path)
    await daemon.run_discovery("prod")
    await site.stop_service("rim2", "engine")
    await _run_all(daemon)
    page = render_status_page(
        daemon.config, daemon.store.snapshot(), DaemonStatus(True, 1.0, 1, 1.0, True), time.time()
    )
    checks = page.split('id="checks"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r'<tr class="(\w+)">(.*?)</tr>', checks, re.S)
    cells = [(css, re.findall(r"<div>(.*?)</div>", row, re.S)) for css, row in rows]
    rim2 = _host(site, "rim2")
    assert cells[0][0] == "failed"
    assert cells[0][1][1:3] == [rim2, cells[0][1][2]]
    assert cells[0][1][2].startswith("engine ")
    assert len(rows) == 11  # discovery + 10 runs
    assert any(c[1][2].startswith("discovery ") and c[0] == "ok" for c in cells)
    targets = page.split('id="targets"', 1)[1].split("</section>", 1)[0]
    assert f"{rim2} <small>rim2, rim node</small>" in targets
    assert f"{_host(site, 'central')} <small>central, central node</small>" in targets


async def test_probe_now_discovers_first_and_leaves_the_schedule_alone(
    site: Simulator, tmp_path: Path
) -> None:
    """/probe and `probe`: a fresh discovery, then the check on every node that runs it; the
    scheduled node list and store are untouched."""
    from exporter.metrics import probe_registry

    daemon = _daemon(site, tmp_path)
    results = await daemon.probe("prod", "engine")
    assert [r.check for r in results] == ["discovery", "engine", "engine", "engine"]
    assert {r.node for r in results[1:]} == {n.host_name for n in site.nodes}
    assert all(r.success for r in results)
    assert daemon.nodes("prod") is None
    assert daemon.store.snapshot() == []
    registry = probe_registry(results)
    assert registry.get_sample_value("qlik_discovery_nodes", {"target": "prod"}) == 3.0
    labels = {"target": "prod", "node": _host(site, "rim2"), "check": "engine"}
    assert registry.get_sample_value("qlik_probe_success", labels) == 1.0
    assert registry.get_sample_value("qlik_probe_runs_total", labels) == 1.0
    runs = [s for f in registry.collect() for s in f.samples if s.name == "qlik_probe_runs_total"]
    assert len(runs) == 3  # one series per node: the run's start and result in the same one
    site.node("central").faults.set("repository", "status", status=503, times=1)
    results = await daemon.probe("prod", "repository")
    assert [(r.check, r.success) for r in results] == [
        ("discovery", False),
        ("repository", True),  # before any discovery succeeded: the host alone
    ]
    assert results[1].node == site.host


async def test_a_run_of_a_node_removed_meanwhile_leaves_no_series(
    site: Simulator, tmp_path: Path
) -> None:
    """A run still in flight when discovery drops its node is not recorded: the node's series
    do not come back after they were removed."""
    daemon = _daemon(site, tmp_path)
    await daemon.run_discovery("prod")
    rim1 = _host(site, "rim1")
    site.node("rim1").faults.set("repository", "delay", seconds=1.0)
    run = asyncio.create_task(daemon.run_job("prod", "repository", rim1))
    await asyncio.sleep(0.3)
    await site.remove_node("rim1")
    await daemon.run_discovery("prod")
    await run
    assert not [s for s in daemon.store.snapshot() if s.node == rim1]
    assert await daemon.run_job("prod", "repository", rim1) is None  # no longer planned


def _entry(host: str, name: str, **over: Any) -> dict[str, Any]:
    entry = {
        "hostName": host,
        "name": name,
        "isCentral": False,
        "nodePurpose": 1,
        "proxyEnabled": True,
        "engineEnabled": False,
    }
    return {**entry, **over}


async def test_discovered_names_are_lowercased_once_each_and_described(
    site: Simulator, tmp_path: Path
) -> None:
    """Host names as DNS compares them (case, a trailing dot), each node once, and the
    report's lines per node."""
    body = [
        _entry(
            "Central.Example.COM.", "central", isCentral=True, nodePurpose=2, engineEnabled=True
        ),
        _entry("rim.example.com", "rim"),
        _entry("RIM.example.com", "rim again"),
    ]
    site.node("central").faults.set("repository", "wrong_shape", body=body, times=1)
    daemon = _daemon(site, tmp_path)
    found = await daemon.run_discovery("prod")
    assert found is not None
    assert found.success, found.error
    assert found.values.nodes is not None
    assert [n.host_name for n in found.values.nodes] == ["central.example.com", "rim.example.com"]
    assert found.values.nodes[1].name == "rim"
    assert found.values.details == {
        "nodes": "2 (1 central)",
        "node central.example.com": (
            "central, central node, purpose both; runs repository, proxy, engine"
        ),
        "node rim.example.com": "rim, rim node, purpose development; runs repository, proxy",
    }


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([42], "discovery: node [0] is not an object"),
        (
            [_entry("a.example.com", "a"), _entry("b.example.com", 7)],
            "node [1] (b.example.com) has no name",
        ),
        (
            [_entry("A.example.com", "a", nodePurpose=True)],
            "node [0] (a.example.com) has an unknown nodePurpose",
        ),
        (
            [_entry("a.example.com", "a", engineEnabled=1)],
            "node [0] (a.example.com) has no boolean engineEnabled",
        ),
        (
            [_entry(f"n{i}.example.com", f"n{i}") for i in range(1001)],
            "returned 1001 nodes (at most 1000)",
        ),
    ],
)
async def test_each_bad_node_is_named_by_index_and_host(
    site: Simulator, tmp_path: Path, body: Any, error: str
) -> None:
    site.node("central").faults.set("repository", "wrong_shape", body=body, times=1)
    failed = await _daemon(site, tmp_path).run_discovery("prod")
    assert failed is not None
    assert failed.reason is Reason.INVALID_RESPONSE
    assert error in failed.error


async def test_a_thousand_nodes_are_accepted(site: Simulator, tmp_path: Path) -> None:
    body = [_entry(f"n{i}.example.com", f"n{i}") for i in range(1000)]
    body[0]["name"] = "x" * 300  # a QMC name is kept to 200 characters
    site.node("central").faults.set("repository", "wrong_shape", body=body, times=1)
    found = await _daemon(site, tmp_path).run_discovery("prod")
    assert found is not None
    assert found.success, found.error
    nodes = found.values.nodes or ()
    assert len(nodes) == 1000
    assert nodes[0].name == "x" * 200
