"""The one place that runs a check: timeout, timing, and mapping every outcome to one reason.

:func:`run_probe` never raises. A failed probe is a result with a reason from the closed set
and a secret-free error line in the log, with target and check — never an exception.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from dataclasses import dataclass

from exporter.auth import AuthMethod, build_auth
from exporter.certinfo import describe_server, relevant_roots
from exporter.checks import ProbeContext, check_fn
from exporter.config import Target
from exporter.reasons import ProbeFailure, Reason
from exporter.results import CertificateInfo, ProbeResult
from exporter.transport import ClosedBeforeResponse, HttpSession, Resolver, SystemResolver

log = logging.getLogger("exporter.probe")

# OpenSSL verify codes (include/openssl/x509_vfy.h) for the reasons they stand for.
_EXPIRED = {9, 10}  # not yet valid, has expired
_HOSTNAME = {62}  # X509_V_ERR_HOSTNAME_MISMATCH
_IP_MISMATCH = {64}
# TLS alerts a server sends when it refuses the client certificate (or its absence).
_CLIENT_CERT_ALERTS = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "ACCESS_DENIED",
    "DECRYPT_ERROR",
    "HANDSHAKE_FAILURE",
    "UNSUPPORTED_CERTIFICATE",
)
INSPECT_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Prober:
    """A configured target with its long-lived auth method: what :func:`run_probe` runs."""

    target: Target
    auth: AuthMethod

    @classmethod
    def build(cls, target: Target) -> Prober:
        """Build the auth method for ``target`` (no I/O beyond what config validation did)."""
        return cls(target=target, auth=build_auth(target))

    def for_node(self, host: str) -> Prober:
        """This target's checks aimed at one node of its site (discovery): the same auth and
        settings, another host."""
        if host == self.target.host:
            return self
        return Prober(target=self.target.model_copy(update={"host": host}), auth=self.auth)


@dataclass(slots=True)
class _ServerCertificate:
    """Records the first server certificate of a run: the one its check is about."""

    host: str
    source: str
    info: CertificateInfo | None = None
    hostname_match: bool | None = None

    def __call__(self, host: str, port: int, der: bytes) -> None:
        if self.info is None and (described := describe_server(der, self.source, self.host)):
            self.info, self.hostname_match = described


async def run_probe(
    prober: Prober,
    check: str,
    *,
    resolver: Resolver | None = None,
    logger: logging.Logger = log,
) -> ProbeResult:
    """Run ``check`` against ``prober``'s target once, within its timeout. Never raises.

    Everything the run learned is in the result; nothing else is written.
    """
    target = prober.target
    started, t0 = time.time(), time.perf_counter()
    server = _ServerCertificate(host=target.host, source=f"server_{check}")
    session = HttpSession(resolver=resolver or SystemResolver(), on_certificate=server)
    result = ProbeResult(
        target=target.name,
        check=check,
        success=False,
        reason=None,
        error="",
        started=started,
        finished=started,
        duration=0.0,
        node=target.host,
    )
    ctx: ProbeContext | None = None
    deadline = t0 + target.timeout
    try:
        async with asyncio.timeout(target.timeout):
            prepared = await prober.auth.prepare(session)
            ctx = ProbeContext(target, check, prepared, session, log=result.log)
            try:
                result.values = await check_fn(check)(ctx)
            finally:
                if ctx.learned().session_cookies:
                    await _logout(ctx)
        result.success = True
    except (Exception, asyncio.CancelledError) as exc:  # the runner maps every outcome
        if isinstance(exc, asyncio.CancelledError) and _cancelled_from_outside():
            raise  # the finally clause closes the connections
        result.reason, result.error = classify(exc, target, check)
        if result.reason in _VERIFY_REASONS and server.info is None and ctx is not None:
            await _inspect_server(target, check, session, ctx.auth.tls.inspect, deadline)
    finally:
        await session.close()
    if ctx is not None:
        result.retry_after = ctx.learned().retry_after
    # What the auth holds after the run (a token it fetched for it included); never raises.
    held = prober.auth.holdings()
    result.certificates, result.credentials = held.certificates, held.credentials
    if server.info is not None:
        result.certificates.append(server.info)
    result.certificates = relevant_roots(result.certificates)
    result.hostname_match = server.hostname_match
    result.finished = time.time()
    result.duration = time.perf_counter() - t0
    result.phases = dict(session.phases)
    _log_result(logger, result)
    return result


_VERIFY_REASONS = frozenset(
    {
        Reason.SERVER_CERTIFICATE_EXPIRED,
        Reason.SERVER_CERTIFICATE_UNTRUSTED,
        Reason.HOSTNAME_MISMATCH,
    }
)


def _cancelled_from_outside() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _logout(ctx: ProbeContext) -> None:
    """End the proxy session this probe created, so that probing never piles up sessions."""
    try:
        await ctx.request(ctx.path("/qps/user"), method="DELETE", auth_headers=False)
    except (ProbeFailure, OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        ctx.note(f"logout failed: {exc.__class__.__name__}")


async def _inspect_server(
    target: Target, check: str, session: HttpSession, ctx: ssl.SSLContext, deadline: float
) -> None:
    """Fetch the server certificate with a second, non-verifying handshake, for its metrics."""
    remaining = min(INSPECT_TIMEOUT, deadline - time.perf_counter())
    if remaining <= 0:
        return
    inspect = HttpSession(resolver=session.resolver, on_certificate=session.on_certificate)
    try:
        async with asyncio.timeout(remaining):
            await inspect.open(target.host, target.port_for(check), ctx)
    except Exception as exc:
        log.debug("server certificate inspection failed: %s", exc.__class__.__name__)
    finally:
        await inspect.close()  # the session owns the connection it opened


def classify(exc: BaseException, target: Target, check: str) -> tuple[Reason, str]:
    """The failure reason and log message for anything a probe of ``check`` can raise."""
    host = target.host
    if isinstance(exc, ProbeFailure):
        return exc.reason, exc.message
    if isinstance(exc, TimeoutError | asyncio.CancelledError):
        return Reason.TIMEOUT, f"no answer within {target.timeout:g}s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        detail = f"server certificate of {host}: {exc.verify_message}"
        if code in _EXPIRED:
            return Reason.SERVER_CERTIFICATE_EXPIRED, detail
        if code in _HOSTNAME or code in _IP_MISMATCH:
            return Reason.HOSTNAME_MISMATCH, detail
        return Reason.SERVER_CERTIFICATE_UNTRUSTED, detail
    if isinstance(exc, ssl.SSLError):
        # ``_ssl`` always sets ``reason``; an SSLError raised from Python code may not.
        ssl_reason = getattr(exc, "reason", None)
        text = f"{ssl_reason or ''} {exc}".upper()
        if "ALERT" in text and any(a in text for a in _CLIENT_CERT_ALERTS):
            return (
                Reason.CLIENT_CERTIFICATE_REJECTED,
                f"{host} refused the client certificate: {ssl_reason or exc}",
            )
        return Reason.TLS_HANDSHAKE, f"TLS with {host} failed: {ssl_reason or exc}"
    if isinstance(exc, ClosedBeforeResponse):
        if exc.fresh and target.auth.method == "certificate":
            return (
                Reason.CLIENT_CERTIFICATE_REJECTED,
                f"{host} closed the connection right after the TLS handshake without answering: "
                "the service refused the client certificate",
            )
        return Reason.SERVER_ERROR, f"{host} closed the connection without answering"
    if isinstance(exc, ConnectionRefusedError):
        return Reason.CONNECT_REFUSED, f"{host}:{target.port_for(check)} refused the connection"
    if isinstance(exc, ConnectionResetError | asyncio.IncompleteReadError | BrokenPipeError):
        return Reason.SERVER_ERROR, f"{host} closed the connection mid-request"
    if isinstance(exc, OSError):
        if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
            # aiohttp's ClientOSError (the websocket check) is an OSError with errno set.
            return Reason.SERVER_ERROR, f"{host} closed the connection mid-request"
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED):
            return Reason.CONNECT_REFUSED, f"{host}: {exc.strerror}"
        if exc.errno == errno.ETIMEDOUT:
            return Reason.TIMEOUT, f"{host}: connect timed out"
        return Reason.CONNECT_REFUSED, f"{host}: {exc.strerror or exc.__class__.__name__}"
    if isinstance(exc, ValueError | KeyError | TypeError):  # UnicodeError is a ValueError
        return Reason.INVALID_RESPONSE, f"cannot parse the answer: {exc.__class__.__name__}"
    log.error("unexpected error in probe target=%s check=%s", target.name, check, exc_info=exc)
    return Reason.INVALID_RESPONSE, f"unexpected error: {exc.__class__.__name__}"


def _log_result(logger: logging.Logger, result: ProbeResult) -> None:
    if result.success:
        logger.debug(
            "probe succeeded",
            extra={
                "target": result.target,
                "node": result.node,
                "check": result.check,
                "duration": round(result.duration, 4),
            },
        )
        return
    assert result.reason is not None
    result.log.append(f"failed: reason={result.reason.value} error={result.error}")
    logger.warning(
        "probe failed",
        extra={
            "target": result.target,
            "node": result.node,
            "check": result.check,
            "reason": result.reason.value,
            "error": result.error,
            "duration": round(result.duration, 4),
        },
    )
