"""The Grafana dashboard, generated with Grafana's foundation SDK (``grafana-foundation-sdk``).

    python grafana/generate.py            # write grafana/dashboards/qlik-sense-exporter.json
    python grafana/generate.py --check    # exit 1 when that file is not what this script writes

A row is one function returning a :class:`Row`; ``ROWS`` lists them top to bottom. Panel ids and
grid positions are assigned in :func:`dashboard`, so a row function only says what it shows, and
every per-target series is selected through :func:`per_target` or :func:`per_check`, so a new
filter variable is one entry in ``TARGET_FILTERS``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "qlik-sense-exporter.json"
UID = "qlik-sense-exporter"
TITLE = "Qlik Sense exporter"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Variables that narrow every per-target series, outermost first; each also filters the
# variables after it.
TARGET_FILTERS = ("job", "target")
CHECK_FILTERS = (*TARGET_FILTERS, "check")
# The labels that name one probed target, one node of it (the host a run connected to: a
# discovered node, or the target's host), and one check of it, in `by (...)` and `on (...)`.
TARGET = "target"
NODE = f"{TARGET}, node"
CHECK = f"{TARGET}, check"
NODE_CHECK = f"{NODE}, check"
# How far back the version panels look for a target whose check is failing now, and the step
# of that look-back: a coarse step keeps a 7-day subquery cheap, and the current series cover
# the last step.
LAST_KNOWN = "7d"
LAST_KNOWN_STEP = "5m"
SLOWEST = 10
PHASES = ("resolve", "connect", "tls", "request", "read")

Panel = table.Panel | stat.Panel | timeseries.Panel | statetimeline.Panel


@dataclass(frozen=True, slots=True)
class Row:
    """A titled row and its panels, in reading order."""

    title: str
    panels: Sequence[Panel]


# --- PromQL -----------------------------------------------------------------------------------


def selector(metric: str, filters: Sequence[str], *extra: str) -> str:
    """``metric{f=~"$f", ...}`` with one regex matcher per variable (All is ``.*``)."""
    matchers = [f'{name}=~"${name}"' for name in filters] + list(extra)
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def per_target(metric: str, *extra: str) -> str:
    """A per-target series narrowed by the job and target variables."""
    return selector(metric, TARGET_FILTERS, *extra)


def per_check(metric: str) -> str:
    """A per-check series narrowed by the job, target and check variables."""
    return selector(metric, CHECK_FILTERS)


def per_exporter(metric: str) -> str:
    """An exporter's own series, narrowed by the job variable."""
    return selector(metric, ("job",))


def last_known(metric: str, labels: str) -> str:
    """An info series per node as reported now or, for a node with none now (its check failing,
    or the exporter restarted), the newest one it had in ``LAST_KNOWN``; every value 1."""
    by = f"{NODE}, {labels}"
    now = f"max by ({by}) ({per_target(metric)})"
    seen = f"last_over_time(timestamp({per_target(metric)})[{LAST_KNOWN}:{LAST_KNOWN_STEP}])"
    newest = f"topk by ({NODE}) (1, max by ({by}) ({seen}))"
    return f"({now} or on ({NODE}) ({newest} * 0 + 1))"


def query(
    expr: str, legend: str | None = None, *, ref: str = "A", instant: bool = False
) -> pb.Dataquery:
    """A Prometheus query in code mode: a range query, or with ``instant`` a table."""
    q = pb.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    q = q.editor_mode(pm.QueryEditorMode.CODE)
    if instant:
        q = q.instant().format(pm.PromQueryFormat.TABLE)
    else:
        q = q.range().format(pm.PromQueryFormat.TIME_SERIES)
    return q.legend_format(legend) if legend is not None else q


def gauge(expr: str, legend: str | None = None) -> pb.Dataquery:
    """An instant query shown as one value per series (stat panels)."""
    q = pb.Dataquery().expr(expr).ref_id("A").datasource(DATASOURCE).instant()
    q = q.editor_mode(pm.QueryEditorMode.CODE).format(pm.PromQueryFormat.TIME_SERIES)
    return q.legend_format(legend) if legend is not None else q


# --- Field configuration ----------------------------------------------------------------------


def steps(*pairs: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds from (lower bound, colour) pairs; the first bound is None."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in pairs])
    )


def value_map(texts: dict[str, tuple[str, str | None]]) -> list[dm.ValueMapping]:
    """Map each value to (text, colour), in the given order."""
    results = {
        value: dm.ValueMappingResult(text=text, color=colour, index=i)
        for i, (value, (text, colour)) in enumerate(texts.items())
    }
    return [dm.ValueMap(options=results)]


def prop(prop_id: str, value: object) -> dm.DynamicConfigValue:
    """One override property."""
    return dm.DynamicConfigValue(id_val=prop_id, value=value)


def coloured_by_thresholds(*pairs: tuple[float | None, str]) -> list[dm.DynamicConfigValue]:
    """Override properties: cell background coloured by the given thresholds."""
    return [
        prop("thresholds", steps(*pairs).build()),
        prop("color", dm.FieldColor(mode=dm.FieldColorModeId.THRESHOLDS)),
        prop("custom.cellOptions", cm.TableColoredBackgroundCellOptions()),
    ]


def organize(
    rename: dict[str, str], order: Sequence[str] = (), exclude: Sequence[str] = ()
) -> dm.DataTransformerConfig:
    """Rename, order and hide table columns."""
    options = {
        "excludeByName": dict.fromkeys(exclude, True),
        "indexByName": {name: i for i, name in enumerate(order)},
        "renameByName": rename,
    }
    return dm.DataTransformerConfig(id_val="organize", options=options)


def transformation(transform_id: str, **options: object) -> dm.DataTransformerConfig:
    """Any other transformation, by id."""
    return dm.DataTransformerConfig(id_val=transform_id, options=options)


# --- Panels -----------------------------------------------------------------------------------


def table_panel(
    title: str, description: str, *queries: pb.Dataquery, w: int, h: int
) -> table.Panel:
    """A table of instant queries."""
    panel = table.Panel().title(title).description(description).datasource(DATASOURCE)
    panel = panel.span(w).height(h).cell_height(cm.TableCellHeight.SM).show_header(True)
    panel = panel.align(cm.FieldTextAlignment.AUTO).cell_options(cm.TableAutoCellOptions())
    for q in queries:
        panel = panel.with_target(q)
    return panel


def timeseries_panel(
    title: str,
    description: str,
    *queries: pb.Dataquery,
    unit: str,
    w: int,
    h: int,
    stacked: bool = False,
    bars: bool = False,
) -> timeseries.Panel:
    """Lines (or stacked bars) with a legend table of last and max values."""
    panel = timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
    panel = panel.span(w).height(h).unit(unit).line_width(1).span_nulls(False)
    panel = panel.draw_style(cm.GraphDrawStyle.BARS if bars else cm.GraphDrawStyle.LINE)
    panel = panel.fill_opacity(60 if bars else 10).show_points(cm.VisibilityMode.NEVER)
    mode = cm.StackingMode.NORMAL if stacked else cm.StackingMode.NONE
    panel = panel.stacking(cb.StackingConfig().mode(mode).group("A"))
    panel = panel.color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
    legend = cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
    legend = legend.placement(cm.LegendPlacement.RIGHT).show_legend(True)
    panel = panel.legend(legend.calcs(["lastNotNull", "max"]))
    tooltip = cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI)
    panel = panel.tooltip(tooltip.sort(cm.SortOrder.DESCENDING))
    for q in queries:
        panel = panel.with_target(q)
    return panel


def stat_panel(
    title: str, description: str, q: pb.Dataquery, *, w: int, h: int, coloured: bool
) -> stat.Panel:
    """One big value per series; ``coloured`` paints its background by thresholds."""
    panel = stat.Panel().title(title).description(description).datasource(DATASOURCE)
    panel = panel.span(w).height(h).with_target(q).graph_mode(cm.BigValueGraphMode.NONE)
    colour = cm.BigValueColorMode.BACKGROUND if coloured else cm.BigValueColorMode.NONE
    panel = panel.color_mode(colour).justify_mode(cm.BigValueJustifyMode.AUTO)
    reduce = cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("")
    return panel.reduce_options(reduce).orientation(cm.VizOrientation.AUTO).wide_layout(True)


def state_panel(
    title: str, description: str, q: pb.Dataquery, *, w: int, h: int
) -> statetimeline.Panel:
    """A state timeline without legend, one row per series."""
    panel = statetimeline.Panel().title(title).description(description).datasource(DATASOURCE)
    panel = panel.span(w).height(h).with_target(q).show_value(cm.VisibilityMode.NEVER)
    panel = panel.merge_values(True).row_height(0.9).fill_opacity(80).line_width(0)
    panel = panel.color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    legend = cb.VizLegendOptions().show_legend(False).display_mode(cm.LegendDisplayMode.LIST)
    panel = panel.legend(legend.placement(cm.LegendPlacement.BOTTOM))
    tooltip = cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.SINGLE)
    return panel.tooltip(tooltip.sort(cm.SortOrder.NONE))


# --- Rows -------------------------------------------------------------------------------------

OK_FAIL = value_map({"1": ("OK", "green"), "0": ("FAIL", "red")})


def status_row() -> Row:
    """Is every check passing, and if not, why."""
    success = f"max by ({NODE_CHECK}) ({per_check('qlik_probe_success')})"
    failures = per_check("qlik_probe_failures_total")
    reason = (
        f"topk by ({NODE_CHECK}) (1, max by ({NODE_CHECK}, reason) "
        f"(increase({failures}[15m]) > 0) and on ({NODE_CHECK}) "
        f"({per_check('qlik_probe_success')} == 0))"
    )
    last_success = per_check("qlik_probe_last_success_timestamp_seconds")
    since = f"time() - max by ({NODE_CHECK}) ({last_success})"
    grid = table_panel(
        "Status of every target × check",
        "Last scheduled run of each check of each target, on each node of a discovered site: OK "
        "or FAIL, the failure reason (the reason counted in the last 15 minutes while the check "
        "is failing) and the time since the check last succeeded.",
        query(success, instant=True),
        query(reason, ref="B", instant=True),
        query(since, ref="C", instant=True),
        w=12,
        h=10,
    ).no_value("—")
    grid = grid.override_by_name(
        "Status",
        [
            prop("mappings", OK_FAIL),
            prop("custom.cellOptions", cm.TableColoredBackgroundCellOptions()),
            prop("custom.width", 90),
        ],
    )
    grid = grid.override_by_name("Since last success", [prop("unit", "s"), prop("decimals", 0)])
    grid = grid.override_by_name(
        "Failure reason",
        [
            prop("custom.cellOptions", cm.TableColorTextCellOptions()),
            prop("color", dm.FieldColor(mode=dm.FieldColorModeId.FIXED, fixed_color="red")),
        ],
    )
    grid = grid.sort_by([cb.TableSortByFieldState().display_name("Status").desc(False)])
    grid = grid.with_transformation(transformation("merge"))
    grid = grid.with_transformation(
        organize(
            {
                "target": "Target",
                "node": "Node",
                "check": "Check",
                "Value #A": "Status",
                "reason": "Failure reason",
                "Value #C": "Since last success",
            },
            order=("target", "node", "check", "Value #A", "reason", "Value #C"),
            exclude=("Time", "Value #B"),
        )
    )
    # One row per target and check, not per node: red while it fails on any node.
    everywhere = f"min by ({CHECK}) ({per_check('qlik_probe_success')})"
    timeline = state_panel(
        "Check status over time",
        "qlik_probe_success of every selected target and check: green while the last run "
        "succeeded on every node, red while it failed on any (the Nodes row shows which).",
        query(everywhere, "{{target}} / {{check}}"),
        w=12,
        h=10,
    )
    timeline = timeline.mappings(OK_FAIL).thresholds(steps((None, "red"), (1, "green")))
    rate = f"sum by (reason) (rate({failures}[$__rate_interval])) > 0"
    reasons = timeseries_panel(
        "Failures per second by reason",
        "Rate of failed runs by failure reason (qlik_probe_failures_total).",
        query(rate, "{{reason}}"),
        unit="ops",
        w=24,
        h=7,
        stacked=True,
        bars=True,
    )
    return Row("Status", [grid, timeline, reasons])


NODE_STATE = value_map({"2": ("OK", "green"), "1": ("DEGRADED", "orange"), "0": ("DOWN", "red")})


def node_state(success: str) -> str:
    """2 while every check of a node succeeds, 1 while some fail, 0 while all fail (what
    QlikNodeUnreachable fires on after 5 minutes)."""
    return f"min by ({NODE}) ({success}) + max by ({NODE}) ({success})"


def nodes_row() -> Row:
    """Each node of each site: what discovery found, and how its checks fare."""
    success = per_check("qlik_probe_success")
    panels = [discovery_panel(), nodes_panel(success), node_checks_panel(success)]
    return Row("Nodes", [*panels, node_timeline(success)])


def discovery_panel() -> table.Panel:
    """Whether each site's node list is current."""
    panel = table_panel(
        "Site discovery",
        "Targets with discover: true: whether the last read of the node list from the "
        "repository succeeded, how many nodes the list has (the last good list is kept while "
        "discovery fails) and the time since it last succeeded. QlikDiscoveryFailing fires "
        "after 12 minutes of failures.",
        query(f"max by ({TARGET}) ({per_target('qlik_discovery_success')})", instant=True),
        query(f"max by ({TARGET}) ({per_target('qlik_discovery_nodes')})", ref="B", instant=True),
        query(
            f"time() - max by ({TARGET}) "
            f"({per_target('qlik_discovery_last_success_timestamp_seconds')} > 0)",
            ref="C",
            instant=True,
        ),
        w=8,
        h=8,
    ).no_value("—")
    panel = panel.override_by_name(
        "Discovery",
        [
            prop("mappings", OK_FAIL),
            prop("custom.cellOptions", cm.TableColoredBackgroundCellOptions()),
        ],
    )
    panel = panel.override_by_name("Nodes", [prop("decimals", 0)])
    panel = panel.override_by_name("Since last success", [prop("unit", "s"), prop("decimals", 0)])
    panel = panel.with_transformation(transformation("merge"))
    return panel.with_transformation(
        organize(
            {
                "target": "Target",
                "Value #A": "Discovery",
                "Value #B": "Nodes",
                "Value #C": "Since last success",
            },
            order=("target", "Value #A", "Value #B", "Value #C"),
            exclude=("Time",),
        )
    )


def nodes_panel(success: str) -> table.Panel:
    """One row per node: what the QMC says about it and how many of its checks fail."""
    labels = ("target", "node", "node_name", "central", "purpose")
    panel = table_panel(
        "Nodes",
        "Every node the selected targets probe: for a discovered site its QMC name, whether it "
        "is the central node and its purpose (qlik_node_info); for every node the state of its "
        "checks (OK, DEGRADED while some fail, DOWN while all fail) and how many are failing.",
        query(f"max by ({', '.join(labels)}) ({per_target('qlik_node_info')})", instant=True),
        query(node_state(success), ref="B", instant=True),
        query(
            f"count by ({NODE}) ({success}) - sum by ({NODE}) ({success})",
            ref="C",
            instant=True,
        ),
        w=16,
        h=8,
    ).no_value("—")
    panel = panel.override_by_name(
        "State",
        [
            prop("mappings", NODE_STATE),
            prop("custom.cellOptions", cm.TableColoredBackgroundCellOptions()),
        ],
    )
    panel = panel.override_by_name(
        "Failing checks",
        [prop("decimals", 0), *coloured_by_thresholds((None, "green"), (1, "red"))],
    )
    panel = panel.sort_by([cb.TableSortByFieldState().display_name("State").desc(False)])
    panel = panel.with_transformation(transformation("merge"))
    titles = ("Target", "Node", "Name", "Central", "Purpose")
    return panel.with_transformation(
        organize(
            dict(zip(labels, titles, strict=True))
            | {"Value #B": "State", "Value #C": "Failing checks"},
            order=(*labels, "Value #B", "Value #C"),
            exclude=("Time", "Value #A"),
        )
    )


def node_checks_panel(success: str) -> table.Panel:
    """A grid: one row per node, one column per check, OK or FAIL in each cell."""
    expr = f'label_join(max by ({NODE_CHECK}) ({success}), "row", " / ", "target", "node")'
    panel = table_panel(
        "Checks by node",
        "qlik_probe_success of each check (columns) on each node (rows) of the selected "
        "targets; empty where the node does not run that check (a node without a proxy or "
        "engine).",
        query(expr, instant=True),
        w=24,
        h=8,
    ).no_value("")
    panel = panel.mappings(OK_FAIL)
    panel = panel.thresholds(steps((None, "red"), (1, "green")))
    panel = panel.color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    panel = panel.cell_options(cm.TableColoredBackgroundCellOptions())
    panel = panel.override_by_name(
        "Target / node", [prop("custom.cellOptions", cm.TableAutoCellOptions())]
    )
    panel = panel.with_transformation(
        transformation(
            "groupingToMatrix",
            columnField="check",
            rowField="row",
            valueField="Value",
            emptyValue="null",
        )
    )
    return panel.with_transformation(organize({"row\\check": "Target / node"}))


def node_timeline(success: str) -> statetimeline.Panel:
    """Each node's state over time."""
    panel = state_panel(
        "Node state over time",
        "Each node of the selected targets: green while every check succeeds, orange while some "
        "fail, red while all fail.",
        query(node_state(success), "{{target}} / {{node}}"),
        w=24,
        h=7,
    )
    panel = panel.mappings(NODE_STATE)
    return panel.thresholds(steps((None, "red"), (1, "orange"), (2, "green")))


def latency_row() -> Row:
    """How long the checks take, and where the time goes."""
    buckets = per_check("qlik_probe_latency_seconds_bucket")
    quantiles = [
        query(
            f"histogram_quantile({q}, sum by ({CHECK}, le) (rate({buckets}[$__rate_interval])))",
            f"p{round(q * 100)} {{{{target}}}} / {{{{check}}}}",
            ref=ref,
        )
        for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))
    ]
    phases = per_check("qlik_probe_phase_duration_seconds")
    return Row(
        "Latency",
        [
            timeseries_panel(
                "Probe duration (last run)",
                "Wall time of the last run of each check on each node "
                "(qlik_probe_duration_seconds).",
                query(per_check("qlik_probe_duration_seconds"), "{{target}} {{node}} / {{check}}"),
                unit="s",
                w=12,
                h=8,
            ),
            timeseries_panel(
                "Probe latency quantiles",
                "p50, p90 and p99 of every run's wall time from the qlik_probe_latency_seconds "
                "histogram, per target and check, the runs on every node of a site together.",
                *quantiles,
                unit="s",
                w=12,
                h=8,
            ),
            timeseries_panel(
                "Time by phase (mean of selected checks)",
                "Where the time goes: resolve, connect, tls, request (time to first byte) and "
                "read, from qlik_probe_phase_duration_seconds, averaged over the selected "
                "targets and checks.",
                query(f"avg by (phase) ({phases})", "{{phase}}"),
                unit="s",
                w=12,
                h=8,
                stacked=True,
            ),
            slowest_checks_panel(phases),
        ],
    )


def slowest_checks_panel(phases: str) -> table.Panel:
    """The slowest checks' last run, one row each and one column per phase."""
    # One row per check, not one bar per check and phase: hundreds on a real site.
    top = f"topk({SLOWEST}, sum by ({NODE_CHECK}) (max by ({NODE_CHECK}, phase) ({phases})))"
    expr = (
        f"label_join(max by ({NODE_CHECK}, phase) ({phases}) and on ({NODE_CHECK}) {top}, "
        '"run", " / ", "target", "node", "check")'
    )
    panel = table_panel(
        "Slowest checks, last run by phase",
        f"The {SLOWEST} selected checks (each on one node) whose last run took longest, with the "
        "time of each phase: resolve, connect, tls, request (time to first byte) and read. "
        "Orange from 1 s, red from 5 s. Select a target or check above to see only it.",
        query(expr, instant=True),
        w=12,
        h=8,
    )
    panel = panel.unit("s").decimals(3)
    panel = panel.thresholds(steps((None, "green"), (1, "orange"), (5, "red")))
    panel = panel.color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    panel = panel.cell_options(cm.TableColorTextCellOptions())
    panel = panel.override_by_name(
        "Target / node / check", [prop("custom.cellOptions", cm.TableAutoCellOptions())]
    )
    panel = panel.sort_by([cb.TableSortByFieldState().display_name("Total").desc(True)])
    # groupingToMatrix names its key column "<row field>\<column field>".
    panel = panel.with_transformation(
        transformation(
            "groupingToMatrix",
            columnField="phase",
            rowField="run",
            valueField="Value",
            emptyValue="null",
        )
    )
    panel = panel.with_transformation(
        transformation("calculateField", mode="reduceRow", reduce={"reducer": "sum"}, alias="Total")
    )
    return panel.with_transformation(
        organize({"run\\phase": "Target / node / check"}, order=("run\\phase", *PHASES, "Total"))
    )


def certificates_row() -> Row:
    """What expires, soonest first."""
    expr = (
        "label_replace((" + per_target("qlik_certificate_not_after_timestamp_seconds") + " - "
        'time()) / 86400, "kind", "certificate", "", "") or label_replace(('
        + per_target("qlik_credential_expiry_timestamp_seconds", 'kind!="oauth_token"')
        + ' - time()) / 86400, "source", "$1", "kind", "(.*)")'
    )
    panel = table_panel(
        "Certificates and credentials by days left",
        "Every certificate (client, root, JWT signing, each node's server certificates) and every "
        "JWT or API key the selected targets use (not OAuth access tokens: the exporter renews "
        "those itself), soonest expiry first. Red under 7 days (or expired), orange under 30 days; "
        "the alerts fire at 30 and 7 days for certificates and at 14 and 3 days "
        "for tokens.",
        query(expr, instant=True),
        w=24,
        h=9,
    )
    panel = panel.override_by_name(
        "Days left",
        [prop("decimals", 1), *coloured_by_thresholds((None, "red"), (7, "orange"), (30, "green"))],
    )
    panel = panel.sort_by([cb.TableSortByFieldState().display_name("Days left").desc(False)])
    columns = ("target", "node", "kind", "source", "subject_cn", "issuer_cn", "serial", "Value")
    titles = ("Target", "Node", "Kind", "Source", "Subject CN", "Issuer CN", "Serial", "Days left")
    panel = panel.with_transformation(
        organize(
            dict(zip(columns, titles, strict=True)),
            order=columns,
            exclude=("Time", "job", "instance"),
        )
    )
    # Sorted in the data too, so Inspect and CSV export list the soonest expiry first.
    by_days = transformation("sortBy", fields={}, sort=[{"field": "Days left", "desc": False}])
    return Row("Certificates and credentials", [panel.with_transformation(by_days)])


def versions_row() -> Row:
    """Which builds run on which node, kept while a node's check is failing."""
    build = last_known("qlik_repository_build_info", "build_version, build_date")
    share = (
        f"{build} * on (build_version) group_left () (count by (build_version) "
        f"(max by ({NODE}, build_version) ({build})) "
        f"/ scalar(count(max by ({NODE}) ({build}))))"
    )
    reported = per_target("qlik_probe_last_success_timestamp_seconds", 'check="repository"')
    in_use = stat_panel(
        "Repository versions in use",
        "Distinct repository build versions among the nodes of the selected targets (a node "
        "whose repository check is failing counts with its last known build, from up to "
        f"{LAST_KNOWN} back). More than one is a mixed site (or an upgrade in progress). Select "
        "one site's targets to compare within a site.",
        gauge(f"count(count by (build_version) ({build}))"),
        w=4,
        h=8,
        coloured=True,
    )
    in_use = in_use.decimals(0).text_mode(cm.BigValueTextMode.VALUE)
    in_use = in_use.thresholds(steps((None, "green"), (2, "red")))
    in_use = in_use.color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    return Row("Versions", [in_use, repository_builds(share, reported), engine_versions()])


def repository_builds(share: str, reported: str) -> table.Panel:
    """Build per node with the share of nodes on it and when it was last reported."""
    panel = table_panel(
        "Repository build per node",
        "qlik_repository_build_info per node of each target, the last known build while the "
        f"node's repository check is failing (up to {LAST_KNOWN} back, so a node removed from "
        "the site stays listed that long). Share: the part of the selected nodes on that "
        "version, 100% (green) when all agree, red on every row while versions are mixed. Last "
        "reported: time since the node's repository check last succeeded.",
        query(share, instant=True),
        query(f"time() - max by ({NODE}) ({reported})", ref="B", instant=True),
        w=12,
        h=8,
    )
    share_title = "Share of nodes on this version"
    panel = panel.override_by_name(
        share_title,
        [prop("unit", "percentunit"), *coloured_by_thresholds((None, "red"), (1, "green"))],
    )
    panel = panel.override_by_name("Last reported", [prop("unit", "s"), prop("decimals", 0)])
    panel = panel.sort_by([cb.TableSortByFieldState().display_name(share_title).desc(False)])
    panel = panel.with_transformation(transformation("merge"))
    return panel.with_transformation(
        organize(
            {
                "target": "Target",
                "node": "Node",
                "build_version": "Build version",
                "build_date": "Build date",
                "Value #A": share_title,
                "Value #B": "Last reported",
            },
            order=("target", "node", "build_version", "build_date", "Value #A", "Value #B"),
            exclude=("Time",),
        )
    )


def engine_versions() -> table.Panel:
    """Engine version per node, the last known one while its engine checks fail."""
    panel = table_panel(
        "Engine version per node",
        "qlik_engine_build_info: the engine version of each node from the healthcheck or "
        "EngineVersion; the last known one while the node's engine checks are failing (up to "
        f"{LAST_KNOWN} back).",
        query(last_known("qlik_engine_build_info", "version"), instant=True),
        w=8,
        h=8,
    )
    return panel.with_transformation(
        organize(
            {"target": "Target", "node": "Node", "version": "Engine version"},
            order=("target", "node", "version"),
            exclude=("Time", "Value"),
        )
    )


def engine_row() -> Row:
    """The engine's own health figures."""

    def engine(title: str, description: str, *queries: pb.Dataquery) -> timeseries.Panel:
        return timeseries_panel(title, description, *queries, unit="short", w=8, h=8)

    sessions = engine(
        "Engine sessions and users",
        "Active sessions and users per engine, one per node (qlik_engine_sessions_active, "
        "qlik_engine_users_active).",
        query(per_target("qlik_engine_sessions_active"), "{{target}} {{node}} sessions"),
        query(per_target("qlik_engine_users_active"), "{{target}} {{node}} users", ref="B"),
    ).decimals(0)
    apps = engine(
        "Apps loaded",
        "Apps loaded in engine memory (qlik_engine_apps_loaded).",
        query(per_target("qlik_engine_apps_loaded"), "{{target}} {{node}}"),
    ).decimals(0)
    memory = engine(
        "Engine memory committed",
        "Committed memory of the engine process (qlik_engine_memory_committed_bytes).",
        query(per_target("qlik_engine_memory_committed_bytes"), "{{target}} {{node}}"),
    ).unit("bytes")
    cpu = (
        timeseries_panel(
            "Engine CPU",
            "Engine CPU utilisation, 0 to 1 (qlik_engine_cpu_utilization_ratio).",
            query(per_target("qlik_engine_cpu_utilization_ratio"), "{{target}} {{node}}"),
            unit="percentunit",
            w=12,
            h=7,
        )
        .min(0)
        .max(1)
    )
    saturated = state_panel(
        "Engine saturated",
        "qlik_engine_saturated: red while the engine reports itself saturated.",
        query(per_target("qlik_engine_saturated"), "{{target}} {{node}}"),
        w=12,
        h=7,
    )
    saturated = saturated.mappings(value_map({"0": ("OK", "green"), "1": ("Saturated", "red")}))
    saturated = saturated.thresholds(steps((None, "green"), (1, "red")))
    return Row("Engine health", [sessions, apps, memory, cpu, saturated])


def proxy_row() -> Row:
    """Sessions the proxy check counted."""
    panel = timeseries_panel(
        "Proxy sessions",
        "Sessions counted by the proxy check, per target, node and virtual proxy "
        "(qlik_proxy_sessions).",
        query(per_target("qlik_proxy_sessions"), "{{target}} {{node}} {{virtual_proxy}}"),
        unit="short",
        w=24,
        h=7,
    )
    return Row("Proxy", [panel.decimals(0)])


def cloud_row() -> Row:
    """Whose API keys the Cloud targets use, and whether those users may still log in."""
    labels = ("target", "tenant_id", "user_id", "user_status")
    panel = table_panel(
        "Qlik Cloud tenants",
        "qlik_cloud_tenant_info: the tenant and user each API key belongs to, and the user's "
        "status (anything but active means the key's owner can no longer log in).",
        query(
            f"max by ({', '.join(labels)}) ({per_target('qlik_cloud_tenant_info')})",
            instant=True,
        ),
        w=24,
        h=6,
    )
    inactive = dm.RegexMap(
        options=db.DashboardRegexMapOptions()
        .pattern(".*")
        .result(dm.ValueMappingResult(color="red", index=1))
        .build()
    )
    active = dm.ValueMap(options={"active": dm.ValueMappingResult(color="green", index=0)})
    panel = panel.override_by_name(
        "User status",
        [
            prop("mappings", [active, inactive]),
            prop("custom.cellOptions", cm.TableColorTextCellOptions()),
        ],
    )
    titles = ("Target", "Tenant", "User", "User status")
    return Row(
        "Qlik Cloud",
        [
            panel.with_transformation(
                organize(
                    dict(zip(labels, titles, strict=True)),
                    order=labels,
                    exclude=("Time", "Value"),
                )
            )
        ],
    )


def site_row() -> Row:
    """Every service on every node, and the licence: days left and access left."""
    states = table_panel(
        "Services by node",
        "qlik_service_state from the services check: the state the repository reports for every "
        "service on every node of the site. Anything but running (or disabled on purpose) is "
        "red; QlikServiceNotRunning fires after 5 minutes.",
        query(
            f"max by (target, node, service, state) ({per_target('qlik_service_state')} == 1)",
            instant=True,
        ),
        w=12,
        h=9,
    )
    good = {"running": ("running", "green"), "disabled": ("disabled", "text")}
    other = dm.RegexMap(
        options=db.DashboardRegexMapOptions()
        .pattern(".*")
        .result(dm.ValueMappingResult(color="red", index=2))
        .build()
    )
    known = dm.ValueMap(
        options={
            value: dm.ValueMappingResult(text=text, color=colour, index=i)
            for i, (value, (text, colour)) in enumerate(good.items())
        }
    )
    states = states.override_by_name(
        "State",
        [
            prop("mappings", [known, other]),
            prop("custom.cellOptions", cm.TableColorTextCellOptions()),
        ],
    )
    labels = ("target", "node", "service", "state")
    titles = ("Target", "Node", "Service", "State")
    states = states.with_transformation(
        organize(dict(zip(labels, titles, strict=True)), order=labels, exclude=("Time", "Value"))
    )
    days = (
        f"(max by (target) ({per_target('qlik_license_expiry_timestamp_seconds')}) - time())"
        " / 86400"
    )
    licence = table_panel(
        "Licence days left and access available",
        "The site's or tenant's licence from the license check: days until it expires (none for "
        "a perpetual licence; red under 7, orange under 30) and the share of each access type "
        "or allotment still available (red under 10 %).",
        query(days, instant=True, ref="A"),
        query(
            f"max by (target, type) ({per_target('qlik_license_access_available')})"
            f" / max by (target, type) ({per_target('qlik_license_access_total')})",
            instant=True,
            ref="B",
        ),
        w=12,
        h=9,
    )
    licence = licence.override_by_name(
        "Value #A",
        [
            prop("displayName", "Days left"),
            prop("decimals", 1),
            *coloured_by_thresholds((None, "red"), (7, "orange"), (30, "green")),
        ],
    )
    licence = licence.override_by_name(
        "Value #B",
        [
            prop("displayName", "Available"),
            prop("unit", "percentunit"),
            *coloured_by_thresholds((None, "red"), (0.1, "green")),
        ],
    )
    return Row("Site services and licence", [states, licence])


def exporter_row() -> Row:
    """The exporter's own health."""
    up = stat_panel(
        "Exporter up",
        "Whether Prometheus can scrape each exporter (up of the selected jobs).",
        gauge(per_exporter("up"), "{{instance}}"),
        w=4,
        h=5,
        coloured=True,
    )
    up = up.mappings(value_map({"1": ("UP", None), "0": ("DOWN", None)}))
    up = up.thresholds(steps((None, "red"), (1, "green")))
    up = up.color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    version = stat_panel(
        "Exporter version",
        "qlik_exporter_build_info: exporter and Python version of each exporter.",
        gauge(per_exporter("qlik_exporter_build_info"), "{{version}} (Python {{python_version}})"),
        w=5,
        h=5,
        coloured=False,
    ).text_mode(cm.BigValueTextMode.NAME)
    version = version.color_scheme(
        db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("blue")
    )
    reload = stat_panel(
        "Last config reload",
        "qlik_exporter_config_last_reload_successful: FAILED after a rejected reload (the old "
        "config keeps running).",
        gauge(per_exporter("qlik_exporter_config_last_reload_successful"), "{{instance}}"),
        w=4,
        h=5,
        coloured=True,
    )
    reload = reload.mappings(value_map({"1": ("OK", None), "0": ("FAILED", None)}))
    reload = reload.thresholds(steps((None, "red"), (1, "green")))
    reload = reload.color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    return Row("Exporter", [up, version, reload, *exporter_config_panels(), probe_runs()])


def exporter_config_panels() -> list[Panel]:
    """When the config was loaded, and how many targets it has."""
    text = db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("text")
    loaded = stat_panel(
        "Config loaded",
        "When the running config was last loaded successfully "
        "(qlik_exporter_config_last_reload_success_timestamp_seconds).",
        gauge(
            per_exporter("qlik_exporter_config_last_reload_success_timestamp_seconds") + " * 1000",
            "{{instance}}",
        ),
        w=6,
        h=5,
        coloured=False,
    )
    targets = stat_panel(
        "Configured targets",
        "qlik_exporter_targets: targets in each exporter's loaded config (its shard's with "
        "--shard).",
        gauge(f"sum({per_exporter('qlik_exporter_targets')})"),
        w=5,
        h=5,
        coloured=False,
    )
    return [
        loaded.unit("dateTimeFromNow").color_scheme(text),
        targets.decimals(0).color_scheme(text),
    ]


def probe_runs() -> timeseries.Panel:
    """Runs per second, and failed runs per second."""
    return timeseries_panel(
        "Probe runs per second",
        "Runs started per second by all selected targets and checks (qlik_probe_runs_total), "
        "and the share of them that failed.",
        query(f"sum(rate({per_check('qlik_probe_runs_total')}[$__rate_interval]))", "runs"),
        query(
            f"sum(rate({per_check('qlik_probe_failures_total')}[$__rate_interval]))",
            "failed runs",
            ref="B",
        ),
        unit="ops",
        w=24,
        h=7,
    )


ROWS: tuple[Callable[[], Row], ...] = (
    status_row,
    nodes_row,
    latency_row,
    certificates_row,
    versions_row,
    engine_row,
    proxy_row,
    cloud_row,
    site_row,
    exporter_row,
)


# --- The dashboard ----------------------------------------------------------------------------


def label_variable(name: str, label: str, series: str) -> db.QueryVariable:
    """A multi-value variable over a label's values, "All" matching everything."""
    every = dm.VariableOption(selected=True, text=["All"], value=["$__all"])
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({series}, {name})")
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(every)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def variables() -> list[cogbuilder.Builder[dm.VariableModel]]:
    """Data source, then each filter variable narrowed by the ones before it."""
    found_in = {"job": "qlik_exporter_build_info"}
    labels = {"job": "Exporter job", "target": "Target", "check": "Check"}
    filters: list[cogbuilder.Builder[dm.VariableModel]] = [
        db.DatasourceVariable("datasource").label("Data source").type("prometheus")
    ]
    for i, name in enumerate(CHECK_FILTERS):
        series = selector(found_in.get(name, "qlik_probe_success"), CHECK_FILTERS[:i])
        filters.append(label_variable(name, labels[name], series))
    return filters


def dashboard() -> dm.Dashboard:
    """The whole dashboard: variables, then every row with ids and positions assigned."""
    builder = (
        db.Dashboard(TITLE)
        .uid(UID)
        .description(
            "Logins, latency, certificate and credential expiry, versions and engine health of "
            "Qlik Sense sites, from qlik-sense-exporter."
        )
        .tags(["qlik", "qlik-sense", "qlik-sense-exporter"])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .timezone("browser")
        .refresh("1m")
        .time("now-6h", "now")
        .annotation(
            db.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .variables(variables())
    )
    ids = itertools.count(1)
    for make_row in ROWS:
        row = make_row()
        builder = builder.with_row(db.Row(row.title).id(next(ids)))
        for panel in row.panels:
            builder = builder.with_panel(panel.id(next(ids)))
    return builder.build()


def render() -> str:
    """The dashboard as the JSON committed in ``OUTPUT``."""
    text = JSONEncoder(sort_keys=True, indent=2, ensure_ascii=False).encode(dashboard())
    return text + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dashboard, or with ``--check`` say whether the file is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the dashboard JSON file")
    args = parser.parse_args(argv)
    text = render()
    if not args.check:
        args.output.write_text(text, encoding="utf-8")
        return 0
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    if current == text:
        return 0
    print(
        f"{args.output} is not what grafana/generate.py writes: run python grafana/generate.py",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
