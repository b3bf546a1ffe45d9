"""The QSEoW site licence: /qrs/license variants and /qrs/license/accesstypeoverview."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from sim_helpers import XRFKEY, call, qrs_headers

from exporter.sim import Simulator

LICENSE_FIELDS = {
    "id",
    "lef",
    "serial",
    "check",
    "key",
    "keyDetails",
    "name",
    "organization",
    "product",
    "numberOfCores",
    "isExpired",
    "expiredReason",
    "isBlacklisted",
    "isInvalid",
    "isSubscription",
    "isCloudServices",
    "isElastic",
    "updated",
    "schemaPath",
}


async def get(sim: Simulator, ctx, path: str) -> dict:
    status, _, body = await call(
        "GET", sim.url("repository", f"{path}?xrfkey={XRFKEY}"), ctx, qrs_headers()
    )
    assert status == 200, body
    return json.loads(body)


def valid_to(license_json: dict) -> str | None:
    """The ``Valid To:`` value of keyDetails, the way Butler reads it (a line per field)."""
    for line in license_json["keyDetails"].split("\n"):
        if line.startswith("Valid To:"):
            return line.split(":", 1)[1].strip()
    return None


def timelimit(license_json: dict) -> str | None:
    """The valid-to column of the LEF's TIMELIMIT line."""
    for line in license_json["lef"].splitlines():
        cols = line.split(";")
        if cols[0] == "TIMELIMIT":
            return cols[3]
    return None


async def test_signed_key_licence_has_valid_to_in_key_details(sim, sim_mtls):
    """Signed key: a JWT-shaped key and keyDetails lines with `Valid To:` a year from now."""
    body = await get(sim, sim_mtls, "/qrs/license")
    assert set(body) >= LICENSE_FIELDS
    assert body["schemaPath"] == "License"
    assert body["key"].count(".") == 2
    assert body["lef"] == ""
    assert body["isExpired"] is False
    text = valid_to(body)
    assert text is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (AM|PM)", text)  # Qlik's example format
    end = dt.datetime.strptime(text, "%Y-%m-%d %I:%M:%S %p").replace(tzinfo=dt.UTC)
    assert end == sim.license.valid_to
    assert dt.timedelta(days=364) < end - dt.datetime.now(dt.UTC) <= dt.timedelta(days=365)


async def test_key_date_can_be_iso(sim, sim_mtls):
    """key_date_format='iso' writes `Valid To:` as Butler's fixture has it."""
    sim.license.key_date_format = "iso"
    text = valid_to(await get(sim, sim_mtls, "/qrs/license"))
    assert text is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT00:00:00Z", text)


async def test_lef_licence_has_a_timelimit_line(sim, sim_mtls):
    """LEF: serial and control number, a LEF text with TIMELIMIT;;;<date>, no key."""
    sim.license.set_variant("lef")
    sim.license.set_end(dt.date(2030, 4, 30))
    body = await get(sim, sim_mtls, "/qrs/license")
    assert (body["key"], body["keyDetails"]) == ("", "")
    assert body["check"] == sim.license.control
    assert timelimit(body) == "2030-04-30"
    assert body["isSubscription"] is False


async def test_perpetual_licence_has_no_end(sim, sim_mtls):
    """Perpetual: neither `Valid To:` nor TIMELIMIT, and never expired."""
    sim.license.set_variant("perpetual")
    body = await get(sim, sim_mtls, "/qrs/license")
    assert timelimit(body) is None
    assert "Valid To" not in body["keyDetails"]
    assert body["isExpired"] is False
    assert sim.license.expires is None


async def test_expire_sets_is_expired_and_a_past_date(sim, sim_mtls):
    """expire(): isExpired true with a reason, and the end date yesterday."""
    sim.license.expire()
    body = await get(sim, sim_mtls, "/qrs/license")
    assert body["isExpired"] is True
    assert body["expiredReason"]
    text = valid_to(body)
    assert text is not None
    end = dt.datetime.strptime(text, "%Y-%m-%d %I:%M:%S %p").date()
    assert end == dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


async def test_set_end_moves_the_date(sim, sim_mtls):
    """set_end(date) is 00:00 UTC of that date; a date in 5 days is not expired yet."""
    soon = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=5)
    sim.license.set_end(soon)
    body = await get(sim, sim_mtls, "/qrs/license")
    assert valid_to(body) == f"{soon.isoformat()} 12:00:00 AM"
    assert body["isExpired"] is False


def test_unknown_variant_is_refused(tmp_path):
    """Only signed_key, lef and perpetual exist."""
    with pytest.raises(ValueError, match="signed_key, lef, perpetual"):
        Simulator(tmp_path).license.set_variant("trial")


async def test_access_type_overview_shape(sim, sim_mtls):
    """accesstypeoverview: documented keys, professional and analyzer with total/available."""
    body = await get(sim, sim_mtls, "/qrs/license/accesstypeoverview")
    assert set(body) >= {
        "totalTokens",
        "availableTokens",
        "tokensEnabled",
        "userAccess",
        "loginAccess",
        "professionalAccess",
        "analyzerAccess",
        "schemaPath",
    }
    pro = body["professionalAccess"]
    assert set(pro) >= {"enabled", "total", "allocated", "used", "quarantined", "available"}
    assert (pro["total"], pro["allocated"], pro["available"]) == (100, 40, 60)
    assert body["analyzerAccess"]["available"] == 180


async def test_exhaust_makes_nothing_available(sim, sim_mtls):
    """exhaust(): available 0 for professional and analyzer; totals unchanged."""
    sim.license.exhaust()
    body = await get(sim, sim_mtls, "/qrs/license/accesstypeoverview")
    for kind in ("professionalAccess", "analyzerAccess"):
        assert body[kind]["available"] == 0
    assert body["professionalAccess"]["total"] == 100


async def test_set_access_changes_one_type(sim, sim_mtls):
    """set_access changes the numbers of one type; bad fields are refused."""
    sim.license.set_access("analyzer", total=10, allocated=9, quarantined=1)
    body = await get(sim, sim_mtls, "/qrs/license/accesstypeoverview")
    assert (body["analyzerAccess"]["total"], body["analyzerAccess"]["available"]) == (10, 0)
    with pytest.raises(ValueError, match="access type"):
        sim.license.set_access("tokens", total=1)
    with pytest.raises(ValueError, match="non-negative"):
        sim.license.set_access("analyzer", total=-1)


def test_licence_material_differs_between_simulators(tmp_path):
    """Serial, control number and key are random, so tests can search output for them."""
    a, b = Simulator(tmp_path / "a").license, Simulator(tmp_path / "b").license
    assert a.serial != b.serial
    assert a.key != b.key
    assert a.serial in a.material
    assert a.key in a.material
