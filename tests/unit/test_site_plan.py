"""Which check runs on which node: exporter.site.plan with constructed node lists."""

from __future__ import annotations

from pathlib import Path

from exporter.config import Target, parse_config
from exporter.results import NodeInfo
from exporter.site import node_runs, plan

CHECKS = ["repository", "proxy", "engine", "engine_session", "services", "license"]


def _target(tmp_path: Path, *, discover: bool = True) -> Target:
    for name in ("c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    auth = {"method": "certificate", "cert_file": "c.pem", "key_file": "k.pem"}
    target = {
        "name": "prod",
        "type": "qseow",
        "host": "central.example.com",
        "discover": discover,
        "checks": CHECKS,
        "auth": auth,
    }
    return parse_config({"targets": [target]}, base_dir=tmp_path).targets[0]


def _node(name: str, *, proxy: bool, engine: bool) -> NodeInfo:
    return NodeInfo(f"{name}.example.com", name, name == "central", "both", proxy, engine)


NODES = (
    _node("central", proxy=True, engine=True),
    _node("proxyonly", proxy=True, engine=False),
    _node("engineonly", proxy=False, engine=True),
    _node("scheduler", proxy=False, engine=False),
)


def test_each_node_runs_the_checks_of_its_services() -> None:
    runs = {n.name: [c for c in CHECKS if node_runs(n, c)] for n in NODES}
    assert runs == {
        "central": CHECKS,
        "proxyonly": ["repository", "proxy", "services", "license"],
        "engineonly": ["repository", "engine", "engine_session", "services", "license"],
        "scheduler": ["repository", "services", "license"],
    }


def test_the_plan_puts_node_checks_on_nodes_and_site_checks_on_host(tmp_path: Path) -> None:
    target = _target(tmp_path)
    assert plan(target, NODES) == [
        ("central.example.com", "repository"),
        ("proxyonly.example.com", "repository"),
        ("engineonly.example.com", "repository"),
        ("scheduler.example.com", "repository"),
        ("central.example.com", "proxy"),
        ("proxyonly.example.com", "proxy"),
        ("central.example.com", "engine"),
        ("engineonly.example.com", "engine"),
        ("central.example.com", "engine_session"),
        ("engineonly.example.com", "engine_session"),
        ("central.example.com", "services"),
        ("central.example.com", "license"),
    ]


def test_without_a_node_list_or_discovery_the_host_runs_every_check(tmp_path: Path) -> None:
    every = [("central.example.com", c) for c in CHECKS]
    assert plan(_target(tmp_path), None) == every
    assert plan(_target(tmp_path), ()) == every
    assert plan(_target(tmp_path, discover=False), NODES) == every
