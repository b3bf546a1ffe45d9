"""Checks: one module per check, each one request path, looked up in :data:`CHECKS`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from exporter.checks import engine, engine_session, proxy, repository, tenant
from exporter.checks.context import ProbeContext
from exporter.results import CheckValues

CheckFn = Callable[[ProbeContext], Awaitable[CheckValues]]

CHECKS: dict[str, CheckFn] = {
    "repository": repository.run,
    "proxy": proxy.run,
    "engine": engine.run,
    "engine_session": engine_session.run,
    "tenant": tenant.run,
}

__all__ = ["CHECKS", "CheckFn", "ProbeContext"]
