"""Qlik Cloud OAuth machine-to-machine: client credentials traded for a bearer token.

``POST https://<tenant>/oauth/token`` with ``client_id``, ``client_secret`` and
``grant_type: client_credentials`` (qlik.dev, "Get started with OAuth machine-to-machine");
the access token then goes out as ``Authorization: Bearer``. The token is cached and reused
until it is older than ``token_max_age`` or has less than 10 % of its lifetime left: the token
endpoint is rate-limited per tenant, and scheduled runs and ``/probe`` share the cache. The
token request is a phase of the run that makes it (``token``), and its refusal is the run's
failure: 401 ``unauthorized``, 403 ``forbidden``, 429 ``rate_limited`` (no new request before
``Retry-After`` has passed).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr, ValidationInfo, field_validator, model_validator

from exporter.auth.common import (
    CredentialError,
    Holdings,
    Prepared,
    TrustFiles,
    read_secret_file,
    shared_contexts,
)
from exporter.fields import AuthSettings, Duration, secret_from
from exporter.reasons import ProbeFailure, Reason
from exporter.responses import retry_after, status_failure
from exporter.results import CredentialInfo

if TYPE_CHECKING:
    from exporter.config import Target
    from exporter.transport import HttpSession

TOKEN_PATH = "/oauth/token"  # noqa: S105  # a URL path, not a secret
RENEW_FRACTION = 0.1  # renew when less than this share of the token's lifetime is left


class OAuthAuth(AuthSettings):
    """An OAuth client with machine-to-machine enabled, from the Qlik Cloud console."""

    method: Literal["oauth"]
    client_id: str
    client_secret: SecretStr
    client_secret_file: Path | None = None
    token_max_age: Duration = 900.0

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            data = secret_from(dict(data), "client_secret", info, required=True)
        return data

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str) -> str:
        if not v.strip() or not v.isprintable():
            raise ValueError("must be the OAuth client's id (printable, not empty)")
        return v.strip()


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    obtained: float  # unix seconds
    expires: float  # unix seconds

    def fresh(self, now: float, max_age: float) -> bool:
        lifetime = self.expires - self.obtained
        return now - self.obtained < max_age and self.expires - now > RENEW_FRACTION * lifetime

    def __repr__(self) -> str:
        return f"_Token(expires={self.expires:.0f})"


class OAuthMethod:
    """``auth.method: oauth`` (Qlik Cloud)."""

    def __init__(self, target: Target) -> None:
        assert isinstance(target.auth, OAuthAuth)
        self._target = target
        self._auth = target.auth
        self._trust = TrustFiles(target)
        self._token: _Token | None = None
        self._wait_until = 0.0  # after a 429 from the token endpoint
        self._lock = asyncio.Lock()

    def holdings(self) -> Holdings:
        """The CAs of ``ca_file`` and the cached token's expiry."""
        token = self._token
        creds = [CredentialInfo("oauth_token", token.expires)] if token is not None else []
        return Holdings(self._trust.infos(), creds)

    def verify(self) -> None:
        """The trust file and a readable client secret (only the tenant can judge it)."""
        self._trust.load()
        shared_contexts(self._target)
        self._secret()

    async def prepare(self, session: HttpSession) -> Prepared:
        """The bearer header, with a token from the cache or a fresh one."""
        self._trust.load()
        contexts = shared_contexts(self._target)
        async with self._lock:  # concurrent checks of one target share one token request
            token = self._token
            if token is None or not token.fresh(time.time(), self._auth.token_max_age):
                token = self._token = await self._request(session, contexts.verify)
        return Prepared(tls=contexts, headers={"Authorization": f"Bearer {token.value}"})

    async def _request(self, session: HttpSession, ctx: ssl.SSLContext) -> _Token:
        if time.time() < self._wait_until:
            wait = self._wait_until - time.time()
            raise ProbeFailure(
                Reason.RATE_LIMITED, f"token endpoint asked to wait; {wait:.0f}s left"
            )
        body = json.dumps(
            {
                "client_id": self._auth.client_id,
                "client_secret": self._secret(),
                "grant_type": "client_credentials",
            }
        ).encode()
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        host, port = self._target.host, self._target.port
        started = time.perf_counter()
        before = dict(session.phases)
        resp = await session.request("POST", host, port, ctx, TOKEN_PATH, headers, body)
        # The run's request and read phases belong to its check; the token call is its own.
        for phase in ("request", "read"):
            if phase not in before:
                session.phases.pop(phase, None)
        session.phases["token"] = time.perf_counter() - started
        where = f"POST https://{host}:{port}{TOKEN_PATH}"
        if resp.status == 429:
            self._wait_until = time.time() + (retry_after(resp) or 0.0)
        if (failure := status_failure(resp, where, via_proxy=False)) is not None:
            raise failure
        return _parse_token(resp.body, where)

    def _secret(self) -> str:
        """The client secret: its file re-read on every token request, so a rotated secret
        is used without a reload."""
        path = self._auth.client_secret_file
        if path is None:
            return self._auth.client_secret.get_secret_value()
        secret = read_secret_file(path, "client_secret_file")
        if not secret:
            raise CredentialError(f"client_secret_file {path}: empty")
        return secret


def _parse_token(body: bytes, where: str) -> _Token:
    """The token from a 200 answer: ``access_token`` and ``expires_in`` or ``expires_at``."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise ProbeFailure(Reason.INVALID_RESPONSE, f"{where}: answer is not a JSON object")
    value = data.get("access_token")
    if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable():
        raise ProbeFailure(Reason.INVALID_RESPONSE, f"{where}: answer lacks an access_token")
    kind = data.get("token_type", "bearer")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise ProbeFailure(Reason.INVALID_RESPONSE, f"{where}: token_type is not bearer")
    now = time.time()
    return _Token(value, now, _expiry(data, now, where))


def _expiry(data: dict[str, Any], now: float, where: str) -> float:
    seconds = data.get("expires_in")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise ProbeFailure(Reason.INVALID_RESPONSE, f"{where}: expires_in is not a number")
        return now + float(min(seconds, 366 * 86400))
    at = data.get("expires_at")
    if isinstance(at, str):
        try:
            when = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return when.timestamp()
    raise ProbeFailure(Reason.INVALID_RESPONSE, f"{where}: answer lacks expires_in/expires_at")


Settings = OAuthAuth
Method = OAuthMethod
