"""The repository (QRS, 4242): mutual TLS, xrfkey, X-Qlik-User and /qrs/about."""

from __future__ import annotations

import ssl

import aiohttp
from sim_helpers import XRFKEY

TIMEOUT = aiohttp.ClientTimeout(total=5)
XSRF = "XSRF prevention check failed. Possible XSRF discovered."


async def get(
    url: str, ctx: ssl.SSLContext, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(url, ssl=ctx, headers=headers or {}) as resp,
    ):
        return resp.status, await resp.text()


async def test_about_returns_all_documented_fields(sim, sim_mtls, qrs_headers):
    """GET /qrs/about answers the About model with every documented field."""
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(
            sim.url("repository", f"/qrs/about?xrfkey={XRFKEY}"), ssl=sim_mtls, headers=qrs_headers
        ) as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
    assert body == {
        "buildVersion": "31.43.0.0",
        "buildDate": "4/12/2024 18:12:20 PM",
        "databaseProvider": "Devart.Data.PostgreSql",
        "nodeType": 1,
        "sharedPersistence": True,
        "requiresBootstrap": False,
        "singleNodeOnly": False,
        "schemaPath": "About",
    }
