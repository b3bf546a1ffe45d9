"""Paths and tools shared by the operations tests (imported as ``ops_helpers``)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# The list of authentication failures (an oracle kept apart from the exporter's code;
# test_prometheus_rules checks that it equals exporter.reasons.AUTH_REASONS).
AUTH_REASONS = {
    "unauthorized",
    "forbidden",
    "client_certificate_rejected",
    "credential_invalid",
    "wrong_user",
}

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
DASHBOARD = REPO / "grafana" / "dashboards" / "qlik-sense-exporter.json"
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qlik-sense-exporter-test"
)


@dataclass(frozen=True, slots=True)
class PrometheusTools:
    """Paths of a ``prometheus`` server binary and the ``promtool`` that came with it."""

    prometheus: Path
    promtool: Path

    def promtool_run(self, *args: str | Path) -> str:
        """Run promtool; its output, or a failed test with that output when it exits non-zero."""
        proc = run_tool(self.promtool, *args)
        return proc.stdout + proc.stderr


@dataclass(frozen=True, slots=True)
class AlertmanagerTools:
    """Paths of an Alertmanager server binary and the ``amtool`` that came with it."""

    alertmanager: Path
    amtool: Path

    def amtool_run(self, *args: str | Path) -> str:
        """Run amtool; its standard output (its warnings go to standard error), or a failed test
        with all it printed when it exits non-zero."""
        return run_tool(self.amtool, *args).stdout


def run_tool(tool: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a tool; fail the test with its output when it exits non-zero."""
    proc = subprocess.run(
        [str(tool), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        pytest.fail(f"{tool.name} {' '.join(map(str, args))} failed:\n{output}")
    return proc
