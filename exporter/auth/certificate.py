"""Certificate auth: mutual TLS with the client certificate exported from the QMC.

The files are checked before any connection, so the commonest ways a Qlik integration dies —
an expired client certificate, a key that no longer matches, certificates regenerated on the
Qlik side — show up as ``credential_invalid`` with a precise log line instead of a vague
handshake failure.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from pydantic import SecretStr, ValidationInfo, model_validator

from exporter.auth.common import (
    CredentialError,
    Holdings,
    Prepared,
    TlsContexts,
    TrustFiles,
    build_contexts,
    file_stamp,
    os_reason,
    read_secret_file,
)
from exporter.certinfo import describe, load_pem_certificates
from exporter.fields import AuthSettings, FilePath, OptionalFilePath, secret_from
from exporter.results import CertificateInfo

if TYPE_CHECKING:
    from exporter.config import Target
    from exporter.transport import HttpSession


class CertificateAuth(AuthSettings):
    """Mutual TLS with a client certificate exported from the QMC."""

    method: Literal["certificate"]
    cert_file: FilePath
    key_file: OptionalFilePath = None  # optional only for a .pfx/.p12 bundle in cert_file
    key_password: SecretStr | None = None
    key_password_file: Path | None = None
    user_directory: str = "INTERNAL"
    user_id: str = "sa_api"

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            data = secret_from(dict(data), "key_password", info, required=False)
        return data

    @model_validator(mode="after")
    def _key_needed(self) -> CertificateAuth:
        if self.key_file is None and not self.is_pkcs12:
            raise ValueError("key_file: required unless cert_file is a .pfx/.p12 bundle")
        return self

    @property
    def is_pkcs12(self) -> bool:
        """Whether ``cert_file`` is a PKCS#12 bundle (the QMC's Windows format export)."""
        return self.cert_file.suffix.lower() in (".pfx", ".p12")


def qlik_user_header(user_directory: str, user_id: str) -> str:
    """``X-Qlik-User`` as Qlik documents it: URL-encoded values, ``; `` between them."""
    return f"UserDirectory={quote(user_directory, safe='')}; UserId={quote(user_id, safe='')}"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CredentialError(f"{what} {path}: {os_reason(exc)}") from None


def _password(auth: CertificateAuth) -> bytes | None:
    if auth.key_password_file is not None:
        # Re-read so that a rotated password file goes with a rotated key.
        return read_secret_file(auth.key_password_file, "key_password_file").encode()
    if auth.key_password is not None:
        return auth.key_password.get_secret_value().encode()
    return None


def load_identity(auth: CertificateAuth) -> tuple[x509.Certificate, PrivateKeyTypes]:
    """The client certificate and key from PEM files or a PKCS#12 bundle."""
    password = _password(auth)
    if auth.is_pkcs12:
        data = _read(auth.cert_file, "cert_file")
        try:
            key, cert, _ = pkcs12.load_key_and_certificates(data, password)
        except ValueError:
            raise CredentialError(
                f"cert_file {auth.cert_file}: not a PKCS#12 bundle, or wrong key password"
            ) from None
        if key is None or cert is None:
            raise CredentialError(f"cert_file {auth.cert_file}: bundle lacks a certificate or key")
        return cert, key
    try:
        cert = load_pem_certificates(auth.cert_file)[0]
    except FileNotFoundError:
        raise CredentialError(f"cert_file {auth.cert_file}: file not found") from None
    except OSError as exc:
        raise CredentialError(f"cert_file {auth.cert_file}: {os_reason(exc)}") from None
    except ValueError:
        raise CredentialError(f"cert_file {auth.cert_file}: not a PEM certificate") from None
    assert auth.key_file is not None  # config validation guarantees it for PEM
    return cert, _load_key(auth.key_file, password)


def _load_key(path: Path, password: bytes | None) -> PrivateKeyTypes:
    data = _read(path, "key_file")
    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise CredentialError(f"key_file {path}: not a PEM private key")
    try:
        # The key is checked against the certificate below; OpenSSL's RSA consistency check
        # (tens of ms per key) adds nothing to that.
        return serialization.load_pem_private_key(
            data, password, unsafe_skip_rsa_key_validation=True
        )
    except TypeError:
        # cryptography says TypeError when a password is missing or given for a plain key.
        if password is None:
            raise CredentialError(
                f"key_file {path}: the key is encrypted; set key_password"
            ) from None
        raise CredentialError(
            f"key_file {path}: the key is not encrypted; drop key_password"
        ) from None
    except ValueError:
        if password is not None:
            raise CredentialError(f"key_file {path}: wrong key password or corrupt key") from None
        raise CredentialError(f"key_file {path}: not a valid private key") from None
    except Exception:  # e.g. an unsupported algorithm inside a syntactically fine PEM
        raise CredentialError(f"key_file {path}: unsupported or corrupt private key") from None


def validate_identity(
    cert: x509.Certificate, key: PrivateKeyTypes, cas: list[x509.Certificate]
) -> None:
    """Checks a Qlik service would fail the handshake on, made locally with clear words.

    The validity dates are checked on every probe by :meth:`_Identity.check_dates`.
    """
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise CredentialError("key_file does not match cert_file (different key pair)")
    if cas and not any(_issued_by(cert, ca) for ca in cas):
        issuer = describe(cert, "client").issuer_cn
        names = ", ".join(f"CN={describe(ca, 'root').subject_cn}" for ca in cas[:3])
        if len(cas) > 3:
            names += f" and {len(cas) - 3} more"
        raise CredentialError(
            f"client certificate (issuer CN={issuer}) is not issued by the CA in "
            f"ca_file ({names}); were the certificates regenerated on the Qlik side?"
        )


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(slots=True)
class _Identity:
    """A loaded, statically validated client identity and its TLS contexts."""

    info: CertificateInfo
    contexts: TlsContexts

    def check_dates(self, now: float) -> None:
        """The one validation that changes with time alone."""
        info = self.info
        if info.not_after <= now:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.not_after))
            raise CredentialError(f"client certificate CN={info.subject_cn} expired at {when}")
        if info.not_before > now:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.not_before))
            raise CredentialError(
                f"client certificate CN={info.subject_cn} is not valid before {when}"
            )


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What one set of files gave: the client certificate's info if it could be parsed, and
    the usable identity or why there is none."""

    info: CertificateInfo | None
    identity: _Identity | None
    error: str = ""


# One identity (and SSLContext) per set of files, shared by every target that uses them and
# rebuilt when a file changes; a site with many targets on one export loads it once.
_IDENTITIES: dict[tuple[object, ...], _Loaded] = {}


def _identity_key(target: Target, auth: CertificateAuth) -> tuple[object, ...]:
    secret = auth.key_password.get_secret_value() if auth.key_password else ""
    return (
        file_stamp(auth.cert_file, auth.key_file, auth.key_password_file, target.ca_file),
        target.ca_file,
        target.tls_verify,
        hashlib.sha256(secret.encode()).digest(),
    )


def _load_files(target: Target, auth: CertificateAuth, trust: TrustFiles) -> _Loaded:
    info = None
    try:
        cert, private_key = load_identity(auth)
        info = describe(cert, "client")
        cas, _ = trust.load()
        validate_identity(cert, private_key, cas)
        return _Loaded(info, _Identity(info, build_contexts(target, (cert, private_key))))
    except CredentialError as exc:
        return _Loaded(info, None, exc.message)


def load_checked_identity(target: Target, auth: CertificateAuth, trust: TrustFiles) -> _Loaded:
    """The cached outcome of loading these files, loading and validating them when changed."""
    key = _identity_key(target, auth)
    loaded = _IDENTITIES.get(key)
    if loaded is None:
        loaded = _load_files(target, auth, trust)
        if len(_IDENTITIES) > 4096:
            _IDENTITIES.clear()  # stale entries of rotated files; rebuilt on demand
        _IDENTITIES[key] = loaded
    return loaded


class CertificateMethod:
    """``auth.method: certificate``; one SSLContext per identity, rebuilt when a file changes."""

    def __init__(self, target: Target) -> None:
        assert isinstance(target.auth, CertificateAuth)
        self._target = target
        self._auth = target.auth
        self._trust = TrustFiles(target)
        self._header = qlik_user_header(self._auth.user_directory, self._auth.user_id)

    def _loaded(self) -> _Loaded:
        return load_checked_identity(self._target, self._auth, self._trust)

    def holdings(self) -> Holdings:
        """The client certificate (when it parses) and the CAs of ``ca_file``."""
        info = self._loaded().info
        return Holdings(certificates=([info] if info else []) + self._trust.infos())

    def verify(self) -> None:
        """The files load, match and are valid now (cached until they change)."""
        self._identity()

    def _identity(self) -> _Identity:
        self._trust.load()  # a broken ca_file is named before the client certificate
        loaded = self._loaded()
        if loaded.identity is None:
            raise CredentialError(loaded.error)
        loaded.identity.check_dates(time.time())
        return loaded.identity

    async def prepare(self, session: HttpSession) -> Prepared:
        """Validate the files (cached until they change) and hand out the shared context."""
        identity = self._identity()
        return Prepared(tls=identity.contexts, headers={"X-Qlik-User": self._header})


Settings = CertificateAuth
Method = CertificateMethod
