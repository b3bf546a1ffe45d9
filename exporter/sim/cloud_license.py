"""The Qlik Cloud tenant licence: ``/api/v1/licenses/status`` and ``/api/v1/licenses/overview``.

Shapes from @qlik/api's ``licenses.d.ts`` (``LicenseStatus``, ``LicenseOverview``): ``status``
``Ok``/``Blacklisted``/``Expired``/``Missing``, ``valid`` an ISO 8601 interval
``<start>/<end>`` (dates, as in the type's example ``2018-01-01/2018-12-31``), and
``allotments[{name, usageClass, units, unitsUsed, overage?}]``. ``licenseKey`` and
``licenseNumber`` are licence material the exporter must not show.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("Ok", "Blacklisted", "Expired", "Missing")


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@dataclass(slots=True)
class Allotment:
    """One allotment of the overview (``professional``, ``analyzer``, ``analyzer_time``, …)."""

    name: str
    units: int
    units_used: int
    usage_class: str = "assigned"
    overage: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The allotment as the overview lists it."""
        out: dict[str, Any] = {
            "name": self.name,
            "usageClass": self.usage_class,
            "units": self.units,
            "unitsUsed": self.units_used,
        }
        if self.overage is not None:
            out["overage"] = self.overage
        return out


def _default_allotments() -> list[Allotment]:
    return [
        Allotment("professional", 50, 12),
        Allotment("analyzer", 200, 85),
        Allotment("analyzer_time", 1000, 240, usage_class="time", overage=100),
    ]


@dataclass(slots=True)
class CloudLicense:
    """The tenant's licence; switches change the answers at once."""

    valid_from: dt.date = field(default_factory=lambda: _today() - dt.timedelta(days=200))
    valid_to: dt.date = field(default_factory=lambda: _today() + dt.timedelta(days=165))
    status_override: str | None = None
    trial: bool = False
    product: str = "Qlik Cloud Analytics Premium"
    allotments: list[Allotment] = field(default_factory=_default_allotments)
    license_number: str = field(default_factory=lambda: f"9999{secrets.randbelow(10**12):012d}")
    license_key: str = field(default_factory=lambda: secrets.token_urlsafe(96))
    updated: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    # -- switches ---------------------------------------------------------------------------

    def set_end(self, valid_to: dt.date) -> None:
        """Set the last day of the licence."""
        self.valid_to = valid_to
        self.status_override = None
        self._touch()

    def expire(self) -> None:
        """End the licence yesterday: ``status`` becomes ``Expired``."""
        self.set_end(_today() - dt.timedelta(days=1))

    def set_status(self, status: str | None) -> None:
        """Force a status (``None``: computed from the dates)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        self.status_override = status
        self._touch()

    def set_allotment(
        self,
        name: str,
        *,
        units: int | None = None,
        units_used: int | None = None,
        usage_class: str | None = None,
        overage: int | None = None,
    ) -> Allotment:
        """Change (or add) one allotment."""
        found = next((a for a in self.allotments if a.name == name), None)
        if found is None:
            found = Allotment(name, 0, 0)
            self.allotments.append(found)
        for attr, value in (("units", units), ("units_used", units_used), ("overage", overage)):
            if value is not None:
                if not isinstance(value, int) or (value < 0 and attr != "overage"):
                    raise ValueError(f"{attr} must be a non-negative integer")
                setattr(found, attr, value)
        if usage_class is not None:
            found.usage_class = usage_class
        self._touch()
        return found

    def exhaust(self) -> None:
        """Use every unit of every allotment."""
        for a in self.allotments:
            a.units_used = a.units
        self._touch()

    def _touch(self) -> None:
        self.updated = dt.datetime.now(dt.UTC)

    # -- answers ----------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """``Ok`` while today is within the dates, else ``Expired`` (unless forced)."""
        if self.status_override is not None:
            return self.status_override
        return "Ok" if self.valid_from <= _today() <= self.valid_to else "Expired"

    @property
    def valid(self) -> str:
        """The ISO 8601 interval of the licence's validity."""
        return f"{self.valid_from.isoformat()}/{self.valid_to.isoformat()}"

    @property
    def material(self) -> list[str]:
        """Licence material in the answers (to search outputs for)."""
        return [self.license_key, self.license_number]

    def status_json(self) -> dict[str, Any]:
        """``GET /api/v1/licenses/status``."""
        return {
            "type": "Signed",
            "trial": self.trial,
            "valid": self.valid,
            "origin": "Internal",
            "status": self.status,
            "product": self.product,
            "deactivated": False,
            "extensionStatus": "Unavailable",
        }

    def overview_json(self) -> dict[str, Any]:
        """``GET /api/v1/licenses/overview``."""
        stamp = self.updated.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return {
            "licenseNumber": self.license_number,
            "licenseKey": self.license_key,
            "secondaryNumber": "0",
            "product": self.product,
            "status": self.status,
            "origin": "Internal",
            "trial": self.trial,
            "valid": self.valid,
            "updated": stamp,
            "changeTime": stamp,
            "version": "A1B2-C3D4-E5F6-G7H8-J9K0",
            "allotments": [a.to_json() for a in self.allotments],
            "parameters": [
                {"name": "qlikAlerting", "valid": "./.", "values": {"saas_alerting": "FULL"}}
            ],
        }

    def admin_json(self) -> dict[str, Any]:
        """What the admin endpoint shows (no licence material)."""
        return {**self.status_json(), "allotments": [a.to_json() for a in self.allotments]}
