"""The YAML configuration: pydantic models, validated as a whole at load.

Every error is reported as one line that names its path, e.g.
``targets[1].auth.key_file: file not found: certs/client_key.pem``. Relative paths resolve
against the config file's folder. Secrets are held as :class:`pydantic.SecretStr` and can come
inline, from ``<name>_file`` or from ``<name>_env``. Which auth methods and checks exist, and
which go together, comes from :mod:`exporter.catalog`; each auth method's own keys are the
``Settings`` model in its module under :mod:`exporter.auth`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from exporter import catalog
from exporter.fields import AuthSettings, Duration, Model, OptionalFilePath, parse_duration

__all__ = [
    "Config",
    "ConfigError",
    "Defaults",
    "Target",
    "format_errors",
    "load_config",
    "parse_config",
    "parse_duration",
    "read_yaml",
]


class ConfigError(Exception):
    """The config file is invalid; ``errors`` holds one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _auth_models() -> tuple[type[AuthSettings], ...]:
    models = []
    for spec in catalog.METHODS.values():
        model = importlib.import_module(spec.module).Settings
        assert issubclass(model, AuthSettings), spec.module
        models.append(model)
    return tuple(models)


# The ``auth:`` mapping: one of the catalog's methods' Settings, chosen by ``method``, and a
# ``checks:`` entry: one of the catalog's checks. Built from the catalog at import; mypy sees
# the common base types.
if TYPE_CHECKING:
    AnyAuth = AuthSettings
    CheckName = str
else:
    AnyAuth = Annotated[Union[_auth_models()], Field(discriminator="method")]  # noqa: UP007
    CheckName = Literal[tuple(catalog.CHECKS)]


MIN_INTERVAL: Final = 1.0
MAX_INTERVAL: Final = 7 * 24 * 3600.0


class Ports(Model):
    """The QSEoW service ports for certificate auth."""

    repository: int = Field(4242, ge=1, le=65535)
    proxy: int = Field(4243, ge=1, le=65535)
    engine: int = Field(4747, ge=1, le=65535)


class _TargetSettings(Model):
    """The keys a target shares with ``defaults:``."""

    checks: list[CheckName] | None = None
    ports: Ports = Ports()
    port: int = Field(443, ge=1, le=65535)
    virtual_proxy: str = ""
    tls_verify: bool = True
    ca_file: OptionalFilePath = None
    interval: Duration = 60.0
    timeout: Duration = 10.0
    discovery_interval: Duration = 300.0

    @field_validator("interval", "discovery_interval")
    @classmethod
    def _schedulable(cls, v: float) -> float:
        # Below a second a probe is a load test; beyond a week nobody is watching.
        if not MIN_INTERVAL <= v <= MAX_INTERVAL:
            raise ValueError("must be between 1s and 168h")
        return v

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
    auth: AnyAuth
    discover: bool = False  # read the site's nodes from the repository and probe each one

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
        if not v or "://" in v or "/" in v or not v.isprintable() or any(c.isspace() for c in v):
            raise ValueError(f"invalid host {v!r}: give a bare host name, e.g. sense.example.com")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Target:
        method = self.auth.method
        if method not in catalog.methods_for(self.type):
            allowed = ", ".join(catalog.methods_for(self.type))
            raise ValueError(
                f"auth.method: {method} is not valid for type {self.type} (use {allowed})"
            )
        for i, check in enumerate(self.checks or ()):
            if check in (self.checks or [])[:i]:
                raise ValueError(f"checks[{i}]: {check} is listed twice")
            if check not in catalog.checks_for(method):
                allowed = ", ".join(catalog.checks_for(method))
                raise ValueError(
                    f"checks[{i}]: {check} is not available with {method} auth (use {allowed})"
                )
        if self.timeout > self.interval:
            raise ValueError("timeout: must not be longer than interval")
        if self.discover and method != "certificate":
            raise ValueError(
                f"discover: needs auth.method certificate (the repository's node list is read "
                f"with the client certificate), not {method}"
            )
        return self

    @property
    def enabled_checks(self) -> list[str]:
        """The checks to run: the configured ones, or the auth method's default."""
        return list(self.checks) if self.checks else catalog.default_checks(self.auth.method)

    @property
    def via_proxy(self) -> bool:
        """Whether the checks go through a virtual proxy on the front-end port."""
        return catalog.METHODS[self.auth.method].via_proxy

    def port_for(self, check: str) -> int:
        """The port ``check`` connects to: the front end through a virtual proxy and on
        Cloud, else the service's own port."""
        key = catalog.port_key(self.auth.method, check)
        return self.port if key == "front" else int(getattr(self.ports, key))


class Config(Model):
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


_METHOD_CHOICE: Final = catalog.choice(tuple(catalog.METHODS))
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
        elif part in catalog.METHODS or part.startswith("function-"):
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
            msg = f"unknown auth method: expected {_METHOD_CHOICE}"
        elif err["type"] == "union_tag_not_found":
            msg = f"method is required ({_METHOD_CHOICE})"
        path = _loc(loc)
        # Validators that check one key of a whole mapping say which key as "key: message".
        if m := _KEYED.match(msg):
            path, msg = f"{path}.{m.group(1)}" if path else m.group(1), m.group(2)
        lines.append(f"{path}: {msg}" if path else msg)
    return lines


def parse_config(data: object, *, base_dir: Path, missing_files: list[str] | None = None) -> Config:
    """Validate already-parsed YAML; raise :class:`ConfigError` listing every problem.

    With ``missing_files`` (the daemon's load), a credential file that does not exist (yet) is
    listed there instead of rejecting the config: only that target fails, as
    ``credential_invalid``, until the file appears.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise ConfigError([f"the top level must be a mapping with a targets list, not a {kind}"])
    context: dict[str, Any] = {"base_dir": base_dir}
    if missing_files is not None:
        context["missing"] = missing_files
    try:
        return Config.model_validate(dict(data), context=context)
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
    if (deep := _too_deep(text)) is not None:
        raise error([f"{path}: invalid YAML at line {deep}: nested more than {MAX_DEPTH} deep"])
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506  # a safe loader
    except yaml.YAMLError as exc:
        exc = _pure_python_error(text) or exc
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise error([f"{path}: invalid YAML{where}: {problem}"]) from None


MAX_DEPTH: Final = 64
# What opens and closes flow collections, and what hides them: quotes, comments, line ends.
_FLOW_TOKENS: Final = re.compile(r"""[\[\]{}\n#]|"(?:[^"\\\n]|\\.)*"|'(?:[^'\n]|'')*'""")


def _too_deep(text: str) -> int | None:
    """The line where ``text`` nests collections more than MAX_DEPTH deep, if it does.

    YAML parsers recurse (or go quadratic) on deep nesting, so a hostile or broken file could
    crash the process or stall it for minutes; no real config nests beyond a handful.
    """
    depth, line, comment = 0, 1, False
    for m in _FLOW_TOKENS.finditer(text):
        mark = m.group()
        if mark == "\n":
            line, comment = line + 1, False
        elif comment or mark[0] in "\"'":
            continue
        elif mark == "#":
            comment = True
        elif mark in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        else:
            depth = max(0, depth - 1)
    for number, row in enumerate(text.splitlines(), 1):
        if len(row) - len(row.lstrip(" ")) > 2 * MAX_DEPTH:  # block nesting by indentation
            return number
    return None


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


def load_config(path: Path, *, missing_files: list[str] | None = None) -> Config:
    """Read, parse and validate the YAML file at ``path`` (see :func:`parse_config`)."""
    data = read_yaml(path, "config file")
    return parse_config(data, base_dir=path.resolve().parent, missing_files=missing_files)
