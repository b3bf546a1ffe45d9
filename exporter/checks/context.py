"""What a check works with: one target's prepared auth, an HTTP session, and status mapping.

Every check sends its request through :meth:`ProbeContext.get`, which maps HTTP statuses to
failure reasons in one place, so the checks only parse successful answers.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from exporter.auth import METHODS, Prepared
from exporter.config import Target
from exporter.reasons import Reason
from exporter.transport import HttpResponse, HttpSession, ProbeFailure

_XRF_ALPHABET = string.ascii_letters + string.digits
# The exact body QRS and QPS send when the xrfkey check fails (help.qlik.com, Xrfkey headers).
XSRF_BODY = "XSRF prevention check failed"


def new_xrfkey() -> str:
    """A fresh 16-character ``[0-9a-zA-Z]`` key; Qlik allows a new one on every call.

    Uniform over the alphabet: bytes of 248 and above (4 × 62) are dropped, not folded in.
    """
    key = ""
    while len(key) < 16:
        key += "".join([_XRF_ALPHABET[b % 62] for b in secrets.token_bytes(24) if b < 248])
    return key[:16]


def port_for(t: Target, check: str) -> int:
    """The port ``check`` of target ``t`` connects to: the front end through a virtual proxy
    and on Cloud, else the service's own port."""
    if METHODS[t.auth.method].via_proxy or check == "tenant":
        return t.port
    return {"repository": t.ports.repository, "proxy": t.ports.proxy}.get(check, t.ports.engine)


@dataclass(slots=True)
class ProbeContext:
    """One run of one check against one target."""

    target: Target
    check: str
    auth: Prepared
    session: HttpSession
    via_proxy: bool
    log: list[str] = field(default_factory=list)
    cookies: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None

    def note(self, line: str) -> None:
        """Add a line to the probe's own log (``/probe?debug=true``); never a secret."""
        self.log.append(line)

    def path(self, path: str) -> str:
        """``path`` under the virtual proxy prefix when going through the proxy."""
        vp = self.target.virtual_proxy
        return f"/{vp}{path}" if self.via_proxy and vp else path

    @property
    def port(self) -> int:
        """The port this check connects to."""
        return port_for(self.target, self.check)

    async def get(
        self,
        port: int,
        path: str,
        *,
        xrfkey: bool = False,
        method: str = "GET",
        accept: str = "application/json",
        auth_headers: bool = True,
    ) -> HttpResponse:
        """Send one request; return a 2xx response or raise the matching ProbeFailure."""
        headers = {"Accept": accept}
        if auth_headers:
            headers.update(self.auth.headers)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if xrfkey:
            key = new_xrfkey()
            headers["X-Qlik-Xrfkey"] = key
            path += ("&" if "?" in path else "?") + f"xrfkey={key}"
        where = f"{method} https://{self.target.host}:{port}{path.split('?', 1)[0]}"
        resp = await self.session.request(
            method, self.target.host, port, self.auth.tls.verify, path, headers
        )
        self._keep_cookies(resp)
        self.note(f"{where} -> {resp.status} {resp.reason}")
        self._raise_for_status(resp, where)
        return resp

    def _keep_cookies(self, resp: HttpResponse) -> None:
        for value in resp.headers.getall("Set-Cookie", []):
            name, sep, rest = value.partition("=")
            if sep and name.strip().lower().startswith("x-qlik-session"):
                self.cookies[name.strip()] = rest.split(";", 1)[0].strip()

    def _raise_for_status(self, resp: HttpResponse, where: str) -> None:
        status = resp.status
        if 200 <= status < 300:
            return
        if status == 401:
            raise ProbeFailure(Reason.UNAUTHORIZED, f"{where}: 401 {_brief(resp)}")
        if status == 403:
            if XSRF_BODY in resp.text(500):
                raise ProbeFailure(Reason.XRFKEY_REJECTED, f"{where}: 403 {_brief(resp)}")
            raise ProbeFailure(Reason.FORBIDDEN, f"{where}: 403 {_brief(resp)}")
        if status == 404:
            raise ProbeFailure(Reason.NOT_FOUND, f"{where}: 404 (wrong virtual proxy or path?)")
        if status == 429:
            self.retry_after = _retry_after(resp)
            wait = f"; retry after {self.retry_after:g}s" if self.retry_after else ""
            raise ProbeFailure(Reason.RATE_LIMITED, f"{where}: 429 rate limited{wait}")
        if status >= 500:
            raise ProbeFailure(Reason.SERVER_ERROR, f"{where}: {status} {_brief(resp)}")
        if 300 <= status < 400 and self.via_proxy:
            # A virtual proxy redirects unauthenticated users to its login page.
            raise ProbeFailure(
                Reason.UNAUTHORIZED, f"{where}: {status} redirect to login (not authenticated)"
            )
        raise ProbeFailure(Reason.INVALID_RESPONSE, f"{where}: unexpected status {status}")

    def json(self, resp: HttpResponse) -> Any:
        """The body as JSON, or ``invalid_response``."""
        try:
            return json.loads(resp.body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise ProbeFailure(
                Reason.INVALID_RESPONSE, f"{self.check}: response is not valid JSON"
            ) from None

    def invalid(self, message: str) -> ProbeFailure:
        """A ``invalid_response`` failure naming this check."""
        return ProbeFailure(Reason.INVALID_RESPONSE, f"{self.check}: {message}")


def _brief(resp: HttpResponse) -> str:
    text = " ".join(resp.text(200).split())
    return f"{resp.reason}: {text}" if text else resp.reason


def _retry_after(resp: HttpResponse) -> float | None:
    value = resp.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 < seconds < 86400 else None
