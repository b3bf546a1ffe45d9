"""Reading the committed Grafana dashboard (imported as ``dashboard_helpers``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from ops_helpers import DASHBOARD, REPO

GENERATOR = REPO / "grafana" / "generate.py"
# Grafana's values for the built-in variables, as Grafana would fill them in for a 5-minute view.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
VARIABLE = re.compile(r"\$\{?([A-Za-z_]\w*)\}?")
LABEL_VALUES = re.compile(r"^label_values\((?P<series>.+),\s*(?P<label>\w+)\)$")


def dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def all_panels() -> Iterator[dict[str, Any]]:
    """Every panel, rows included, also those inside collapsed rows."""
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def query_panels() -> list[dict[str, Any]]:
    """Every panel that shows data (rows are layout only)."""
    return [p for p in all_panels() if p["type"] != "row"]


def panel(title: str) -> dict[str, Any]:
    """The panel with this title."""
    return next(p for p in query_panels() if p["title"] == title)


def variables() -> dict[str, dict[str, Any]]:
    """The dashboard's template variables by name."""
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def substitute(expr: str, chosen: Mapping[str, str] | None = None) -> str:
    """``expr`` with every variable replaced: "All" (``.*``) unless ``chosen`` says otherwise."""
    values = {name: ".*" for name in variables()} | BUILTINS | dict(chosen or {})
    return VARIABLE.sub(lambda m: values.get(m[1], m[0]), expr)


def panel_queries(chosen: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(panel title, refId, query) of every panel query, variables substituted."""
    return [
        (p["title"], target["refId"], substitute(target["expr"], chosen))
        for p in query_panels()
        for target in p["targets"]
    ]


def variable_queries(chosen: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Each query variable's ``label_values(series, label)`` as (series, label), substituted."""
    out = {}
    for name, var in variables().items():
        if var["type"] == "query":
            found = LABEL_VALUES.match(var["query"])
            assert found, f"variable {name}: not label_values(series, label): {var['query']}"
            out[name] = (substitute(found["series"], chosen), found["label"])
    return out
