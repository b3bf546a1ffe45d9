"""``engine``: ``GET /engine/healthcheck`` on the engine (4747) or through a virtual proxy.

Parsed tolerantly: older engines spell ``mem.comitted`` and lack ``saturated``,
``in_memory_docs`` and ``totalPhysical`` (qlik-api-facts.md §2).
"""

from __future__ import annotations

from typing import Any

from exporter.checks.context import ProbeContext
from exporter.results import CheckValues, EngineHealth

MIB = 1024 * 1024


async def run(ctx: ProbeContext) -> CheckValues:
    """Read the engine's health numbers and version."""
    health = ctx.json(await ctx.request(ctx.path("/engine/healthcheck")))
    return parse_health(ctx, health)


def _num(ctx: ProbeContext, obj: Any, *keys: str) -> float:
    for key in keys:
        value = obj.get(key) if isinstance(obj, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    raise ctx.invalid(f"healthcheck lacks a number for {'/'.join(keys)}")


def parse_health(ctx: ProbeContext, health: object) -> CheckValues:
    """An EngineHealth from a healthcheck object."""
    if not isinstance(health, dict):
        raise ctx.invalid("healthcheck did not return an object")
    version = health.get("version")
    if not isinstance(version, str) or not version:
        raise ctx.invalid("healthcheck has no version")
    apps = health.get("apps")
    loaded = apps.get("loaded_docs") if isinstance(apps, dict) else None
    if not isinstance(loaded, list):
        raise ctx.invalid("healthcheck has no apps.loaded_docs list")
    saturated = health.get("saturated", False)
    values = EngineHealth(
        sessions_active=_num(ctx, health.get("session"), "active"),
        users_active=_num(ctx, health.get("users"), "active"),
        apps_loaded=float(len(loaded)),
        memory_committed_bytes=_num(ctx, health.get("mem"), "committed", "comitted") * MIB,
        cpu_utilization_ratio=_num(ctx, health.get("cpu"), "total") / 100.0,
        saturated=1.0 if saturated is True else 0.0,
    )
    version = version[:64]
    return CheckValues(
        engine_version=version,
        engine_health=values,
        details={"engine version": version, "active sessions": f"{values.sessions_active:g}"},
    )
