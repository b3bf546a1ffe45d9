"""``license``: whether the site's or tenant's licence has expired, when it will, and how much
access is left. A site check: it runs once per target.

QSEoW (``GET /qrs/license`` and ``/qrs/license/accesstypeoverview`` on the repository): the
expiry is ``Valid To:`` in a signed key's ``keyDetails``, else the LEF's ``TIMELIMIT`` date (at
00:00 UTC), else none (a perpetual licence); access is ``professional`` and ``analyzer`` where
enabled. Qlik Cloud (``/api/v1/licenses/status`` and ``/overview``): expired unless ``status``
is ``Ok``, the expiry is the end of ``valid``, access is every allotment. The licence key,
serial, control number and LEF are licence material: none of them leaves this module.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from exporter.checks.context import ProbeContext
from exporter.results import CheckValues, LicenseInfo

_VALID_TO = re.compile(r"^\s*Valid To:\s*(.+?)\s*$", re.M)
_TIMELIMIT = re.compile(r"^TIMELIMIT;[^;\n]*;[^;\n]*;(\d{4}-\d{2}-\d{2})", re.M)
_QSEOW_ACCESS = (("professional", "professionalAccess"), ("analyzer", "analyzerAccess"))


async def run(ctx: ProbeContext) -> CheckValues:
    """The licence's state, expiry and access allocations."""
    info = await (_cloud(ctx) if ctx.target.type == "cloud" else _qseow(ctx))
    details = {"licence": "expired" if info.expired else "valid"}
    if info.expires is not None:
        details["licence valid to"] = dt.datetime.fromtimestamp(info.expires, dt.UTC).isoformat()
    for kind, (total, available) in info.access.items():
        details[f"access {kind}"] = f"{available:g} of {total:g} available"
    return CheckValues(license=info, details=details)


async def _qseow(ctx: ProbeContext) -> LicenseInfo:
    lic = ctx.json(await ctx.request("/qrs/license", xrfkey=True))
    if not isinstance(lic, dict) or not isinstance(lic.get("isExpired"), bool):
        raise ctx.invalid("/qrs/license has no isExpired")
    overview = ctx.json(await ctx.request("/qrs/license/accesstypeoverview", xrfkey=True))
    if not isinstance(overview, dict):
        raise ctx.invalid("/qrs/license/accesstypeoverview did not return an object")
    access: dict[str, tuple[float, float]] = {}
    for kind, key in _QSEOW_ACCESS:
        part = overview.get(key)
        if isinstance(part, dict) and part.get("enabled") is True:
            access[kind] = (_num(ctx, part, "total"), _num(ctx, part, "available"))
    return LicenseInfo(expired=lic["isExpired"], expires=_qseow_expiry(ctx, lic), access=access)


def _qseow_expiry(ctx: ProbeContext, lic: dict[str, Any]) -> float | None:
    details, lef = lic.get("keyDetails"), lic.get("lef")
    if isinstance(details, str) and (m := _VALID_TO.search(details)):
        return _when(ctx, m.group(1))
    if isinstance(lef, str) and (m := _TIMELIMIT.search(lef)):
        return _when(ctx, m.group(1))
    return None


def _when(ctx: ProbeContext, text: str) -> float:
    """A licence date: ISO 8601, or Qlik's ``2024-03-16 12:00:00 AM``; UTC unless it says."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            when = dt.datetime.strptime(text, "%Y-%m-%d %I:%M:%S %p")
        except ValueError:
            raise ctx.invalid("licence date is neither ISO 8601 nor Qlik's format") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


async def _cloud(ctx: ProbeContext) -> LicenseInfo:
    status = ctx.json(await ctx.request("/api/v1/licenses/status"))
    if not isinstance(status, dict) or not isinstance(status.get("status"), str):
        raise ctx.invalid("/api/v1/licenses/status has no status")
    expires = None
    valid = status.get("valid")
    if isinstance(valid, str) and "/" in valid:
        end = valid.split("/", 1)[1]
        if end and end not in (".", ".."):
            expires = _when(ctx, end) + (86400.0 if len(end) == 10 else 0.0)  # a date: its end
    overview = ctx.json(await ctx.request("/api/v1/licenses/overview"))
    allotments = overview.get("allotments") if isinstance(overview, dict) else None
    if not isinstance(allotments, list):
        raise ctx.invalid("/api/v1/licenses/overview has no allotments list")
    access: dict[str, tuple[float, float]] = {}
    for item in allotments:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ctx.invalid("an allotment lacks its name")
        units, used = _num(ctx, item, "units"), _num(ctx, item, "unitsUsed")
        access[item["name"][:64]] = (units, units - used)
    return LicenseInfo(expired=status["status"] != "Ok", expires=expires, access=access)


def _num(ctx: ProbeContext, obj: dict[str, Any], key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ctx.invalid(f"licence answer lacks a number for {key}")
    return float(value)
