"""``--web.config.file``: the Prometheus exporter-toolkit web config (TLS and basic auth).

The format is the exporter-toolkit's (https://github.com/prometheus/exporter-toolkit,
``docs/web-configuration.md``)::

    tls_server_config:
      cert_file: server.crt          # relative paths resolve against this file's folder
      key_file: server.key
      client_ca_file: clients-ca.crt
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12
    basic_auth_users:
      prometheus: $2b$12$...         # bcrypt hash, e.g. from `htpasswd -nBC 12 ""`
    http_server_config: {}           # accepted; this server has nothing to set there

Differences from the Go toolkit, because Python's ``ssl`` cannot accept a client certificate
without verifying it: ``RequestClientCert`` and ``RequireAnyClientCert`` also verify the
certificate against ``client_ca_file`` (they behave like ``VerifyClientCertIfGiven`` and
``RequireAndVerifyClientCert``). ``cipher_suites``, ``curve_preferences`` and
``client_allowed_sans`` are rejected rather than silently ignored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import ssl
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import bcrypt
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from exporter.auth.common import os_reason
from exporter.config import ConfigError, format_errors, read_yaml

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLSVersion = Literal["TLS12", "TLS13"]

_VERIFY_MODES: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_UNSUPPORTED = {
    "cipher_suites": "Go cipher suite names cannot be applied to Python's ssl",
    "curve_preferences": "Go curve names cannot be applied to Python's ssl",
    "client_allowed_sans": "use a dedicated client_ca_file instead",
}
# $2a$/$2b$/$2y$, a cost bcrypt accepts (04-31), and 53 characters of salt and hash.
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}")


def _no_password() -> str:
    """Called by OpenSSL for an encrypted key, instead of asking on the terminal."""
    raise ValueError("key_file is encrypted; encrypted keys are not supported here")


class WebConfigError(ConfigError):
    """The web config file is invalid; ``errors`` holds one line per problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str | Path):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path((info.context or {}).get("base_dir", ".")) / path
    if not path.is_file():
        raise ValueError(f"file not found: {value}")
    return path


class TLSServerConfig(_Model):
    """``tls_server_config``: the server certificate and client certificate policy."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: ClientAuthType | None = None
    min_version: TLSVersion = "TLS12"
    max_version: TLSVersion | None = None
    prefer_server_cipher_suites: bool | None = None  # accepted; no effect (as in Go >= 1.18)

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, why in _UNSUPPORTED.items():
                if key in data:
                    raise ValueError(f"{key}: not supported by this exporter ({why})")
        return data

    @field_validator("cert_file", "key_file", "client_ca_file", mode="before")
    @classmethod
    def _path(cls, v: Any, info: ValidationInfo) -> Any:
        return _resolve(v, info)

    @model_validator(mode="after")
    def _consistent(self) -> TLSServerConfig:
        auth = self.client_auth_type
        if self.client_ca_file is not None and auth in (None, "NoClientCert"):
            raise ValueError(
                "client_ca_file: set client_auth_type too (e.g. RequireAndVerifyClientCert)"
            )
        if auth not in (None, "NoClientCert") and self.client_ca_file is None:
            raise ValueError(f"client_ca_file: required with client_auth_type {auth}")
        if self.max_version is not None and self.max_version < self.min_version:
            raise ValueError("max_version: must not be lower than min_version")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """The server-side SSL context; raises :class:`ssl.SSLError`/``OSError`` on bad files."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version]
        if self.max_version is not None:
            ctx.maximum_version = _TLS_VERSIONS[self.max_version]
        ctx.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
        if self.client_ca_file is not None:
            ctx.load_verify_locations(cafile=self.client_ca_file)
        ctx.verify_mode = _VERIFY_MODES[self.client_auth_type or "NoClientCert"]
        return ctx


def _bcrypt(hashed: str) -> str:
    if not _BCRYPT.fullmatch(hashed):
        raise ValueError("not a bcrypt hash (expected $2y$/$2b$/$2a$...)")
    return hashed


# One error per bad hash, each naming its user.
BcryptHash = Annotated[str, AfterValidator(_bcrypt)]


class WebConfig(_Model):
    """The whole web config file."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: dict[str, Any] | None = None  # accepted; nothing to apply here
    basic_auth_users: dict[str, BcryptHash] | None = None

    @property
    def users(self) -> dict[str, str]:
        """User name to bcrypt hash; empty when basic auth is off."""
        return dict(self.basic_auth_users or {})

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server SSL context, or ``None`` for plain HTTP."""
        return None if self.tls_server_config is None else self.tls_server_config.ssl_context()


def parse_web_config(data: Any, *, base_dir: Path) -> WebConfig:
    """Validate already-parsed YAML and try the TLS files; raise :class:`WebConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise WebConfigError(["web config must be a mapping"])
    try:
        config = WebConfig.model_validate(dict(data), context={"base_dir": base_dir})
    except ValidationError as exc:
        raise WebConfigError(format_errors(exc)) from None
    try:
        config.ssl_context()
    except (ssl.SSLError, OSError, ValueError) as exc:
        if isinstance(exc, ssl.SSLError):
            reason = exc.reason or exc.__class__.__name__
        elif isinstance(exc, OSError):
            reason = os_reason(exc)
        else:
            reason = str(exc)
        raise WebConfigError(
            [f"tls_server_config: cannot load the certificate, key or client CA: {reason}"]
        ) from None
    return config


def load_web_config(path: Path) -> WebConfig:
    """Read and validate the web config file at ``path``."""
    data = read_yaml(path, "web config file", WebConfigError)
    return parse_web_config(data, base_dir=path.resolve().parent)


MAX_WAITING = 8


class AuthBusyError(Exception):
    """Too many password checks are already waiting; try again shortly."""


class BasicAuth:
    """Checks ``Authorization: Basic`` against bcrypt hashes without leaking which users exist.

    Every uncached attempt pays one bcrypt check (against a dummy hash of the same cost for an
    unknown user) and user names are compared with :func:`hmac.compare_digest`. Successful
    checks are cached in a small LRU keyed by a SHA-256 of the credentials, so a scraper does
    not pay bcrypt on every scrape. bcrypt runs in a worker thread, one at a time.
    """

    def __init__(self, users: Mapping[str, str], *, cache_size: int = 64) -> None:
        self._users = [(name.encode(), hashed.encode()) for name, hashed in users.items()]
        cost = max((int(h.split("$")[2]) for h in users.values()), default=10)
        self._dummy = bcrypt.hashpw(b"no such user", bcrypt.gensalt(rounds=cost))
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._lock = asyncio.Lock()
        self._waiting = 0

    async def check(self, authorization: str | None) -> bool:
        """Whether the ``Authorization`` header value carries valid credentials.

        Raises :class:`AuthBusyError` when MAX_WAITING uncached checks already wait: bcrypt
        costs tens of milliseconds, so a flood of wrong passwords must not queue without bound
        ahead of the real scraper.
        """
        credentials = _parse_basic(authorization)
        if credentials is None:
            return False
        user, password = credentials
        stored, found = self._dummy, False
        for name, hashed in self._users:  # no early exit: time doesn't depend on the match
            if hmac.compare_digest(name, user):
                stored, found = hashed, True
        key = hashlib.sha256(b"%d:%s:%s:%s" % (len(user), user, stored, password)).digest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return True
        if self._waiting >= MAX_WAITING:
            raise AuthBusyError
        self._waiting += 1
        try:
            async with self._lock:
                ok = await asyncio.to_thread(_checkpw, password, stored)
        finally:
            self._waiting -= 1
        if ok and found:
            self._cache[key] = None
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return ok and found


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # e.g. a password over bcrypt's 72-byte limit
        return False


def _parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


def basic_auth_middleware(users: Mapping[str, str]) -> Middleware:
    """An aiohttp middleware answering 401 to every request without valid credentials."""
    auth = BasicAuth(users)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            ok = await auth.check(request.headers.get("Authorization"))
        except AuthBusyError:
            return web.Response(
                status=429,
                text="429 Too Many Requests: too many password checks in progress; retry\n",
                headers={"Retry-After": "1"},
            )
        if ok:
            return await handler(request)
        return web.Response(
            status=401,
            text="401 Unauthorized: valid basic auth credentials are required\n",
            headers={"WWW-Authenticate": 'Basic realm="qlik-sense-exporter", charset="UTF-8"'},
        )

    return middleware
