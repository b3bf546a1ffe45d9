"""A Qlik Cloud tenant (qlik-api-facts.md §5): API keys, ``/api/v1/users/me``, ``/tenants/me``.

API keys are JWTs (ES384 with a ``kid``; claims ``aud: qlik.api``, ``iss: qlik.api/api-keys``,
lowercase-UUID ``jti``, ``sub``, ``subType: user``, ``tenantId``, ``iat``, optional ``exp``) sent
as ``Authorization: Bearer``. Errors use ``{"errors":[{code,title,status}],"traceId"}``; the
exact 401 body for a bad key is unconfirmed, so it follows that documented shape. Over the
rate limit: 429, ``retry-after: <seconds>`` and the documented body.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from exporter.sim.faults import FaultKind

if TYPE_CHECKING:
    from exporter.sim.simulator import Simulator

API_KEY_AUDIENCE = "qlik.api"
API_KEY_ISSUER = "qlik.api/api-keys"


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def trace_id() -> str:
    """A trace id like the ones Qlik Cloud returns with errors (32 hex)."""
    return secrets.token_hex(16)


def error_body(status: int, title: str, code: str | None = None, **extra: Any) -> dict[str, Any]:
    """The documented Qlik Cloud error body."""
    error = {"code": code or f"HTTP-{status}", "title": title, "status": status, **extra}
    return {"errors": [error], "traceId": trace_id()}


def rate_limited(retry_after: int) -> web.Response:
    """429 with ``retry-after`` and the body from qlik.dev ``apis/rest/rate-limiting``."""
    detail = f"You need to wait {retry_after} seconds until limit is lifted."
    body = {"errors": [{"code": "HTTP-429", "title": "API rate limit reached.", "detail": detail}]}
    return web.json_response(body, status=429, headers={"retry-after": str(retry_after)})


def render_error(status: int, message: str, retry_after: int | None = None) -> web.Response:
    """Cloud-shaped error responses (used for injected ``status`` faults too)."""
    if status == 429:
        return rate_limited(retry_after if retry_after is not None else 60)
    return web.json_response(error_body(status, message), status=status)


def _unauthorized() -> web.Response:
    return web.json_response(error_body(401, "Unauthorized"), status=401)


@dataclass(slots=True)
class CloudUser:
    """A tenant user (the ``User`` model's fields that clients read)."""

    id: str
    name: str
    email: str
    status: str = "active"
    created: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass(slots=True)
class FixedWindow:
    """A per-user request counter over fixed windows (Qlik evaluates limits per user)."""

    limit: int
    window: float
    _windows: dict[str, tuple[float, int]] = field(default_factory=dict)

    def retry_after(self, who: str) -> int | None:
        """Count one request; seconds to wait when over the limit, else ``None``."""
        now = time.monotonic()
        start, count = self._windows.get(who, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        self._windows[who] = (start, count + 1)
        if count + 1 > self.limit:
            return max(1, math.ceil(start + self.window - now))
        return None


class CloudTenant:
    """The tenant's identity, users and API keys."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.tenant_id = secrets.token_urlsafe(24)[:32]  # 32-char URL-safe, like real ids
        self.name = "simulated-tenant"
        self.created = dt.datetime.now(dt.UTC)
        owner = CloudUser(secrets.token_hex(12), "Monitor Bot", "monitor@example.com")
        self.owner_id = owner.id
        self.users: dict[str, CloudUser] = {owner.id: owner}
        self._signing_key = ec.generate_private_key(ec.SECP384R1())
        self.kid = secrets.token_hex(16)
        self.revoked: set[str] = set()
        self.rate_limit: FixedWindow | None = None

    def issue_api_key(self, sub: str | None = None, expires_in: float | None = 86400 * 30) -> str:
        """Issue an API key for ``sub`` (the owner by default; unknown users are added)."""
        sub = sub or self.owner_id
        if sub not in self.users:
            self.users[sub] = CloudUser(sub, sub, f"{sub}@example.com")
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": API_KEY_AUDIENCE,
            "iss": API_KEY_ISSUER,
            "jti": str(uuid.uuid4()),
            "sub": sub,
            "subType": "user",
            "tenantId": self.tenant_id,
            "iat": now,
        }
        if expires_in is not None:
            claims["exp"] = now + int(expires_in)
        return jwt.encode(claims, self._signing_key, algorithm="ES384", headers={"kid": self.kid})

    def revoke(self, key_or_jti: str) -> str:
        """Revoke an API key given as the key itself or its ``jti``; returns the jti."""
        jti = key_or_jti
        if key_or_jti.count(".") == 2:
            jti = str(jwt.decode(key_or_jti, options={"verify_signature": False})["jti"])
        self.revoked.add(jti)
        return jti

    def user_for(self, key: str) -> CloudUser | None:
        """The user a valid, unrevoked key belongs to; ``None`` for any invalid key."""
        try:
            if jwt.get_unverified_header(key).get("kid") != self.kid:
                return None
            claims = jwt.decode(
                key,
                self._signing_key.public_key(),
                algorithms=["ES384"],
                audience=API_KEY_AUDIENCE,
                issuer=API_KEY_ISSUER,
                options={"require": ["jti", "sub", "iat"]},
            )
        except jwt.PyJWTError:
            return None
        if claims["jti"] in self.revoked or claims.get("tenantId") != self.tenant_id:
            return None
        return self.users.get(str(claims["sub"]))

    def user_json(self, user: CloudUser, base: str) -> dict[str, Any]:
        """The ``User`` model as ``GET /api/v1/users/me`` returns it."""
        return {
            "id": user.id,
            "tenantId": self.tenant_id,
            "name": user.name,
            "email": user.email,
            "status": user.status,
            "subject": f"auth0|{user.id}",
            "assignedRoles": [
                {
                    "id": "6082a8d5a37a1e0001e29c43",
                    "name": "TenantAdmin",
                    "type": "default",
                    "level": "admin",
                }
            ],
            "assignedGroups": [],
            "assignedScopes": [],
            "createdAt": _iso(user.created),
            "lastUpdatedAt": _iso(user.created),
            "locale": "en",
            "preferredLocale": "en",
            "zoneinfo": "Europe/Stockholm",
            "preferredZoneinfo": "Europe/Stockholm",
            "links": {"self": {"href": f"{base}/api/v1/users/{user.id}"}},
        }

    def tenant_json(self, base: str) -> dict[str, Any]:
        """The ``Tenant`` model as ``GET /api/v1/tenants/me`` returns it."""
        return {
            "id": self.tenant_id,
            "name": self.name,
            "hostnames": [self.host],
            "createdByUser": self.owner_id,
            "created": _iso(self.created),
            "lastUpdated": _iso(self.created),
            "status": "active",
            "statusLastUpdatedAt": _iso(self.created),
            "datacenter": "eu-west-1",
            "region": "eu",
            "enableAppOpeningFeedback": False,
            "links": {"self": {"href": f"{base}/api/v1/tenants/{self.tenant_id}"}},
        }


USER_KEY: web.RequestKey[CloudUser] = web.RequestKey("cloud_user", CloudUser)


def create_app(sim: Simulator) -> web.Application:
    """The tenant application (server TLS only)."""
    tenant = sim.cloud

    @web.middleware
    async def api_key_auth(request: web.Request, handler: Any) -> web.StreamResponse:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        user = tenant.user_for(key.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            return _unauthorized()
        if tenant.rate_limit is not None:
            wait = tenant.rate_limit.retry_after(user.id)
            if wait is not None:
                return rate_limited(wait)
        request[USER_KEY] = user
        response: web.StreamResponse = await handler(request)
        return response

    def base(request: web.Request) -> str:
        return f"https://{request.host}"

    async def users_me(request: web.Request) -> web.StreamResponse:
        user = request[USER_KEY]
        body = tenant.user_json(user, base(request))
        wrong = sim.faults.take("cloud", (FaultKind.WRONG_USER,))
        if wrong is not None:
            body["id"] = wrong.params["user_id"]
        return web.json_response(body)

    async def user_by_id(request: web.Request) -> web.StreamResponse:
        found = tenant.users.get(request.match_info["id"])
        if found is None:
            return web.json_response(error_body(404, "Not found", "USERS-7"), status=404)
        return web.json_response(tenant.user_json(found, base(request)))

    async def tenant_me(request: web.Request) -> web.StreamResponse:
        if request.match_info.get("id", "me") not in ("me", tenant.tenant_id):
            return web.json_response(error_body(404, "Not found", "TENANTS-2"), status=404)
        return web.json_response(tenant.tenant_json(base(request)))

    app = sim.service_app("cloud", render_error)
    app.middlewares.append(api_key_auth)
    app.router.add_get("/api/v1/users/me", users_me)
    app.router.add_get("/api/v1/users/{id}", user_by_id)
    app.router.add_get("/api/v1/tenants/me", tenant_me)
    app.router.add_get("/api/v1/tenants/{id}", tenant_me)
    return app
