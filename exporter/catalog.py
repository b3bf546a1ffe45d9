"""The catalog: every check and every auth method, and what each one supports.

Everything else reads these two tables — config validation (which method on which target type,
which check with which method, the default checks), the port a check connects to, the runner
(which module runs a check, which module builds an auth method) and the README's tables — so
there is one place to change:

- **a check** is a module ``exporter/checks/<name>.py`` with ``async def run(ctx) -> CheckValues``
  plus one :class:`Check` entry in :data:`CHECKS` (and its metric families, if it adds any);
- **an auth method** is a module ``exporter/auth/<name>.py`` with ``Settings`` (its config
  model, ``method: Literal["<name>"]``) and ``Method`` (built from those settings) plus one
  :class:`AuthMethod` entry in :data:`METHODS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeVar

TARGET_TYPES: Final = ("qseow", "cloud")

# Where a check connects: a QSEoW service port from the target's ``ports:`` or, for checks
# that go through the front end (virtual proxies, Qlik Cloud), the target's ``port``.
PortKey = Literal["repository", "proxy", "engine", "front"]


@dataclass(frozen=True, slots=True)
class AuthMethod:
    """One ``auth.method``."""

    name: str
    target_types: tuple[str, ...]
    via_proxy: bool  # connects through a virtual proxy on the front-end port
    summary: str  # how it connects, for the docs
    front_end: bool = True  # every check connects to the front-end ``port`` (proxies, Cloud)

    @property
    def module(self) -> str:
        """The module that defines its ``Settings`` and ``Method``."""
        return f"exporter.auth.{self.name}"


@dataclass(frozen=True, slots=True)
class Check:
    """One check (the ``check`` label)."""

    name: str
    methods: tuple[str, ...]  # the auth methods it runs with
    port: PortKey  # with a method that is not via_proxy
    scope: Literal["node", "site"]  # per node of a site, or once per target
    summary: str  # what it calls, for the docs
    default: bool = False  # run when a target lists no checks

    @property
    def module(self) -> str:
        """The module that defines its ``run``."""
        return f"exporter.checks.{self.name}"


_Entry = TypeVar("_Entry", AuthMethod, Check)


def _table(*entries: _Entry) -> dict[str, _Entry]:
    return {entry.name: entry for entry in entries}


METHODS: Final = _table(
    AuthMethod(
        "certificate",
        ("qseow",),
        via_proxy=False,
        front_end=False,
        summary="mutual TLS straight to the services with the client certificate exported "
        "from the QMC, `X-Qlik-User`, xrfkey",
    ),
    AuthMethod(
        "jwt",
        ("qseow",),
        via_proxy=True,
        summary="`Authorization: Bearer` JWT through a JWT virtual proxy (static or minted)",
    ),
    AuthMethod(
        "header",
        ("qseow",),
        via_proxy=True,
        summary="a header naming the user through a header-auth virtual proxy",
    ),
    AuthMethod(
        "apikey",
        ("cloud",),
        via_proxy=False,
        summary="`Authorization: Bearer` Qlik Cloud API key",
    ),
    AuthMethod(
        "oauth",
        ("cloud",),
        via_proxy=False,
        summary="Qlik Cloud OAuth machine-to-machine: client credentials for a bearer token",
    ),
)

_QSEOW: Final = ("certificate", "jwt", "header")

CHECKS: Final = _table(
    Check(
        "repository",
        _QSEOW,
        port="repository",
        scope="node",
        default=True,
        summary="`GET /qrs/about`: the repository's build version and date",
    ),
    Check(
        "proxy",
        _QSEOW,
        port="proxy",
        scope="node",
        summary="`GET /qps/{vp}/session` (certificate) or `/{vp}/qps/user` whoami",
    ),
    Check(
        "engine",
        _QSEOW,
        port="engine",
        scope="node",
        summary="`GET /engine/healthcheck`: engine version, sessions, memory, CPU",
    ),
    Check(
        "engine_session",
        ("certificate", "apikey", "oauth"),
        port="engine",
        scope="node",
        summary="websocket `/app/engineData` (Cloud: a session app): `OnConnected`, then "
        "`EngineVersion`",
    ),
    Check(
        "tenant",
        ("apikey", "oauth"),
        port="front",
        scope="site",
        default=True,
        summary="`GET /api/v1/users/me` (and `/api/v1/tenants/me`) on Qlik Cloud",
    ),
    Check(
        "services",
        ("certificate",),
        port="repository",
        scope="site",
        summary="every service on every node of the site and its state",
    ),
    Check(
        "license",
        ("certificate", "apikey", "oauth"),
        port="repository",
        scope="site",
        summary="the licence: expired, its end, access allocations left",
    ),
)


# Reading a site's node list (``discover: true``) runs like a check — same runner, timeout,
# failure reasons — but is not one a user lists, and exports qlik_discovery_* instead of
# qlik_probe_* (exporter.samples).
DISCOVERY: Final = "discovery"
_DISCOVERY = Check(
    DISCOVERY,
    ("certificate",),
    port="repository",
    scope="site",
    summary="`GET /qrs/servernodeconfiguration/full`: the site's nodes and their services",
)


def check(name: str) -> Check:
    """The catalog entry of check ``name`` (discovery included); KeyError if there is none."""
    return _DISCOVERY if name == DISCOVERY else CHECKS[name]


def methods_for(target_type: str) -> tuple[str, ...]:
    """The auth methods a target of ``target_type`` can use, in catalog order."""
    return tuple(m.name for m in METHODS.values() if target_type in m.target_types)


def checks_for(method: str) -> tuple[str, ...]:
    """The checks an auth method can run, in catalog order."""
    return tuple(c.name for c in CHECKS.values() if method in c.methods)


def default_checks(method: str) -> list[str]:
    """The checks a target with this auth method runs when it lists none."""
    return [c.name for c in CHECKS.values() if c.default and method in c.methods]


def port_key(method: str, check_name: str) -> PortKey:
    """Which port ``check_name`` connects to with ``method``: the front end through a proxy and on
    Qlik Cloud, else the service's own."""
    return "front" if METHODS[method].front_end else check(check_name).port


def choice(names: tuple[str, ...] | list[str]) -> str:
    """``a, b or c``: names as an error message lists them."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
