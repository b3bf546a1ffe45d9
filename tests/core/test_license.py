"""The ``license`` check against the simulator's site and tenant licences."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from exporter.reasons import Reason
from exporter.report import format_target
from exporter.sim import Simulator
from tests.core.conftest import cert_target, cloud_target, probe


def _end(days: int) -> dt.datetime:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=days)


@pytest.mark.parametrize(
    ("variant", "fmt"), [("signed_key", "qlik"), ("signed_key", "iso"), ("lef", None)]
)
async def test_qseow_licence_expiry_and_access(
    sim: Simulator, tmp_path: Path, variant: str, fmt: str | None
) -> None:
    """The expiry comes from Valid To (either date format) or the LEF TIMELIMIT; professional
    and analyzer access are total and available."""
    sim.license.set_variant(variant)
    if fmt is not None:
        sim.license.key_date_format = fmt
    end = _end(5)
    sim.license.set_end(end if variant == "signed_key" else end.date())
    result = await probe(cert_target(sim, checks=["license"]), "license", tmp_path)
    assert result.success, result.error
    info = result.values.license
    assert info is not None
    assert not info.expired
    assert info.expires == end.timestamp()
    assert set(info.access) == {"professional", "analyzer"}
    total, available = info.access["professional"]
    assert 0 <= available <= total
    report = "\n".join(format_target([result], sim.host, {"license": sim.ports.repository}))
    for secret in sim.license.material:
        assert secret not in report
        assert secret not in repr(result)


async def test_perpetual_licence_has_no_expiry(sim: Simulator, tmp_path: Path) -> None:
    """A LEF without TIMELIMIT does not expire."""
    sim.license.set_variant("perpetual")
    result = await probe(cert_target(sim, checks=["license"]), "license", tmp_path)
    assert result.success, result.error
    assert result.values.license is not None
    assert result.values.license.expires is None


async def test_expired_and_exhausted_qseow_licence(sim: Simulator, tmp_path: Path) -> None:
    """isExpired is reported; exhausted allocations have nothing available."""
    sim.license.expire()
    sim.license.exhaust()
    result = await probe(cert_target(sim, checks=["license"]), "license", tmp_path)
    info = result.values.license
    assert info is not None
    assert info.expired
    assert all(available == 0 for _, available in info.access.values())


async def test_cloud_licence_status_end_and_allotments(sim: Simulator, tmp_path: Path) -> None:
    """Cloud: expired unless status Ok, expiry at the end of valid, every allotment."""
    key = sim.cloud_issue_api_key(sub=sim.cloud_user_id, admin=True)
    end = _end(20).date()
    sim.cloud.license.set_end(end)
    target = cloud_target(sim, key, checks=["license"])
    result = await probe(target, "license", tmp_path)
    assert result.success, result.error
    info = result.values.license
    assert info is not None
    assert not info.expired
    assert info.expires == (_end(21)).timestamp()
    assert {a.name for a in sim.cloud.license.allotments} == set(info.access)
    sim.cloud.license.expire()
    expired = await probe(target, "license", tmp_path)
    assert expired.values.license is not None
    assert expired.values.license.expired


async def test_cloud_licence_needs_a_tenant_admin(sim: Simulator, tmp_path: Path) -> None:
    """A non-admin key is forbidden for the licence check only."""
    key = sim.cloud_issue_api_key(sub="viewer-without-admin", admin=False)
    target = cloud_target(sim, key, checks=["tenant", "license"])
    assert (await probe(target, "license", tmp_path)).reason == Reason.FORBIDDEN
    assert (await probe(target, "tenant", tmp_path)).success
