"""What auth methods share: what they hold, what a request needs, TLS contexts and tokens.

An auth method answers two questions on every probe, in this order:

- :meth:`~exporter.auth.AuthMethod.holdings`: the certificates and credentials it holds, with
  their expiry — whatever could be read, even when they are unusable; it never raises, so the
  expiry metrics survive a broken credential;
- :meth:`~exporter.auth.AuthMethod.prepare`: what one request needs (TLS contexts, headers), or
  a :class:`CredentialError` that names what is wrong.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pydantic import SecretStr

from exporter.certinfo import describe, load_pem_certificates
from exporter.reasons import ProbeFailure, Reason
from exporter.results import CertificateInfo, CredentialInfo

if TYPE_CHECKING:
    from exporter.config import Target


class CredentialError(ProbeFailure):
    """A local certificate, key or token is unusable; found before any connection."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.CREDENTIAL_INVALID, message)


@dataclass(slots=True)
class Holdings:
    """The certificates and credentials an auth method holds, as far as they could be read."""

    certificates: list[CertificateInfo] = field(default_factory=list)
    credentials: list[CredentialInfo] = field(default_factory=list)


@dataclass(slots=True)
class TlsContexts:
    """The verifying context a probe uses, and a non-verifying twin for reading a bad cert."""

    verify: ssl.SSLContext
    inspect: ssl.SSLContext


@dataclass(slots=True)
class Prepared:
    """Everything one request needs from its auth method."""

    tls: TlsContexts
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may hold a bearer token


def file_stamp(*paths: Path | None) -> tuple[tuple[str, int, int], ...]:
    """A cheap fingerprint of files, so contexts are rebuilt only when a file changes."""
    out = []
    for p in paths:
        if p is None:
            continue
        try:
            st = p.stat()
        except OSError:
            out.append((str(p), -1, -1))
        else:
            out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _base_context(*, verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    if verify:
        # With ca_file, trust exactly that CA, as Qlik's own clients do with root.pem; loading
        # the system store as well would cost ~1 MiB and ~45 ms per context for nothing.
        ctx = (
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if ca_file is not None
            else ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        )
        # Python 3.13 turns on strict X.509 checks by default, which reject the root CA that
        # Qlik Sense generates (it has no keyUsage extension); real clients accept it.
        ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
        # SAN only, as browsers and Go do, and as qlik_certificate_hostname_match judges: a
        # certificate naming its host only in the subject CN does not pass.
        ctx.hostname_checks_common_name = False
        if ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise CredentialError(f"ca_file {ca_file}: cannot load: {exc}") from None
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _load_identity(ctx: ssl.SSLContext, cert: x509.Certificate, key: PrivateKeyTypes) -> None:
    """Load an in-memory certificate and key into ``ctx`` without writing the key to disk.

    ``ssl`` only loads from paths; a memfd gives it a path that exists only in this process.
    """
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("qlik-client-identity", 0)
        try:
            os.write(fd, pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as folder:  # pragma: no cover - non-Linux fallback
        path = Path(folder) / "identity.pem"
        path.touch(mode=0o600)
        path.write_bytes(pem)
        ctx.load_cert_chain(str(path))


def build_contexts(
    target: Target, identity: tuple[x509.Certificate, PrivateKeyTypes] | None = None
) -> TlsContexts:
    """The verifying and inspecting contexts for ``target``, with the client identity if any."""
    verify = _base_context(verify=target.tls_verify, ca_file=target.ca_file)
    inspect = _base_context(verify=False, ca_file=None)
    if identity is not None:
        for ctx in (verify, inspect):
            try:
                _load_identity(ctx, *identity)
            except ssl.SSLError as exc:
                raise CredentialError(f"cannot use the client certificate: {exc.reason}") from None
    return TlsContexts(verify, inspect)


_SHARED: dict[tuple[object, ...], TlsContexts] = {}


def shared_contexts(target: Target) -> TlsContexts:
    """Contexts without a client identity, one per (trust, verification) across all targets.

    Thousands of targets usually share one ``ca_file``; one context each would cost memory and
    start-up time for nothing. A changed ``ca_file`` gets a new entry.
    """
    key = (file_stamp(target.ca_file), target.ca_file, target.tls_verify)
    ctx = _SHARED.get(key)
    if ctx is None:
        ctx = _SHARED[key] = build_contexts(target)
    return ctx


# The certificates of each ca_file, parsed once for every target that names it and re-read when
# the file changes: {path: (stamp, certificates, their root infos)}.
_TRUST: dict[
    Path, tuple[tuple[tuple[str, int, int], ...], list[x509.Certificate], list[CertificateInfo]]
] = {}


class TrustFiles:
    """The target's ``ca_file`` read for its ``root`` certificate metrics, re-read on change."""

    def __init__(self, target: Target) -> None:
        self._path = target.ca_file

    def load(self) -> tuple[list[x509.Certificate], list[CertificateInfo]]:
        """The CA certificates in ``ca_file`` and a fresh list of their ``root`` infos.

        Raises CredentialError if the file became unreadable.
        """
        if self._path is None:
            return [], []
        stamp = file_stamp(self._path)
        entry = _TRUST.get(self._path)
        if entry is None or entry[0] != stamp:
            try:
                certs = load_pem_certificates(self._path)
            except (OSError, ValueError) as exc:
                raise CredentialError(f"ca_file {self._path}: {os_reason(exc)}") from None
            if len(_TRUST) > 4096:
                _TRUST.clear()  # files no longer used; re-read on demand
            entry = _TRUST[self._path] = (stamp, certs, [describe(c, "root") for c in certs])
        return entry[1], list(entry[2])

    def infos(self) -> list[CertificateInfo]:
        """``root`` certificate infos (a new list each time; the items are shared); none when
        the file cannot be read (:meth:`load` says why)."""
        try:
            return self.load()[1]
        except CredentialError:
            return []


def os_reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, OSError):
        return exc.strerror or exc.__class__.__name__
    return str(exc).split(": ", 1)[-1]


def read_secret_file(path: Path, setting: str) -> str:
    """A secret from the file ``setting`` names, re-read on every use so that a rotated file
    is used without a reload; a CredentialError naming the file (never its content)."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(f"{setting} {path}: {os_reason(exc)}") from None


def token_expiry(token: str, what: str) -> float | None:
    """The ``exp`` of a JWT read without verifying it (the server verifies); None if absent.

    Raises CredentialError when ``token`` is not a JWT, without ever quoting it.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        raise CredentialError(f"{what} is not a well-formed JWT") from None
    exp = claims.get("exp")
    if exp is None:
        return None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise CredentialError(f"{what} has a non-numeric exp claim")
    return float(exp)


class TokenSource:
    """A bearer token from ``setting``'s file or inline (or the environment).

    The file is re-read when it changes, so a rotated token is used without a reload. What it
    holds is its ``exp``, read without verifying the signature (only the server can).
    """

    def __init__(
        self, path: Path | None, inline: SecretStr | None, *, setting: str, kind: str, what: str
    ) -> None:
        assert path is not None or inline is not None  # the config requires one of the two
        self._path, self._inline = path, inline
        self._setting, self._kind, self._what = setting, kind, what
        self._cached: tuple[tuple[tuple[str, int, int], ...], str, float | None] | None = None

    def __repr__(self) -> str:
        return f"TokenSource({self._setting}, kind={self._kind})"

    def _load(self) -> tuple[str, float | None]:
        stamp = file_stamp(self._path)
        if self._cached is not None and self._cached[0] == stamp:
            return self._cached[1], self._cached[2]
        if self._path is not None:
            token = read_secret_file(self._path, self._setting)
        else:
            assert self._inline is not None
            token = self._inline.get_secret_value()
        expires = token_expiry(token, self._what)
        self._cached = (stamp, token, expires)
        return token, expires

    def credentials(self) -> list[CredentialInfo]:
        """The token's expiry (none without ``exp`` or when unreadable); never raises."""
        try:
            _, expires = self._load()
        except CredentialError:
            return []
        return [CredentialInfo(self._kind, expires)] if expires is not None else []

    def token(self) -> str:
        """The token to send; a CredentialError when unreadable, not a JWT, or expired."""
        token, expires = self._load()
        check_not_expired(expires, self._what)
        return token


def check_not_expired(expires: float | None, what: str) -> None:
    """Refuse to send a token that has already expired."""
    if expires is not None and expires <= time.time():
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        raise CredentialError(f"{what} expired at {when}")
