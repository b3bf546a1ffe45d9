"""Qlik Cloud API key auth: ``Authorization: Bearer <key>``.

A Cloud API key is a JWT (aud ``qlik.api``, iss ``qlik.api/api-keys``); its ``exp`` is read
without verifying the signature, which only the tenant can do, to export when it expires.
"""

from __future__ import annotations

from exporter.auth.common import (
    CredentialError,
    Prepared,
    TrustFiles,
    check_not_expired,
    os_reason,
    shared_contexts,
    token_expiry,
)
from exporter.config import ApiKeyAuth, Target
from exporter.results import CredentialInfo


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
        credentials: list[CredentialInfo] = []
        try:
            contexts = shared_contexts(self._target)
            key = self._key()
            exp = token_expiry(key, "the API key")
            if exp is not None:
                credentials.append(CredentialInfo("apikey", exp))
            check_not_expired(exp, "the API key")
        except CredentialError as exc:
            exc.certificates, exc.credentials = infos, credentials
            raise
        return Prepared(
            tls=contexts,
            headers={"Authorization": f"Bearer {key}"},
            certificates=infos,
            credentials=credentials,
        )

    def _key(self) -> str:
        auth = self._auth
        if auth.api_key_file is not None:
            # Re-read, so that a rotated key file is used without a reload.
            try:
                return auth.api_key_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise CredentialError(
                    f"api_key_file {auth.api_key_file}: {os_reason(exc)}"
                ) from None
        return auth.api_key.get_secret_value()
