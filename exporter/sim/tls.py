"""Server TLS for the simulated services, with certificate faults chosen per connection.

Each listener has one server ``SSLContext``. Its ``sni_callback`` runs on every handshake —
also when the client sends no SNI (clients connecting by IP address), where OpenSSL passes
``None`` as the name — and, when a certificate fault is active for the service, swaps
``ssl_object.context`` to an alternative context holding the faulty certificate. The listeners
never restart, so faults can be flipped between two requests. Alternative certificates are
issued on first use, so a site of many nodes costs one certificate per node until a fault is set.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from exporter.sim.faults import TLS_KINDS, FaultChain, FaultKind, Faults

ClientCertMode = Literal["required", "optional", "none"]

_VERIFY = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}


@dataclass(frozen=True, slots=True)
class CertPair:
    """A certificate file and its key file."""

    cert_file: Path
    key_file: Path


def server_context(pair: CertPair, client_ca: Path | None, mode: ClientCertMode) -> ssl.SSLContext:
    """A TLS 1.2+ server context; with a client CA it verifies client certificates per ``mode``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(pair.cert_file, pair.key_file)
    if client_ca is not None:
        ctx.load_verify_locations(cafile=client_ca)
    ctx.verify_mode = _VERIFY[mode]
    return ctx


SniCallback = Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None]
AlternateSource = Callable[[FaultKind], CertPair]
"""Issues (or returns the already issued) faulty certificate of one kind."""


@dataclass(slots=True)
class ServiceTls:
    """The main context of one listener and its alternatives for certificate faults."""

    service: str
    main: ssl.SSLContext
    source: AlternateSource
    client_ca: Path | None
    mode: ClientCertMode
    alternates: dict[FaultKind, ssl.SSLContext] = field(default_factory=dict)

    @property
    def mutual(self) -> bool:
        """Whether this listener asks for client certificates."""
        return self.client_ca is not None

    def contexts(self) -> list[ssl.SSLContext]:
        """Every context of this listener."""
        return [self.main, *self.alternates.values()]

    def alternate(self, kind: FaultKind) -> ssl.SSLContext:
        """The context serving the faulty certificate of ``kind`` (built on first use)."""
        if kind not in self.alternates:
            self.alternates[kind] = server_context(self.source(kind), self.client_ca, self.mode)
        return self.alternates[kind]

    def set_client_cert_mode(self, mode: ClientCertMode) -> None:
        """Change client-certificate checking for new connections (mutual-TLS listeners only)."""
        if self.mutual:
            self.mode = mode
            for ctx in self.contexts():
                ctx.verify_mode = _VERIFY[mode]


def build_service_tls(
    service: str,
    faults: Faults | FaultChain,
    main: CertPair,
    alternates: AlternateSource,
    *,
    client_ca: Path | None,
    mode: ClientCertMode,
) -> ServiceTls:
    """Contexts for one listener, wired so that its certificate faults apply per handshake.

    The alternatives verify clients exactly like the main context: after the swap OpenSSL
    checks the client chain against the new context's trust store.
    """
    tls = ServiceTls(service, server_context(main, client_ca, mode), alternates, client_ca, mode)

    def choose(ssl_obj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        fault = faults.take(service, TLS_KINDS)
        if fault is not None:
            ssl_obj.context = tls.alternate(fault.kind)

    tls.main.sni_callback = choose
    return tls
