"""The table of simulated services: name → application factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from exporter.sim import admin, cloud, engine, frontend, proxy, repository

if TYPE_CHECKING:
    from exporter.sim.simulator import Simulator

AppFactory = Callable[["Simulator"], web.Application]

SERVICE_FACTORIES: dict[str, AppFactory] = {
    "repository": repository.create_app,
    "proxy": proxy.create_app,
    "engine": engine.create_app,
    "frontend": frontend.create_app,
    "cloud": cloud.create_app,
}
ADMIN_FACTORY: AppFactory = admin.create_app
