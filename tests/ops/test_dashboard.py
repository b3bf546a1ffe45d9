"""The Grafana dashboard's structure and its provisioning files."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from ops_helpers import DASHBOARD, REPO

PROVISIONING = REPO / "grafana" / "provisioning"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__all"}
# Metrics the issue asks the dashboard to show.
SHOWN_METRICS = [
    "qlik_probe_success",
    "qlik_probe_failures_total",
    "qlik_probe_duration_seconds",
    "qlik_probe_latency_seconds_bucket",
    "qlik_probe_phase_duration_seconds",
    "qlik_certificate_not_after_timestamp_seconds",
    "qlik_credential_expiry_timestamp_seconds",
    "qlik_repository_build_info",
    "qlik_engine_build_info",
    "qlik_engine_sessions_active",
    "qlik_engine_users_active",
    "qlik_engine_apps_loaded",
    "qlik_engine_memory_committed_bytes",
    "qlik_engine_cpu_utilization_ratio",
    "qlik_engine_saturated",
    "qlik_proxy_sessions",
    "qlik_cloud_tenant_info",
    "qlik_exporter_build_info",
    "qlik_exporter_config_last_reload_successful",
    "qlik_exporter_config_last_reload_success_timestamp_seconds",
    "qlik_exporter_targets",
]


def dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def query_panels() -> list[dict[str, Any]]:
    """Every panel that shows data (rows are layout only)."""
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def variables() -> dict[str, dict[str, Any]]:
    """The dashboard's template variables by name."""
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def test_dashboard_uses_a_current_schema() -> None:
    """The dashboard declares schemaVersion 39 or later and a stable uid."""
    assert dashboard()["schemaVersion"] >= 39
    assert dashboard()["uid"] == "qlik-sense-exporter"


def test_datasource_is_a_variable() -> None:
    """A `datasource` variable of type datasource selects any Prometheus datasource."""
    ds = variables()["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")


@pytest.mark.parametrize("name", ["target", "check"])
def test_target_and_check_variables_exist(name: str) -> None:
    """`target` and `check` are multi-value query variables with an All option matching all."""
    var = variables()[name]
    assert var["type"] == "query"
    assert var["datasource"] == DATASOURCE_REF
    assert var["multi"]
    assert var["includeAll"]
    assert var["allValue"] == ".*"
    assert "qlik_probe_success" in var["definition"]


def test_every_panel_has_a_query_on_the_datasource_variable() -> None:
    """Each panel and each of its queries uses ${datasource}, and every query is non-empty."""
    for panel in query_panels():
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_queries_use_only_defined_variables() -> None:
    """Every $variable in a query is a dashboard variable or a Grafana built-in."""
    defined = set(variables()) | BUILTIN_VARIABLES
    for panel in query_panels():
        for target in panel["targets"]:
            used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", target["expr"]))
            assert used <= defined, (panel["title"], used - defined)


def test_panel_ids_are_unique() -> None:
    """No two panels share an id (Grafana links and repeats rely on it)."""
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("metric", SHOWN_METRICS)
def test_dashboard_shows_metric(metric: str) -> None:
    """Each metric the dashboard is meant to show appears in some panel's query."""
    exprs = [t["expr"] for p in query_panels() for t in p["targets"]]
    assert any(re.search(rf"\b{metric}\b", e) for e in exprs)


def test_expiry_table_is_sorted_and_coloured_at_30_and_7_days() -> None:
    """The certificate/credential table sorts by days left and colours at 7 and 30 days."""
    panel = next(p for p in query_panels() if "days left" in p["title"].lower())
    assert panel["options"]["sortBy"] == [{"displayName": "Days left", "desc": False}]
    override = next(
        o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Days left"
    )
    steps = next(p["value"]["steps"] for p in override["properties"] if p["id"] == "thresholds")
    assert [s["value"] for s in steps] == [None, 7, 30]


def test_datasource_provisioning_defines_prometheus() -> None:
    """The provisioned datasource is a Prometheus one."""
    data = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert [d["type"] for d in data["datasources"]] == ["prometheus"]


def test_dashboard_provisioning_is_a_file_provider() -> None:
    """The dashboard provider loads JSON files from a folder (where compose mounts grafana/)."""
    data = yaml.safe_load((PROVISIONING / "dashboards" / "qlik-sense-exporter.yml").read_text())
    (provider,) = data["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
