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
from exporter.metrics import ExporterStatus
from exporter.results import ProbeResult, ResultStore
from exporter.runner import TargetRuntime, run_probe
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


class Exporter:
    """Owns the config, the scheduler, the targets' runtimes and the result store."""

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
        self._runtimes: dict[str, TargetRuntime] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._reload_ok = True
        self._last_reload_success: float | None = None
        self._started = time.time()
        self._reload_lock = asyncio.Lock()

    # -- the ExporterState protocol of exporter.web ------------------------------------

    @property
    def config(self) -> Config:
        """The config in force."""
        return self._config

    @property
    def status(self) -> ExporterStatus:
        """Self-metrics and readiness."""
        scheduler = self._scheduler
        running = scheduler is not None and scheduler.running
        return ExporterStatus(
            reload_ok=self._reload_ok,
            last_reload_success_ts=self._last_reload_success,
            targets=len(self._runtimes),
            started=self._started,
            ready=running and self._last_reload_success is not None,
            scheduler_jobs=len(scheduler.get_jobs()) if running and scheduler else None,
        )

    async def reload(self) -> list[str]:
        """Load the config file again; on any error keep the old config and say why."""
        async with self._reload_lock:
            try:
                config = await asyncio.to_thread(load_config, self.config_file)
            except ConfigError as exc:
                self._reload_ok = False
                for line in exc.errors:
                    log.error("config rejected, keeping the previous one", extra={"error": line})
                return exc.errors
            self.apply(config)
            return []

    async def probe(self, target: str, check: str | None) -> list[ProbeResult]:
        """Run one target's checks now (``/probe``), without touching the scheduled results."""
        rt = self._runtimes.get(target)
        if rt is None:
            t = self._config.target(target)
            if t is None:
                raise KeyError(f"unknown target {target!r}")
            rt = TargetRuntime.build(t)  # configured but in another shard
        checks = rt.target.enabled_checks
        if check is not None:
            if check not in checks:
                raise ValueError(
                    f"check {check!r} is not enabled for target {target!r} "
                    f"(enabled: {', '.join(checks)})"
                )
            checks = [check]
        return list(
            await asyncio.gather(*(run_probe(rt, c, resolver=self.resolver) for c in checks))
        )

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
        """Make ``config`` the running one: add, replace and remove jobs as needed."""
        targets = [t for t in config.targets if in_shard(t.name, self.shard)]
        old = self._runtimes
        new: dict[str, TargetRuntime] = {}
        for t in targets:
            prev = old.get(t.name)
            new[t.name] = prev if prev is not None and prev.target == t else TargetRuntime.build(t)
        self._sync_jobs(new)
        self._runtimes = new
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

    def _sync_jobs(self, new: dict[str, TargetRuntime]) -> None:
        scheduler = self._scheduler
        if scheduler is None:
            return
        # A job runs (runtime, check); an unchanged target keeps its runtime object, so a job
        # whose runtime is no longer the target's current one belongs to a changed or removed
        # target.
        for job in scheduler.get_jobs():
            rt, _check = job.args
            if new.get(rt.target.name) is not rt:
                job.remove()
        existing = {job.id for job in scheduler.get_jobs()}
        first_spread = max(
            FIRST_RUN_SPREAD, sum(len(rt.target.enabled_checks) for rt in new.values()) / 200
        )
        for name, rt in new.items():
            for check in rt.target.enabled_checks:
                if _job_id(name, check) not in existing:
                    self._add_job(scheduler, rt, check, first_spread)

    def _add_job(
        self, scheduler: AsyncIOScheduler, rt: TargetRuntime, check: str, first_spread: float
    ) -> None:
        interval = rt.target.interval
        fraction = stable_fraction(rt.target.name, check)
        now = datetime.now(UTC)
        # Later runs keep a stable phase spread over the whole interval, so that thousands of
        # checks on one interval never fire together; the first run comes sooner so that
        # /metrics has values quickly, spread wider when there are many jobs.
        first_spread = min(interval, first_spread)
        scheduler.add_job(
            self._run,
            IntervalTrigger(
                seconds=interval,
                start_date=now + timedelta(seconds=fraction * interval),
                timezone=UTC,
            ),
            args=(rt, check),
            id=_job_id(rt.target.name, check),
            name=f"{rt.target.name} {check}",
            next_run_time=now + timedelta(seconds=fraction * first_spread),
        )

    async def _run(self, rt: TargetRuntime, check: str) -> None:
        if time.time() < rt.backoff_until:
            log.info(
                "skipping run while rate limited",
                extra={"target": rt.target.name, "check": check, "until": round(rt.backoff_until)},
            )
            return
        if self._runtimes.get(rt.target.name) is not rt:
            return  # replaced by a reload while this run was queued
        self.store.record_start(rt.target.name, check)
        result = await run_probe(rt, check, resolver=self.resolver)
        if self._runtimes.get(rt.target.name) is rt:
            self.store.record(result)


def _job_id(target: str, check: str) -> str:
    return f"{target}/{check}"
