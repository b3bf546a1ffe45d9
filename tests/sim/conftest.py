"""Fixtures for the simulator's multi-node site: a started three-node site and TLS for it."""

from __future__ import annotations

import ssl

import pytest

from exporter.sim import Simulator


@pytest.fixture
def site_mtls(site: Simulator) -> ssl.SSLContext:
    """Client TLS for the site's mutual-TLS ports: its root CA and ``client.pem``."""
    ctx = ssl.create_default_context(cafile=site.certs_dir / "root.pem")
    ctx.load_cert_chain(site.certs_dir / "client.pem", site.certs_dir / "client_key.pem")
    return ctx


@pytest.fixture
def site_tls(site: Simulator) -> ssl.SSLContext:
    """Client TLS for the site's virtual proxies and Cloud port: trusts its root only."""
    return ssl.create_default_context(cafile=site.certs_dir / "root.pem")
