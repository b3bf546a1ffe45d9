"""The table of simulated services: name → application factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from exporter.sim import admin, cloud, engine, frontend, proxy, repository

if TYPE_CHECKING:
    from exporter.sim.simulator import Simulator
    from exporter.sim.site import Node

NodeAppFactory = Callable[["Simulator", "Node"], web.Application]
AppFactory = Callable[["Simulator"], web.Application]

NODE_FACTORIES: dict[str, NodeAppFactory] = {
    "repository": repository.create_app,
    "proxy": proxy.create_app,
    "engine": engine.create_app,
    "frontend": frontend.create_app,
}
"""Services every node of a site runs (each on the node's own address)."""
CLOUD_FACTORY: AppFactory = cloud.create_app
ADMIN_FACTORY: AppFactory = admin.create_app
