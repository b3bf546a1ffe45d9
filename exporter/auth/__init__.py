"""Auth methods: each turns its config into what a request needs and reports what it holds.

One module per method, looked up in :data:`METHODS`. An auth method is built once per target
and asked to :meth:`~AuthMethod.prepare` before every probe; it re-reads its files when they
change, so a rotated certificate or token is used without a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from exporter.auth.apikey import ApiKeyMethod
from exporter.auth.certificate import CertificateMethod
from exporter.auth.common import CredentialError, Prepared
from exporter.auth.header import HeaderMethod
from exporter.auth.jwt import JwtMethod
from exporter.config import Target

__all__ = ["METHODS", "AuthMethod", "CredentialError", "Prepared", "build_auth"]


class AuthMethod(Protocol):
    """What every auth method offers the runner."""

    def prepare(self) -> Prepared:
        """Headers, TLS contexts and expiry facts for one probe; raises CredentialError."""
        ...


@dataclass(slots=True)
class _Factory:
    build: Callable[[Target], AuthMethod]
    via_proxy: bool = field(default=False)


METHODS: dict[str, _Factory] = {
    "certificate": _Factory(CertificateMethod),
    "jwt": _Factory(JwtMethod, via_proxy=True),
    "header": _Factory(HeaderMethod, via_proxy=True),
    "apikey": _Factory(ApiKeyMethod),
}


def build_auth(target: Target) -> AuthMethod:
    """The auth method object for ``target``."""
    return METHODS[target.auth.method].build(target)
