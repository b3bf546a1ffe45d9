"""Certificates shaped like a QMC "platform independent PEM" export (qlik-api-facts.md §6).

The real export is a root CA ``CN=<central host>-CA`` (basicConstraints CA:TRUE critical,
SKI=AKI, no keyUsage), a server certificate whose SAN is ``DNS:<node hostname>``, and a client
certificate ``CN=QlikClient``; RSA 2048, sha256WithRSA, valid 10 years + 7 days, keys as PKCS#1
``BEGIN RSA PRIVATE KEY`` without a password. Each carries Qlik's private OID
``1.3.6.1.5.5.7.13.3`` naming its role (``Root``/``Service``/``Client``) and no EKU, so this module
leaves EKU and keyUsage off too: a client that only works with "textbook" certificates should
fail here as it would against a real site.

Small API used by every test that needs certificates::

    ca = CertificateAuthority.create(common_name="localhost-CA")
    leaf = ca.issue(common_name="QlikClient", client=True)
    leaf.write(dir / "client.pem", dir / "client_key.pem", key_format="pkcs1")
    leaf.write_pfx(dir / "client.pfx", password="secret", ca=ca)
    export = write_qmc_export(dir, "localhost", client_valid_days=10)

RSA key generation dominates the cost (tens of milliseconds per key), so :class:`KeyPool` hands
out keys by role and a process-wide pool lets many short-lived simulators share them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID, ObjectIdentifier

KeyFormat = Literal["pkcs1", "pkcs8"]

QMC_VALIDITY = dt.timedelta(days=3650 + 7)
"""A QMC export is valid 10 years + 7 days (e.g. 2021-09-20 to 2031-09-27)."""

QLIK_ROLE_OID = ObjectIdentifier("1.3.6.1.5.5.7.13.3")
"""Qlik's private extension naming the certificate's role; seen on real exported files."""

_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock skew between test processes


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def validity(
    *,
    valid_days: float | None = None,
    expired: bool = False,
    not_yet_valid: bool = False,
) -> tuple[dt.datetime, dt.datetime]:
    """Return ``(not_before, not_after)``: QMC default, ``valid_days`` from now, or broken.

    ``expired`` gives a certificate that ended yesterday; ``not_yet_valid`` one that starts
    tomorrow; ``valid_days`` one that expires that many days from now (may be fractional).
    """
    now = _now()
    if expired:
        return now - dt.timedelta(days=30), now - dt.timedelta(days=1)
    if not_yet_valid:
        return now + dt.timedelta(days=1), now + QMC_VALIDITY
    if valid_days is not None:
        return now - _BACKDATE, now + dt.timedelta(days=valid_days)
    return now - _BACKDATE, now - _BACKDATE + QMC_VALIDITY


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh RSA 2048 key, the size the QMC uses."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class KeyPool:
    """RSA keys by role name, generated once per pool (key generation is the slow part)."""

    def __init__(self) -> None:
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        self._lock = threading.Lock()

    def get(self, role: str) -> rsa.RSAPrivateKey:
        """The pool's key for ``role``, generated on first use."""
        with self._lock:
            if role not in self._keys:
                self._keys[role] = new_rsa_key()
            return self._keys[role]


SHARED_KEYS = KeyPool()
"""Process-wide pool: simulators in one test process reuse keys (their certificates differ)."""


def _encryption(password: str | bytes | None) -> serialization.KeySerializationEncryption:
    if password is None:
        return serialization.NoEncryption()
    raw = password.encode() if isinstance(password, str) else password
    return serialization.BestAvailableEncryption(raw)


def _der_printable(text: str) -> bytes:
    """DER PrintableString; the role OID's value as it appears on exported certificates."""
    raw = text.encode("ascii")
    return bytes([0x13, len(raw)]) + raw


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate and its private key, with ways to serialise them like the QMC does."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def not_before(self) -> dt.datetime:
        """Start of validity (UTC)."""
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        """End of validity (UTC)."""
        return self.certificate.not_valid_after_utc

    @property
    def common_name(self) -> str:
        """The subject CN."""
        attrs = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else ""

    def key_pem(
        self, key_format: KeyFormat = "pkcs1", password: str | bytes | None = None
    ) -> bytes:
        """The private key as PEM.

        ``pkcs1`` is ``BEGIN RSA PRIVATE KEY`` (QMC export); with a password it is the legacy
        OpenSSL ``Proc-Type: 4,ENCRYPTED`` flavour. ``pkcs8`` is ``BEGIN PRIVATE KEY`` or, with a
        password, ``BEGIN ENCRYPTED PRIVATE KEY``. Which one a password-protected QMC export
        uses is unconfirmed (qlik-api-facts.md §6), so clients must read both.
        """
        fmt = (
            serialization.PrivateFormat.TraditionalOpenSSL
            if key_format == "pkcs1"
            else serialization.PrivateFormat.PKCS8
        )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, fmt, _encryption(password)
        )

    def write(
        self,
        cert_path: Path,
        key_path: Path | None = None,
        *,
        key_format: KeyFormat = "pkcs1",
        password: str | bytes | None = None,
    ) -> None:
        """Write the certificate PEM, and the key PEM (mode 0600) when ``key_path`` is given."""
        cert_path.write_bytes(self.cert_pem)
        if key_path is not None:
            write_private(key_path, self.key_pem(key_format, password))

    def write_pfx(
        self,
        path: Path,
        password: str | bytes,
        *,
        ca: CertificateAuthority | None = None,
        friendly_name: str = "QlikClient",
    ) -> None:
        """Write a PKCS#12 bundle (certificate, key and optionally the CA), password-protected."""
        raw = password.encode() if isinstance(password, str) else password
        blob = pkcs12.serialize_key_and_certificates(
            friendly_name.encode(),
            self.private_key,
            self.certificate,
            [ca.certificate] if ca is not None else None,
            serialization.BestAvailableEncryption(raw),
        )
        write_private(path, blob)


def write_private(path: Path, data: bytes) -> None:
    """Write secret material readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _general_name(host: str) -> x509.GeneralName:
    """A SAN entry for a host name or an IP address."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A self-signed root like the one the Qlik Sense central node creates at install time."""

    root: IssuedCertificate

    @property
    def certificate(self) -> x509.Certificate:
        """The root certificate."""
        return self.root.certificate

    @property
    def cert_pem(self) -> bytes:
        """The root certificate as PEM (``root.pem``)."""
        return self.root.cert_pem

    @classmethod
    def create(
        cls,
        common_name: str = "localhost-CA",
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> CertificateAuthority:
        """Create a root CA; a fresh key unless ``key`` is given, QMC validity by default."""
        key = key or new_rsa_key()
        default_nb, default_na = validity()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or default_nb)
            .not_valid_after(not_after or default_na)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .add_extension(
                x509.UnrecognizedExtension(QLIK_ROLE_OID, _der_printable("Root")), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(IssuedCertificate(cert, key))

    def issue(
        self,
        common_name: str,
        *,
        san_dns: Iterable[str] = (),
        san_ip: Iterable[str] = (),
        san: Iterable[str] = (),
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        client: bool = False,
        server: bool = False,
        key: rsa.RSAPrivateKey | None = None,
    ) -> IssuedCertificate:
        """Issue a leaf certificate signed by this CA (QMC validity unless dates are given).

        ``server``/``client`` only set the Qlik role OID (``Service``/``Client``); like a real
        export there is no EKU or keyUsage. A server certificate should name its host in
        the SAN (clients verify the SAN, not the CN); ``san`` takes names and addresses alike.
        """
        key = key or new_rsa_key()
        default_nb, default_na = validity()
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in san_dns]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in san_ip]
        names += [_general_name(h) for h in san]
        issuer_ski = self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or default_nb)
            .not_valid_after(not_after or default_na)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        role = "Service" if server else "Client" if client else None
        if role:
            ext = x509.UnrecognizedExtension(QLIK_ROLE_OID, _der_printable(role))
            builder = builder.add_extension(ext, critical=False)
        cert = builder.sign(self.root.private_key, hashes.SHA256())
        return IssuedCertificate(cert, key)


@dataclass(frozen=True, slots=True)
class ClientFiles:
    """Paths of one client credential set (what an exporter target's ``auth`` points at)."""

    cert_file: Path
    key_file: Path
    root_file: Path
    certificate: IssuedCertificate
    key_password: str | None = None
    pfx_file: Path | None = None


def write_client_files(
    directory: Path,
    ca: CertificateAuthority,
    *,
    common_name: str = "QlikClient",
    valid_days: float | None = None,
    expired: bool = False,
    not_yet_valid: bool = False,
    key_format: KeyFormat = "pkcs1",
    key_password: str | None = None,
    pfx_password: str | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> ClientFiles:
    """Issue a client certificate and write ``client.pem``, ``client_key.pem``, ``root.pem``.

    With ``pfx_password`` also ``client.pfx`` (certificate, key and CA).
    """
    directory.mkdir(parents=True, exist_ok=True)
    nb, na = validity(valid_days=valid_days, expired=expired, not_yet_valid=not_yet_valid)
    leaf = ca.issue(common_name, not_before=nb, not_after=na, client=True, key=key)
    files = ClientFiles(
        cert_file=directory / "client.pem",
        key_file=directory / "client_key.pem",
        root_file=directory / "root.pem",
        certificate=leaf,
        key_password=key_password,
        pfx_file=directory / "client.pfx" if pfx_password is not None else None,
    )
    leaf.write(files.cert_file, files.key_file, key_format=key_format, password=key_password)
    files.root_file.write_bytes(ca.cert_pem)
    if files.pfx_file is not None and pfx_password is not None:
        leaf.write_pfx(files.pfx_file, pfx_password, ca=ca)
    return files


@dataclass(frozen=True, slots=True)
class QmcExport:
    """The files of a QMC-like export and the objects behind them."""

    directory: Path
    ca: CertificateAuthority
    server: IssuedCertificate
    client: ClientFiles

    @property
    def root_file(self) -> Path:
        """``root.pem``."""
        return self.directory / "root.pem"

    @property
    def server_file(self) -> Path:
        """``server.pem``."""
        return self.directory / "server.pem"

    @property
    def server_key_file(self) -> Path:
        """``server_key.pem``."""
        return self.directory / "server_key.pem"


def write_qmc_export(
    directory: Path,
    host: str = "localhost",
    *,
    ca: CertificateAuthority | None = None,
    client_valid_days: float | None = None,
    client_expired: bool = False,
    client_not_yet_valid: bool = False,
    server_valid_days: float | None = None,
    server_expired: bool = False,
    key_format: KeyFormat = "pkcs1",
    key_password: str | None = None,
    pfx_password: str | None = None,
    keys: KeyPool | None = None,
    server_san: Iterable[str] | None = None,
) -> QmcExport:
    """Write ``root.pem``, ``server.pem``, ``server_key.pem``, ``client.pem``, ``client_key.pem``.

    The CA is ``CN=<host>-CA`` unless one is given; keys come from ``keys`` when given (fast),
    else are fresh. The server certificate's SAN is ``host`` unless ``server_san`` lists more.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pool = keys or KeyPool()
    ca = ca or CertificateAuthority.create(f"{host}-CA", key=pool.get("ca"))
    nb, na = validity(valid_days=server_valid_days, expired=server_expired)
    server = ca.issue(
        host,
        not_before=nb,
        not_after=na,
        server=True,
        key=pool.get("server"),
        san=list(server_san) if server_san is not None else [host],
    )
    server.write(directory / "server.pem", directory / "server_key.pem")
    client = write_client_files(
        directory,
        ca,
        valid_days=client_valid_days,
        expired=client_expired,
        not_yet_valid=client_not_yet_valid,
        key_format=key_format,
        key_password=key_password,
        pfx_password=pfx_password,
        key=pool.get("client"),
    )
    return QmcExport(directory=directory, ca=ca, server=server, client=client)


def random_password(length: int = 16) -> str:
    """A throwaway password for test key files."""
    return secrets.token_urlsafe(length)[:length]
