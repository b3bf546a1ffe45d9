"""``classify``: every exception a probe can raise maps to one reason and one log line.

Driven by exceptions built the way their sources build them — OpenSSL errors and alerts from
real in-memory handshakes (and constructed like CPython's ``_ssl`` builds them for the alerts no
local server sends), errno values as the kernel and aiohttp report them — so the branches the
simulator cannot reach are pinned down too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import json
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
import trustme

from exporter.auth.common import CredentialError
from exporter.config import Target, parse_config
from exporter.reasons import ProbeFailure, Reason
from exporter.runner import classify
from exporter.transport import ClosedBeforeResponse
from tests.unit.tls_helpers import handshake_error, openssl_error

HOST = "sense.example.test"

# The alerts a server sends when it refuses the client certificate (or its absence), by the
# reason name OpenSSL gives the received alert.
CLIENT_CERT_ALERTS = [
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV1_ALERT_ACCESS_DENIED",
    "TLSV1_ALERT_DECRYPT_ERROR",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
]
# Alerts and local errors that say nothing about the client certificate.
OTHER_TLS_ERRORS = [
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "TLSV1_ALERT_INTERNAL_ERROR",
    "SSLV3_ALERT_ILLEGAL_PARAMETER",
    "TLSV1_UNRECOGNIZED_NAME",
    "WRONG_VERSION_NUMBER",
    "UNSUPPORTED_PROTOCOL",
    "UNEXPECTED_EOF_WHILE_READING",
]


def _target(tmp_path: Path, method: str, **extra: object) -> Target:
    """A QSEoW target on ``HOST``: header auth through a virtual proxy on port 8443, or
    certificate auth straight to the default service ports."""
    if method == "certificate":
        for name in ("client.pem", "client_key.pem"):
            (tmp_path / name).write_text("checked only for existence at load\n")
        auth: dict[str, object] = {
            "method": "certificate",
            "cert_file": "client.pem",
            "key_file": "client_key.pem",
        }
    else:
        auth = {"method": "header", "header_name": "X-Monitor-User", "user_id": "monitor"}
    target = {"name": "site", "type": "qseow", "host": HOST, "port": 8443, "auth": auth}
    config = parse_config({"targets": [target | extra]}, base_dir=tmp_path)
    return config.targets[0]


@pytest.fixture
def header(tmp_path: Path) -> Target:
    """Header auth: every check goes to the front end, port 8443; timeout 2.5s."""
    return _target(tmp_path, "header", timeout="2.5s")


@pytest.fixture
def cert(tmp_path: Path) -> Target:
    """Certificate auth: each check to its service port; default timeout (10s)."""
    return _target(tmp_path, "certificate")


# --- passthrough ---------------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(Reason))
def test_a_probe_failure_keeps_its_reason_and_message(header: Target, reason: Reason) -> None:
    """Every reason of the closed set comes through the classifier as the check raised it."""
    assert classify(ProbeFailure(reason, "what went wrong"), header, "proxy") == (
        reason,
        "what went wrong",
    )


def test_a_credential_error_is_credential_invalid(cert: Target) -> None:
    """An unusable local credential is reported before any connection, with its own message."""
    exc = CredentialError("cert_file client.pem: expired on 2026-01-01")
    assert classify(exc, cert, "repository") == (
        Reason.CREDENTIAL_INVALID,
        "cert_file client.pem: expired on 2026-01-01",
    )


# --- timeouts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [TimeoutError(), asyncio.CancelledError(), OSError(errno.ETIMEDOUT, "Connection timed out")],
    ids=["TimeoutError", "CancelledError", "OSError-ETIMEDOUT"],
)
def test_no_answer_in_time_is_timeout_naming_the_timeout(header: Target, exc: Exception) -> None:
    """The probe's own deadline (and the kernel's ETIMEDOUT, which Python makes a
    TimeoutError) is timeout, with the configured limit in the message."""
    assert classify(exc, header, "repository") == (Reason.TIMEOUT, "no answer within 2.5s")


def test_timeout_message_shows_whole_seconds_plainly(cert: Target) -> None:
    """A whole number of seconds is shown without a fraction."""
    assert classify(TimeoutError(), cert, "engine")[1] == "no answer within 10s"


def test_a_connect_timeout_from_aiohttp_is_timeout(cert: Target) -> None:
    """aiohttp's OSError subclass keeps ETIMEDOUT as errno (no TimeoutError): still timeout."""
    exc = aiohttp.ClientOSError(errno.ETIMEDOUT, "Connection timed out")
    assert classify(exc, cert, "engine_session") == (Reason.TIMEOUT, f"{HOST}: connect timed out")


# --- server certificate verification ------------------------------------------------------


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(
        1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message} (_ssl.c:1006)"
    )
    exc.verify_code = code
    exc.verify_message = message
    exc.reason = "CERTIFICATE_VERIFY_FAILED"
    return exc


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        (9, "certificate is not yet valid", Reason.SERVER_CERTIFICATE_EXPIRED),
        (10, "certificate has expired", Reason.SERVER_CERTIFICATE_EXPIRED),
        (62, "Hostname mismatch, certificate is not valid for 'x'.", Reason.HOSTNAME_MISMATCH),
        (64, "IP address mismatch, certificate is not valid for 'x'.", Reason.HOSTNAME_MISMATCH),
        (18, "self-signed certificate", Reason.SERVER_CERTIFICATE_UNTRUSTED),
        (19, "self-signed certificate in certificate chain", Reason.SERVER_CERTIFICATE_UNTRUSTED),
        (20, "unable to get local issuer certificate", Reason.SERVER_CERTIFICATE_UNTRUSTED),
        (2, "unable to get issuer certificate", Reason.SERVER_CERTIFICATE_UNTRUSTED),
        (23, "certificate revoked", Reason.SERVER_CERTIFICATE_UNTRUSTED),
        (63, "email address mismatch", Reason.SERVER_CERTIFICATE_UNTRUSTED),
        (65, "unsupported or invalid name syntax", Reason.SERVER_CERTIFICATE_UNTRUSTED),
    ],
)
def test_verify_codes_map_to_their_server_certificate_reason(
    header: Target, code: int, message: str, reason: Reason
) -> None:
    """OpenSSL's verify code decides: validity period, host name or IP, else untrusted."""
    assert classify(_verify_error(code, message), header, "repository") == (
        reason,
        f"server certificate of {HOST}: {message}",
    )


@pytest.fixture(scope="module")
def site_ca() -> trustme.CA:
    """The CA of the Qlik site's service certificates."""
    return trustme.CA()


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    """The CA the site trusts for client certificates."""
    return trustme.CA()


def _server_ctx(
    ca: trustme.CA,
    *names: str,
    client_ca: trustme.CA | None = None,
    tls12: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*names, not_before=not_before, not_after=not_after).configure_cert(ctx)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(ctx)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _client_ctx(trusted: trustme.CA, client: trustme.LeafCert | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    trusted.configure_trust(ctx)
    if client is not None:
        client.configure_cert(ctx)
    return ctx


NOW = dt.datetime.now(dt.UTC)


DAY = dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("not_before", "not_after", "foreign_ca", "hostname", "reason", "code"),
    [
        (None, NOW - DAY, False, HOST, Reason.SERVER_CERTIFICATE_EXPIRED, 10),
        (NOW + DAY, None, False, HOST, Reason.SERVER_CERTIFICATE_EXPIRED, 9),
        (None, None, False, "other.example.test", Reason.HOSTNAME_MISMATCH, 62),
        (None, None, False, "127.0.0.2", Reason.HOSTNAME_MISMATCH, 64),
        (None, None, True, HOST, Reason.SERVER_CERTIFICATE_UNTRUSTED, 20),
    ],
    ids=["expired", "not-yet-valid", "wrong-host", "wrong-ip", "unknown-ca"],
)
def test_real_verification_failures_map_to_their_reason(
    header: Target,
    site_ca: trustme.CA,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
    foreign_ca: bool,
    hostname: str,
    reason: Reason,
    code: int,
) -> None:
    """What OpenSSL reports for a bad server certificate gives the reason operators expect."""
    server_ctx = _server_ctx(site_ca, HOST, "127.0.0.1", not_before=not_before, not_after=not_after)
    trusted = trustme.CA() if foreign_ca else site_ca
    exc = handshake_error(_client_ctx(trusted), server_ctx, hostname)
    assert isinstance(exc, ssl.SSLCertVerificationError)
    assert exc.verify_code == code
    got, message = classify(exc, header, "repository")
    assert got == reason
    assert message == f"server certificate of {HOST}: {exc.verify_message}"


# --- TLS alerts ----------------------------------------------------------------------------


@pytest.mark.parametrize("alert", CLIENT_CERT_ALERTS)
def test_an_alert_refusing_the_client_certificate_is_client_certificate_rejected(
    cert: Target, alert: str
) -> None:
    """Each alert a service sends to refuse a client certificate names the client certificate."""
    assert classify(openssl_error(alert), cert, "repository") == (
        Reason.CLIENT_CERTIFICATE_REJECTED,
        f"{HOST} refused the client certificate: {alert}",
    )


@pytest.mark.parametrize("error", OTHER_TLS_ERRORS)
def test_other_tls_errors_are_tls_handshake(cert: Target, error: str) -> None:
    """An alert or local error that is not about the client certificate is tls_handshake."""
    assert classify(openssl_error(error), cert, "repository") == (
        Reason.TLS_HANDSHAKE,
        f"TLS with {HOST} failed: {error}",
    )


def test_a_tls_error_without_reason_shows_its_text(cert: Target) -> None:
    """With no OpenSSL reason, the log line carries the error's own text."""
    exc = ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed (EOF) (_ssl.c:1006)")
    # as _ssl sets them when OpenSSL's error queue is empty (typeshed says str)
    exc.library = exc.reason = None  # type: ignore[assignment]
    assert classify(exc, cert, "repository") == (
        Reason.TLS_HANDSHAKE,
        f"TLS with {HOST} failed: {exc}",
    )


@pytest.mark.parametrize(
    ("tls12", "with_cert", "alert"),
    [
        (False, None, "TLSV13_ALERT_CERTIFICATE_REQUIRED"),
        (True, None, "SSLV3_ALERT_HANDSHAKE_FAILURE"),
        (False, "foreign", "TLSV1_ALERT_UNKNOWN_CA"),
        (True, "foreign", "TLSV1_ALERT_UNKNOWN_CA"),
        (True, "expired", "SSLV3_ALERT_CERTIFICATE_EXPIRED"),
    ],
    ids=["tls13-none", "tls12-none", "tls13-foreign", "tls12-foreign", "tls12-expired"],
)
def test_real_client_certificate_refusals_are_client_certificate_rejected(
    cert: Target,
    site_ca: trustme.CA,
    client_ca: trustme.CA,
    tls12: bool,
    with_cert: str | None,
    alert: str,
) -> None:
    """A real service refusing the client certificate, over TLS 1.2 and 1.3, is classified as
    such; and the constructed alerts above look exactly like these real ones."""
    client = None
    if with_cert == "foreign":
        client = trustme.CA().issue_cert("QlikClient")
    elif with_cert == "expired":
        client = client_ca.issue_cert("QlikClient", not_after=NOW - dt.timedelta(days=1))
    server_ctx = _server_ctx(site_ca, HOST, client_ca=client_ca, tls12=tls12)
    exc = handshake_error(_client_ctx(site_ca, client), server_ctx, HOST)
    assert (exc.library, exc.reason) == ("SSL", alert)
    assert str(exc).split(" (_ssl.c")[0] == str(openssl_error(alert)).split(" (_ssl.c")[0]
    assert classify(exc, cert, "repository") == (
        Reason.CLIENT_CERTIFICATE_REJECTED,
        f"{HOST} refused the client certificate: {alert}",
    )


def test_a_real_protocol_version_refusal_is_tls_handshake(
    cert: Target, site_ca: trustme.CA
) -> None:
    """A service that speaks only TLS 1.3 to a TLS 1.2 client fails the handshake, not auth."""
    server_ctx = _server_ctx(site_ca, HOST)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    client_ctx = _client_ctx(site_ca)
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    exc = handshake_error(client_ctx, server_ctx, HOST)
    assert exc.reason == "TLSV1_ALERT_PROTOCOL_VERSION"
    assert classify(exc, cert, "repository")[0] == Reason.TLS_HANDSHAKE


# --- closed connections ---------------------------------------------------------------------


def test_closed_right_after_a_tls13_handshake_with_a_client_certificate_is_rejection(
    cert: Target,
) -> None:
    """A TLS 1.3 service refuses a client certificate by closing the fresh connection."""
    assert classify(ClosedBeforeResponse(fresh=True), cert, "repository") == (
        Reason.CLIENT_CERTIFICATE_REJECTED,
        f"{HOST} closed the connection right after the TLS handshake without answering: "
        "the service refused the client certificate",
    )


@pytest.mark.parametrize(
    ("method", "fresh"),
    [("certificate", False), ("header", True), ("header", False)],
)
def test_other_closes_before_the_response_are_server_error(
    tmp_path: Path, method: str, fresh: bool
) -> None:
    """Without a client certificate, or on a reused connection, a close is the server's."""
    target = _target(tmp_path, method)
    assert classify(ClosedBeforeResponse(fresh=fresh), target, "repository") == (
        Reason.SERVER_ERROR,
        f"{HOST} closed the connection without answering",
    )


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        BrokenPipeError(errno.EPIPE, "Broken pipe"),
        OSError(errno.ECONNABORTED, "Software caused connection abort"),
        asyncio.IncompleteReadError(b"HTTP/1.1 200 OK\r\n", 4096),
        aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"),
        aiohttp.ClientOSError(errno.EPIPE, "Broken pipe"),
        aiohttp.ClientOSError(errno.ECONNABORTED, "Software caused connection abort"),
    ],
    ids=["reset", "pipe", "aborted", "incomplete", "aio-reset", "aio-pipe", "aio-aborted"],
)
def test_a_connection_lost_mid_request_is_server_error(cert: Target, exc: Exception) -> None:
    """Resets, broken pipes and truncated answers, as Python or aiohttp raise them."""
    assert classify(exc, cert, "engine_session") == (
        Reason.SERVER_ERROR,
        f"{HOST} closed the connection mid-request",
    )


# --- connecting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "check", "port"),
    [
        ("certificate", "repository", 4242),
        ("certificate", "engine", 4747),
        ("header", "proxy", 8443),
    ],
)
def test_connection_refused_names_the_port_of_the_check(
    tmp_path: Path, method: str, check: str, port: int
) -> None:
    """A refused connection names host and the port this check connects to."""
    target = _target(tmp_path, method)
    exc = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    assert classify(exc, target, check) == (
        Reason.CONNECT_REFUSED,
        f"{HOST}:{port} refused the connection",
    )


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (OSError(errno.EHOSTUNREACH, "No route to host"), "No route to host"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "Network is unreachable"),
        (aiohttp.ClientOSError(errno.ECONNREFUSED, "Connection refused"), "Connection refused"),
        (aiohttp.ClientOSError(errno.EHOSTUNREACH, "No route to host"), "No route to host"),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), "Cannot assign"),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed"), "OSError"),
    ],
    ids=["hostunreach", "netunreach", "aio-refused", "aio-hostunreach", "addrnotavail", "multi"],
)
def test_unreachable_hosts_are_connect_refused(cert: Target, exc: OSError, text: str) -> None:
    """No route, no network, or an error without errno (asyncio's several-addresses error):
    the service cannot be reached; the kernel's words, or the error's class, say why."""
    reason, message = classify(exc, cert, "repository")
    assert reason == Reason.CONNECT_REFUSED
    assert message.startswith(f"{HOST}: {text}")
    assert message == f"{HOST}: {exc.strerror or 'OSError'}"


# --- answers that cannot be parsed, and the unexpected ------------------------------------


def _unicode_error() -> Exception:
    try:
        b"\xff".decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc
    raise AssertionError("decoded")


def _json_error() -> Exception:
    try:
        json.loads("{")
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("parsed")


@pytest.mark.parametrize(
    "make",
    [
        lambda: ValueError("x"),
        lambda: KeyError("buildVersion"),
        lambda: TypeError("x"),
        _unicode_error,
        _json_error,
    ],
    ids=["ValueError", "KeyError", "TypeError", "UnicodeDecodeError", "JSONDecodeError"],
)
def test_a_parse_error_is_invalid_response_not_server_error(
    header: Target, make: Callable[[], Exception], caplog: pytest.LogCaptureFixture
) -> None:
    """A check that trips over the answer's shape reports the answer, not the server or a bug."""
    exc = make()
    with caplog.at_level(logging.DEBUG, logger="exporter.probe"):
        assert classify(exc, header, "engine") == (
            Reason.INVALID_RESPONSE,
            f"cannot parse the answer: {exc.__class__.__name__}",
        )
    assert caplog.records == []


def test_an_unexpected_error_is_invalid_response_with_a_logged_traceback(
    header: Target, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug is still one reason and one line for the probe, and a traceback for the developer."""
    try:
        raise RuntimeError("boom")
    except RuntimeError as raised:
        exc = raised
    with caplog.at_level(logging.DEBUG, logger="exporter.probe"):
        assert classify(exc, header, "engine") == (
            Reason.INVALID_RESPONSE,
            "unexpected error: RuntimeError",
        )
    [record] = caplog.records
    assert record.name == "exporter.probe"
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "unexpected error in probe target=site check=engine"
    assert record.exc_info is not None
    assert record.exc_info[1] is exc


def test_every_reason_is_reachable_from_the_classifier(header: Target) -> None:
    """Guard for the tests above: the closed set has exactly the reasons they were written for,
    and the reasons classify itself produces (beyond passthrough) are the expected ones."""
    produced = {
        classify(exc, header, "repository")[0]
        for exc in (
            TimeoutError(),
            _verify_error(10, "x"),
            _verify_error(62, "x"),
            _verify_error(20, "x"),
            openssl_error("TLSV1_ALERT_UNKNOWN_CA"),
            openssl_error("WRONG_VERSION_NUMBER"),
            ClosedBeforeResponse(fresh=False),
            ConnectionRefusedError(),
            ValueError(),
        )
    }
    assert produced == {
        Reason.TIMEOUT,
        Reason.SERVER_CERTIFICATE_EXPIRED,
        Reason.HOSTNAME_MISMATCH,
        Reason.SERVER_CERTIFICATE_UNTRUSTED,
        Reason.CLIENT_CERTIFICATE_REJECTED,
        Reason.TLS_HANDSHAKE,
        Reason.SERVER_ERROR,
        Reason.CONNECT_REFUSED,
        Reason.INVALID_RESPONSE,
    }
    assert len(Reason) == 18  # a new reason needs a test here and on the dashboards


@pytest.mark.parametrize(
    "exc",
    [ssl.SSLError("made in Python"), ssl.SSLError(), ssl.SSLError(1, "no reason attribute")],
    ids=["message", "bare", "errno-and-message"],
)
def test_an_ssl_error_without_a_reason_attribute_is_a_tls_handshake_failure(
    header: Target, exc: ssl.SSLError
) -> None:
    """An SSLError raised from Python code (no ``reason`` attribute) is classified, not a crash
    of the classifier."""
    reason, message = classify(exc, header, "repository")
    assert reason == Reason.TLS_HANDSHAKE
    assert message.startswith(f"TLS with {HOST} failed")
