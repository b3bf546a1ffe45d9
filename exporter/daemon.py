"""The daemon: config → scheduler → runner → result store, and reloads.

One APScheduler 3.x job per (target, check) on the running event loop, each with
``max_instances=1`` and coalescing, so a slow target never stacks runs or delays another, and
each starting at a stable offset within its interval so that targets do not fire together.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from exporter.config import Config, ConfigError, load_config
from exporter.results import ProbeResult, ResultStore
from exporter.runner import Prober, run_probe
from exporter.state import DaemonStatus
from exporter.transport import Resolver

log = logging.getLogger("exporter")

# The first run of every job lands within this many seconds of start-up (spread by name), so
# /metrics has real values quickly; later runs keep that offset within their interval.
FIRST_RUN_SPREAD = 5.0


def stable_fraction(*parts: str) -> float:
    """A number in [0, 1) that depends only on ``parts`` (not on Python's hash seed)."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_shard(name: str, shard: tuple[int, int] | None) -> bool:
    """Whether target ``name`` belongs to shard ``(index, count)``; all do without sharding."""
    if shard is None:
        return True
    index, count = shard
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count == index


class Daemon:
    """Owns the config, the scheduler, the targets' probers and the result store."""

    def __init__(
        self,
        config_file: Path,
        *,
        shard: tuple[int, int] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.config_file = config_file
        self.shard = shard
        self.resolver = resolver
        self.store = ResultStore()
        self._config = Config()
        self._probers: dict[str, Prober] = {}
        self._backoff: dict[str, float] = {}  # target -> no run before (unix s), after a 429
        self._scheduler: AsyncIOScheduler | None = None
        self._reload_ok = True
        self._last_reload_success: float | None = None
        self._started = time.time()
        self._reload_lock = asyncio.Lock()

    # -- the DaemonView protocol of exporter.state (what the endpoints need) ----------------

    @property
    def config(self) -> Config:
        """The config in force."""
        return self._config

    @property
    def status(self) -> DaemonStatus:
        """Self-metrics and readiness."""
        scheduler = self._scheduler
        running = scheduler is not None and scheduler.running
        return DaemonStatus(
            reload_ok=self._reload_ok,
            last_reload_success_ts=self._last_reload_success,
            targets=len(self._probers),
            started=self._started,
            ready=running and self._last_reload_success is not None,
            scheduler_jobs=len(scheduler.get_jobs()) if running and scheduler else None,
        )

    async def reload(self) -> list[str]:
        """Load the config file again; on any error keep the old config and say why."""
        async with self._reload_lock:
            try:
                config = await asyncio.to_thread(self.read_config)
            except ConfigError as exc:
                self._reload_ok = False
                for line in exc.errors:
                    log.error("config rejected, keeping the previous one", extra={"error": line})
                return exc.errors
            try:
                self.apply(config)
            except Exception as exc:  # the new config could not be scheduled: keep the old
                self._reload_ok = False
                error = f"cannot schedule the new config: {exc.__class__.__name__}: {exc}"
                log.error("config rejected, keeping the previous one", extra={"error": error})
                return [error]
            return []

    def read_config(self) -> Config:
        """Load the config file as the daemon does: structural errors reject it (ConfigError);
        a missing credential file only fails its target, as ``credential_invalid``."""
        missing: list[str] = []
        config = load_config(self.config_file, missing_files=missing)
        for path in dict.fromkeys(missing):
            log.warning(
                "file not found; its target fails as credential_invalid until it appears",
                extra={"file": path},
            )
        return config

    async def probe(self, target: str, check: str | None) -> list[ProbeResult]:
        """Run one target's checks now (``/probe``), without touching the scheduled results."""
        prober = self._probers.get(target)
        if prober is None:
            t = self._config.target(target)
            if t is None:
                raise KeyError(f"unknown target {target!r}")
            prober = Prober.build(t)  # configured but in another shard
        checks = prober.target.enabled_checks
        if check is not None:
            if check not in checks:
                raise ValueError(
                    f"check {check!r} is not enabled for target {target!r} "
                    f"(enabled: {', '.join(checks)})"
                )
            checks = [check]
        results = await asyncio.gather(
            *(run_probe(prober, c, resolver=self.resolver) for c in checks)
        )
        for result in results:
            self._note_backoff(result)
        return list(results)

    def jobs(self) -> list[tuple[str, str]]:
        """The (target, check) pairs this daemon runs on schedule, in config order."""
        return [(name, c) for name, p in self._probers.items() for c in p.target.enabled_checks]

    @property
    def scheduler(self) -> AsyncIOScheduler | None:
        """The running scheduler (for listeners), or None before :meth:`start`."""
        return self._scheduler

    async def run_job(self, target: str, check: str) -> ProbeResult | None:
        """One scheduled run of ``check`` on ``target``, now: counted, run and recorded.

        Skipped (None) while the target is rate limited or no longer configured.
        """
        prober = self._probers.get(target)
        if prober is None:
            return None
        until = self._backoff.get(target, 0.0)
        if time.time() < until:
            log.info(
                "skipping run while rate limited",
                extra={"target": target, "check": check, "until": round(until)},
            )
            return None
        self.store.record_start(target, check)
        result = await run_probe(prober, check, resolver=self.resolver)
        self._note_backoff(result)
        if self._probers.get(target) is prober:  # not replaced by a reload meanwhile
            self.store.record(result)
        return result

    def _note_backoff(self, result: ProbeResult) -> None:
        if result.retry_after:
            self._backoff[result.target] = time.time() + result.retry_after

    # -- life cycle ----------------------------------------------------------------------

    def start(self, config: Config) -> None:
        """Start the scheduler on the running loop with ``config``."""
        self._scheduler = AsyncIOScheduler(
            event_loop=asyncio.get_running_loop(),
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._scheduler.start()
        self.apply(config)

    async def stop(self) -> None:
        """Stop scheduling; running probes are cancelled."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        await asyncio.sleep(0)

    def apply(self, config: Config) -> None:
        """Make ``config`` the running one: add, replace and remove jobs as needed.

        Atomic: every new job is prepared before any job changes, so a config that cannot be
        scheduled raises and leaves the running jobs and config as they were.
        """
        targets = [t for t in config.targets if in_shard(t.name, self.shard)]
        old = self._probers
        new: dict[str, Prober] = {}
        for t in targets:
            prev = old.get(t.name)
            new[t.name] = prev if prev is not None and prev.target == t else Prober.build(t)
        if self._scheduler is not None:
            self._swap_jobs(self._scheduler, new)
        self._probers = new
        self._backoff = {k: v for k, v in self._backoff.items() if k in new}
        self._config = config
        self.store.retain((t.name, c) for t in targets for c in t.enabled_checks)
        self._reload_ok = True
        self._last_reload_success = time.time()
        log.info(
            "config loaded",
            extra={
                "targets": len(new),
                "configured": len(config.targets),
                "file": str(self.config_file),
            },
        )

    def _swap_jobs(self, scheduler: AsyncIOScheduler, new: dict[str, Prober]) -> None:
        # A job runs (prober, check); an unchanged target keeps its prober object, so a job
        # whose prober is no longer the target's current one belongs to a changed or removed
        # target.
        stale = [
            job
            for job in scheduler.get_jobs()
            if new.get(job.args[0].target.name) is not job.args[0]
        ]
        kept = {job.id for job in scheduler.get_jobs()} - {job.id for job in stale}
        first_spread = max(
            FIRST_RUN_SPREAD, sum(len(p.target.enabled_checks) for p in new.values()) / 200
        )
        now = datetime.now(UTC)
        added = [
            _job_spec(prober, check, first_spread, now)
            for prober in new.values()
            for check in prober.target.enabled_checks
            if _job_id(prober.target.name, check) not in kept
        ]
        for job in stale:
            job.remove()
        for spec in added:
            scheduler.add_job(self._scheduled, **spec)

    async def _scheduled(self, prober: Prober, check: str) -> None:
        if self._probers.get(prober.target.name) is prober:  # else replaced while queued
            await self.run_job(prober.target.name, check)


def _job_spec(prober: Prober, check: str, first_spread: float, now: datetime) -> dict[str, object]:
    """The scheduler job for ``check`` of ``prober``, built before any job changes.

    Later runs keep a stable phase spread over the whole interval, so that thousands of
    checks on one interval never fire together; the first run comes sooner so that /metrics
    has values quickly, spread wider when there are many jobs.
    """
    name, interval = prober.target.name, prober.target.interval
    fraction = stable_fraction(name, check)
    return {
        "trigger": IntervalTrigger(
            seconds=interval,
            start_date=now + timedelta(seconds=fraction * interval),
            timezone=UTC,
        ),
        "args": (prober, check),
        "id": _job_id(name, check),
        "name": f"{name} {check}",
        "next_run_time": now + timedelta(seconds=fraction * min(interval, first_spread)),
    }


def _job_id(target: str, check: str) -> str:
    return f"{target}/{check}"
