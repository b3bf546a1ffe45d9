"""The YAML configuration: pydantic models, validated as a whole at load.

Every error is reported as one line that names its path, e.g.
``targets[1].auth.key_file: file not found: certs/client_key.pem``. Relative paths resolve
against the config file's folder. Secrets are held as :class:`pydantic.SecretStr` and can come
inline, from ``<name>_file`` or from ``<name>_env``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Which checks each auth method can run (DESIGN.md, "Checks").
CHECKS_BY_METHOD: dict[str, tuple[str, ...]] = {
    "certificate": ("repository", "proxy", "engine", "engine_session"),
    "jwt": ("repository", "proxy", "engine"),
    "header": ("repository", "proxy", "engine"),
    "apikey": ("tenant",),
}
METHODS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "qseow": ("certificate", "jwt", "header"),
    "cloud": ("apikey",),
}
DEFAULT_CHECKS = {"qseow": ["repository"], "cloud": ["tenant"]}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class ConfigError(Exception):
    """The config file is invalid; ``errors`` holds one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _show(value: object) -> str:
    """``value`` for an error line: as is when printable, else quoted, so a line stays one line."""
    text = str(value)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def parse_duration(value: object) -> float:
    """``500ms``, ``30s``, ``5m``, ``1h`` or a number of seconds, as seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 500ms")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION.match(value)):
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
        else:
            seconds = math.nan
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if not math.isfinite(seconds):
        shown = repr(value) if isinstance(value, str) else "value"
        raise ValueError(f"invalid duration {shown}: expected a duration like 30s, 5m or 500ms")
    if seconds <= 0:
        raise ValueError("duration must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _resolve(value: str | Path, info: ValidationInfo, *, must_exist: bool = True) -> Path:
    base = Path((info.context or {}).get("base_dir", "."))
    path = Path(value)
    with contextlib.suppress(RuntimeError):  # an unknown ~user: kept, so reported not found
        path = path.expanduser()
    if not path.is_absolute():
        path = base / path
    if must_exist:
        try:
            found = path.is_file()
        except OSError:  # e.g. a name too long for the file system
            found = False
        if not found:
            raise ValueError(f"file not found: {_show(value)}")
    return path


def _resolve_field(value: Any, info: ValidationInfo) -> Path | None:
    """A ``*_file`` key's value: ``None`` when unset, else an existing file's resolved path."""
    if value is None:
        return None
    if not isinstance(value, str | Path):
        raise ValueError("expected a file path")
    return _resolve(value, info)


# A file key: resolved against the config file's folder and required to exist.
FilePath = Annotated[Path, BeforeValidator(_resolve_field)]
OptionalFilePath = Annotated[Path | None, BeforeValidator(_resolve_field)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _secret_from(
    data: dict[str, Any], name: str, info: ValidationInfo, *, required: bool
) -> dict[str, Any]:
    """Turn ``name`` / ``name_file`` / ``name_env`` into one resolved secret value.

    ``name_file`` is kept (as a resolved path) so that a rotated file is re-read.
    """
    keys = [k for k in (name, f"{name}_file", f"{name}_env") if data.get(k) is not None]
    if len(keys) > 1:
        raise ValueError(
            f"{keys[1]}: cannot be combined with {keys[0]}"
            f" (give only one of {name}, {name}_file or {name}_env)"
        )
    if not keys:
        if required:
            raise ValueError(f"{name}: required (give {name}, {name}_file or {name}_env)")
        return data
    key = keys[0]
    raw = data.pop(key)
    if key.endswith("_file"):
        try:
            path = _resolve(str(raw), info)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
        try:
            data[name] = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{key}: cannot read {_show(raw)}: {exc.__class__.__name__}") from None
        data[f"{name}_file"] = path
    elif key.endswith("_env"):
        env = os.environ.get(str(raw))
        if not env:
            raise ValueError(f"{key}: environment variable {_show(raw)} is not set")
        data[name] = env.strip()
    else:
        data[name] = raw
    return data


class CertificateAuth(_Model):
    """Mutual TLS with a client certificate exported from the QMC."""

    method: Literal["certificate"]
    cert_file: FilePath
    key_file: OptionalFilePath = None  # optional only for a .pfx/.p12 bundle in cert_file
    key_password: SecretStr | None = None
    key_password_file: Path | None = None
    user_directory: str = "INTERNAL"
    user_id: str = "sa_api"

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            data = _secret_from(dict(data), "key_password", info, required=False)
        return data

    @model_validator(mode="after")
    def _key_needed(self) -> CertificateAuth:
        if self.key_file is None and not self.is_pkcs12:
            raise ValueError("key_file: required unless cert_file is a .pfx/.p12 bundle")
        return self

    @property
    def is_pkcs12(self) -> bool:
        """Whether ``cert_file`` is a PKCS#12 bundle (the QMC's Windows format export)."""
        return self.cert_file.suffix.lower() in (".pfx", ".p12")


class JwtClaims(_Model):
    """Claim names the virtual proxy reads (case-sensitive, free-form in the QMC)."""

    user_id: str = "userId"
    user_directory: str = "userDirectory"


class JwtAuth(_Model):
    """A JWT sent as ``Authorization: Bearer`` to a JWT virtual proxy."""

    method: Literal["jwt"]
    token: SecretStr | None = None
    token_file: Path | None = None
    signing_key_file: OptionalFilePath = None
    signing_key_password: SecretStr | None = None
    signing_key_password_file: Path | None = None
    signing_cert_file: OptionalFilePath = None
    algorithm: Literal["RS256", "RS384", "RS512"] = "RS256"
    audience: str = "qlik.api/login/jwt-session"
    token_lifetime: Duration = 300.0
    user_directory: str | None = None
    user_id: str | None = None
    claims: JwtClaims = JwtClaims()
    extra_claims: dict[str, str | int | bool | list[str]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        has_token = any(data.get(k) is not None for k in ("token", "token_file", "token_env"))
        if has_token and data.get("signing_key_file") is not None:
            raise ValueError(
                "signing_key_file: cannot be combined with a static token"
                " (give token, token_file or token_env, or signing_key_file)"
            )
        if not has_token and data.get("signing_key_file") is None:
            raise ValueError("one of token, token_file, token_env or signing_key_file is required")
        data = _secret_from(data, "token", info, required=False)
        return _secret_from(data, "signing_key_password", info, required=False)

    @field_validator("extra_claims", mode="before")
    @classmethod
    def _claims(cls, v: Any) -> Any:
        # One clear line per bad claim instead of one per member of the value's type union.
        if isinstance(v, dict):
            for key, value in v.items():
                ok = isinstance(value, str | int | bool) or (
                    isinstance(value, list) and all(isinstance(x, str) for x in value)
                )
                if not ok:
                    raise ValueError(
                        f"claim {_show(key)} must be a string, integer, boolean or list of strings"
                    )
        return v

    @model_validator(mode="after")
    def _minting_needs_user(self) -> JwtAuth:
        if self.signing_key_file is not None:
            for key in ("user_id", "user_directory"):
                if not getattr(self, key):
                    raise ValueError(f"{key}: required to mint tokens with signing_key_file")
        return self


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


class HeaderAuth(_Model):
    """Header authentication through a virtual proxy (static or dynamic user directory)."""

    method: Literal["header"]
    header_name: str
    user_id: str
    user_directory: str | None = None
    # Dynamic user directory: the QMC pattern, with $ud and $id as placeholders, e.g. $ud\$id.
    header_pattern: str | None = None

    @field_validator("header_name")
    @classmethod
    def _reserved(cls, v: str) -> str:
        # Qlik refuses these names for header authentication (help.qlik.com "Virtual proxies").
        reserved = (
            "x-qlik-user",
            "x-qlik-security",
            "x-qlik-proxysession",
            "x-qlik-proxyid",
            "x-qlik-trace",
            "x-qlik-app",
            "x-qlik-capabilities",
        )
        if any(r in v.lower() for r in reserved):
            raise ValueError(f"header name {v!r} is reserved by Qlik Sense")
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", v):
            raise ValueError(f"invalid HTTP header name {v!r}")
        return v

    @model_validator(mode="after")
    def _pattern(self) -> HeaderAuth:
        if self.header_pattern is not None:
            if "$ud" not in self.header_pattern or "$id" not in self.header_pattern:
                raise ValueError("header_pattern: must contain $ud and $id")
            if not self.user_directory:
                raise ValueError("user_directory: required with header_pattern")
        # The value goes into an HTTP header as is: no line breaks or other control characters
        # (they would inject headers), and only what HTTP/1.1 can carry (Latin-1).
        key, value = "header_pattern" if self.header_pattern else "user_id", self.header_value()
        if not value.isprintable():
            raise ValueError(
                f"{key}: the header value must not hold line breaks or control characters"
            )
        if not value.isascii() and not _is_latin1(value):
            raise ValueError(f"{key}: the header value can only hold Latin-1 characters")
        return self

    def header_value(self) -> str:
        """The header value: the user id, or the pattern filled in for a dynamic directory."""
        if self.header_pattern is None:
            return self.user_id
        return self.header_pattern.replace("$ud", self.user_directory or "").replace(
            "$id", self.user_id
        )


class ApiKeyAuth(_Model):
    """A Qlik Cloud API key sent as ``Authorization: Bearer``."""

    method: Literal["apikey"]
    api_key: SecretStr
    api_key_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            data = _secret_from(dict(data), "api_key", info, required=True)
        return data


Auth = Annotated[CertificateAuth | JwtAuth | HeaderAuth | ApiKeyAuth, Field(discriminator="method")]


class Ports(_Model):
    """The QSEoW service ports for certificate auth."""

    repository: int = Field(4242, ge=1, le=65535)
    proxy: int = Field(4243, ge=1, le=65535)
    engine: int = Field(4747, ge=1, le=65535)


class _TargetSettings(_Model):
    """The keys a target shares with ``defaults:``."""

    checks: list[Literal["repository", "proxy", "engine", "engine_session", "tenant"]] | None = None
    ports: Ports = Ports()
    port: int = Field(443, ge=1, le=65535)
    virtual_proxy: str = ""
    tls_verify: bool = True
    ca_file: OptionalFilePath = None
    interval: Duration = 60.0
    timeout: Duration = 10.0

    @field_validator("virtual_proxy")
    @classmethod
    def _prefix(cls, v: str) -> str:
        # Like Ctrl-Q: a leading/trailing "/" is dropped; "" and "/" mean no prefix.
        v = v.strip("/")
        if v and not re.fullmatch(r"[A-Za-z0-9_.~-]+", v):
            raise ValueError(f"invalid virtual proxy prefix {v!r}")
        return v


class Defaults(_TargetSettings):
    """Values merged into every target that does not set them."""


class Target(_TargetSettings):
    """One Qlik Sense site or Cloud tenant to probe."""

    name: str
    type: Literal["qseow", "cloud"]
    host: str
    auth: Auth

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
            raise ValueError(
                f"invalid target name {v!r}: use only letters, digits, '_', '.' and '-'"
            )
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not v or "://" in v or "/" in v or any(c.isspace() for c in v):
            raise ValueError(f"invalid host {v!r}: give a bare host name, e.g. sense.example.com")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Target:
        method = self.auth.method
        if method not in METHODS_BY_TYPE[self.type]:
            allowed = ", ".join(METHODS_BY_TYPE[self.type])
            raise ValueError(
                f"auth.method: {method} is not valid for type {self.type} (use {allowed})"
            )
        for i, check in enumerate(self.checks or ()):
            if check not in CHECKS_BY_METHOD[method]:
                allowed = ", ".join(CHECKS_BY_METHOD[method])
                raise ValueError(
                    f"checks[{i}]: {check} is not available with {method} auth (use {allowed})"
                )
        if self.timeout > self.interval:
            raise ValueError("timeout: must not be longer than interval")
        return self

    @property
    def enabled_checks(self) -> list[str]:
        """The checks to run: the configured ones, or the type's default."""
        return list(self.checks) if self.checks else list(DEFAULT_CHECKS[self.type])


class Config(_Model):
    """The whole file."""

    defaults: Defaults = Defaults()
    targets: list[Target] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        # An empty `defaults:` or `targets:` (e.g. every entry commented out) means none.
        for key in ("defaults", "targets"):
            if key in data and data[key] is None:
                del data[key]
        defaults = data.get("defaults") or {}
        targets = data.get("targets")
        if isinstance(defaults, dict) and isinstance(targets, list):
            forbidden = {"name", "type", "host", "auth"} & set(defaults)
            if forbidden:
                return data  # Defaults' own validation reports the unknown keys
            data = dict(data)
            data["targets"] = [{**defaults, **t} if isinstance(t, dict) else t for t in targets]
        return data

    @model_validator(mode="after")
    def _unique(self) -> Config:
        seen: dict[str, int] = {}
        for i, t in enumerate(self.targets):
            if t.name in seen:
                raise ValueError(
                    f"targets[{i}].name: duplicate target name {t.name!r}"
                    f" (also targets[{seen[t.name]}])"
                )
            seen[t.name] = i
        return self

    def target(self, name: str) -> Target | None:
        """The target called ``name``, if configured."""
        return next((t for t in self.targets if t.name == name), None)


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required",
}


# A validator that checks one key of a mapping names it first: "key: message", where key may
# be a relative path such as "auth.method" or "checks[1]".
_KEYED = re.compile(r"^([a-z][a-z_]*(?:\[\d+\]|\.[a-z][a-z_]*)*): (.*)$", re.S)
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# Keys that belong on each target, never in defaults:.
_TARGET_ONLY = ("name", "type", "host", "auth")


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("certificate", "jwt", "header", "apikey") or part.startswith("function-"):
            continue  # the discriminated union's tag adds nothing to the path
        elif not _PLAIN_KEY.match(part):
            out += f"[{part!r}]"  # a user's odd key, quoted so the line stays one line
        else:
            out += f".{part}" if out else part
    return out


def format_errors(exc: ValidationError) -> list[str]:
    """One line per error, ``path: message``, never containing an input value."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        msg = _MESSAGES.get(err["type"], err["msg"])
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        loc = tuple(err["loc"])
        if (
            err["type"] == "extra_forbidden"
            and loc[:1] == ("defaults",)
            and loc[1:] in [(k,) for k in _TARGET_ONLY]
        ):
            msg = "not allowed in defaults (set it on each target)"
        if err["type"] == "union_tag_invalid":
            msg = "unknown auth method: expected certificate, jwt, header or apikey"
        elif err["type"] == "union_tag_not_found":
            msg = "method is required (certificate, jwt, header or apikey)"
        path = _loc(loc)
        # Validators that check one key of a whole mapping say which key as "key: message".
        if m := _KEYED.match(msg):
            path, msg = f"{path}.{m.group(1)}" if path else m.group(1), m.group(2)
        lines.append(f"{path}: {msg}" if path else msg)
    return lines


def parse_config(data: object, *, base_dir: Path) -> Config:
    """Validate already-parsed YAML; raise :class:`ConfigError` listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise ConfigError([f"the top level must be a mapping with a targets list, not a {kind}"])
    try:
        return Config.model_validate(dict(data), context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None


# libyaml's safe loader when PyYAML has it (its wheels do): for a config of thousands of targets
# it is ten times faster, and its peak memory, which stays in the process as RSS, a fraction.
_SAFE_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path, what: str, error: type[ConfigError] = ConfigError) -> Any:
    """Read and parse a YAML file, turning every problem into one ``error`` line naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error([f"{path}: {what} not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error([f"{path}: cannot read {what}: {exc}"]) from None
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506  # a safe loader
    except yaml.YAMLError as exc:
        exc = _pure_python_error(text) or exc
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise error([f"{path}: invalid YAML{where}: {problem}"]) from None


def _pure_python_error(text: str) -> yaml.YAMLError | None:
    """PyYAML's own error for ``text``: libyaml words some errors differently, and a message
    should not depend on whether libyaml is installed."""
    if _SAFE_LOADER is yaml.SafeLoader:
        return None
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return exc
    return None


def load_config(path: Path) -> Config:
    """Read, parse and validate the YAML file at ``path``."""
    data = read_yaml(path, "config file")
    return parse_config(data, base_dir=path.resolve().parent)
