"""The site licence of a simulated QSEoW site: ``/qrs/license`` and its access type overview.

Three variants (qlik-api-facts.md §9, docs/fidelity.md):

- ``signed_key``: a signed licence key (a JWT in ``key``) whose ``keyDetails`` text carries
  ``Valid To: <date>``, in the format of Qlik's own example (``2024-03-16 12:00:00 AM``) or, by
  ``key_date_format="iso"``, as Butler's fixture has it (``2099-12-31T00:00:00Z``);
- ``lef``: serial and control number with a License Enabler File whose ``TIMELIMIT;;;<date>``
  line is the expiry (four ``;``-separated columns: attribute, value, valid from, valid to);
- ``perpetual``: a LEF without a time limit — neither ``Valid To`` nor ``TIMELIMIT``.

Serial, control number, key and LEF are licence material: the exporter must never show them.
They are random per simulator so a test can search any output for them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from exporter.sim.site import qrs_time

Variant = Literal["signed_key", "lef", "perpetual"]
VARIANTS: tuple[Variant, ...] = ("signed_key", "lef", "perpetual")
ACCESS_TYPES = ("professional", "analyzer")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@dataclass(slots=True)
class Allocation:
    """One user-based access type of ``/qrs/license/accesstypeoverview``."""

    total: int
    allocated: int
    used: int
    quarantined: int = 0
    enabled: bool = True

    @property
    def available(self) -> int:
        """Allocations not assigned and not in quarantine."""
        return max(0, self.total - self.allocated - self.quarantined)

    def to_json(self) -> dict[str, Any]:
        """``AccessTypeOverviewDetailsCondensed`` as help.qlik.com documents it."""
        return {
            "enabled": self.enabled,
            "total": self.total,
            "allocated": self.allocated,
            "used": self.used,
            "quarantined": self.quarantined,
            "excess": max(0, self.allocated - self.total),
            "available": self.available,
            "schemaPath": "AccessTypeOverview.Details",
        }


def _default_end() -> dt.datetime:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=365)


@dataclass(slots=True)
class SiteLicense:
    """The site's licence; change it with the methods, the QRS answers follow at once."""

    variant: Variant = "signed_key"
    valid_to: dt.datetime | None = field(default_factory=_default_end)
    key_date_format: Literal["qlik", "iso"] = "qlik"
    expired_override: bool | None = None
    professional: Allocation = field(default_factory=lambda: Allocation(100, 40, 31))
    analyzer: Allocation = field(default_factory=lambda: Allocation(400, 220, 180))
    analyzer_time_minutes: int = 0
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    serial: str = field(
        default_factory=lambda: " ".join(f"{secrets.randbelow(10000):04d}" for _ in range(4))
    )
    control: str = field(default_factory=lambda: f"{secrets.randbelow(100000):05d}")
    signature: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    updated: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    # -- switches ---------------------------------------------------------------------------

    def set_variant(self, variant: str) -> None:
        """Switch between ``signed_key``, ``lef`` and ``perpetual``."""
        if variant not in VARIANTS:
            raise ValueError(f"licence variant must be one of {', '.join(VARIANTS)}")
        self.variant = variant
        if variant != "perpetual" and self.valid_to is None:
            self.valid_to = _default_end()
        self._touch()

    def set_end(self, valid_to: dt.datetime | dt.date | None) -> None:
        """Set the end date (a date means 00:00 UTC of that day); ``None``: does not expire."""
        if isinstance(valid_to, dt.date) and not isinstance(valid_to, dt.datetime):
            valid_to = dt.datetime.combine(valid_to, dt.time(), dt.UTC)
        if valid_to is not None and valid_to.tzinfo is None:
            valid_to = valid_to.replace(tzinfo=dt.UTC)
        self.valid_to = valid_to
        self.expired_override = None
        self._touch()

    def expire(self) -> None:
        """End the licence yesterday: ``isExpired`` becomes true."""
        yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        if self.variant == "perpetual":
            self.variant = "lef"
        self.set_end(yesterday.date())

    def set_access(self, access_type: str, **values: int | bool) -> Allocation:
        """Change ``total``/``allocated``/``used``/``quarantined``/``enabled`` of one type."""
        if access_type not in ACCESS_TYPES:
            raise ValueError(f"access type must be one of {', '.join(ACCESS_TYPES)}")
        allocation: Allocation = getattr(self, access_type)
        for name, value in values.items():
            if name not in ("total", "allocated", "used", "quarantined", "enabled"):
                raise ValueError(f"unknown allocation field {name!r}")
            if name != "enabled" and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer")
            setattr(allocation, name, value)
        self._touch()
        return allocation

    def exhaust(self, access_types: tuple[str, ...] = ACCESS_TYPES) -> None:
        """Allocate everything: ``available`` becomes 0 for each type."""
        for name in access_types:
            allocation: Allocation = getattr(self, name)
            self.set_access(name, allocated=allocation.total - allocation.quarantined)

    def _touch(self) -> None:
        self.updated = dt.datetime.now(dt.UTC)

    # -- what the QRS answers ---------------------------------------------------------------

    @property
    def expires(self) -> dt.datetime | None:
        """When the licence ends (``None`` for a perpetual one)."""
        return None if self.variant == "perpetual" else self.valid_to

    @property
    def is_expired(self) -> bool:
        """What ``isExpired`` says."""
        if self.expired_override is not None:
            return self.expired_override
        end = self.expires
        return end is not None and end <= dt.datetime.now(dt.UTC)

    @property
    def material(self) -> list[str]:
        """Every piece of licence material in the answer (to search outputs for)."""
        material = [self.serial, self.serial.replace(" ", ""), self.control]
        if self.variant == "signed_key":
            material.append(self.key)
        else:
            material.append(self.lef)
        return material

    @property
    def key(self) -> str:
        """A signed licence key: a JWT-shaped string naming the licence number."""
        header = _b64({"alg": "RS512", "kid": self.id, "typ": "JWT"})
        payload = _b64({"jti": self.id, "license": self.serial.replace(" ", "")})
        return f"{header}.{payload}.{self.signature}"

    def _valid_to_text(self) -> str:
        assert self.valid_to is not None
        if self.key_date_format == "iso":
            return self.valid_to.strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.valid_to.strftime("%Y-%m-%d %I:%M:%S %p")

    def key_details(self) -> str:
        """``keyDetails``: ``\\n``-separated lines, one of them ``Valid To: <date>``."""
        lines = [
            "isBlackListed: False",
            f"License Number: {self.serial}",
            "Valid From: 0001-01-01 12:00:00 AM",
        ]
        if self.valid_to is not None:
            lines.append(f"Valid To: {self._valid_to_text()}")
        lines.append(
            f"Allotment professional:{self.professional.total}; "
            f"Allotment analyzer:{self.analyzer.total}; "
            f"Allotment analyzer_time:{self.analyzer_time_minutes}"
        )
        return "\n".join(lines)

    @property
    def lef(self) -> str:
        """The License Enabler File text; ``TIMELIMIT;;;<date>`` unless perpetual."""
        lines = [
            "Qlik Sense Enterprise",
            "PRODUCTLEVEL;50;;2020-12-31",
            f"PROFESSIONAL;{self.professional.total};;",
            f"ANALYZER;{self.analyzer.total};;",
        ]
        if self.variant == "lef" and self.valid_to is not None:
            lines.append(f"TIMELIMIT;;;{self.valid_to.strftime('%Y-%m-%d')}")
        lines += [f"SERIAL;{self.serial.replace(' ', '')};;", f"CHECK;{self.control};;"]
        return "\n".join(lines) + "\n"

    def qrs_json(self) -> dict[str, Any]:
        """``GET /qrs/license``: the QRS ``License`` model (help.qlik.com; Butler's reading)."""
        signed = self.variant == "signed_key"
        expired = self.is_expired
        return {
            "id": self.id,
            "createdDate": "2021-09-20T08:02:11.302Z",
            "modifiedDate": qrs_time(self.updated),
            "modifiedByUserName": "INTERNAL\\sa_repository",
            "lef": "" if signed else self.lef,
            "serial": self.serial if signed else self.serial.replace(" ", ""),
            "check": "" if signed else self.control,
            "key": self.key if signed else "",
            "keyDetails": self.key_details() if signed else "",
            "name": "Monitor Team",
            "organization": "Example Org",
            "product": 0,
            "numberOfCores": -1,
            "isExpired": expired,
            "expiredReason": "The license has expired." if expired else "",
            "isBlacklisted": False,
            "isInvalid": False,
            "isSubscription": signed,
            "isCloudServices": False,
            "isElastic": False,
            "updated": qrs_time(self.updated),
            "privileges": None,
            "schemaPath": "License",
        }

    def access_overview_json(self) -> dict[str, Any]:
        """``GET /qrs/license/accesstypeoverview`` of a user-based licence."""
        return {
            "totalTokens": 0,
            "availableTokens": 0,
            "tokensEnabled": False,
            "userAccess": {
                "enabled": False,
                "tokenCost": 1.0,
                "allocatedTokens": 0,
                "usedTokens": 0,
                "quarantinedTokens": 0,
                "schemaPath": "AccessTypeOverview.UserAccessDetails",
            },
            "loginAccess": {
                "enabled": False,
                "tokenCost": 0.1,
                "allocatedTokens": 0,
                "usedTokens": 0,
                "unavailableTokens": 0,
                "schemaPath": "AccessTypeOverview.LoginAccessDetails",
            },
            "professionalAccess": self.professional.to_json(),
            "analyzerAccess": self.analyzer.to_json(),
            "analyzerTimeAccess": {
                "enabled": self.analyzer_time_minutes > 0,
                "allocatedMinutes": self.analyzer_time_minutes,
                "usedMinutes": 0,
                "unavailableMinutes": 0,
                "schemaPath": "AccessTypeOverview.AnalyzerTimeAccessDetails",
            },
            "schemaPath": "AccessTypeOverview",
        }

    def admin_json(self) -> dict[str, Any]:
        """What the admin endpoint shows (no licence material)."""
        end = self.expires
        return {
            "variant": self.variant,
            "validTo": end.isoformat() if end else None,
            "isExpired": self.is_expired,
            "professional": self.professional.to_json(),
            "analyzer": self.analyzer.to_json(),
        }
