"""Faults on demand, per service: what a flaky or misconfigured Qlik site does to a client.

A fault is set for one service (``repository``, ``proxy``, ``engine``, ``frontend``, ``cloud``)
and stays until cleared, or for ``times`` uses. The simulator's own :class:`Faults` act on every
node of a site; each node has its own set too (for its four services), consulted first, so one
node can misbehave alone (:class:`FaultChain`). Where each kind acts:

- TLS (``cert_*``): in the server's SNI callback, per connection, without restarting listeners.
- HTTP (``delay``, ``hang``, ``reset``, ``status``, ``malformed_json``, ``wrong_shape``,
  ``oversized``): in a middleware in front of every handler of the service.
- Engine websocket (``engine_fatal``, ``engine_no_connected``) and whoami (``wrong_user``): in
  the handlers that own those exchanges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SERVICES = ("repository", "proxy", "engine", "frontend", "cloud")
NODE_SERVICES = ("repository", "proxy", "engine", "frontend")
"""The listeners every node of a site has (the Cloud tenant is not part of a node)."""


class FaultKind(StrEnum):
    """Every fault the simulator can inject."""

    DELAY = "delay"
    HANG = "hang"
    RESET = "reset"
    STATUS = "status"
    MALFORMED_JSON = "malformed_json"
    WRONG_SHAPE = "wrong_shape"
    OVERSIZED = "oversized"
    CERT_WRONG_HOST = "cert_wrong_host"
    CERT_EXPIRED = "cert_expired"
    CERT_UNTRUSTED = "cert_untrusted"
    CERT_NO_SAN = "cert_no_san"
    ENGINE_FATAL = "engine_fatal"
    ENGINE_NO_CONNECTED = "engine_no_connected"
    WRONG_USER = "wrong_user"


TLS_KINDS = (
    FaultKind.CERT_WRONG_HOST,
    FaultKind.CERT_EXPIRED,
    FaultKind.CERT_UNTRUSTED,
    FaultKind.CERT_NO_SAN,
)
BODY_KINDS = (FaultKind.MALFORMED_JSON, FaultKind.WRONG_SHAPE, FaultKind.OVERSIZED)
# Order matters: when several are set, the earlier one wins.
HTTP_TERMINAL_KINDS = (FaultKind.HANG, FaultKind.RESET, FaultKind.STATUS, *BODY_KINDS)


@dataclass(frozen=True, slots=True)
class Param:
    """One fault parameter: its type, and its default (``None`` = optional, no default)."""

    type: type
    default: Any = None
    required: bool = False


# What each kind accepts; unknown parameters are rejected so a typo in a benchmark's JSON fails
# loudly instead of silently injecting a default.
PARAMS: dict[FaultKind, dict[str, Param]] = {
    FaultKind.DELAY: {"seconds": Param(float, required=True)},
    FaultKind.HANG: {},
    FaultKind.RESET: {},
    FaultKind.STATUS: {
        "status": Param(int, required=True),
        "retry_after": Param(int),
        "body": Param(str),
    },
    FaultKind.MALFORMED_JSON: {},
    FaultKind.WRONG_SHAPE: {"body": Param(object)},
    FaultKind.OVERSIZED: {"size_mb": Param(float, default=16.0)},
    FaultKind.CERT_WRONG_HOST: {},
    FaultKind.CERT_EXPIRED: {},
    FaultKind.CERT_UNTRUSTED: {},
    FaultKind.CERT_NO_SAN: {},
    FaultKind.ENGINE_FATAL: {"method": Param(str, default="OnLicenseAccessDenied")},
    FaultKind.ENGINE_NO_CONNECTED: {},
    FaultKind.WRONG_USER: {
        "user_directory": Param(str, default="OTHER"),
        "user_id": Param(str, default="someone_else"),
    },
}


@dataclass(slots=True)
class Fault:
    """An active fault; ``remaining`` counts uses left (``None`` = until cleared)."""

    kind: FaultKind
    params: dict[str, Any] = field(default_factory=dict)
    remaining: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The fault as the admin endpoint shows it."""
        return {"kind": self.kind.value, "remaining": self.remaining, **self.params}


def _coerce(kind: FaultKind, params: dict[str, Any]) -> dict[str, Any]:
    spec = PARAMS[kind]
    unknown = set(params) - set(spec)
    if unknown:
        raise ValueError(f"fault {kind.value!r} takes no parameter(s) {sorted(unknown)}")
    out: dict[str, Any] = {}
    for name, p in spec.items():
        if name in params and params[name] is not None:
            value = params[name]
            out[name] = value if p.type is object else p.type(value)
        elif p.required:
            raise ValueError(f"fault {kind.value!r} needs parameter {name!r}")
        elif p.default is not None:
            out[name] = p.default
    if kind is FaultKind.STATUS and not 100 <= out["status"] <= 599:
        raise ValueError(f"status must be 100..599, got {out['status']}")
    return out


class Faults:
    """The active faults of every service."""

    def __init__(self, services: tuple[str, ...] = SERVICES) -> None:
        self.services = services
        self._active: dict[str, dict[FaultKind, Fault]] = {s: {} for s in services}

    def set(
        self, service: str, kind: str | FaultKind, *, times: int | None = None, **params: Any
    ) -> Fault:
        """Activate a fault (replacing one of the same kind); ``times`` limits its uses."""
        if service not in self._active:
            raise ValueError(f"unknown service {service!r}; one of {', '.join(self.services)}")
        try:
            fkind = FaultKind(kind)
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault kind {kind!r}; one of {known}") from None
        if times is not None and times < 1:
            raise ValueError("times must be >= 1")
        fault = Fault(fkind, _coerce(fkind, params), times)
        self._active[service][fkind] = fault
        return fault

    def clear(self, service: str | None = None, kind: str | FaultKind | None = None) -> None:
        """Clear all faults, one service's, or one kind of one service."""
        for name, faults in self._active.items():
            if service is not None and name != service:
                continue
            if kind is None:
                faults.clear()
            else:
                faults.pop(FaultKind(kind), None)

    def peek(self, service: str, kind: FaultKind) -> Fault | None:
        """The active fault of that kind, without using it up."""
        return self._active.get(service, {}).get(kind)

    def take(self, service: str, kinds: tuple[FaultKind, ...]) -> Fault | None:
        """Use the first active fault among ``kinds`` (in that order), counting down ``times``."""
        active = self._active.get(service, {})
        for kind in kinds:
            fault = active.get(kind)
            if fault is None:
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del active[kind]
            return fault
        return None

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every active fault, by service."""
        return {s: [f.to_json() for f in faults.values()] for s, faults in self._active.items()}


class FaultChain:
    """Several fault sets read as one: a node's own faults first, then the site-wide ones."""

    def __init__(self, *sources: Faults) -> None:
        self.sources = sources

    def peek(self, service: str, kind: FaultKind) -> Fault | None:
        """The first active fault of that kind, without using it up."""
        return next((f for s in self.sources if (f := s.peek(service, kind))), None)

    def take(self, service: str, kinds: tuple[FaultKind, ...]) -> Fault | None:
        """Use the first active fault among ``kinds`` in the first set that has one."""
        for source in self.sources:
            fault = source.take(service, kinds)
            if fault is not None:
                return fault
        return None
