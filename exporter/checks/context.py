"""What a check works with: one target's prepared auth, the run's HTTP client, status mapping.

Every check sends its requests through :meth:`ProbeContext.request`, which maps HTTP statuses
to failure reasons with the one table in :func:`status_failure`, so the checks only parse
successful answers. Like any HTTP client, the context keeps the run's session cookies (sent
back on later requests) and the server's last ``Retry-After``; the runner reads them once, as
:meth:`ProbeContext.learned`, into the run's result.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exporter.auth import Prepared
from exporter.reasons import ProbeFailure, Reason
from exporter.responses import retry_after, status_failure
from exporter.transport import HttpResponse, HttpSession, WebSocket

if TYPE_CHECKING:
    from exporter.config import Target

_XRF_ALPHABET = string.ascii_letters + string.digits
# A websocket message the exporter will read, and frames over one socket's life: an engine's
# answers to the calls a check makes are kilobytes, and its greeting a few frames.
MAX_MESSAGE = 1024 * 1024
MAX_FRAMES = 200
MAX_LOG_LINES = 100
MAX_LOG_LINE = 300


def new_xrfkey() -> str:
    """A fresh 16-character ``[0-9a-zA-Z]`` key; Qlik allows a new one on every call.

    Uniform over the alphabet: bytes of 248 and above (4 × 62) are dropped, not folded in.
    """
    key = ""
    while len(key) < 16:
        key += "".join([_XRF_ALPHABET[b % 62] for b in secrets.token_bytes(24) if b < 248])
    return key[:16]


@dataclass(frozen=True, slots=True)
class Learned:
    """What a run's HTTP exchanges taught beyond the check's values."""

    retry_after: float | None = None  # seconds the server asked us to wait (429)
    session_cookies: dict[str, str] = field(default_factory=dict)  # proxy sessions to end


@dataclass(slots=True)
class ProbeContext:
    """One run of one check against one target."""

    target: Target
    check: str
    auth: Prepared
    session: HttpSession
    log: list[str] = field(default_factory=list)
    _cookies: dict[str, str] = field(default_factory=dict, repr=False)
    _retry_after: float | None = None

    def note(self, line: str) -> None:
        """Add a line to the probe's own log (``/probe?debug=true``); never a secret.

        At most MAX_LOG_LINES lines of at most MAX_LOG_LINE characters: a chatty server must
        not grow the stored result without bound.
        """
        if len(self.log) < MAX_LOG_LINES:
            self.log.append(line[:MAX_LOG_LINE])
        elif len(self.log) == MAX_LOG_LINES:
            self.log.append("… further lines of this run dropped")

    @property
    def via_proxy(self) -> bool:
        """Whether this run goes through a virtual proxy on the front-end port."""
        return self.target.via_proxy

    def path(self, path: str) -> str:
        """``path`` under the virtual proxy prefix when going through the proxy."""
        vp = self.target.virtual_proxy
        return f"/{vp}{path}" if self.via_proxy and vp else path

    @property
    def port(self) -> int:
        """The port this check connects to."""
        return self.target.port_for(self.check)

    def learned(self) -> Learned:
        """The session cookies and ``Retry-After`` seen so far."""
        return Learned(self._retry_after, dict(self._cookies))

    async def request(
        self,
        path: str,
        *,
        xrfkey: bool = False,
        method: str = "GET",
        accept: str = "application/json",
        auth_headers: bool = True,
    ) -> HttpResponse:
        """Send one request to this check's port; return a 2xx response or raise the matching
        ProbeFailure."""
        headers = {"Accept": accept}
        if auth_headers:
            headers.update(self.auth.headers)
        if self._cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self._cookies.items())
        if xrfkey:
            key = new_xrfkey()
            headers["X-Qlik-Xrfkey"] = key
            path += ("&" if "?" in path else "?") + f"xrfkey={key}"
        port = self.port
        where = f"{method} https://{self.target.host}:{port}{path.split('?', 1)[0]}"
        resp = await self.session.request(
            method, self.target.host, port, self.auth.tls.verify, path, headers
        )
        self._keep(resp)
        self.note(f"{where} -> {resp.status} {resp.reason}")
        if (failure := status_failure(resp, where, via_proxy=self.via_proxy)) is not None:
            raise failure
        return resp

    async def websocket(self, path: str) -> WebSocket:
        """Open a websocket to ``path`` on this check's port with the prepared auth.

        Connecting is timed into the run's phases and the server certificate captured like
        any request; a refused upgrade is mapped by the same table as HTTP (a redirect is
        never followed).
        """
        port = self.port
        where = f"websocket wss://{self.target.host}:{port}{path}"
        resp, ws = await self.session.websocket(
            self.target.host,
            port,
            self.auth.tls.verify,
            path,
            self.auth.headers,
            max_message=MAX_MESSAGE,
            max_frames=MAX_FRAMES,
        )
        self._keep(resp)
        self.note(f"{where} -> {resp.status} {resp.reason}")
        if ws is None:
            raise status_failure(resp, where, via_proxy=self.via_proxy) or ProbeFailure(
                Reason.SESSION_REJECTED, f"{where}: {resp.status} instead of switching protocols"
            )
        return ws

    def _keep(self, resp: HttpResponse) -> None:
        for value in resp.headers.getall("Set-Cookie", []):
            name, sep, rest = value.partition("=")
            if sep and name.strip().lower().startswith("x-qlik-session"):
                self._cookies[name.strip()] = rest.split(";", 1)[0].strip()
        if resp.status == 429:
            self._retry_after = retry_after(resp)

    def json(self, resp: HttpResponse) -> Any:
        """The body as JSON (every string made safe, see :func:`server_json`), or
        ``invalid_response``."""
        value = server_json(resp.body)
        if value is NOT_JSON:
            raise self.invalid("response is not valid JSON")
        return value

    def invalid(self, message: str) -> ProbeFailure:
        """A ``invalid_response`` failure naming this check."""
        return ProbeFailure(Reason.INVALID_RESPONSE, f"{self.check}: {message}")


NOT_JSON: Any = object()


def server_json(data: bytes | str) -> Any:
    """JSON from a server with every string made safe where it enters: lone surrogates
    (``"\\ud800"`` is valid JSON) cannot be encoded, so one such string in a build version
    would make every later ``/metrics`` fail. Returns ``NOT_JSON`` for anything not JSON."""
    try:
        return _safe(json.loads(data))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return NOT_JSON


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return value if value.isascii() else safe_text(value)
    if isinstance(value, list):
        return [_safe(v) for v in value]
    if isinstance(value, dict):
        return {_safe(k): _safe(v) for k, v in value.items()}
    return value


def safe_text(text: str) -> str:
    """``text`` with whatever UTF-8 cannot encode (lone surrogates) replaced by ``?``."""
    return text.encode("utf-8", "replace").decode("utf-8")
