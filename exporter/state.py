"""What the daemon shows of itself: its status, and the view the HTTP endpoints read it through.

The endpoints are written against :class:`DaemonView` rather than the daemon, so they can be
tested against a double and the web layer never imports the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from exporter.config import Config
from exporter.results import ProbeResult, ResultStore


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """The daemon's own state, for self-metrics, ``/-/ready`` and the status page."""

    reload_ok: bool
    last_reload_success_ts: float | None
    targets: int
    started: float
    ready: bool
    scheduler_jobs: int | None = None


class DaemonView(Protocol):
    """What the endpoints need from the daemon."""

    @property
    def store(self) -> ResultStore:
        """The latest results (read from a worker thread while rendering ``/metrics``)."""

    @property
    def config(self) -> Config:
        """The config currently running."""

    @property
    def status(self) -> DaemonStatus:
        """Reload outcome, target count, start time and readiness."""

    async def reload(self) -> list[str]:
        """Re-read the config: ``[]`` on success, else one error line each (old config stays)."""

    async def probe(self, target: str, check: str | None) -> list[ProbeResult]:
        """Run ``target`` (one check, or all enabled ones) now; never raises for probe failures.

        Raises :class:`KeyError` or :class:`ValueError` for an unknown target or check.
        """
