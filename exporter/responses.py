"""What an HTTP status means for a probe: the one table of failure reasons, ``Retry-After``,
and error lines that never repeat a credential a server echoes back.

Used by every check (through :class:`~exporter.checks.context.ProbeContext`) and by auth
methods that call a token endpoint.
"""

from __future__ import annotations

import re
from typing import Final

from exporter.reasons import ProbeFailure, Reason
from exporter.transport import HttpResponse

# The exact body QRS and QPS send when the xrfkey check fails (help.qlik.com, Xrfkey headers).
XSRF_BODY: Final = "XSRF prevention check failed"


def status_failure(resp: HttpResponse, where: str, *, via_proxy: bool) -> ProbeFailure | None:
    """The failure a non-2xx status stands for (None for 2xx): the one table for every check,
    HTTP and websocket upgrade alike. A redirect is never followed."""
    status = resp.status
    if 200 <= status < 300:
        return None
    if status == 401:
        return ProbeFailure(Reason.UNAUTHORIZED, f"{where}: 401 {_brief(resp)}")
    if status == 403:
        if XSRF_BODY in resp.text(500):
            return ProbeFailure(Reason.XRFKEY_REJECTED, f"{where}: 403 {_brief(resp)}")
        return ProbeFailure(Reason.FORBIDDEN, f"{where}: 403 {_brief(resp)}")
    if status == 404:
        return ProbeFailure(Reason.NOT_FOUND, f"{where}: 404 (wrong virtual proxy or path?)")
    if status == 429:
        wait = retry_after(resp)
        more = f"; retry after {wait:g}s" if wait else ""
        return ProbeFailure(Reason.RATE_LIMITED, f"{where}: 429 rate limited{more}")
    if status >= 500:
        return ProbeFailure(Reason.SERVER_ERROR, f"{where}: {status} {_brief(resp)}")
    if 300 <= status < 400 and via_proxy:
        # A virtual proxy redirects unauthenticated users to its login page.
        return ProbeFailure(
            Reason.UNAUTHORIZED, f"{where}: {status} redirect to login (not authenticated)"
        )
    if 300 <= status < 400:
        # Never followed: the credentials would go wherever the server says.
        return ProbeFailure(Reason.INVALID_RESPONSE, f"{where}: {status} redirect not followed")
    return ProbeFailure(Reason.INVALID_RESPONSE, f"{where}: unexpected status {status}")


# What a server might echo back of a request's credentials: an Authorization header, a bearer
# token, a JWT (API keys are JWTs too), a Qlik session cookie.
# The name may be quoted (JSON, a quoted cookie value), the value too.
_CREDENTIALS = re.compile(
    r"(?i)((?:authorization[\"']?\s*[:=]\s*[\"']?(?:\w+\s+)?"
    r"|bearer\s+|x-qlik-session[\w-]*[\"']?\s*[:=]\s*)[\"']?)"
    r"[^\s,;\"'<>]*"
    r"|eyJ[\w-]{4,}(?:\.[\w-]*){0,2}"
)


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``<redacted>``."""
    return _CREDENTIALS.sub(lambda m: f"{m.group(1) or ''}<redacted>", text)


def _brief(resp: HttpResponse) -> str:
    """The reason phrase and the start of the body, for an error line; servers that echo the
    request back must not put our credentials into a log."""
    text = redact(" ".join(resp.text(300).split()))[:200]
    return f"{resp.reason}: {text}" if text else resp.reason


def retry_after(resp: HttpResponse) -> float | None:
    """``Retry-After`` in seconds, when it is a sane number of them."""
    value = resp.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 < seconds < 86400 else None
