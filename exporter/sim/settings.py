"""Settings of the simulated site: ports, virtual proxies and the engine."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal


@dataclass(slots=True)
class Ports:
    """Listening ports; 0 before start (or in a request) means "pick a free one"."""

    repository: int = 0
    proxy: int = 0
    engine: int = 0
    frontend: int = 0
    cloud: int = 0
    admin: int = 0


@dataclass(slots=True)
class JwtVirtualProxy:
    """A JWT virtual proxy (QRS ``VirtualProxyConfig`` with ``authenticationMethod: 4``)."""

    prefix: str = "jwt"
    audience: str = "qlik.api/login/jwt-session"
    user_id_claim: str = "userId"
    user_directory_claim: str = "userDirectory"
    # Qlik documents RS256/384/512 only; HS* must be refused (no key confusion with the cert).
    algorithms: tuple[str, ...] = ("RS256", "RS384", "RS512")
    require_exp: bool = True
    certificate_pem: bytes = b""  # the VP's "JWT certificate"; set at start

    @property
    def cookie_name(self) -> str:
        """The session cookie, ``X-Qlik-Session-<prefix>`` by Qlik's convention."""
        return session_cookie_name(self.prefix)


FORBIDDEN_HEADER_NAMES = frozenset(
    h.lower()
    for h in (
        "X-Qlik-User",
        "X-Qlik-Security",
        "X-Qlik-ProxySession",
        "X-Qlik-ProxyId",
        "X-Qlik-Trace",
        "X-Qlik-App",
        "X-Qlik-Capabilities",
    )
)
"""Header names the QMC refuses for header authentication (help.qlik.com "Virtual proxies")."""


@dataclass(slots=True)
class HeaderVirtualProxy:
    """A header-auth virtual proxy: static directory, or a dynamic ``pattern`` like ``$ud\\$id``."""

    prefix: str = "hdr"
    header_name: str = "X-Sso-User"
    user_directory: str = "LAB"
    pattern: str | None = None

    def __post_init__(self) -> None:
        if any(bad in self.header_name.lower() for bad in FORBIDDEN_HEADER_NAMES):
            raise ValueError(f"header name {self.header_name!r} is reserved by Qlik")

    @property
    def cookie_name(self) -> str:
        """The session cookie name."""
        return session_cookie_name(self.prefix)


@dataclass(slots=True)
class TicketVirtualProxy:
    """The default virtual proxy (no prefix): ticket/forms login, 302 to a login page."""

    prefix: str = ""

    @property
    def cookie_name(self) -> str:
        """The session cookie name."""
        return session_cookie_name(self.prefix)


VirtualProxy = JwtVirtualProxy | HeaderVirtualProxy | TicketVirtualProxy


def session_cookie_name(prefix: str) -> str:
    """``X-Qlik-Session`` for the default virtual proxy, ``X-Qlik-Session-<prefix>`` otherwise."""
    return f"X-Qlik-Session-{prefix}" if prefix else "X-Qlik-Session"


@dataclass(slots=True)
class EngineSettings:
    """How the simulated engine behaves."""

    version: str = "12.1823.6"
    healthcheck_style: Literal["modern", "legacy"] = "modern"
    auth_info_first: bool = False  # send OnAuthenticationInformation before OnConnected
    max_parallel_sessions: int = 5
    apps: list[str] = field(
        default_factory=lambda: [
            "5a1c2f7e-3b4d-4e8a-9f10-2c3d4e5f6a7b",
            "b2e4a6c8-1d3f-4a5b-8c7d-9e0f1a2b3c4d",
        ]
    )
    saturated: bool = False
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now().astimezone())
