"""Library warnings reach the log in its own format, never as raw lines on stderr.

The trigger is real: a CA bundle (as operators point ``ca_file`` at their system's
``ca-certificates.crt``) holding an old root with a negative serial number, which cryptography
parses with a ``CryptographyDeprecationWarning``. The bundle is made here: a root is issued with a
positive serial, then the serial's first DER byte gets its sign bit set (the signature no longer
matches, which nobody checks for a trust anchor read from a file).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import ssl
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jwt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from exporter.sim.certs import CertificateAuthority

SERIAL_DER = bytes.fromhex("020412345678")  # INTEGER, 4 bytes, 0x12345678
NEGATIVE_SERIAL_DER = bytes.fromhex("020492345678")
LOGFMT_LINE = re.compile(r'^ts=\S+Z level=(debug|info|warning|error) logger=\S+ msg=("[^"]*"|\S+)')


def negative_serial_root() -> bytes:
    """A self-signed root whose serial number is negative, as DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Legacy Root CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x12345678)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der.count(SERIAL_DER) == 1
    return der.replace(SERIAL_DER, NEGATIVE_SERIAL_DER)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A Cloud target on a closed port of 127.0.0.1 whose ``ca_file`` is such a bundle."""
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_text(
        CertificateAuthority.create().cert_pem.decode()
        + ssl.DER_cert_to_PEM_cert(negative_serial_root())
    )
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api_key = jwt.encode({"sub": "monitor", "exp": int(time.time()) + 86400}, "k" * 32)
    (tmp_path / "cloud.key").write_text(api_key)
    config = tmp_path / "config.yml"
    target = {
        "name": "cloud",
        "type": "cloud",
        "host": "127.0.0.1",
        "port": port,
        "ca_file": str(bundle),
        "timeout": "2s",
        "auth": {"method": "apikey", "api_key_file": "cloud.key"},
    }
    config.write_text(yaml.safe_dump({"targets": [target]}))
    return config


def test_the_bundle_makes_cryptography_warn(config: Path) -> None:
    """The premise: parsing the bundle raises the deprecation warning this test is about."""
    bundle = Path(yaml.safe_load(config.read_text())["targets"][0]["ca_file"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x509.load_pem_x509_certificates(bundle.read_bytes())
    assert any(issubclass(w.category, CryptographyDeprecationWarning) for w in caught)


def probe(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``qlik-sense-exporter probe cloud`` as a separate process."""
    command = [sys.executable, "-m", "exporter.cli", "--config.file", str(config), *extra]
    return subprocess.run(
        [*command, "probe", "cloud"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_warning_is_a_logfmt_line(config: Path) -> None:
    """Every line on stderr is logfmt; the warning is one of them, with its category."""
    proc = probe(config)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the port is closed
    assert "reason=connect_refused" in proc.stdout
    lines = proc.stderr.splitlines()
    assert [line for line in lines if not LOGFMT_LINE.match(line)] == []
    warned = [line for line in lines if "logger=py.warnings" in line]
    assert warned, proc.stderr
    assert all("category=CryptographyDeprecationWarning" in line for line in warned)
    assert all("level=warning" in line and "serial number" in line for line in warned)


def test_warning_is_a_json_line(config: Path) -> None:
    """With ``--log.format json`` the warning is a JSON object like every other line."""
    proc = probe(config, "--log.format", "json")
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    warned = [r for r in records if r["logger"] == "py.warnings"]
    assert warned, proc.stderr
    assert {r["category"] for r in warned} == {"CryptographyDeprecationWarning"}
    assert all(r["level"] == "warning" and "location" in r for r in warned)
