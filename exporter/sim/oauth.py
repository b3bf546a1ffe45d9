"""Qlik Cloud OAuth machine-to-machine: clients, ``POST /oauth/token``, ``POST /oauth/revoke``.

From the qlik.dev OAuth API reference and "Get started with OAuth machine-to-machine"
(docs/fidelity.md): a client-credentials request carries ``client_id``, ``client_secret`` and
``grant_type=client_credentials`` (and optionally ``scope``) as JSON or form data; the client may
instead authenticate with HTTP Basic (the reference's 401 mentions "client credentials provided
in Authorization header"; qlik-sdk does this). 200 answers ``access_token``, ``token_type``
(``bearer``), ``expires_at`` and ``scope``; this simulator also sends RFC 6749's
``expires_in`` (seconds), which the exporter reads. 400 malformed, 401 bad client credentials,
403 client disabled or "too many tokens", 429 with ``retry-after`` over the Tier 2 limit.
Error bodies are ``{"errors": [{"code", "title", "detail", "status"}]}`` with ``status`` a string.

Access tokens here are opaque random strings (real ones may be JWTs; clients must not decode
them). Secrets and tokens are kept hashed, so the admin state never shows them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from exporter.sim.ratelimit import FixedWindow, rate_limited

if TYPE_CHECKING:
    from exporter.sim.cloud import CloudTenant

DEFAULT_TOKEN_LIFETIME = 21600
"""Six hours, the ``expires_in`` reported for Qlik Cloud M2M tokens (qlik-api-facts.md §9)."""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def oauth_error(status: int, title: str, detail: str, code: str | None = None) -> web.Response:
    """The OAuth endpoints' error body (``status`` is a string there)."""
    error = {
        "code": code or f"OAUTH-{status}",
        "title": title,
        "detail": detail,
        "status": str(status),
    }
    return web.json_response({"errors": [error]}, status=status)


@dataclass(slots=True)
class OAuthClient:
    """A machine-to-machine OAuth client; its tokens act as ``user_id`` (a tenant admin bot)."""

    client_id: str
    secret_digest: str
    name: str
    user_id: str
    revoked: bool = False
    forbidden: bool = False
    rate_limit: FixedWindow | None = None

    def to_json(self) -> dict[str, Any]:
        """What the admin endpoint shows (never the secret)."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "user_id": self.user_id,
            "revoked": self.revoked,
            "forbidden": self.forbidden,
            "rate_limit": None
            if self.rate_limit is None
            else {"limit": self.rate_limit.limit, "window": self.rate_limit.window},
        }


@dataclass(slots=True)
class IssuedToken:
    """An access token handed out by ``/oauth/token``."""

    client_id: str
    user_id: str
    expires: float
    revoked: bool = False


@dataclass(slots=True)
class OAuthServer:
    """The tenant's OAuth clients and the tokens they were issued."""

    token_lifetime: int = DEFAULT_TOKEN_LIFETIME
    clients: dict[str, OAuthClient] = field(default_factory=dict)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    issued: int = 0

    def token_user(self, token: str) -> str | None:
        """The user a live token acts as; ``None`` if unknown, expired, revoked or orphaned."""
        issued = self.tokens.get(_digest(token))
        if issued is None or issued.revoked or issued.expires <= time.time():
            return None
        client = self.clients.get(issued.client_id)
        return None if client is None or client.revoked else issued.user_id

    def revoke_token(self, token: str) -> bool:
        """Revoke one token; ``False`` when it was not issued here."""
        issued = self.tokens.get(_digest(token))
        if issued is not None:
            issued.revoked = True
        return issued is not None

    def grant(self, client: OAuthClient, scope: str) -> dict[str, Any]:
        """Issue a token to an authenticated client: the 200 body."""
        token = secrets.token_urlsafe(48)
        expires = time.time() + self.token_lifetime
        self.tokens[_digest(token)] = IssuedToken(client.client_id, client.user_id, expires)
        self.issued += 1
        when = dt.datetime.fromtimestamp(expires, dt.UTC)
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.token_lifetime,
            "expires_at": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "scope": scope or "user_default",
        }


async def _request_fields(request: web.Request) -> dict[str, Any] | None:
    """The token request's fields from JSON or form data; ``None`` when unreadable."""
    if request.content_type == "application/x-www-form-urlencoded":
        return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` from ``Authorization: Basic`` (RFC 6749 §2.3.1)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (unquote(client_id), unquote(secret)) if sep else None


async def token_endpoint(request: web.Request, tenant: CloudTenant) -> web.StreamResponse:
    """``POST /oauth/token`` with the client-credentials grant."""
    body = await _request_fields(request)
    if body is None:
        return oauth_error(400, "invalid_request", "The body must be JSON or form data.")
    if body.get("grant_type") != "client_credentials":
        return oauth_error(400, "unsupported_grant_type", "Only client_credentials is supported.")
    client_id, secret = body.get("client_id"), body.get("client_secret")
    if not client_id and (basic := basic_credentials(request)) is not None:
        client_id, secret = basic
    if not isinstance(client_id, str) or not client_id or not isinstance(secret, str):
        return oauth_error(400, "invalid_request", "client_id and client_secret are required.")
    client = tenant.oauth.clients.get(client_id)
    if client is not None and client.rate_limit is not None:
        wait = client.rate_limit.retry_after(client_id)
        if wait is not None:
            return rate_limited(wait)
    if (
        client is None
        or client.revoked
        or not secrets.compare_digest(client.secret_digest, _digest(secret))
    ):
        return oauth_error(401, "invalid_client", "Invalid client credentials.")
    if client.forbidden:
        return oauth_error(403, "forbidden", "The client is disabled or has too many tokens.")
    scope = body.get("scope")
    return web.json_response(tenant.oauth.grant(client, scope if isinstance(scope, str) else ""))


async def revoke_endpoint(request: web.Request, tenant: CloudTenant) -> web.StreamResponse:
    """``POST /oauth/revoke`` ``{"token", "token_type_hint"?}``."""
    body = await _request_fields(request)
    token = body.get("token") if body else None
    if not isinstance(token, str) or not token:
        return oauth_error(400, "invalid_request", "token is required.")
    tenant.oauth.revoke_token(token)
    return web.Response(status=200)
