"""The compose file: structure, files it mounts, and its Prometheus configuration."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml
from ops_helpers import DEPLOY, RULES, PrometheusTools

COMPOSE_DIR = DEPLOY / "compose"


def compose() -> dict[str, Any]:
    """The parsed compose file."""
    data: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "compose.yml").read_text())
    return data


def bind_mounts() -> list[tuple[str, Path, str]]:
    """(service, host path, container path) of every bind mount."""
    mounts = []
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                mounts.append((name, (COMPOSE_DIR / source).resolve(), target))
    return mounts


def test_compose_has_exporter_prometheus_and_grafana() -> None:
    """The compose file runs the exporter, Prometheus and Grafana."""
    assert set(compose()["services"]) >= {"exporter", "prometheus", "grafana"}


def test_bind_mounted_files_exist() -> None:
    """Every file or folder that the compose file mounts exists in the repository."""
    missing = [(s, str(p)) for s, p, _ in bind_mounts() if not p.exists()]
    assert missing == []


def test_build_context_has_the_dockerfile() -> None:
    """The exporter is built from the repository's Dockerfile."""
    build = compose()["services"]["exporter"]["build"]
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).is_file()


def test_prometheus_loads_the_rules_file() -> None:
    """Prometheus gets deploy/prometheus/rules.yml beside its config, which loads it."""
    mounts = {target: source for s, source, target in bind_mounts() if s == "prometheus"}
    assert mounts["/etc/prometheus/rules.yml"] == RULES
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    assert config["rule_files"] == ["rules.yml"]


def test_grafana_gets_provisioning_and_dashboard() -> None:
    """Grafana mounts both provisioning folders and the dashboards where the provider looks."""
    mounts = {target: source for s, source, target in bind_mounts() if s == "grafana"}
    provider_file = mounts["/etc/grafana/provisioning/dashboards"] / "qlik-sense-exporter.yml"
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    dashboards = mounts[provider["options"]["path"]]
    assert (dashboards / "qlik-sense-exporter.json").is_file()
    assert (mounts["/etc/grafana/provisioning/datasources"] / "prometheus.yml").is_file()


def test_compose_prometheus_config_passes_promtool(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    """The compose Prometheus config, laid out as in the container, passes promtool check config."""
    for _, source, target in bind_mounts():
        if target.startswith("/etc/prometheus/"):
            shutil.copy(source, tmp_path / Path(target).name)
    prometheus_tools.promtool_run("check", "config", tmp_path / "prometheus.yml")
