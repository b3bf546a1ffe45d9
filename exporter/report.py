"""The ``probe`` command's report: one target's checks as a person reads them (in the style of
Ctrl-Q's connection-test), or as JSON for scripts.

Per check: what was called, the outcome, the values or the error with a hint at what usually
causes that reason; then the target's certificates and credentials once; then one summary line,
``3 of 4 checks OK; engine_session: timeout``. Every string a server sent is shown escaped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from exporter.catalog import DISCOVERY
from exporter.reasons import HINTS
from exporter.results import CertificateInfo, CredentialInfo, ProbeResult


def format_report(result: ProbeResult, host: str, port: int) -> list[str]:
    """One check: its endpoint, outcome, values or error and hint, phases."""
    lines = [f"Testing {result.check} of target {result.target}: {result.node or host} port {port}"]
    if result.success:
        lines.append(f"  OK in {result.duration * 1000:.0f} ms")
        lines += [f"  {k}: {plain(v)}" for k, v in result.values.details.items()]
    else:
        reason = result.reason.value if result.reason else "unknown"
        lines.append(f"  FAILED after {result.duration * 1000:.0f} ms: reason={reason}")
        lines.append(f"  error: {plain(result.error)}")
        if result.reason is not None:
            lines.append(f"  hint: {HINTS[result.reason]}")
    if result.phases:
        phases = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in result.phases.items())
        lines.append(f"  phases: {phases}")
    if result.hostname_match is False:
        lines.append(f"  WARNING: the server certificate does not cover {result.node or host}")
    return lines


def format_target(results: Sequence[ProbeResult], host: str, ports: dict[str, int]) -> list[str]:
    """The whole report: every check, the certificates and credentials once, the summary."""
    lines: list[str] = []
    for r in results:
        lines += format_report(r, host, ports[r.check])
    certs, creds = _expiring(results)
    now = time.time()
    if certs or creds:
        lines.append("Certificates and credentials:")
    for c in certs:
        where = f"{c.source} of {c.node}" if c.node else c.source
        lines.append(
            f"  {where}: CN={plain(c.subject_cn)} issued by CN={plain(c.issuer_cn)}, "
            + days_left(c.not_after - now)
        )
    for cred in creds:
        left = days_left(cred.expires - now, warn=not cred.renewed)
        lines.append(f"  credential {cred.kind}: {left}" + (" (renewed)" if cred.renewed else ""))
    lines.append(summary(results))
    return lines


def summary(results: Sequence[ProbeResult]) -> str:
    """``3 of 4 checks OK; engine_session: timeout`` (on a site of several nodes,
    ``engine on rim1.example.com: connect_refused``)."""
    ok = sum(r.success for r in results)
    line = f"{ok} of {len(results)} checks OK"
    sites = len({r.node for r in results if r.node}) > 1
    failed = [
        f"{_run_name(r, sites)}: {r.reason.value if r.reason else 'unknown'}"
        for r in results
        if not r.success
    ]
    return f"{line}; {', '.join(failed)}" if failed else line


def _run_name(r: ProbeResult, sites: bool) -> str:
    return f"{r.check} on {r.node}" if sites and r.node else r.check


def as_json(results: Sequence[ProbeResult], host: str, ports: dict[str, int]) -> str:
    """The report as one JSON document (strings as the server sent them, JSON-escaped)."""
    certs, creds = _expiring(results)
    doc: dict[str, Any] = {
        "target": results[0].target if results else "",
        "host": host,
        "ok": all(r.success for r in results),
        "summary": summary(results),
        "checks": [
            {
                "check": r.check,
                "node": r.node or host,
                "port": ports[r.check],
                "success": r.success,
                "reason": r.reason.value if r.reason else None,
                "error": r.error or None,
                "hint": HINTS[r.reason] if r.reason else None,
                "duration_seconds": round(r.duration, 6),
                "phases": {k: round(v, 6) for k, v in r.phases.items()},
                "details": r.values.details,
                "hostname_match": r.hostname_match,
            }
            for r in results
        ],
        "certificates": [
            {
                "node": c.node,
                "source": c.source,
                "subject_cn": c.subject_cn,
                "issuer_cn": c.issuer_cn,
                "serial": c.serial,
                "not_after": c.not_after,
            }
            for c in certs
        ],
        "credentials": [{"kind": c.kind, "expires": c.expires} for c in creds],
    }
    return json.dumps(doc, indent=2, ensure_ascii=True)


def _expiring(
    results: Sequence[ProbeResult],
) -> tuple[list[CertificateInfo], list[CredentialInfo]]:
    """Every certificate and credential the checks saw, once each, soonest expiry first."""
    certs: dict[tuple[str, str, str], CertificateInfo] = {}
    creds: dict[str, CredentialInfo] = {}
    for r in results:
        if r.check == DISCOVERY:  # the repository's own certificate, seen again
            continue
        certs.update(((c.node, c.source, c.serial), c) for c in r.certificates)
        creds.update((c.kind, c) for c in r.credentials)
    return (
        sorted(certs.values(), key=lambda c: c.not_after),
        sorted(creds.values(), key=lambda c: c.expires),
    )


def plain(text: str) -> str:
    """``text`` safe for a terminal: control characters (line breaks, escape sequences) and
    anything else unprintable shown as escapes, never interpreted."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def days_left(seconds: float, *, warn: bool = True) -> str:
    """``N days left``, with a warning under 30 days, or how long ago it expired."""
    days = seconds / 86400
    if days < 0:
        return f"EXPIRED {-days:.1f} days ago"
    note = "  WARNING: under 30 days" if warn and days < 30 else ""
    return f"{days:.1f} days left{note}"
