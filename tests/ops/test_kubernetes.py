"""The Kubernetes manifests: schema-valid core kinds, a PrometheusRule in step with rules.yml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type hints
import pytest
import yaml
from ops_helpers import DEPLOY, RULES

KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.30.0"  # pod-index label needs 1.28+
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every manifest document (kustomization files excluded) with its file."""
    found = []
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                found.append((path, doc))
    return found


def by_kind(kind: str) -> list[dict[str, Any]]:
    """The documents of one kind."""
    return [doc for _, doc in documents() if doc["kind"] == kind]


def core_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Documents of kinds that Kubernetes itself defines."""
    return [(p, d) for p, d in documents() if d["kind"] not in CRD_KINDS]


@pytest.mark.parametrize(
    ("path", "doc"),
    core_documents(),
    ids=lambda v: v.relative_to(KUBERNETES).as_posix() if isinstance(v, Path) else v["kind"],
)
def test_core_manifest_is_schema_valid(path: Path, doc: dict[str, Any]) -> None:
    """kubernetes-validate accepts each core manifest, unknown fields rejected (strict)."""
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_all_expected_kinds_are_present() -> None:
    """The manifests include every kind the deployment needs, in both variants."""
    kinds = {doc["kind"] for _, doc in documents()}
    assert kinds >= {"ConfigMap", "Secret", "Service", "Deployment", "StatefulSet"} | CRD_KINDS


def test_kustomizations_list_existing_files() -> None:
    """Every resource a kustomization.yaml names exists (file or kustomization folder)."""
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        for resource in yaml.safe_load(kustomization.read_text())["resources"]:
            assert (kustomization.parent / resource).exists(), (kustomization, resource)


def test_prometheus_rule_matches_the_rules_file() -> None:
    """The committed PrometheusRule carries exactly the groups of deploy/prometheus/rules.yml."""
    (rule,) = by_kind("PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))


def test_generator_reports_no_drift() -> None:
    """`deploy/generate.py --check` finds the committed PrometheusRule up to date."""
    proc = subprocess.run(
        [sys.executable, str(DEPLOY / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_statefulset_shards_by_pod_index() -> None:
    """The StatefulSet passes --shard I/N with I from the apps.kubernetes.io/pod-index label."""
    (sts,) = by_kind("StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert "--shard=$(POD_INDEX)/$(SHARD_COUNT)" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    field = env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert int(env["SHARD_COUNT"]["value"]) == sts["spec"]["replicas"]


def test_secret_example_holds_no_key_material() -> None:
    """The example Secret has placeholders only: no PEM block, no token-looking value."""
    (secret,) = by_kind("Secret")
    for value in secret["stringData"].values():
        assert value.startswith("REPLACE")
        assert "-----BEGIN" not in value


def test_service_monitor_selects_the_service() -> None:
    """The ServiceMonitor's selector and port name match the Service."""
    (monitor,) = by_kind("ServiceMonitor")
    (service,) = by_kind("Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
