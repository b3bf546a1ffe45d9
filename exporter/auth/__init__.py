"""Auth methods: what each holds, and what a request needs.

One module per method, named in :data:`exporter.catalog.METHODS`; each defines its config
model ``Settings`` and ``Method``. A method is built once per target and asked, before every
probe, for its :meth:`~AuthMethod.holdings` (never raises) and then to
:meth:`~AuthMethod.prepare` (may raise :class:`CredentialError`); it re-reads its files when
they change, so a rotated certificate or token is used without a restart.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, cast

from exporter import catalog
from exporter.auth.common import CredentialError, Holdings, Prepared

if TYPE_CHECKING:
    from exporter.config import Target
    from exporter.transport import HttpSession

__all__ = ["AuthMethod", "CredentialError", "Holdings", "Prepared", "build_auth"]


class AuthMethod(Protocol):
    """What every auth method offers the runner."""

    def holdings(self) -> Holdings:
        """The certificates and credentials it holds, with their expiry; never raises."""
        ...

    def verify(self) -> None:
        """Everything that can be checked without a network; raises CredentialError."""
        ...

    async def prepare(self, session: HttpSession) -> Prepared:
        """TLS contexts and headers for one probe; raises CredentialError (or, for a method
        that calls a token endpoint over ``session``, the failure that call met)."""
        ...


class _AuthModule(Protocol):
    def Method(self, target: Target) -> AuthMethod: ...  # the module's class


def build_auth(target: Target) -> AuthMethod:
    """The auth method object for ``target``, from the module the catalog names."""
    module = importlib.import_module(catalog.METHODS[target.auth.method].module)
    return cast(_AuthModule, module).Method(target)
