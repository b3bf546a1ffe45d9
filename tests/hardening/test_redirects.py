"""A probe never follows a redirect, on any check, HTTP or websocket: a 3xx is a classified
failure and the server behind ``Location`` receives nothing — not the client certificate, not
``X-Qlik-User``, not a bearer token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter.auth import Prepared
from exporter.auth.common import TlsContexts
from exporter.checks import ProbeContext, check_fn
from exporter.config import Target, parse_config
from exporter.reasons import ProbeFailure, Reason
from exporter.transport import HttpSession, SystemResolver
from tests.unit.transport_peers import HOST, Pki, make_pki

STATUSES = (301, 302, 303, 307, 308)
CHECKS = ("repository", "proxy", "engine", "engine_session")


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
async def servers(pki: Pki) -> AsyncIterator[dict[str, Any]]:
    """A server answering everything with a redirect, and two recorders it may point to: one
    over TLS on another port, one over plain HTTP."""
    recorded: list[str] = []

    async def record(request: web.Request) -> web.Response:
        recorded.append(f"{request.method} {request.path} {dict(request.headers)}")
        return web.Response(text="followed")

    runners = []
    ports = []
    for tls in (True, False):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(
            runner, HOST, 0, ssl_context=pki.server_context() if tls else None
        ).start()
        runners.append(runner)
        ports.append(runner.addresses[0][1])
    state: dict[str, Any] = {"status": 302, "location": ""}

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=state["status"], headers={"Location": state["location"]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0, ssl_context=pki.server_context()).start()
    runners.append(runner)
    yield {
        "port": runner.addresses[0][1],
        "state": state,
        "recorded": recorded,
        "elsewhere": [
            f"https://{HOST}:{ports[0]}/app/engineData",  # another port
            f"https://localhost:{ports[0]}/qrs/about",  # another host name
            f"http://{HOST}:{ports[1]}/engine/healthcheck",  # plain http
        ],
    }
    for r in runners:
        await r.cleanup()


def _ctx(pki: Pki, port: int, check: str) -> ProbeContext:
    data = {
        "name": "t",
        "type": "qseow",
        "host": HOST,
        "ports": {"repository": port, "proxy": port, "engine": port},
        # Files that exist; the context is handed a prepared TLS context instead of loading them.
        "auth": {"method": "certificate", "cert_file": __file__, "key_file": __file__},
    }
    target: Target = parse_config({"targets": [data]}, base_dir=Path(".")).targets[0]
    tls = pki.client_context()
    prepared = Prepared(
        TlsContexts(tls, tls), {"X-Qlik-User": "UserDirectory=X; UserId=secret-user"}
    )
    return ProbeContext(target, check, prepared, HttpSession(resolver=SystemResolver()))


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("status", STATUSES)
async def test_no_check_follows_a_redirect_anywhere(
    pki: Pki, servers: dict[str, Any], check: str, status: int
) -> None:
    """Every 3xx to another port, another host or plain http fails the check as a redirect
    not followed; nothing reaches the redirect's target."""
    for location in servers["elsewhere"]:
        servers["state"].update(status=status, location=location)
        ctx = _ctx(pki, servers["port"], check)
        try:
            with pytest.raises(ProbeFailure) as failure:
                await check_fn(check)(ctx)
        finally:
            await ctx.session.close()
        assert failure.value.reason == Reason.INVALID_RESPONSE, failure.value.message
        assert f"{status} redirect not followed" in failure.value.message
    assert servers["recorded"] == []
