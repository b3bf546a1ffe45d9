"""JWT auth through a JWT virtual proxy: a static token, or one minted per probe.

Qlik Sense verifies the token with the X.509 certificate pasted into the virtual proxy and
accepts RS256/384/512 only (help.qlik.com, "JWT authentication"); the claim names for user id
and directory are whatever the virtual proxy is configured with.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from exporter.auth.common import (
    CredentialError,
    Holdings,
    Prepared,
    TokenSource,
    TrustFiles,
    file_stamp,
    os_reason,
    shared_contexts,
)
from exporter.certinfo import describe, load_pem_certificates
from exporter.fields import (
    AuthSettings,
    Duration,
    Model,
    OptionalFilePath,
    secret_from,
    show,
)
from exporter.results import CertificateInfo

if TYPE_CHECKING:
    from exporter.config import Target
    from exporter.transport import HttpSession


class JwtClaims(Model):
    """Claim names the virtual proxy reads (case-sensitive, free-form in the QMC)."""

    user_id: str = "userId"
    user_directory: str = "userDirectory"


class JwtAuth(AuthSettings):
    """A JWT sent as ``Authorization: Bearer`` to a JWT virtual proxy."""

    method: Literal["jwt"]
    token: SecretStr | None = None
    token_file: Path | None = None
    signing_key_file: OptionalFilePath = None
    signing_key_password: SecretStr | None = None
    signing_key_password_file: Path | None = None
    signing_cert_file: OptionalFilePath = None
    algorithm: Literal["RS256", "RS384", "RS512"] = "RS256"
    audience: str = "qlik.api/login/jwt-session"
    token_lifetime: Duration = 300.0
    user_directory: str | None = None
    user_id: str | None = None
    claims: JwtClaims = JwtClaims()
    extra_claims: dict[str, str | int | bool | list[str]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        has_token = any(data.get(k) is not None for k in ("token", "token_file", "token_env"))
        if has_token and data.get("signing_key_file") is not None:
            raise ValueError(
                "signing_key_file: cannot be combined with a static token"
                " (give token, token_file or token_env, or signing_key_file)"
            )
        if not has_token and data.get("signing_key_file") is None:
            raise ValueError("one of token, token_file, token_env or signing_key_file is required")
        data = secret_from(data, "token", info, required=False)
        return secret_from(data, "signing_key_password", info, required=False)

    @field_validator("extra_claims", mode="before")
    @classmethod
    def _claims(cls, v: Any) -> Any:
        # One clear line per bad claim instead of one per member of the value's type union.
        if isinstance(v, dict):
            for key, value in v.items():
                ok = isinstance(value, str | int | bool) or (
                    isinstance(value, list) and all(isinstance(x, str) for x in value)
                )
                if not ok:
                    raise ValueError(
                        f"claim {show(key)} must be a string, integer, boolean or list of strings"
                    )
        return v

    @model_validator(mode="after")
    def _minting_needs_user(self) -> JwtAuth:
        if self.signing_key_file is not None:
            for key in ("user_id", "user_directory"):
                if not getattr(self, key):
                    raise ValueError(f"{key}: required to mint tokens with signing_key_file")
        return self


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
        self._static = (
            None
            if self._auth.signing_key_file is not None
            else TokenSource(
                self._auth.token_file,
                self._auth.token,
                setting="token_file",
                kind="jwt",
                what="the JWT",
            )
        )

    def holdings(self) -> Holdings:
        """The CAs of ``ca_file``, and the signing certificate or the static token's expiry."""
        if self._static is not None:
            return Holdings(self._trust.infos(), self._static.credentials())
        # prepare() says why a load fails; the certificate of the last good load is still shown
        with contextlib.suppress(CredentialError):
            self._load_signing()
        return Holdings(self._trust.infos() + self._signing_cert)

    def verify(self) -> None:
        """The trust file, and the static token (well formed, not expired) or signing key."""
        self._trust.load()
        shared_contexts(self._target)
        if self._static is not None:
            self._static.token()
        else:
            self._load_signing()

    async def prepare(self, session: HttpSession) -> Prepared:
        """The bearer header: the static token, or a freshly minted one."""
        self._trust.load()
        contexts = shared_contexts(self._target)
        token = self._static.token() if self._static is not None else self._mint()
        return Prepared(tls=contexts, headers={"Authorization": f"Bearer {token}"})

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


Settings = JwtAuth
Method = JwtMethod
