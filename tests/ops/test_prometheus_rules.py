"""The alert rules: valid for promtool, unit-tested per alert, each with its runbook section."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from ops_helpers import AUTH_REASONS, DEPLOY, REPO, RULES, PrometheusTools

RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*_test.yml"))
OPERATIONS = REPO / "docs" / "operations.md"
# Alerts about a site or an exporter process, not about one target.
NOT_PER_TARGET = {
    "QlikRepositoryVersionMismatch",
    "QlikExporterConfigReloadFailed",
    "QlikExporterDown",
}


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of deploy/prometheus/rules.yml."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def alert_names() -> list[str]:
    """The names of every alerting rule."""
    return [rule["alert"] for rule in alert_rules()]


def test_rules_pass_promtool_check(prometheus_tools: PrometheusTools) -> None:
    """`promtool check rules` accepts the rules file."""
    output = prometheus_tools.promtool_run("check", "rules", RULES)
    assert "SUCCESS" in output


def test_rule_unit_tests_pass(prometheus_tools: PrometheusTools) -> None:
    """`promtool test rules` passes every test file under deploy/prometheus/tests."""
    assert RULE_TESTS
    prometheus_tools.promtool_run("test", "rules", *RULE_TESTS)


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """Each alert has a unit-test case where it fires and one where it must not."""
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alert_names())
    assert names - fires == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


@pytest.mark.parametrize("name", alert_names())
def test_alert_has_severity_summary_description_and_runbook(name: str) -> None:
    """Each alert has a severity, a summary, a description and a runbook URL with its anchor."""
    rule = next(r for r in alert_rules() if r["alert"] == name)
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    assert annotations["runbook_url"].endswith(f"docs/operations.md#{name.lower()}")


@pytest.mark.parametrize("name", alert_names())
def test_runbook_has_a_section_per_alert(name: str) -> None:
    """docs/operations.md has a heading named after each alert (the runbook_url anchor)."""
    headings = re.findall(r"^#+\s+(\S+)\s*$", OPERATIONS.read_text(encoding="utf-8"), re.M)
    assert name in headings


@pytest.mark.parametrize("name", sorted(set(alert_names()) - NOT_PER_TARGET))
def test_per_target_alert_names_the_target(name: str) -> None:
    """Alerts about one target name it in both their summary and their description."""
    rule = next(r for r in alert_rules() if r["alert"] == name)
    for key in ("summary", "description"):
        assert "$labels.target" in rule["annotations"][key]


def test_authentication_alert_covers_every_auth_reason() -> None:
    """The authentication alert matches exactly the auth failure reasons of exporter.reasons."""
    from exporter.reasons import AUTH_REASONS as EXPORTER_AUTH_REASONS

    rule = next(r for r in alert_rules() if r["alert"] == "QlikAuthenticationFailure")
    matchers = set(re.findall(r'reason=~"([^"]+)"', rule["expr"]))
    assert len(matchers) == 1
    assert set(matchers.pop().split("|")) == AUTH_REASONS == set(EXPORTER_AUTH_REASONS)


def test_rules_name_only_documented_failure_reasons() -> None:
    """Every reason a rule matches on is one of the closed set in exporter.reasons."""
    from exporter.reasons import Reason

    text = RULES.read_text(encoding="utf-8")
    used = {r for alt in re.findall(r'reason=~?"([^"]+)"', text) for r in alt.split("|")}
    assert used <= {r.value for r in Reason}
