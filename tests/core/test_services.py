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
