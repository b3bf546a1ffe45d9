"""The ``services`` check against the simulator's three-node site."""

from __future__ import annotations

from pathlib import Path

from exporter.checks.services import SERVICES, STATES
from exporter.sim import Simulator
from tests.core.conftest import cert_target, probe


def _site_target(site: Simulator) -> dict[str, object]:
    central = next(n for n in site.nodes if n.is_central)
    return cert_target(site, "prod", host=central.host_name, checks=["services"])


async def test_every_service_on_every_node_with_its_state(site: Simulator, tmp_path: Path) -> None:
    """Three nodes × six services, each with its state; a stopped engine shows."""
    site.set_service_state("rim1", "engine", "no_communication")
    result = await probe(_site_target(site), "services", tmp_path, resolver=site.resolver())
    assert result.success, result.error
    states = result.values.services
    assert states is not None
    assert len(states) == 3 * len(SERVICES)
    assert {s.state for s in states} <= set(STATES)
    by_key = {(s.node, s.service): s for s in states}
    rim1 = next(node for node, _ in by_key if node.startswith("rim1."))
    assert by_key[(rim1, "engine")].state == "no_communication"
    assert by_key[(rim1, "repository")].state == "running"
    assert all(s.timestamp is not None for s in states)


async def test_service_states_and_licence_on_metrics(site: Simulator, tmp_path: Path) -> None:
    """/metrics has all six states per service (1 on the current one), the status time, and
    the licence families; parseable as the text format."""
    from prometheus_client.parser import text_string_to_metric_families

    from exporter.metrics import QlikCollector
    from exporter.results import ResultStore

    site.set_service_state("rim2", "scheduler", "no_communication")
    target = _site_target(site)
    target["checks"] = ["services", "license"]
    store = ResultStore()
    for check in ("services", "license"):
        result = await probe(target, check, tmp_path, resolver=site.resolver())
        assert result.success, result.error
        store.record_start("prod", check)
        store.record(result)
    text = QlikCollector(store).render_text().decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    states = [s for s in samples if s.name == "qlik_service_state"]
    assert len(states) == 3 * len(SERVICES) * len(STATES)
    rim2 = next(n.host_name for n in site.nodes if n.name == "rim2")
    current = {
        s.labels["state"]
        for s in states
        if s.labels["node"] == rim2 and s.labels["service"] == "scheduler" and s.value == 1
    }
    assert current == {"no_communication"}
    times = [s for s in samples if s.name == "qlik_service_status_timestamp_seconds"]
    assert len(times) == 3 * len(SERVICES)
    names = {s.name for s in samples}
    assert {"qlik_license_expired", "qlik_license_expiry_timestamp_seconds"} <= names
    access = {
        (s.name, s.labels["type"]) for s in samples if s.name.startswith("qlik_license_access_")
    }
    assert access == {
        (f"qlik_license_access_{kind}", t)
        for kind in ("total", "available")
        for t in ("professional", "analyzer")
    }
