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
        """Run promtool; fail the test with its output when it exits non-zero."""
        proc = subprocess.run(
            [str(self.promtool), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            pytest.fail(f"promtool {' '.join(map(str, args))} failed:\n{output}")
        return output
