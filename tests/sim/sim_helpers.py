"""Small helpers for the simulator tests: constants and one-shot HTTP calls with timeouts."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from multidict import CIMultiDict

XRFKEY = "abcdefghijklmnop"
QLIK_USER = "UserDirectory=INTERNAL; UserId=sa_api"
XSRF_BODY = "XSRF prevention check failed. Possible XSRF discovered."
TIMEOUT = aiohttp.ClientTimeout(total=5)


def qrs_headers(user: str | None = QLIK_USER, key: str | None = XRFKEY) -> dict[str, str]:
    """QRS headers as Ctrl-Q sends them; ``None`` leaves one out."""
    headers = {}
    if key is not None:
        headers["X-Qlik-Xrfkey"] = key
    if user is not None:
        headers["X-Qlik-User"] = user
    return headers


async def call(
    method: str,
    url: str,
    ctx: ssl.SSLContext | bool,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, CIMultiDict[str], str]:
    """One request on a fresh session: status, headers and text body."""
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.request(method, url, ssl=ctx, headers=headers or {}, **kwargs) as resp,
    ):
        return resp.status, resp.headers.copy(), await resp.text()


def mint_jwt(
    certs_dir: Path,
    *,
    algorithm: str = "RS256",
    key: Any = None,
    lifetime: float = 300,
    **claims: Any,
) -> str:
    """A JWT for the simulator's JWT virtual proxy (qs-jwt's claims), signed with its key."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "userId": "monitor",
        "userDirectory": "LAB",
        "name": "Monitor",
        "aud": "qlik.api/login/jwt-session",
        "iat": now - 30,
        "exp": now + lifetime,
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    signing_key = key if key is not None else (certs_dir / "jwt_signing_key.pem").read_bytes()
    return jwt.encode(payload, signing_key, algorithm=algorithm)


async def site_call(
    sim: Any,
    method: str,
    url: str,
    ctx: ssl.SSLContext | bool,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, CIMultiDict[str], str]:
    """Like :func:`call`, resolving the site's node names through the simulator's mapping."""
    connector = aiohttp.TCPConnector(resolver=sim.aiohttp_resolver())
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT, connector=connector) as session,
        session.request(method, url, ssl=ctx, headers=headers or {}, **kwargs) as resp,
    ):
        return resp.status, resp.headers.copy(), await resp.text()


def qrs_url(sim: Any, path: str, node: str | None = None, query: str = "") -> str:
    """A QRS URL on a node with the test xrfkey (and more query when given)."""
    extra = f"&{query}" if query else ""
    return sim.url("repository", f"{path}?xrfkey={XRFKEY}{extra}", node=node)


def qps_url(sim: Any, path: str, node: str | None = None) -> str:
    """A QPS API URL on a node with the test xrfkey."""
    return sim.url("proxy", f"{path}?xrfkey={XRFKEY}", node=node)
