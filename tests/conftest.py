"""Shared fixtures: a started Qlik Sense simulator over real TLS, and certificate variants.

Every certificate is generated at test time (none are checked in). Keys come from a
process-wide pool, so a simulator starts in milliseconds; certificates differ per test.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.sim import Simulator
from exporter.sim.certs import CertificateAuthority, ClientFiles, write_client_files

XRFKEY = "abcdefghijklmnop"
QLIK_USER = "UserDirectory=INTERNAL; UserId=sa_api"


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    """A started simulator on free ports of 127.0.0.1; certificates in ``sim.certs_dir``."""
    async with Simulator(tmp_path / "sim") as simulator:
        yield simulator


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Simulator]:
    """A started site: central (127.0.0.2), rim1 (127.0.0.3), rim2 (127.0.0.4), shared ports."""
    async with Simulator(tmp_path / "site", nodes=3) as simulator:
        yield simulator


@pytest.fixture
async def healthy_sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    """A second simulator, never given faults, for targets that must stay successful."""
    async with Simulator(tmp_path / "healthy-sim") as simulator:
        yield simulator


def client_ssl_context(
    root: Path, cert: Path | None = None, key: Path | None = None, password: str | None = None
) -> ssl.SSLContext:
    """A client context trusting ``root`` and presenting ``cert``/``key`` when given."""
    ctx = ssl.create_default_context(cafile=str(root))
    if cert is not None:
        ctx.load_cert_chain(cert, key, password=password)
    return ctx


@pytest.fixture
def sim_mtls(sim: Simulator) -> ssl.SSLContext:
    """Client TLS for the simulator's mutual-TLS ports: its root CA and ``client.pem``."""
    d = sim.certs_dir
    return client_ssl_context(d / "root.pem", d / "client.pem", d / "client_key.pem")


@pytest.fixture
def sim_tls(sim: Simulator) -> ssl.SSLContext:
    """Client TLS for the simulator's front-end and cloud ports: trusts its root, no client cert."""
    return client_ssl_context(sim.certs_dir / "root.pem")


@pytest.fixture
def qrs_headers() -> dict[str, str]:
    """Headers of a valid QRS call as Ctrl-Q sends them (pair with ``?xrfkey=XRFKEY``)."""
    return {"X-Qlik-Xrfkey": XRFKEY, "X-Qlik-User": QLIK_USER}


@pytest.fixture
def client_cert_expiring_soon(sim: Simulator, tmp_path: Path) -> ClientFiles:
    """A client certificate from the simulator's CA that expires in 10 days."""
    return sim.issue_client_files(tmp_path / "expiring", valid_days=10)


@pytest.fixture
def expired_client_cert(sim: Simulator, tmp_path: Path) -> ClientFiles:
    """A client certificate from the simulator's CA that expired yesterday."""
    return sim.issue_client_files(tmp_path / "expired", expired=True)


@pytest.fixture
def not_yet_valid_client_cert(sim: Simulator, tmp_path: Path) -> ClientFiles:
    """A client certificate from the simulator's CA that becomes valid tomorrow."""
    return sim.issue_client_files(tmp_path / "future", not_yet_valid=True)


@pytest.fixture
def pkcs8_client_key(sim: Simulator, tmp_path: Path) -> ClientFiles:
    """Client credentials whose key is unencrypted PKCS#8 (``BEGIN PRIVATE KEY``)."""
    return sim.issue_client_files(tmp_path / "pkcs8", key_format="pkcs8")


@pytest.fixture
def encrypted_client_key(sim: Simulator, tmp_path: Path) -> ClientFiles:
    """Client credentials whose PKCS#1 key is password-protected (legacy ``Proc-Type``)."""
    return sim.issue_client_files(tmp_path / "enc", key_password="s3cret-pass")


@pytest.fixture
def encrypted_pkcs8_client_key(sim: Simulator, tmp_path: Path) -> ClientFiles:
    """Client credentials whose key is an encrypted PKCS#8 (``BEGIN ENCRYPTED PRIVATE KEY``)."""
    return sim.issue_client_files(tmp_path / "enc8", key_format="pkcs8", key_password="s3cret-pass")


@pytest.fixture
def client_pfx(sim: Simulator, tmp_path: Path) -> ClientFiles:
    """Client credentials with a PKCS#12 bundle ``client.pfx`` (password ``pfx-pass``)."""
    return sim.issue_client_files(tmp_path / "pfx", pfx_password="pfx-pass")


@pytest.fixture
def foreign_ca_client_cert(tmp_path: Path) -> ClientFiles:
    """A ``CN=QlikClient`` certificate from another CA of the same name (another site)."""
    other = CertificateAuthority.create("localhost-CA")
    return write_client_files(tmp_path / "foreign", other)
