"""The Grafana dashboard: generated from grafana/generate.py, its structure, what its queries
compute (evaluated by promtool on made-up series), and its provisioning files."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import yaml
from dashboard_helpers import (
    GENERATOR,
    all_panels,
    dashboard,
    panel,
    query_panels,
    substitute,
    variables,
)
from ops_helpers import DASHBOARD, REPO, PrometheusTools

PROVISIONING = REPO / "grafana" / "provisioning"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__all"}
# Metrics the dashboard is meant to show.
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
    "qlik_node_info",
    "qlik_discovery_success",
    "qlik_discovery_nodes",
    "qlik_discovery_last_success_timestamp_seconds",
]
# A metric name, and its {matchers} if it has any.
SELECTOR = re.compile(r"\b(?P<metric>qlik_\w+|up)\b(?P<matchers>\{[^}]*\})?")
BUILDS = "Repository build per node"
VERSIONS_IN_USE = "Repository versions in use"
ENGINES = "Engine version per node"
SLOWEST = "Slowest checks, last run by phase"
PHASES = ("resolve", "connect", "tls", "request", "read")
JOB = 'job="qlik-sense-exporter",instance="127.0.0.1:9842"'


def run_generator(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``python grafana/generate.py ARGS``."""
    return subprocess.run(
        [sys.executable, str(GENERATOR), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- Generated from code ----------------------------------------------------------------------


def test_committed_dashboard_is_what_the_generator_writes() -> None:
    """`generate.py --check` passes on the committed JSON: nobody edited it by hand."""
    proc = run_generator("--check")
    assert proc.returncode == 0, proc.stderr


def test_generator_check_fails_on_a_stale_dashboard(tmp_path: Path) -> None:
    """`--check` exits 1 and says how to regenerate when the file differs from the code."""
    stale = tmp_path / "dashboard.json"
    stale.write_text(DASHBOARD.read_text(encoding="utf-8").replace("Latency", "Lag", 1))
    proc = run_generator("--check", "--output", stale)
    assert proc.returncode == 1
    assert "run python grafana/generate.py" in proc.stderr


def test_generator_writes_the_committed_file(tmp_path: Path) -> None:
    """Without `--check` it writes exactly the committed bytes."""
    out = tmp_path / "dashboard.json"
    proc = run_generator("--output", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == DASHBOARD.read_bytes()


# --- Structure --------------------------------------------------------------------------------


def test_dashboard_uses_a_current_schema() -> None:
    """The dashboard declares schemaVersion 39 or later and a stable uid."""
    assert dashboard()["schemaVersion"] >= 39
    assert dashboard()["uid"] == "qlik-sense-exporter"


def test_datasource_is_a_variable() -> None:
    """A `datasource` variable of type datasource selects any Prometheus datasource."""
    ds = variables()["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")


@pytest.mark.parametrize("name", ["job", "target", "check"])
def test_filter_variables_are_multi_value_with_all(name: str) -> None:
    """`job`, `target` and `check` are multi-value query variables whose All matches all."""
    var = variables()[name]
    assert var["type"] == "query"
    assert var["datasource"] == DATASOURCE_REF
    assert var["multi"]
    assert var["includeAll"]
    assert var["allValue"] == ".*"


@pytest.mark.parametrize(
    ("name", "narrowed_by"), [("target", ["job"]), ("check", ["job", "target"])]
)
def test_variables_are_narrowed_by_the_ones_before(name: str, narrowed_by: list[str]) -> None:
    """Targets are those of the chosen jobs, checks those of the chosen jobs and targets."""
    query = variables()[name]["query"]
    assert query.startswith("label_values(qlik_probe_success{")
    for before in narrowed_by:
        assert f'{before}=~"${before}"' in query


def test_every_panel_has_a_query_on_the_datasource_variable() -> None:
    """Each panel and each of its queries uses ${datasource}, and every query is non-empty."""
    for p in query_panels():
        assert p["datasource"] == DATASOURCE_REF, p["title"]
        assert p["targets"], p["title"]
        for target in p["targets"]:
            assert target["datasource"] == DATASOURCE_REF, p["title"]
            assert target["expr"].strip(), p["title"]


def test_queries_use_only_defined_variables() -> None:
    """Every $variable in a query is a dashboard variable or a Grafana built-in."""
    defined = set(variables()) | BUILTIN_VARIABLES
    for p in query_panels():
        for target in p["targets"]:
            used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", target["expr"]))
            assert used <= defined, (p["title"], used - defined)


def test_every_series_follows_the_filter_variables() -> None:
    """Every series a panel selects is narrowed by $job, and per-target ones also by $target,
    so choosing a job hides the other jobs' targets even with Target on All."""
    for p in query_panels():
        for target in p["targets"]:
            for found in SELECTOR.finditer(target["expr"]):
                metric, matchers = found["metric"], found["matchers"] or ""
                where = f"{p['title']}: {metric}{matchers}"
                assert 'job=~"$job"' in matchers, where
                if metric.startswith("qlik_") and not metric.startswith("qlik_exporter_"):
                    assert 'target=~"$target"' in matchers, where


def test_panel_ids_are_unique() -> None:
    """No two panels share an id (Grafana links and repeats rely on it)."""
    ids = [p["id"] for p in all_panels()]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_without_overlapping() -> None:
    """Every panel lies within Grafana's 24 columns and no two panels overlap."""
    cells: dict[tuple[int, int], str] = {}
    for p in dashboard()["panels"]:
        pos = p["gridPos"]
        assert pos["x"] >= 0, p["title"]
        assert pos["x"] + pos["w"] <= 24, p["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, (p["title"], cells.get((x, y)))
                cells[x, y] = p["title"]


@pytest.mark.parametrize("metric", SHOWN_METRICS)
def test_dashboard_shows_metric(metric: str) -> None:
    """Each metric the dashboard is meant to show appears in some panel's query."""
    exprs = [t["expr"] for p in query_panels() for t in p["targets"]]
    assert any(re.search(rf"\b{metric}\b", e) for e in exprs)


def test_expiry_table_is_sorted_and_coloured_at_30_and_7_days() -> None:
    """The certificate/credential table sorts by days left and colours at 7 and 30 days."""
    p = next(p for p in query_panels() if "days left" in p["title"].lower())
    assert p["options"]["sortBy"] == [{"displayName": "Days left", "desc": False}]
    override = next(
        o for o in p["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Days left"
    )
    steps = next(x["value"]["steps"] for x in override["properties"] if x["id"] == "thresholds")
    assert [s["value"] for s in steps] == [None, 7, 30]


def test_no_panel_draws_one_bar_per_target_check_and_phase() -> None:
    """The phase breakdown is a table of the slowest checks, not a bar per series."""
    assert not [p["title"] for p in query_panels() if p["type"] == "bargauge"]
    transformations = [t["id"] for t in panel(SLOWEST)["transformations"]]
    assert transformations[0] == "groupingToMatrix"


# --- What the queries compute, evaluated by promtool ------------------------------------------


def promql_test(
    tools: PrometheusTools,
    folder: Path,
    series: Mapping[str, str],
    at_minute: int,
    expected: Mapping[str, Sequence[tuple[Mapping[str, str], float]]],
) -> None:
    """Evaluate each expression over ``series`` (one sample a minute) and require exactly the
    expected (labels, value) samples, with ``promtool test rules``."""

    def labels(pairs: Mapping[str, str]) -> str:
        return "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"

    cases = [
        {
            "expr": expr,
            "eval_time": f"{at_minute}m",
            "exp_samples": [{"labels": labels(lab), "value": v} for lab, v in samples],
        }
        for expr, samples in expected.items()
    ]
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "promql_expr_test": cases,
            }
        ],
    }
    path = folder / "dashboard_test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False), encoding="utf-8")
    tools.promtool_run("test", "rules", path)


def query_of(title: str, ref: str = "A") -> str:
    """A panel's query with every variable on All."""
    target = next(t for t in panel(title)["targets"] if t["refId"] == ref)
    return substitute(target["expr"])


def build(metric: str, target: str, **labels: str) -> str:
    """An info series of the exporter job for ``target``."""
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return f'{metric}{{{JOB},target="{target}"{extra}}}'


def test_version_panels_keep_a_failing_nodes_last_known_build(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    """A node whose repository check stopped reporting a build still counts with its newest
    last build (not an older one), next to the nodes reporting now; two nodes of one target on
    different builds are two rows."""
    repo, engine = "qlik_repository_build_info", "qlik_engine_build_info"
    series = {
        # site "prod": its rim node "old" failed 30 minutes ago; its node "upgraded" moved to 2.0
        # at 21 m and failed at 50 m; "up-a" reports 2.0. Target "up-b" is a host of its own.
        build(repo, "prod", node="old", build_version="1.0", build_date="d1"): "1x30",
        build(repo, "prod", node="upgraded", build_version="1.0", build_date="d1"): "1x20",
        build(repo, "prod", node="upgraded", build_version="2.0", build_date="d2"): "_x21 1x28",
        build(repo, "prod", node="up-a", build_version="2.0", build_date="d2"): "1x60",
        build(repo, "up-b", node="up-b", build_version="2.0", build_date="d2"): "1x60",
        build(engine, "prod", node="old", version="12.1"): "1x30",
        build(engine, "prod", node="up-a", version="12.2"): "1x60",
    }
    v1 = {"build_version": "1.0", "build_date": "d1"}
    v2 = {"build_version": "2.0", "build_date": "d2"}
    expected = {
        query_of(BUILDS): [
            ({"target": "prod", "node": "old", **v1}, 0.25),
            ({"target": "prod", "node": "upgraded", **v2}, 0.75),
            ({"target": "prod", "node": "up-a", **v2}, 0.75),
            ({"target": "up-b", "node": "up-b", **v2}, 0.75),
        ],
        query_of(VERSIONS_IN_USE): [({}, 2)],
        query_of(ENGINES): [
            ({"target": "prod", "node": "old", "version": "12.1"}, 1),
            ({"target": "prod", "node": "up-a", "version": "12.2"}, 1),
        ],
    }
    promql_test(prometheus_tools, tmp_path, series, 60, expected)


def test_slowest_checks_panel_shows_only_the_ten_slowest_checks_by_phase(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    """Of 30 target × node × check runs, the phase table gets the 10 with the longest last run,
    each with its five phases and a `run` label naming it."""
    durations = {}
    for t in range(3):
        for n in range(2):
            for c in range(5):
                for p, phase in enumerate(PHASES):
                    # Totals all distinct (7 is prime to 30); multiples of 1/8 so sums are exact.
                    total = ((t * 10 + n * 5 + c) * 7 % 30 + p) / 8
                    durations[f"t{t}", f"n{t}{n}", f"c{c}", phase] = total
    series = {
        f"qlik_probe_phase_duration_seconds{{{JOB},"
        f'target="{t}",node="{n}",check="{c}",phase="{ph}"}}': f"{v}x10"
        for (t, n, c, ph), v in durations.items()
    }
    runs = {(t, n, c) for t, n, c, _ in durations}
    totals = {run: sum(durations[*run, ph] for ph in PHASES) for run in runs}
    slowest = sorted(runs, key=totals.__getitem__, reverse=True)[:10]
    expected = [
        (
            {"target": t, "node": n, "check": c, "phase": ph, "run": f"{t} / {n} / {c}"},
            durations[t, n, c, ph],
        )
        for t, n, c in slowest
        for ph in PHASES
    ]
    promql_test(prometheus_tools, tmp_path, series, 5, {query_of(SLOWEST): expected})


def test_node_panels_show_each_nodes_state_and_the_discovery(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    """The Nodes row: a node is OK while every check succeeds, DEGRADED while some fail, DOWN
    while all fail, with its failing checks counted and its QMC details; one grid cell per node
    and check; the discovery's status, node count and age; and the status timeline red for a
    check that fails on any node."""
    checks = {
        "central": {"repository": 1, "engine": 1},
        "rim1": {"repository": 0, "engine": 0},
        "rim2": {"repository": 1, "engine": 0},
    }
    series = {
        build("qlik_probe_success", "prod", node=node, check=check): f"{ok}x10"
        for node, results in checks.items()
        for check, ok in results.items()
    }
    info = {
        "central": {"node_name": "Central", "central": "true", "purpose": "both"},
        "rim1": {"node_name": "Rim 1", "central": "false", "purpose": "production"},
        "rim2": {"node_name": "Rim 2", "central": "false", "purpose": "production"},
    }
    series |= {build("qlik_node_info", "prod", node=n, **x): "1x10" for n, x in info.items()}
    series[build("qlik_discovery_success", "prod")] = "1 1 0x8"
    series[build("qlik_discovery_nodes", "prod")] = "3x10"
    series[build("qlik_discovery_last_success_timestamp_seconds", "prod")] = "0 60 60x8"
    nodes = {"central": 2, "rim1": 0, "rim2": 1}
    expected = {
        query_of("Nodes"): [({"target": "prod", "node": n, **x}, 1) for n, x in info.items()],
        query_of("Nodes", "B"): [({"target": "prod", "node": n}, v) for n, v in nodes.items()],
        query_of("Nodes", "C"): [
            ({"target": "prod", "node": n}, 2 - sum(r.values())) for n, r in checks.items()
        ],
        query_of("Node state over time"): [
            ({"target": "prod", "node": n}, v) for n, v in nodes.items()
        ],
        query_of("Checks by node"): [
            ({"target": "prod", "node": n, "check": c, "row": f"prod / {n}"}, ok)
            for n, results in checks.items()
            for c, ok in results.items()
        ],
        query_of("Site discovery"): [({"target": "prod"}, 0)],
        query_of("Site discovery", "B"): [({"target": "prod"}, 3)],
        query_of("Site discovery", "C"): [({"target": "prod"}, 600 - 60)],
        query_of("Check status over time"): [
            ({"target": "prod", "check": "repository"}, 0),
            ({"target": "prod", "check": "engine"}, 0),
        ],
    }
    promql_test(prometheus_tools, tmp_path, series, 10, expected)


def test_discovery_age_is_empty_before_the_first_success(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    """A target whose discovery never succeeded shows no age, not 56 years."""
    series = {build("qlik_discovery_last_success_timestamp_seconds", "prod"): "0x10"}
    promql_test(prometheus_tools, tmp_path, series, 10, {query_of("Site discovery", "C"): []})


# --- Provisioning -----------------------------------------------------------------------------


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
