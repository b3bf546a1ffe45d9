"""The QPS front end (HTTPS 443): virtual proxies with JWT, header and ticket authentication.

``https://host/{prefix}/…`` picks a virtual proxy; no prefix means the default (ticket/forms)
one; an unknown prefix is a 404. Server TLS only — clients authenticate per virtual proxy:

- a valid session cookie ``X-Qlik-Session-<prefix>`` authenticates by itself;
- JWT (``Authorization: Bearer``): RS256/384/512 verified against the VP's X.509 certificate,
  audience and ``exp`` enforced, configurable claim names; any rejection is a 401 (measured on
  31.62, qlik-api-facts.md §3-4);
- header: the configured header carries the user id (static directory) or, by a pattern such as
  ``$ud\\$id``, directory and user (dynamic);
- ticket: ``?qlikTicket=`` from ``POST /qps/ticket``; without credentials → 302 to a login page.

Every successful authentication creates a proxy session and sets the cookie, so clients that
never log out pile sessions up, as on a real site. Served through a prefix: ``/qrs/about``
(xrfkey still required), ``/engine/healthcheck``, the personal API ``GET|DELETE /qps/user``,
``/qps/csrftoken`` and the engine websocket ``/app/…`` (cookie plus ``qlik-csrf-token``).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import jwt
from aiohttp import web
from cryptography import x509
from jwt.types import Options

from exporter.sim import engine
from exporter.sim.faults import FaultKind
from exporter.sim.middleware import is_websocket_upgrade
from exporter.sim.qlik import QlikUser, is_disabled, xrfkey_error
from exporter.sim.repository import about_payload
from exporter.sim.settings import HeaderVirtualProxy, JwtVirtualProxy, VirtualProxy
from exporter.sim.state import ProxySession

if TYPE_CHECKING:
    from exporter.sim.simulator import Simulator

# First path segments served by the default virtual proxy (no prefix).
DEFAULT_VP_ROOTS = frozenset({"qrs", "qps", "engine", "app", "internal_forms_authentication"})


class Rejected(Exception):
    """Credentials were presented and refused; carries the response to send."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


def _unauthorized(reason: str) -> Rejected:
    return Rejected(web.Response(status=401, text=f"Unauthorized: {reason}"))


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request authenticated as, and with what name."""

    user: QlikUser
    user_name: str | None = None


# -- credential checks per virtual-proxy kind ------------------------------------------------


def jwt_identity(vp: JwtVirtualProxy, token: str) -> Identity:
    """Verify a JWT as the VP does; raises :class:`Rejected` (401) on any problem."""
    key = x509.load_pem_x509_certificate(vp.certificate_pem).public_key()
    options: Options = {
        "require": ["exp"] if vp.require_exp else [],
        "verify_aud": bool(vp.audience),
    }
    try:
        claims = jwt.decode(
            token,
            key,  # type: ignore[arg-type]  # an RSA public key from the VP's certificate
            algorithms=list(vp.algorithms),
            audience=vp.audience or None,
            options=options,
        )
    except jwt.PyJWTError as exc:
        raise _unauthorized(f"JWT rejected ({type(exc).__name__})") from None
    uid, ud = claims.get(vp.user_id_claim), claims.get(vp.user_directory_claim)
    if not isinstance(uid, str) or not isinstance(ud, str) or not uid or not ud:
        raise _unauthorized("JWT lacks the user id or user directory claim")
    name = claims.get("name")
    return Identity(QlikUser(ud, uid), name if isinstance(name, str) else None)


def header_pattern(pattern: str) -> re.Pattern[str]:
    """A regex for a dynamic user-directory pattern (``$ud`` and ``$id`` placeholders)."""
    parts = re.split(r"(\$ud|\$id)", pattern)
    groups = {"$ud": "(?P<ud>.+?)", "$id": "(?P<id>.+?)"}
    return re.compile("".join(groups.get(p, re.escape(p)) for p in parts))


def header_identity(vp: HeaderVirtualProxy, value: str) -> Identity:
    """The user named by a header-auth header; raises :class:`Rejected` (401) when unusable."""
    if not value.isascii() or not value.strip():
        raise _unauthorized(f"{vp.header_name} must be non-empty US-ASCII")
    if vp.pattern is None:
        return Identity(QlikUser(vp.user_directory, value.strip()))
    match = header_pattern(vp.pattern).fullmatch(value.strip())
    if match is None:
        raise _unauthorized(f"{vp.header_name} does not match the pattern {vp.pattern!r}")
    return Identity(QlikUser(match["ud"], match["id"]))


def presented_identity(request: web.Request, sim: Simulator, vp: VirtualProxy) -> Identity | None:
    """The identity in the request's credentials for this VP kind, ``None`` when none given."""
    if isinstance(vp, JwtVirtualProxy):
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if not auth:
            return None
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("expected 'Authorization: Bearer <jwt>'")
        return jwt_identity(vp, token.strip())
    if isinstance(vp, HeaderVirtualProxy):
        value = request.headers.get(vp.header_name)
        return None if value is None else header_identity(vp, value)
    ticket_value = request.query.get("qlikTicket")
    if ticket_value is None:
        return None
    ticket = sim.tickets.redeem(ticket_value, vp.prefix)
    if ticket is None:
        return None  # an unusable ticket sends the user to log in again
    return Identity(QlikUser(ticket.user_directory, ticket.user_id))


# -- the front-end application ---------------------------------------------------------------


def _base(request: web.Request, prefix: str) -> str:
    return f"https://{request.host}/{prefix + '/' if prefix else ''}"


def login_uri(request: web.Request, prefix: str) -> str:
    """Where an unauthenticated user is sent (the exact real URL is unconfirmed)."""
    return f"{_base(request, prefix)}internal_forms_authentication/?targetId={uuid.uuid4()}"


def csrf_token(session: ProxySession) -> str:
    """The session's websocket CSRF token (Nov 2024+ ``/qps/csrftoken``)."""
    return hashlib.sha256(f"csrf:{session.session_id}".encode()).hexdigest()[:32]


class Frontend:
    """Routes one request to its virtual proxy and serves the proxied paths."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def split(self, path: str) -> tuple[VirtualProxy, str]:
        """``(virtual proxy, rest of path)`` or a 404 for an unknown prefix."""
        first, _, rest = path.lstrip("/").partition("/")
        vps = self.sim.virtual_proxies
        if first and first in vps:
            return vps[first], "/" + rest
        if first in DEFAULT_VP_ROOTS and "" in vps:
            return vps[""], path
        raise web.HTTPNotFound(text=f"No virtual proxy with prefix '{first}'.")

    def session_from_cookie(self, request: web.Request, vp: VirtualProxy) -> ProxySession | None:
        """The live session named by the VP's cookie."""
        value = request.cookies.get(vp.cookie_name)
        found = self.sim.proxy_sessions.get(value) if value else None
        return found if found is not None and found.vp == vp.prefix else None

    def authenticate(
        self, request: web.Request, vp: VirtualProxy
    ) -> tuple[ProxySession | None, bool]:
        """``(session, created)``: by cookie first, else by the VP's credentials."""
        session = self.session_from_cookie(request, vp)
        if session is not None:
            created = False
        else:
            identity = presented_identity(request, self.sim, vp)
            if identity is None:
                return None, False
            u = identity.user
            name = identity.user_name or self.sim.user_name(u.user_directory, u.user_id)
            session = self.sim.proxy_sessions.create(vp.prefix, u.user_directory, u.user_id, name)
            created = True
        if is_disabled(self.sim.disabled_users, session.user_directory, session.user_id):
            raise Rejected(web.Response(status=403, text="Access denied: the user is disabled."))
        return session, created

    def unauthenticated(self, request: web.Request, vp: VirtualProxy) -> NoReturn:
        """No credentials at all: ticket VPs redirect to log in; JWT and header VPs say 401."""
        if isinstance(vp, JwtVirtualProxy | HeaderVirtualProxy):
            raise _unauthorized("no credentials")
        raise web.HTTPFound(login_uri(request, vp.prefix))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Entry point for every front-end request."""
        vp, rest = self.split(request.path)
        if rest.startswith("/internal_forms_authentication"):
            return web.Response(
                text="<html><body>Qlik Sense login</body></html>", content_type="text/html"
            )
        try:
            session, created = self.authenticate(request, vp)
            response = await self.route(request, vp, rest, session)
        except Rejected as exc:
            return exc.response
        if created and session is not None and self.sim.proxy_sessions.get(session.session_id):
            response.set_cookie(
                vp.cookie_name, session.session_id, path="/", secure=True, httponly=True
            )
        return response

    async def route(
        self, request: web.Request, vp: VirtualProxy, rest: str, session: ProxySession | None
    ) -> web.StreamResponse:
        """Serve ``rest`` for an (optionally) authenticated request."""
        key = (request.method, rest.rstrip("/") or "/")
        if key == ("GET", "/qps/user"):
            return self.whoami(request, vp, session)
        if key == ("DELETE", "/qps/user"):
            return self.logout(request, vp, session)
        if session is None:
            self.unauthenticated(request, vp)
        if key == ("GET", "/qrs/about"):
            return xrfkey_error(request) or web.json_response(about_payload(self.sim))
        if key == ("GET", "/engine/healthcheck"):
            return web.json_response(engine.healthcheck_payload(self.sim))
        if key == ("GET", "/qps/csrftoken"):
            return web.Response(headers={"qlik-csrf-token": csrf_token(session)})
        if rest.startswith("/app/") and is_websocket_upgrade(request):
            return await self.websocket(request, vp, session)
        raise web.HTTPNotFound(text="Not found.")

    def whoami(
        self, request: web.Request, vp: VirtualProxy, session: ProxySession | None
    ) -> web.Response:
        """The personal API: who the session belongs to, or ``session: inactive``."""
        if session is None:
            return web.json_response(
                {"session": "inactive", "loginUri": login_uri(request, vp.prefix)}
            )
        ud, uid = session.user_directory, session.user_id
        wrong = self.sim.faults.take("frontend", (FaultKind.WRONG_USER,))
        if wrong is not None:
            ud, uid = wrong.params["user_directory"], wrong.params["user_id"]
        return web.json_response(
            {
                "userDirectory": ud,
                "userId": uid,
                "userName": session.user_name,
                "logoutUri": f"{_base(request, vp.prefix)}qps/user",
            }
        )

    def logout(
        self, request: web.Request, vp: VirtualProxy, session: ProxySession | None
    ) -> web.Response:
        """End every session of the user on this virtual proxy (measured on 31.62)."""
        response = web.json_response({"session": "inactive"})
        if session is not None:
            self.sim.proxy_sessions.delete_user(session.user, vp=vp.prefix)
            response.del_cookie(vp.cookie_name, path="/")
        return response

    async def websocket(
        self, request: web.Request, vp: VirtualProxy, session: ProxySession
    ) -> web.StreamResponse:
        """Proxied engine session: needs the session cookie and ``?qlik-csrf-token=``."""
        if self.session_from_cookie(request, vp) is None:
            # Bearer/header credentials on an upgrade are refused (CSWSH protection).
            return web.Response(status=401, text="Unauthorized: session cookie required")
        if request.query.get("qlik-csrf-token") != csrf_token(session):
            return web.Response(status=403, text="Forbidden: missing or wrong qlik-csrf-token")
        user = QlikUser(session.user_directory, session.user_id)
        return await engine.serve_session(request, self.sim, user, via_proxy=True)


def create_app(sim: Simulator) -> web.Application:
    """The front-end application (server TLS only)."""
    app = sim.service_app("frontend")
    app.router.add_route("*", "/{tail:.*}", Frontend(sim).handle)
    return app
