"""JWT auth through a JWT virtual proxy: a static token, or one minted per probe.

Qlik Sense verifies the token with the X.509 certificate pasted into the virtual proxy and
accepts RS256/384/512 only (help.qlik.com, "JWT authentication"); the claim names for user id
and directory are whatever the virtual proxy is configured with.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from exporter.auth.common import (
    CredentialError,
    Prepared,
    TrustFiles,
    file_stamp,
    os_reason,
    read_token,
    shared_contexts,
    token_credentials,
)
from exporter.certinfo import describe, load_pem_certificates
from exporter.config import JwtAuth, Target
from exporter.results import CertificateInfo, CredentialInfo

# Qlik's own tooling backdates iat a little so that clock skew does not reject fresh tokens.
CLOCK_SKEW = 30


class JwtMethod:
    """``auth.method: jwt``."""

    def __init__(self, target: Target) -> None:
        assert isinstance(target.auth, JwtAuth)
        self._target = target
        self._auth = target.auth
        self._trust = TrustFiles(target)
        self._key_stamp: tuple[tuple[str, int, int], ...] = ()
        self._key: RSAPrivateKey | None = None
        self._signing_cert: list[CertificateInfo] = []

    def prepare(self) -> Prepared:
        """The bearer header, and what expires: the token and the signing certificate."""
        infos = self._trust.infos()
        try:
            contexts = shared_contexts(self._target)
            if self._auth.signing_key_file is not None:
                token, credentials = self._mint(), list[CredentialInfo]()
                infos += self._signing_cert
            else:
                token, credentials = self._static()
        except CredentialError as exc:
            exc.certificates = infos + self._signing_cert
            raise
        return Prepared(
            tls=contexts,
            headers={"Authorization": f"Bearer {token}"},
            certificates=infos,
            credentials=credentials,
        )

    def _static(self) -> tuple[str, list[CredentialInfo]]:
        token = read_token(self._auth.token_file, self._auth.token, "token_file")
        return token, token_credentials(token, "jwt", "the JWT")

    def _load_signing(self) -> RSAPrivateKey:
        auth = self._auth
        assert auth.signing_key_file is not None
        stamp = file_stamp(auth.signing_key_file, auth.signing_cert_file)
        if self._key is not None and stamp == self._key_stamp:
            return self._key
        password = None
        if auth.signing_key_password is not None:
            password = auth.signing_key_password.get_secret_value().encode()
        try:
            key = serialization.load_pem_private_key(auth.signing_key_file.read_bytes(), password)
        except OSError as exc:
            raise CredentialError(
                f"signing_key_file {auth.signing_key_file}: {os_reason(exc)}"
            ) from None
        except (ValueError, TypeError):
            raise CredentialError(
                f"signing_key_file {auth.signing_key_file}: "
                "not a PEM private key, or wrong password"
            ) from None
        if not isinstance(key, RSAPrivateKey):
            raise CredentialError(
                f"signing_key_file {auth.signing_key_file}: Qlik Sense JWT needs an RSA key"
            )
        self._signing_cert = []
        if auth.signing_cert_file is not None:
            try:
                cert = load_pem_certificates(auth.signing_cert_file)[0]
            except (OSError, ValueError) as exc:
                raise CredentialError(
                    f"signing_cert_file {auth.signing_cert_file}: {os_reason(exc)}"
                ) from None
            self._signing_cert = [describe(cert, "jwt_signing")]
        self._key, self._key_stamp = key, stamp
        return key

    def _mint(self) -> str:
        auth = self._auth
        key = self._load_signing()
        now = int(time.time())
        claims: dict[str, Any] = dict(auth.extra_claims)
        claims |= {
            auth.claims.user_id: auth.user_id,
            auth.claims.user_directory: auth.user_directory,
            "aud": auth.audience,
            "iat": now - CLOCK_SKEW,
            "exp": now + int(auth.token_lifetime),
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, key, algorithm=auth.algorithm)
