"""Reading certificates: what the expiry metrics need, and hostname matching.

Certificates are parsed with ``cryptography`` rather than taken from ``ssl.getpeercert()``
because the exporter must describe a server certificate also when verification failed, and
``getpeercert()`` returns nothing useful for an unverified peer.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from exporter.results import CertificateInfo


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return ""
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def describe(cert: x509.Certificate, source: str) -> CertificateInfo:
    """The metric labels and timestamps of one certificate."""
    return CertificateInfo(
        source=source,
        subject_cn=_cn(cert.subject),
        issuer_cn=_cn(cert.issuer),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
    )


def describe_server(
    der: bytes, source: str, host: str
) -> tuple[CertificateInfo, bool | None] | None:
    """A server certificate (DER, as the handshake gave it) described as ``host``'s (its
    ``node``), and whether it covers ``host``; None if ``cryptography`` cannot parse what
    OpenSSL accepted (the probe goes on without its certificate metrics). A site serves the
    same certificate for months, so the parse is cached by DER."""
    described = _describe_der(der, host)
    if described is None:
        return None
    info, match = described
    return dataclasses.replace(info, source=source, node=host), match


@functools.lru_cache(maxsize=1024)
def _describe_der(der: bytes, host: str) -> tuple[CertificateInfo, bool | None] | None:
    try:
        cert = x509.load_der_x509_certificate(der)
        info = describe(cert, "")
    except ValueError:
        return None
    try:
        match: bool | None = hostname_matches(cert, host)
    except (ValueError, x509.UnsupportedGeneralNameType):
        # A SAN kind cryptography does not read (x400Address, ediPartyName): OpenSSL judged
        # the name during the handshake; here it stays unknown rather than failing the probe.
        match = None
    return info, match


def load_pem_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file; raises ``ValueError`` naming the file if there is none."""
    data = path.read_bytes()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise ValueError(f"{path}: no PEM certificate found")
    return certs


def hostname_matches(cert: x509.Certificate, host: str) -> bool:
    """Whether ``cert`` covers ``host`` by RFC 6125 rules: SANs only, one left-most wildcard.

    Like browsers and Python's ``ssl``, the subject CN is ignored when SANs are present, and an
    IP address matches only an IP SAN.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        return ip in san.get_values_for_type(x509.IPAddress)
    host = host.rstrip(".").lower()
    return any(
        _dns_match(p.rstrip(".").lower(), host) for p in san.get_values_for_type(x509.DNSName)
    )


def _dns_match(pattern: str, host: str) -> bool:
    if "*" not in pattern:
        return pattern == host
    first, _, rest = pattern.partition(".")
    h_first, _, h_rest = host.partition(".")
    # Only a whole left-most label may be a wildcard, and it never matches across dots or a
    # bare parent domain (RFC 6125 §6.4.3); partial wildcards like "w*.example.com" are refused.
    if first != "*" or "*" in rest or not rest or rest.count(".") < 1:
        return False
    return bool(h_first) and h_rest == rest


def relevant_roots(certificates: list[CertificateInfo]) -> list[CertificateInfo]:
    """``certificates`` without the ``root`` CAs that anchor none of the others.

    A ``ca_file`` may be a whole bundle (the system's has ~150 CAs, some expired): what matters
    is the CA that issued the certificates this run used or saw — the client's, the server's,
    the JWT signer's — and the CAs above it in the file. A file of one CA (Qlik's root.pem) is
    kept as is, so its expiry shows even when no server answered.
    """
    roots = [c for c in certificates if c.source == "root"]
    if len(roots) <= 1:
        return certificates
    wanted = {c.issuer_cn for c in certificates if c.source != "root"}
    keep: set[int] = set()
    while True:
        more = {i for i, r in enumerate(roots) if i not in keep and r.subject_cn in wanted}
        if not more:
            break
        keep |= more
        wanted |= {roots[i].issuer_cn for i in more}
    kept = {id(roots[i]) for i in keep}
    return [c for c in certificates if c.source != "root" or id(c) in kept]
