"""The daemon: config → scheduler → runner → result store, and reloads.

One APScheduler 3.x job per (target, node, check) on the running event loop, each with
``max_instances=1`` and coalescing, so a slow target never stacks runs or delays another, and
each starting at a stable offset within its interval so that targets do not fire together.
A ``discover: true`` target has one more job, its discovery: each success replaces the target's
node list and with it the target's jobs (:mod:`exporter.site`); a failure keeps the last list.
At most :data:`MAX_RUNS_PER_TARGET` runs of one target are in flight at once, so a site of
hundreds of nodes is never hit by hundreds of handshakes at the same instant.
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

from exporter import site
from exporter.catalog import DISCOVERY
from exporter.config import Config, ConfigError, load_config
from exporter.results import CheckValues, NodeInfo, ProbeResult, ResultStore
from exporter.runner import Prober, run_probe
from exporter.state import DaemonStatus
from exporter.transport import Resolver

log = logging.getLogger("exporter")

# The first run of every job lands within this many seconds of start-up (spread by name), so
# /metrics has real values quickly; later runs keep that offset within their interval.
FIRST_RUN_SPREAD = 5.0
# Runs of one target in flight at once (a site's nodes share its repository and proxies).
MAX_RUNS_PER_TARGET = 8

# A scheduled job: (target, node, check); discovery's node is "".
Job = tuple[str, str, str]


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
        self._nodes: dict[str, tuple[NodeInfo, ...]] = {}  # target -> last discovered nodes
        self._limits: dict[str, asyncio.Semaphore] = {}  # target -> runs in flight
        self._keys: set[Job] = set()  # the (target, node, check) series the store keeps
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
        """Run one target's checks now (``/probe``), without touching the scheduled results.

        A ``discover: true`` target reads its node list first (the discovery's result comes
        first) and runs each check on every node that runs it.
        """
        prober = self._probers.get(target)
        if prober is None:
            t = self._config.target(target)
            if t is None:
                raise KeyError(f"unknown target {target!r}")
            prober = Prober.build(t)  # configured but in another shard
        checks = prober.target.enabled_checks
        if check is not None and check not in checks:
            raise ValueError(
                f"check {check!r} is not enabled for target {target!r} "
                f"(enabled: {', '.join(checks)})"
            )
        results: list[ProbeResult] = []
        nodes = self._nodes.get(target)
        if prober.target.discover:
            found = await self._discover(prober)
            results.append(found)
            nodes = found.values.nodes if found.success else nodes
        runs = [r for r in site.plan(prober.target, nodes) if check is None or r[1] == check]
        limit = asyncio.Semaphore(MAX_RUNS_PER_TARGET)

        async def one(node: str, c: str) -> ProbeResult:
            async with limit:
                return await run_probe(prober.for_node(node), c, resolver=self.resolver)

        results += await asyncio.gather(*(one(node, c) for node, c in runs))
        for result in results:
            self._note_backoff(result)
        return results

    def jobs(self) -> list[Job]:
        """The (target, node, check) runs this daemon schedules, in config order (discovery
        jobs not included)."""
        return [job for job in _every_job(self._probers, self._nodes) if job[2] != DISCOVERY]

    def nodes(self, target: str) -> tuple[NodeInfo, ...] | None:
        """The node list ``target``'s checks run on (None: not discovered)."""
        return self._nodes.get(target)

    @property
    def scheduler(self) -> AsyncIOScheduler | None:
        """The running scheduler (for listeners), or None before :meth:`start`."""
        return self._scheduler

    async def run_job(self, target: str, check: str, node: str | None = None) -> ProbeResult | None:
        """One scheduled run of ``check`` on ``node`` of ``target`` (its ``host`` by default),
        now: counted, run and recorded. ``check`` ``discovery`` runs :meth:`run_discovery`.

        Skipped (None) while the target is rate limited or no longer configured.
        """
        if check == DISCOVERY:
            return await self.run_discovery(target)
        prober = self._probers.get(target)
        if prober is None:
            return None
        node = prober.target.host if node is None else node
        if (target, node, check) not in self._keys:
            return None  # the node left the site, or the check is not the target's
        until = self._backoff.get(target, 0.0)
        if time.time() < until:
            log.info(
                "skipping run while rate limited",
                extra={"target": target, "node": node, "check": check, "until": round(until)},
            )
            return None
        self.store.record_start(target, check, node)
        async with self._limit(target):
            result = await run_probe(prober.for_node(node), check, resolver=self.resolver)
        self._note_backoff(result)
        if (target, node, check) in self._keys and self._probers.get(target) is prober:
            self.store.record(result)  # not replaced by a reload nor removed meanwhile
        return result

    async def run_discovery(self, target: str) -> ProbeResult | None:
        """Read ``target``'s node list now; on success it becomes the list its checks run on
        (nodes added get jobs, removed ones lose theirs and their series), on failure the last
        list stays. None if ``target`` is not a configured ``discover: true`` target."""
        prober = self._probers.get(target)
        if prober is None or not prober.target.discover:
            return None
        self.store.record_start(target, DISCOVERY)
        async with self._limit(target):
            result = await self._discover(prober)
        if self._probers.get(target) is not prober:  # replaced by a reload meanwhile
            return result
        if result.success and result.values.nodes:
            self._use_nodes(target, result.values.nodes)
        else:
            result.values = CheckValues(nodes=self._nodes.get(target))
            kept = len(self._nodes.get(target) or ())
            log.warning(
                "discovery failed, keeping the last node list",
                extra={"target": target, "nodes": kept},
            )
        self.store.record(result)
        return result

    async def _discover(self, prober: Prober) -> ProbeResult:
        result = await run_probe(prober, DISCOVERY, resolver=self.resolver)
        result.node = ""  # the target's own series, not a node's
        return result

    def _use_nodes(self, target: str, nodes: tuple[NodeInfo, ...]) -> None:
        old = {n.host_name for n in self._nodes.get(target, ())}
        new = {n.host_name for n in nodes}
        if old != new or target not in self._nodes:
            log.info(
                "site nodes discovered",
                extra={
                    "target": target,
                    "nodes": len(new),
                    "added": ",".join(sorted(new - old)),
                    "removed": ",".join(sorted(old - new)) if old else "",
                },
            )
        if self._nodes.get(target) == nodes:
            return
        self._nodes[target] = nodes
        if self._scheduler is not None:
            self._swap_jobs(self._scheduler, self._probers, self._nodes)
        self._keys = set(_every_job(self._probers, self._nodes))
        self.store.retain(self._keys)

    def _limit(self, target: str) -> asyncio.Semaphore:
        limit = self._limits.get(target)
        if limit is None:
            limit = self._limits[target] = asyncio.Semaphore(MAX_RUNS_PER_TARGET)
        return limit

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
        scheduled raises and leaves the running jobs and config as they were. A discovered
        node list survives a reload while the target keeps its host and ``discover: true``.
        """
        targets = [t for t in config.targets if in_shard(t.name, self.shard)]
        old = self._probers
        new: dict[str, Prober] = {}
        for t in targets:
            prev = old.get(t.name)
            new[t.name] = prev if prev is not None and prev.target == t else Prober.build(t)
        nodes = {
            name: found
            for name, found in self._nodes.items()
            if name in new
            and new[name].target.discover
            and new[name].target.host == old[name].target.host
        }
        if self._scheduler is not None:
            self._swap_jobs(self._scheduler, new, nodes)
        self._probers = new
        self._nodes = nodes
        self._backoff = {k: v for k, v in self._backoff.items() if k in new}
        self._limits = {k: v for k, v in self._limits.items() if k in new}
        self._config = config
        self._keys = set(_every_job(new, nodes))
        self.store.retain(self._keys)
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

    def _swap_jobs(
        self,
        scheduler: AsyncIOScheduler,
        probers: dict[str, Prober],
        nodes: dict[str, tuple[NodeInfo, ...]],
    ) -> None:
        # A job runs (prober, node, check); an unchanged target keeps its prober object, so a
        # job whose prober is no longer the target's current one belongs to a changed or
        # removed target, and a job no longer planned to a node that left the site.
        wanted = {_job_id(*job): job for job in _every_job(probers, nodes)}
        current = {job.id: job for job in scheduler.get_jobs()}
        stale = [
            job
            for job_id, job in current.items()
            if job_id not in wanted or probers[wanted[job_id][0]] is not job.args[0]
        ]
        kept = set(current) - {job.id for job in stale}
        first_spread = max(FIRST_RUN_SPREAD, len(wanted) / 200)
        now = datetime.now(UTC)
        added = [
            _job_spec(probers[name], node, check, first_spread, now)
            for job_id, (name, node, check) in wanted.items()
            if job_id not in kept
        ]
        for job in stale:
            job.remove()
        for spec in added:
            scheduler.add_job(self._scheduled, **spec)

    async def _scheduled(self, prober: Prober, node: str, check: str) -> None:
        if self._probers.get(prober.target.name) is prober:  # else replaced while queued
            await self.run_job(prober.target.name, check, node or None)


def _every_job(probers: dict[str, Prober], nodes: dict[str, tuple[NodeInfo, ...]]) -> list[Job]:
    """Every (target, node, check) run, in config order: a discovering target's discovery
    (node "") first, then its plan (:func:`exporter.site.plan`); also the store's series."""
    jobs: list[Job] = []
    for name, p in probers.items():
        if p.target.discover:
            jobs.append((name, "", DISCOVERY))
        jobs += [(name, node, check) for node, check in site.plan(p.target, nodes.get(name))]
    return jobs


def _job_spec(
    prober: Prober, node: str, check: str, first_spread: float, now: datetime
) -> dict[str, object]:
    """The scheduler job for ``check`` on ``node`` of ``prober``, built before any job changes.

    Later runs keep a stable phase spread over the whole interval, so that thousands of
    checks on one interval never fire together; the first run comes sooner so that /metrics
    has values quickly, spread wider when there are many jobs. Discovery runs first, at once:
    its node list decides the other jobs.
    """
    target = prober.target
    name = target.name
    discovery = check == DISCOVERY
    interval = target.discovery_interval if discovery else target.interval
    fraction = stable_fraction(name, node, check)
    first = 0.0 if discovery else fraction * min(interval, first_spread)
    return {
        "trigger": IntervalTrigger(
            seconds=interval,
            start_date=now + timedelta(seconds=fraction * interval),
            timezone=UTC,
        ),
        "args": (prober, node, check),
        "id": _job_id(name, node, check),
        "name": f"{name} {node} {check}" if node else f"{name} {check}",
        "next_run_time": now + timedelta(seconds=first),
    }


def _job_id(target: str, node: str, check: str) -> str:
    return f"{target}/{node}/{check}"
