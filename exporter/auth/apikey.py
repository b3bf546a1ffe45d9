"""Qlik Cloud API key auth: ``Authorization: Bearer <key>``.

A Cloud API key is a JWT (aud ``qlik.api``, iss ``qlik.api/api-keys``); its ``exp`` is read
without verifying the signature, which only the tenant can do, to export when it expires.
"""

from __future__ import annotations

from exporter.auth.common import (
    CredentialError,
    Prepared,
    TrustFiles,
    read_token,
    shared_contexts,
    token_credentials,
)
from exporter.config import ApiKeyAuth, Target


class ApiKeyMethod:
    """``auth.method: apikey``."""

    def __init__(self, target: Target) -> None:
        assert isinstance(target.auth, ApiKeyAuth)
        self._target = target
        self._auth = target.auth
        self._trust = TrustFiles(target)

    def prepare(self) -> Prepared:
        """The bearer header and the key's expiry."""
        infos = self._trust.infos()
        auth = self._auth
        try:
            contexts = shared_contexts(self._target)
            key = read_token(auth.api_key_file, auth.api_key, "api_key_file")
            credentials = token_credentials(key, "apikey", "the API key")
        except CredentialError as exc:
            exc.certificates = infos
            raise
        return Prepared(
            tls=contexts,
            headers={"Authorization": f"Bearer {key}"},
            certificates=infos,
            credentials=credentials,
        )
