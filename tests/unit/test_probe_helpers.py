"""Per-probe helpers: the xrfkey generator and the cached server-certificate description."""

from __future__ import annotations

import datetime as dt
import ipaddress
import string
from collections import Counter

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.certinfo import describe_server
from exporter.checks.context import new_xrfkey

ALPHABET = set(string.ascii_letters + string.digits)


def test_xrfkeys_are_16_alphanumerics_fresh_and_uniform() -> None:
    """Every key is 16 of [0-9a-zA-Z], keys do not repeat, and no character is favoured."""
    keys = [new_xrfkey() for _ in range(4000)]
    assert all(len(k) == 16 and set(k) <= ALPHABET for k in keys)
    assert len(set(keys)) == len(keys)
    counts = Counter("".join(keys))
    assert set(counts) == ALPHABET
    expected = 16 * len(keys) / 62  # ~1032 per character
    chi2 = sum((n - expected) ** 2 / expected for n in counts.values())
    assert chi2 < 120, chi2  # 61 degrees of freedom: p < 1e-5 beyond this; modulo bias gives ~500


def _server_cert(names: list[str], serial: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sense-CA")])
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_server_certificate_description_is_right_for_each_source_and_host() -> None:
    """The cache keys by DER and host: each check gets its own source label and each host its
    own match, and a different certificate is never answered from the cache."""
    der = _server_cert(["sense.example.com", "10.0.0.5"], serial=0x1F)
    described = describe_server(der, "server_repository", "sense.example.com")
    assert described is not None
    info, match = described
    assert (info.source, info.subject_cn, info.issuer_cn, info.serial) == (
        "server_repository",
        "sense.example.com",
        "Sense-CA",
        "1f",
    )
    assert info.not_after == dt.datetime(2026, 4, 1, tzinfo=dt.UTC).timestamp()
    assert match is True
    described = describe_server(der, "server_engine", "other.example.com")
    assert described is not None
    again, match = described
    assert again.source == "server_engine"
    assert again.serial == "1f"
    assert match is False
    by_ip = describe_server(der, "server_proxy", "10.0.0.5")
    assert by_ip is not None
    assert by_ip[1] is True
    other = describe_server(
        _server_cert(["sense.example.com"], 0x20), "server_x", "sense.example.com"
    )
    assert other is not None
    assert other[0].serial == "20"


def test_a_server_certificate_cryptography_cannot_parse_is_left_out_not_raised() -> None:
    """What OpenSSL accepted but cryptography cannot read costs only the certificate metrics."""
    assert describe_server(b"0\x03\x02\x01\x00", "server_repository", "sense.example.com") is None


def test_prepared_auth_repr_never_shows_the_bearer_token() -> None:
    """A probe's prepared auth may end up in a debug repr; its headers are left out of it."""
    import ssl

    from exporter.auth.common import Prepared, TlsContexts

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    prepared = Prepared(TlsContexts(ctx, ctx), headers={"Authorization": "Bearer s3cr3t-token"})
    assert "s3cr3t-token" not in repr(prepared)
    assert prepared.headers["Authorization"] == "Bearer s3cr3t-token"


def test_probe_log_is_capped_in_lines_and_length() -> None:
    """A chatty server cannot grow a run's stored log without bound."""
    from exporter.checks.context import MAX_LOG_LINE, MAX_LOG_LINES, ProbeContext

    ctx = ProbeContext.__new__(ProbeContext)
    ctx.log = []
    for i in range(MAX_LOG_LINES * 10):
        ctx.note(f"{i}" + "x" * 10_000)
    assert len(ctx.log) == MAX_LOG_LINES + 1
    assert all(len(line) <= MAX_LOG_LINE for line in ctx.log)
    assert ctx.log[-1].endswith("dropped")
    assert ctx.log[0].startswith("0x")


def test_server_certificate_with_an_unreadable_san_kind_is_described_without_a_match() -> None:
    """A SAN holding an x400Address (which cryptography cannot read) costs only the hostname
    verdict: the certificate is still described, nothing raises."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtensionOID, NameOID

    from exporter.certinfo import describe_server

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    # SEQUENCE { [3] x400Address (empty ORAddress), [2] dNSName "localhost" }
    san = bytes.fromhex("300f a302 3000") + b"\x82\x09localhost"
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, san), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    described = describe_server(
        cert.public_bytes(serialization.Encoding.DER), "server_repository", "localhost"
    )
    assert described is not None
    info, match = described
    assert (info.source, info.subject_cn, info.serial) == ("server_repository", "localhost", "7")
    assert match is None


@pytest.mark.parametrize(
    "echo",
    [
        "you sent Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        "you sent authorization=Basic dXNlcjpwYXNzd29yZA==",
        '{"headers": {"Authorization": "Bearer k3y-Th4t-1s-n0t-4-JWT"}}',
        "token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0",
        "Cookie: X-Qlik-Session-jwt=0f1e2d3c-4b5a",
        "bearer    partial-key-cut-at-the-end-of-the-body",
    ],
)
def test_error_lines_never_repeat_credentials_a_server_echoes(echo: str) -> None:
    """A 401/500 body echoing the request's credentials is redacted in the error line."""
    from multidict import CIMultiDict

    from exporter.responses import status_failure
    from exporter.transport import HttpResponse

    for status in (401, 403, 500):
        resp = HttpResponse(status, "Nope", CIMultiDict(), echo.encode())
        failure = status_failure(resp, "GET /x", via_proxy=False)
        assert failure is not None
        assert "<redacted>" in failure.message
        for secret in ("eyJ", "dXNlcjpw", "k3y-Th4t", "0f1e2d3c", "partial-key"):
            assert secret not in failure.message, (echo, failure.message)
