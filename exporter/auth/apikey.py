"""Qlik Cloud API key auth: ``Authorization: Bearer <key>``.

A Cloud API key is a JWT (aud ``qlik.api``, iss ``qlik.api/api-keys``); its ``exp`` is read
without verifying the signature, which only the tenant can do, to export when it expires.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr, ValidationInfo, model_validator

from exporter.auth.common import Holdings, Prepared, TokenSource, TrustFiles, shared_contexts
from exporter.fields import AuthSettings, secret_from

if TYPE_CHECKING:
    from exporter.config import Target
    from exporter.transport import HttpSession


class ApiKeyAuth(AuthSettings):
    """A Qlik Cloud API key sent as ``Authorization: Bearer``."""

    method: Literal["apikey"]
    api_key: SecretStr
    api_key_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            data = secret_from(dict(data), "api_key", info, required=True)
        return data


class ApiKeyMethod:
    """``auth.method: apikey``."""

    def __init__(self, target: Target) -> None:
        assert isinstance(target.auth, ApiKeyAuth)
        self._target = target
        self._trust = TrustFiles(target)
        self._key = TokenSource(
            target.auth.api_key_file,
            target.auth.api_key,
            setting="api_key_file",
            kind="apikey",
            what="the API key",
        )

    def holdings(self) -> Holdings:
        """The CAs of ``ca_file`` and the key's expiry."""
        return Holdings(self._trust.infos(), self._key.credentials())

    def verify(self) -> None:
        """The trust file and the key (a JWT, not expired)."""
        self._trust.load()
        shared_contexts(self._target)
        self._key.token()

    async def prepare(self, session: HttpSession) -> Prepared:
        """The bearer header."""
        self._trust.load()
        contexts = shared_contexts(self._target)
        return Prepared(tls=contexts, headers={"Authorization": f"Bearer {self._key.token()}"})


Settings = ApiKeyAuth
Method = ApiKeyMethod
