"""Certificates shaped like a QMC export, and the variants tests need (expiry, PKCS#8, pfx)."""

from __future__ import annotations

import datetime as dt
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from sim_helpers import XRFKEY, call, qrs_headers

from exporter.sim.certs import (
    QMC_VALIDITY,
    SHARED_KEYS,
    CertificateAuthority,
    write_qmc_export,
)


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_root_is_a_qmc_like_ca(tmp_path):
    """root.pem is CN=<host>-CA, CA:TRUE critical, SKI equal to AKI, RSA 2048, SHA-256."""
    export = write_qmc_export(tmp_path, "sense.lab", keys=SHARED_KEYS)
    root = load(export.root_file)
    assert cn(root) == "sense.lab-CA"
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = root.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert isinstance(root.public_key(), rsa.RSAPublicKey)
    assert root.public_key().key_size == 2048
    assert isinstance(root.signature_hash_algorithm, hashes.SHA256)


def test_server_certificate_names_the_host_in_san(tmp_path):
    """server.pem carries SAN DNS:<host> and is signed by the root."""
    export = write_qmc_export(tmp_path, "sense.lab", keys=SHARED_KEYS)
    server = load(export.server_file)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["sense.lab"]
    server.verify_directly_issued_by(load(export.root_file))


def test_ip_host_goes_into_an_ip_san():
    """An IP address given as a SAN host becomes an IPAddress entry."""
    ca = CertificateAuthority.create("x-CA", key=SHARED_KEYS.get("ca"))
    leaf = ca.issue("10.0.0.5", san=["10.0.0.5"], server=True, key=SHARED_KEYS.get("server"))
    san = leaf.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]


def test_client_certificate_and_pkcs1_key(tmp_path):
    """client.pem is CN=QlikClient; client_key.pem is unencrypted PKCS#1, file mode 0600."""
    export = write_qmc_export(tmp_path, keys=SHARED_KEYS)
    assert cn(load(export.client.cert_file)) == "QlikClient"
    pem = export.client.key_file.read_text()
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert "ENCRYPTED" not in pem
    assert export.client.key_file.stat().st_mode & 0o777 == 0o600


def test_default_validity_is_ten_years_and_seven_days(tmp_path):
    """Certificates are valid 10 years + 7 days by default, like a QMC export."""
    export = write_qmc_export(tmp_path, keys=SHARED_KEYS)
    cert = load(export.client.cert_file)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == QMC_VALIDITY


def test_client_cert_expiring_soon(client_cert_expiring_soon):
    """The expiring-soon fixture expires in about 10 days."""
    left = client_cert_expiring_soon.certificate.not_after - now()
    assert dt.timedelta(days=9, hours=23) < left <= dt.timedelta(days=10)


def test_expired_client_cert(expired_client_cert):
    """The expired fixture ended before now."""
    assert expired_client_cert.certificate.not_after < now()


def test_not_yet_valid_client_cert(not_yet_valid_client_cert):
    """The not-yet-valid fixture starts after now."""
    assert not_yet_valid_client_cert.certificate.not_before > now()


async def test_expiring_client_cert_still_works(sim, client_cert_expiring_soon):
    """A client certificate that expires in 10 days is still accepted."""
    files = client_cert_expiring_soon
    ctx = ssl.create_default_context(cafile=files.root_file)
    ctx.load_cert_chain(files.cert_file, files.key_file)
    url = sim.url("repository", f"/qrs/about?xrfkey={XRFKEY}")
    assert (await call("GET", url, ctx, qrs_headers()))[0] == 200


def test_pkcs8_key_is_begin_private_key(pkcs8_client_key):
    """The PKCS#8 variant is an unencrypted `BEGIN PRIVATE KEY`."""
    pem = pkcs8_client_key.key_file.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    serialization.load_pem_private_key(pem, password=None)


def test_encrypted_key_uses_legacy_proc_type(encrypted_client_key):
    """The encrypted PKCS#1 variant is legacy `Proc-Type: 4,ENCRYPTED` and needs the password."""
    pem = encrypted_client_key.key_file.read_bytes()
    assert b"Proc-Type: 4,ENCRYPTED" in pem
    with pytest.raises(TypeError, match="encrypted"):
        serialization.load_pem_private_key(pem, password=None)
    serialization.load_pem_private_key(pem, password=b"s3cret-pass")


def test_encrypted_pkcs8_key(encrypted_pkcs8_client_key):
    """The encrypted PKCS#8 variant is `BEGIN ENCRYPTED PRIVATE KEY` and opens with the password."""
    pem = encrypted_pkcs8_client_key.key_file.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    serialization.load_pem_private_key(pem, password=b"s3cret-pass")


async def test_encrypted_key_works_with_ssl_and_password(sim, encrypted_client_key):
    """ssl loads the encrypted key with its password and the simulator accepts the client."""
    files = encrypted_client_key
    ctx = ssl.create_default_context(cafile=files.root_file)
    ctx.load_cert_chain(files.cert_file, files.key_file, password="s3cret-pass")
    url = sim.url("repository", f"/qrs/about?xrfkey={XRFKEY}")
    assert (await call("GET", url, ctx, qrs_headers()))[0] == 200


def test_pfx_loads_back_with_cryptography(client_pfx, sim):
    """client.pfx holds the client certificate, its key and the CA, behind the password."""
    key, cert, extra = pkcs12.load_key_and_certificates(
        client_pfx.pfx_file.read_bytes(), b"pfx-pass"
    )
    assert cert is not None
    assert key is not None
    assert cn(cert) == "QlikClient"
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert [cn(c) for c in extra] == ["localhost-CA"]


def test_simulator_writes_every_documented_file(sim):
    """certs_dir holds the QMC files, the JWT key pair and the key variants."""
    names = {p.name for p in sim.certs_dir.iterdir()}
    assert names >= {
        "root.pem",
        "client.pem",
        "client_key.pem",
        "server.pem",
        "server_key.pem",
        "jwt_signing_key.pem",
        "jwt_signing_cert.pem",
        "client_key_pkcs8.pem",
        "client_key_encrypted.pem",
        "client_key_encrypted_pkcs8.pem",
        "client.pfx",
    }


async def test_server_validity_is_configurable(tmp_path):
    """Simulator(server_valid_days=N) serves a certificate that expires in N days."""
    from exporter.sim import Simulator

    async with Simulator(tmp_path, server_valid_days=5) as s:
        left = load(s.certs_dir / "server.pem").not_valid_after_utc - now()
    assert dt.timedelta(days=4) < left <= dt.timedelta(days=5)
