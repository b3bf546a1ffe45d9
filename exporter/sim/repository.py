"""The Qlik Sense Repository Service (QRS, port 4242): ``/qrs/about`` and ``/qrs/ssl/ping``.

Every QRS call needs a matching xrfkey and an ``X-Qlik-User`` header (qlik-api-facts.md §1);
the client certificate is checked in the TLS handshake (see :mod:`exporter.sim.tls`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from exporter.sim.qlik import qlik_user_or_error, xrfkey_error

if TYPE_CHECKING:
    from exporter.sim.simulator import Simulator


def about_payload(sim: Simulator) -> dict[str, Any]:
    """The QRS ``About`` model with all its documented (LOCKED) fields."""
    return {
        "buildVersion": sim.build_version,
        "buildDate": sim.build_date,
        "databaseProvider": "Devart.Data.PostgreSql",
        "nodeType": 1,  # 1 = Central
        "sharedPersistence": True,
        "requiresBootstrap": False,
        "singleNodeOnly": False,
        "schemaPath": "About",
    }


def qrs_checks(request: web.Request, sim: Simulator) -> web.Response | None:
    """The xrfkey check, then the X-Qlik-User check; ``None`` when both pass."""
    error = xrfkey_error(request)
    if error is not None:
        return error
    user = qlik_user_or_error(request, sim.disabled_users)
    return user if isinstance(user, web.Response) else None


def create_app(sim: Simulator) -> web.Application:
    """The QRS application (mutual TLS is the listener's job)."""

    async def about(request: web.Request) -> web.StreamResponse:
        return qrs_checks(request, sim) or web.json_response(about_payload(sim))

    async def ping(request: web.Request) -> web.StreamResponse:
        # The body is the string "Ping successful"; its exact JSON quoting is unconfirmed,
        # so it is sent as a JSON string like every other QRS body.
        return qrs_checks(request, sim) or web.json_response("Ping successful")

    app = sim.service_app("repository")
    app.router.add_get("/qrs/about", about)
    app.router.add_get("/qrs/ssl/ping", ping)
    return app
