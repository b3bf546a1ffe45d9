"""Qlik Cloud API key auth: ``Authorization: Bearer <key>``.

A Cloud API key is a JWT (aud ``qlik.api``, iss ``qlik.api/api-keys``); its ``exp`` is read
without verifying the signature, which only the tenant can do, to export when it expires.
"""

from __future__ import annotations

from exporter.auth.common import (
    CredentialError,
    Prepared,
    TlsContexts,
    TrustFiles,
    build_contexts,
    check_not_expired,
    file_stamp,
    os_reason,
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
        self._contexts: TlsContexts | None = None
        self._stamp: tuple[tuple[str, int, int], ...] = ()

    def prepare(self) -> Prepared:
        """The bearer header and the key's expiry."""
        infos = self._trust.infos()
        credentials: list[CredentialInfo] = []
        try:
            stamp = file_stamp(self._target.ca_file)
            if self._contexts is None or stamp != self._stamp:
                self._contexts = build_contexts(self._target)
                self._stamp = stamp
            key = self._key()
            exp = token_expiry(key, "the API key")
            if exp is not None:
                credentials.append(CredentialInfo("apikey", exp))
            check_not_expired(exp, "the API key")
        except CredentialError as exc:
            exc.certificates, exc.credentials = infos, credentials
            raise
        return Prepared(
            tls=self._contexts,
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
