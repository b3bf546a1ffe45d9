"""Certificates read for the metrics, and host name matching by RFC 6125 rules.

``hostname_matches`` decides ``qlik_probe_hostname_match`` for a server certificate the probe
may not even have been able to verify, so it must agree with what a verifying client (Python's
``ssl``, a browser) accepts: SANs only, one whole left-most wildcard label, IPs only against IP
SANs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from exporter.certinfo import (
    describe,
    describe_server,
    hostname_matches,
    load_pem_certificates,
    relevant_roots,
)
from exporter.results import CertificateInfo
from tests.unit.tls_helpers import certificate


def _matches(host: str, *, dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> bool:
    return hostname_matches(certificate(cn="ignored.example.com", dns=dns, ips=ips), host)


@pytest.mark.parametrize(
    ("san", "host", "expected"),
    [
        ("sense.example.com", "sense.example.com", True),
        ("sense.example.com", "other.example.com", False),
        ("sense.example.com", "sense.example.co", False),
        ("sense.example.com", "sense.example.com.evil", False),
        ("sense.example.com", "example.com", False),
        # case never matters
        ("Sense.Example.COM", "sense.example.com", True),
        ("sense.example.com", "SENSE.Example.com", True),
        ("qliksrvx", "QLIKSRVX", True),  # a Windows host name, upper case, ending in X
        ("QLIKSRVX", "qliksrvx", True),
        # a trailing dot (the absolute form) on either side
        ("sense.example.com", "sense.example.com.", True),
        ("sense.example.com.", "sense.example.com", True),
        ("sense.example.com.", "sense.example.com.", True),
    ],
)
def test_exact_names_match_ignoring_case_and_a_trailing_dot(
    san: str, host: str, expected: bool
) -> None:
    """A DNS SAN matches the same name, in any case, with or without the root dot."""
    assert _matches(host, dns=(san,)) is expected


@pytest.mark.parametrize(
    ("san", "host", "expected"),
    [
        ("*.example.com", "sense.example.com", True),
        ("*.example.com", "SENSE.EXAMPLE.COM.", True),
        ("*.Example.Com", "sense.example.com", True),
        ("*.example.com", "example.com", False),  # not the bare parent
        ("*.example.com", "a.b.example.com", False),  # one label only
        ("*.example.com", ".example.com", False),  # an empty label is no label
        ("*.example.com", "sense.example.org", False),
        ("*.sense.example.com", "node1.sense.example.com", True),
    ],
)
def test_a_wildcard_stands_for_exactly_one_left_most_label(
    san: str, host: str, expected: bool
) -> None:
    """``*.example.com`` covers ``x.example.com``, not ``example.com`` or ``a.b.example.com``."""
    assert _matches(host, dns=(san,)) is expected


@pytest.mark.parametrize(
    ("san", "host"),
    [
        ("w*.example.com", "www.example.com"),  # partial wildcards are refused
        ("*w.example.com", "www.example.com"),
        ("w*w.example.com", "www.example.com"),
        ("a.*.example.com", "a.b.example.com"),  # only in the left-most label
        ("*.*.example.com", "a.b.example.com"),
        ("*.*.example.com", "a.*.example.com"),  # not even against a literal "*"
        ("sense.*.com", "sense.example.com"),
        ("*.com", "example.com"),  # not a whole top-level domain
        ("*", "qliksrv"),  # nor every single-label name
        ("*.", "qliksrv"),
    ],
)
def test_wildcards_anywhere_else_never_match(san: str, host: str) -> None:
    """Partial, inner and too-wide wildcards are refused outright (RFC 6125 §6.4.3)."""
    assert _matches(host, dns=(san,)) is False


def test_any_of_several_sans_may_match() -> None:
    """The host needs to match one SAN, wherever it is in the list."""
    sans = ("node1.example.com", "*.qlik.example.com", "sense.example.com")
    assert _matches("sense.example.com", dns=sans) is True
    assert _matches("hub.qlik.example.com", dns=sans) is True
    assert _matches("node2.example.com", dns=sans) is False


@pytest.mark.parametrize(
    ("host", "ips", "dns", "expected"),
    [
        ("10.0.0.5", ("10.0.0.5",), (), True),
        ("10.0.0.5", ("10.0.0.6",), (), False),
        ("10.0.0.5", (), ("10.0.0.5",), False),  # never a DNS SAN with the same text
        ("[2001:db8::1]", ("2001:db8::1",), (), True),
        ("2001:db8::1", ("2001:db8::1",), (), True),
        ("[2001:db8:0:0:0:0:0:1]", ("2001:db8::1",), (), True),  # the same address
        ("[2001:db8::1]", (), ("2001:db8::1", "[2001:db8::1]"), False),
        ("[2001:db8::2]", ("2001:db8::1",), (), False),
        ("10.0.0.5", ("::ffff:10.0.0.5",), (), False),  # another address family
        ("X10.0.0.5", ("10.0.0.5",), (), False),  # a name is not an address
        ("10.0.0.5X", ("10.0.0.5",), (), False),
    ],
)
def test_ip_hosts_match_only_ip_sans(
    host: str, ips: tuple[str, ...], dns: tuple[str, ...], expected: bool
) -> None:
    """IPv4 and (bracketed or bare) IPv6 hosts are compared as addresses with IP SANs only."""
    assert _matches(host, ips=ips, dns=dns) is expected


def test_a_name_host_ignores_ip_sans() -> None:
    """A DNS host never matches an IP SAN, even one it would resolve to."""
    assert _matches("localhost", ips=("127.0.0.1",)) is False


def test_a_certificate_without_san_never_matches_even_with_a_matching_cn() -> None:
    """The CN is not a fallback: without SANs, nothing matches (as in Python's ``ssl``)."""
    bare = certificate(cn="sense.example.com", san=False)
    assert hostname_matches(bare, "sense.example.com") is False
    empty = certificate(cn="sense.example.com", dns=())
    assert hostname_matches(empty, "sense.example.com") is False


def test_a_certificate_without_cn_but_with_sans_matches_and_is_described() -> None:
    """No CN is fine: the SANs decide, and the subject label is empty."""
    cert = certificate(cn=None, dns=("sense.example.com",))
    assert hostname_matches(cert, "sense.example.com") is True
    assert describe(cert, "server_proxy").subject_cn == ""


def test_describe_gives_the_labels_and_timestamps_of_a_certificate() -> None:
    """Source, subject and issuer CN, serial in hex, validity in Unix seconds."""
    start = dt.datetime(2026, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    cert = certificate(
        cn="sense.example.com",
        dns=("sense.example.com",),
        not_before=start,
        not_after=start + dt.timedelta(days=30),
        serial=0xABC123,
    )
    info = describe(cert, "client")
    assert (info.source, info.subject_cn, info.issuer_cn, info.serial) == (
        "client",
        "sense.example.com",
        "Test-CA",
        "abc123",
    )
    assert info.not_before == start.timestamp()
    assert info.not_after == (start + dt.timedelta(days=30)).timestamp()


def test_describe_server_reports_the_match_for_its_host() -> None:
    """The server description carries the source of the check and the host's match."""
    der = certificate(cn="x", dns=("*.example.com",)).public_bytes(serialization.Encoding.DER)
    described = describe_server(der, "server_engine", "sense.example.com")
    assert described is not None
    assert (described[0].source, described[0].subject_cn, described[1]) == (
        "server_engine",
        "x",
        True,
    )
    assert describe_server(der, "server_engine", "example.com") is not None
    assert describe_server(der, "server_engine", "example.com")[1] is False  # type: ignore[index]


def test_load_pem_certificates_reads_every_certificate_of_a_file(tmp_path: Path) -> None:
    """A chain file gives all its certificates, in order."""
    first = certificate(cn="leaf", serial=1)
    second = certificate(cn="ca", serial=2)
    path = tmp_path / "chain.pem"
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (first, second)))
    assert [c.serial_number for c in load_pem_certificates(path)] == [1, 2]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a certificate\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
    ids=["empty", "text", "broken-pem"],
)
def test_load_pem_certificates_refuses_a_file_without_one(tmp_path: Path, content: bytes) -> None:
    """No certificate in the file is one error naming the file."""
    path = tmp_path / "cert.pem"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"^.*cert\.pem: no PEM certificate found$") as caught:
        load_pem_certificates(path)
    assert str(caught.value) == f"{path}: no PEM certificate found"


def _info(source: str, subject: str, issuer: str) -> CertificateInfo:
    return CertificateInfo(source, subject, issuer, f"{subject}-{source}", 1.7e9, 1.8e9)


def test_a_single_root_is_kept_even_when_it_anchors_nothing() -> None:
    """Qlik's root.pem shows its expiry even when no server answered."""
    certs = [_info("client", "QlikClient", "Sense-CA"), _info("root", "Other-CA", "Other-CA")]
    assert relevant_roots(certs) == certs


def test_of_a_bundle_only_the_roots_that_anchor_something_are_kept() -> None:
    """Of a CA bundle, the CAs that issued the client, server or signing certificates stay."""
    client = _info("client", "QlikClient", "Sense-CA")
    server = _info("server_proxy", "sense.example.com", "Web-CA")
    sense, web, other = (
        _info("root", "Sense-CA", "Sense-CA"),
        _info("root", "Web-CA", "Web-CA"),
        _info("root", "Other-CA", "Other-CA"),
    )
    assert relevant_roots([client, sense, other, server, web]) == [client, sense, server, web]
    assert relevant_roots([client, sense, other]) == [client, sense]


def test_the_cas_above_an_anchoring_ca_are_kept_up_the_chain() -> None:
    """An intermediate CA in the file brings the CAs that issued it, however far up."""
    leaf = _info("server_repository", "sense.example.com", "Issuing-CA")
    issuing = _info("root", "Issuing-CA", "Policy-CA")
    policy = _info("root", "Policy-CA", "Root-CA")
    root = _info("root", "Root-CA", "Root-CA")
    unrelated = _info("root", "Unrelated-CA", "Unrelated-CA")
    certs = [root, unrelated, leaf, policy, issuing]
    assert relevant_roots(certs) == [root, leaf, policy, issuing]
