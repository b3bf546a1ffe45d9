"""The example Prometheus configurations for scheduled and /probe mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ops_helpers import DEPLOY, PrometheusTools

SCHEDULED = DEPLOY / "prometheus" / "prometheus-scheduled.yml"
PROBE = DEPLOY / "prometheus" / "prometheus-probe.yml"


def probe_job() -> dict[str, Any]:
    """The scrape job of the /probe example."""
    config = yaml.safe_load(PROBE.read_text(encoding="utf-8"))
    return next(j for j in config["scrape_configs"] if j.get("metrics_path") == "/probe")


@pytest.mark.parametrize("path", [SCHEDULED, PROBE], ids=lambda p: p.name)
def test_scrape_config_passes_promtool_check(prometheus_tools: PrometheusTools, path: Path) -> None:
    """`promtool check config` accepts the example (and the rules file it loads)."""
    output = prometheus_tools.promtool_run("check", "config", path)
    assert "SUCCESS" in output


def test_probe_config_passes_target_and_check_as_parameters() -> None:
    """The /probe job turns each listed target name into ?target= and sets ?check= per group."""
    job = probe_job()
    relabel = job["relabel_configs"]
    assert {"source_labels": ["__address__"], "target_label": "__param_target"} in relabel
    assert all("__param_check" in group["labels"] for group in job["static_configs"])


def test_probe_config_shards_with_hashmod() -> None:
    """The /probe job spreads targets over exporter replicas with a hashmod relabelling."""
    relabel = probe_job()["relabel_configs"]
    hashmod = [r for r in relabel if r.get("action") == "hashmod"]
    assert hashmod
    assert hashmod[0]["modulus"] > 1
    shard_label = hashmod[0]["target_label"]
    assert any(
        r.get("source_labels") == [shard_label] and r.get("target_label") == "__address__"
        for r in relabel
    )
