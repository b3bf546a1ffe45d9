"""The simulator: every service on its own TLS port on 127.0.0.1, plus a plain-HTTP admin port.

Usage::

    sim = Simulator(tmp_path)
    await sim.start()
    ...  # https://localhost:{sim.ports.repository}/qrs/about with sim.certs_dir/client.pem
    await sim.stop()
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import jwt
from aiohttp import web

from exporter.sim import certs
from exporter.sim.cloud import CloudTenant, FixedWindow
from exporter.sim.faults import FaultKind, Faults
from exporter.sim.middleware import ErrorRenderer, ServiceInfo, fault_middleware, text_error
from exporter.sim.services import ADMIN_FACTORY, SERVICE_FACTORIES
from exporter.sim.settings import (
    EngineSettings,
    HeaderVirtualProxy,
    JwtVirtualProxy,
    Ports,
    TicketVirtualProxy,
    VirtualProxy,
)
from exporter.sim.state import ProxySessions, Tickets, user_key
from exporter.sim.tls import CertPair, ClientCertMode, ServiceTls, build_service_tls

log = logging.getLogger(__name__)

MUTUAL_SERVICES = ("repository", "proxy", "engine")
ServiceName = Literal["repository", "proxy", "engine", "frontend", "cloud"]
KEY_PASSWORD = "QlikSimKeyPassword"  # noqa: S105 - test data, printed by the CLI on purpose
"""Password of the simulator's encrypted client-key variants and ``client.pfx`` (test data)."""


class Simulator:
    """A Qlik Sense site (QRS, QPS, engine, virtual proxies) and a Qlik Cloud tenant."""

    def __init__(
        self,
        workdir: Path,
        host: str = "localhost",
        *,
        build_version: str = "31.43.0.0",
        build_date: str = "4/12/2024 18:12:20 PM",
        engine_version: str = "12.1823.6",
        engine_healthcheck_style: Literal["modern", "legacy"] = "modern",
        engine_auth_info_first: bool = False,
        max_parallel_sessions: int = 5,
        client_cert_mode: Literal["required", "forbidden_403"] = "required",
        ports: Ports | None = None,
        bind: str = "127.0.0.1",
        client_valid_days: float | None = None,
        server_valid_days: float | None = None,
        jwt_cert_valid_days: float | None = None,
        cloud_rate_limit: tuple[int, float] | None = None,
        key_pool: certs.KeyPool | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.certs_dir = self.workdir
        self.host = host
        self.build_version = build_version
        self.build_date = build_date
        self.engine = EngineSettings(
            version=engine_version,
            healthcheck_style=engine_healthcheck_style,
            auth_info_first=engine_auth_info_first,
            max_parallel_sessions=max_parallel_sessions,
        )
        self._client_cert_mode = client_cert_mode
        self._requested_ports = ports or Ports()
        self.ports = Ports()
        self.bind = bind
        self.client_valid_days = client_valid_days
        self.server_valid_days = server_valid_days
        self.jwt_cert_valid_days = jwt_cert_valid_days
        self.cloud = CloudTenant(host)
        self.cloud_rate_limit = cloud_rate_limit
        self.keys = key_pool or certs.SHARED_KEYS

        self.faults = Faults()
        self.proxy_sessions = ProxySessions()
        self.tickets = Tickets()
        self.disabled_users: set[tuple[str, str]] = set()
        self.user_names: dict[tuple[str, str], str] = {
            ("LAB", "goran"): "Göran S",
            ("INTERNAL", "sa_api"): "sa_api",
        }
        self.jwt_vp = JwtVirtualProxy()
        self.header_vp = HeaderVirtualProxy()
        self.header_dynamic_vp = HeaderVirtualProxy(
            prefix="hdrdyn", header_name="X-Sso-Identity", pattern="$ud\\$id"
        )
        self.key_password = KEY_PASSWORD

        self.ca: certs.CertificateAuthority | None = None
        self.tls: dict[str, ServiceTls] = {}
        self.stopping = asyncio.Event()
        self.websockets: set[web.WebSocketResponse] = set()
        self.engine_sessions: Counter[tuple[str, str]] = Counter()
        self.engine_sessions_total = 0
        self.engine_users_seen: set[tuple[str, str]] = set()
        self.ticket_vp = TicketVirtualProxy()
        self._runners: list[web.AppRunner] = []

    # -- public helpers -------------------------------------------------------------------

    @property
    def client_cert_mode(self) -> str:
        """``required`` (handshake fails without a client certificate) or ``forbidden_403``."""
        return self._client_cert_mode

    @client_cert_mode.setter
    def client_cert_mode(self, mode: Literal["required", "forbidden_403"]) -> None:
        self._client_cert_mode = mode
        for tls in self.tls.values():
            tls.set_client_cert_mode(self._tls_mode())

    @property
    def cloud_rate_limit(self) -> tuple[int, float] | None:
        """``(requests, window seconds)`` per user on the Cloud tenant; ``None`` = no limit."""
        limit = self.cloud.rate_limit
        return None if limit is None else (limit.limit, limit.window)

    @cloud_rate_limit.setter
    def cloud_rate_limit(self, value: tuple[int, float] | None) -> None:
        self.cloud.rate_limit = None if value is None else FixedWindow(value[0], value[1])

    @property
    def cloud_tenant_id(self) -> str:
        """The Cloud tenant's id (32-character URL-safe)."""
        return self.cloud.tenant_id

    @property
    def cloud_user_id(self) -> str:
        """The id of the tenant user API keys are issued for by default (24 hex)."""
        return self.cloud.owner_id

    def cloud_issue_api_key(
        self, sub: str | None = None, expires_in: float | None = 86400 * 30
    ) -> str:
        """Issue a Cloud API key (ES384 JWT) for ``sub``; ``expires_in=None`` never expires."""
        return self.cloud.issue_api_key(sub, expires_in)

    def cloud_revoke(self, key_or_jti: str) -> str:
        """Revoke a Cloud API key (the key or its jti); returns the jti."""
        return self.cloud.revoke(key_or_jti)

    def mint_jwt(
        self,
        user_id: str = "monitor",
        user_directory: str = "LAB",
        *,
        lifetime: float | None = 300.0,
        algorithm: str = "RS256",
        **claims: Any,
    ) -> str:
        """A JWT the JWT virtual proxy accepts (qs-jwt's claims), signed with its key."""
        key = (self.certs_dir / "jwt_signing_key.pem").read_bytes()
        now = int(time.time())
        payload: dict[str, Any] = {
            self.jwt_vp.user_id_claim: user_id,
            self.jwt_vp.user_directory_claim: user_directory,
            "aud": self.jwt_vp.audience,
            "iat": now - 30,  # backdated for clock skew, as qs-jwt users do
            **claims,
        }
        if lifetime is not None:
            payload["exp"] = now + int(lifetime)
        return jwt.encode(payload, key, algorithm=algorithm)

    def _tls_mode(self) -> ClientCertMode:
        return "required" if self._client_cert_mode == "required" else "optional"

    @property
    def virtual_proxies(self) -> dict[str, VirtualProxy]:
        """Every virtual proxy by prefix (``""`` is the default one)."""
        vps: list[VirtualProxy] = [
            self.ticket_vp,
            self.jwt_vp,
            self.header_vp,
            self.header_dynamic_vp,
        ]
        return {vp.prefix: vp for vp in vps}

    def proxy_session_count(self, user_directory: str, user_id: str, vp: str | None = None) -> int:
        """Live proxy sessions of a user (on one virtual proxy prefix, or on all)."""
        return len(self.proxy_sessions.find(vp=vp, user=user_key(user_directory, user_id)))

    def engine_session_count(self, user_directory: str, user_id: str) -> int:
        """Open engine websocket sessions of a user."""
        return self.engine_sessions[user_key(user_directory, user_id)]

    def engine_session_counts(self) -> list[dict[str, Any]]:
        """Open engine sessions per user, for ``GET /state``."""
        return [
            {"userDirectory": ud, "userId": uid, "count": n}
            for (ud, uid), n in sorted(self.engine_sessions.items())
            if n
        ]

    def user_name(self, user_directory: str, user_id: str) -> str:
        """The display name of a user (the id when none is known)."""
        key = user_key(user_directory, user_id)
        for (ud, uid), name in self.user_names.items():
            if user_key(ud, uid) == key:
                return name
        return user_id

    def url(self, service: ServiceName, path: str = "/") -> str:
        """``https://<host>:<port><path>`` of a service."""
        return f"https://{self.host}:{getattr(self.ports, service)}{path}"

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Write certificates, then bind every service on a free (or the requested) port.

        If a port cannot be bound, whatever already started is stopped and the error raised.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stopping.clear()
        self._write_certificates()
        try:
            await self._start_services()
        except BaseException:
            await self.stop()
            raise
        log.info("simulator listening: %s", asdict(self.ports))

    async def _start_services(self) -> None:
        for name, factory in SERVICE_FACTORIES.items():
            requested = getattr(self._requested_ports, name)
            setattr(self.ports, name, await self._serve(factory(self), requested, self.tls[name]))
        self.ports.admin = await self._serve(ADMIN_FACTORY(self), self._requested_ports.admin, None)

    async def stop(self) -> None:
        """Stop every listener; hung handlers and open websockets are ended first."""
        self.stopping.set()
        for ws in list(self.websockets):
            await ws.close(code=1001, message=b"simulator stopping")
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, app: web.Application, port: int, tls: ServiceTls | None) -> int:
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.bind, port))
        site = web.SockSite(runner, sock, ssl_context=tls.main if tls else None)
        await site.start()
        return int(sock.getsockname()[1])

    def service_app(
        self, service: ServiceName, render_error: ErrorRenderer = text_error
    ) -> web.Application:
        """A new application for ``service`` with its fault (and client-certificate) checks."""
        info = ServiceInfo(service, self.faults, self.stopping, render_error)
        middlewares = [fault_middleware(info)]
        if service in MUTUAL_SERVICES:
            middlewares.append(self._client_cert_middleware())
        return web.Application(middlewares=middlewares)

    def _client_cert_middleware(self) -> Any:
        @web.middleware
        async def check(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
            # In "forbidden_403" mode the handshake lets certificate-less clients in (CERT_OPTIONAL)
            # and they get a 403 instead, the other behaviour reported for port 4242.
            transport = request.transport
            peer = transport.get_extra_info("peercert") if transport else None
            if not peer:
                return web.Response(status=403, text="Forbidden: a client certificate is required.")
            response: web.StreamResponse = await handler(request)
            return response

        return check

    # -- certificates ---------------------------------------------------------------------

    def _write_certificates(self) -> None:
        d = self.certs_dir
        export = certs.write_qmc_export(
            d,
            self.host,
            client_valid_days=self.client_valid_days,
            server_valid_days=self.server_valid_days,
            keys=self.keys,
        )
        self.ca = export.ca
        self._write_key_variants(export.client.certificate)
        self._write_jwt_pair(export.ca)
        alternates = self._write_alternates(export.ca)
        main = CertPair(export.server_file, export.server_key_file)
        for name in ("repository", "proxy", "engine", "frontend", "cloud"):
            mutual = name in MUTUAL_SERVICES
            self.tls[name] = build_service_tls(
                name,
                self.faults,
                main,
                alternates,
                client_ca=export.root_file if mutual else None,
                mode=self._tls_mode() if mutual else "none",
            )

    def _write_key_variants(self, client: certs.IssuedCertificate) -> None:
        """Other encodings of the client key, as other exports and tools produce them."""
        d, pw = self.certs_dir, self.key_password
        certs.write_private(d / "client_key_pkcs8.pem", client.key_pem("pkcs8"))
        certs.write_private(d / "client_key_encrypted.pem", client.key_pem("pkcs1", pw))
        certs.write_private(d / "client_key_encrypted_pkcs8.pem", client.key_pem("pkcs8", pw))
        assert self.ca is not None
        client.write_pfx(d / "client.pfx", pw, ca=self.ca)

    def _write_jwt_pair(self, ca: certs.CertificateAuthority) -> None:
        nb, na = certs.validity(valid_days=self.jwt_cert_valid_days)
        pair = ca.issue("QlikSimJwtSigning", not_before=nb, not_after=na, key=self.keys.get("jwt"))
        pair.write(
            self.certs_dir / "jwt_signing_cert.pem",
            self.certs_dir / "jwt_signing_key.pem",
            key_format="pkcs8",
        )
        self.jwt_vp.certificate_pem = pair.cert_pem

    def _write_alternates(self, ca: certs.CertificateAuthority) -> dict[FaultKind, CertPair]:
        """Server certificates for the ``cert_*`` faults: other host, expired, other CA, no SAN."""
        alt = self.certs_dir / "alt"
        alt.mkdir(exist_ok=True)
        server_key = self.keys.get("server")
        other_ca = certs.CertificateAuthority.create(
            f"{self.host}-CA", key=self.keys.get("untrusted-ca")
        )
        other_ca.root.write(alt / "untrusted_root.pem")
        nb, na = certs.validity(expired=True)
        leaves = {
            FaultKind.CERT_WRONG_HOST: ca.issue(
                "wrong-host.invalid", san_dns=["wrong-host.invalid"], server=True, key=server_key
            ),
            FaultKind.CERT_EXPIRED: ca.issue(
                self.host, not_before=nb, not_after=na, server=True, key=server_key, san=[self.host]
            ),
            # Same subject and issuer name as the real CA, different key: only the signature
            # tells them apart, as when a client trusts another site's root.pem.
            FaultKind.CERT_UNTRUSTED: other_ca.issue(
                self.host, server=True, key=server_key, san=[self.host]
            ),
            # The host only in the subject CN, no SAN: as old self-made certificates are.
            FaultKind.CERT_NO_SAN: ca.issue(self.host, server=True, key=server_key),
        }
        pairs: dict[FaultKind, CertPair] = {}
        for kind, leaf in leaves.items():
            pair = CertPair(alt / f"{kind.value}.pem", alt / f"{kind.value}_key.pem")
            leaf.write(pair.cert_file, pair.key_file)
            pairs[kind] = pair
        return pairs

    def issue_client_files(self, directory: Path, **kwargs: Any) -> certs.ClientFiles:
        """Client credentials from this CA; arguments as :func:`certs.write_client_files`."""
        assert self.ca is not None, "start() the simulator first"
        kwargs.setdefault("key", self.keys.get("client"))
        return certs.write_client_files(directory, self.ca, **kwargs)
