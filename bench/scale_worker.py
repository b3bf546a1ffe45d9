"""Worker process: the real daemon (``Exporter`` with APScheduler) on N targets for a while.

Run by ``bench/run.py``; prints one JSON object. Instrumentation lives here, not in the
product: an ``EVENT_JOB_SUBMITTED`` listener notes each job's scheduled run time, a wrapper
around the exporter's job function notes when the run actually starts, and the other
scheduler events (missed, max instances reached) are counted. A ticker task measures
event-loop lag, and this process's CPU and RSS are sampled once a second.

``--tracemalloc`` (slow; not used by ``bench/run.py``) traces allocations from before the
imports and adds, per package or exporter module, what is allocated at the end of the run and
what the run added after the imports (``tracemalloc`` snapshot diff), to find where RSS goes.
"""

from __future__ import annotations

import sys
import tracemalloc

if "--tracemalloc" in sys.argv:
    tracemalloc.start()

import argparse
import asyncio
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # the repository, if not installed

from _common import proc_cpu, proc_rss, summary
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobSubmissionEvent,
)

import exporter.web  # noqa: F401  # the daemon serves /metrics: its RSS includes aiohttp
from exporter.config import load_config
from exporter.daemon import Daemon
from exporter.results import ProbeResult


def run_on_loop(main: Any, loop: str) -> Any:
    """``main`` on the loop ``loop`` names, as the daemon's ``--runtime.loop`` picks it."""
    try:
        from exporter import runtime
    except ImportError:  # a checkout from before the flag: asyncio's loop
        return asyncio.run(main)
    return runtime.run(main, loop)


def module_of(filename: str) -> str:
    """``exporter/runner.py`` for the exporter's files, the top-level package for others."""
    parts = Path(filename).parts
    if "exporter" in parts:
        return "/".join(parts[len(parts) - parts[::-1].index("exporter") - 1 :])
    for marker in ("site-packages", "lib-dynload"):
        if marker in parts:
            return parts[parts.index(marker) + 1].removesuffix(".py")
    for i, part in enumerate(parts):
        if part.startswith("python3"):
            return "stdlib:" + (parts[i + 1].removesuffix(".py") if i + 1 < len(parts) else "")
    return filename


def by_module(stats: list[tracemalloc.StatisticDiff], top: int = 25) -> list[dict[str, Any]]:
    """Size and size change per module, largest change first."""
    size: Counter[str] = Counter()
    diff: Counter[str] = Counter()
    for st in stats:
        name = module_of(st.traceback[0].filename)
        size[name] += st.size
        diff[name] += st.size_diff
    return [
        {"module": name, "size": size[name], "size_diff": d} for name, d in diff.most_common(top)
    ]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    baseline = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
    config_file = Path(args.config)
    config = load_config(config_file)
    interval = float(config.targets[0].interval)
    pending: dict[str, float] = {}  # job id -> scheduled run time (unix seconds)
    coalesced = 0
    events: Counter[str] = Counter()
    starts: list[tuple[float, float]] = []  # (scheduled, actual start)
    run_times: list[float] = []

    class TimedDaemon(Daemon):
        """Records when each scheduled run begins and how long it takes."""

        async def run_job(self, target: str, check: str) -> ProbeResult | None:
            began = time.time()
            scheduled = pending.pop(f"{target}/{check}", None)
            if scheduled is not None:
                starts.append((scheduled, began))
            t0 = time.perf_counter()
            try:
                return await super().run_job(target, check)
            finally:
                run_times.append(time.perf_counter() - t0)

    exp = TimedDaemon(config_file)

    def on_event(event: JobEvent) -> None:
        nonlocal coalesced
        if isinstance(event, JobSubmissionEvent):
            times = event.scheduled_run_times
            coalesced += len(times) - 1
            pending[event.job_id] = times[-1].timestamp()
        elif event.code == EVENT_JOB_MISSED:
            events["missed"] += 1
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            events["max_instances"] += 1
        elif event.code == EVENT_JOB_ERROR:
            events["error"] += 1

    rss0 = proc_rss()
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        period = 0.01
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(period)
            lags.append(time.perf_counter() - t - period)

    samples: list[tuple[float, float, int]] = []

    async def sampler() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter(), proc_cpu(), proc_rss()))
            await asyncio.sleep(1.0)

    tasks = [asyncio.create_task(ticker()), asyncio.create_task(sampler())]
    t_start = time.time()
    exp.start(config)
    assert exp.scheduler is not None
    exp.scheduler.add_listener(
        on_event,
        EVENT_JOB_SUBMITTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR,
    )
    firsts = [job.next_run_time.timestamp() for job in exp.scheduler.get_jobs()]
    setup = time.time() - t_start
    await asyncio.sleep(args.duration)
    t_stop = time.time()
    rss_before_stop = proc_rss()
    traced: dict[str, Any] = {}
    if baseline is not None:
        end = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        traced = {
            "traced_current": current,
            "traced_peak": peak,
            "by_module": by_module(end.compare_to(baseline, "filename")),
            "top_lines": [
                {"line": str(st.traceback[0]), "size": st.size, "count": st.count}
                for st in end.statistics("lineno")[:15]
            ],
        }
    await exp.stop()
    stop.set()
    await asyncio.gather(*tasks)

    # Every run due at least one interval before the end must have started within its interval.
    started = {round(s, 3): a for s, a in starts}
    due = [f + k * interval for f in firsts for k in range(int((t_stop - f) // interval) + 1)]
    checked = [s for s in due if s + interval <= t_stop]
    late = [s for s in checked if started.get(round(s, 3), float("inf")) - s > interval]
    lag = [a - s for s, a in starts]
    snap = exp.store.snapshot()
    outcome: Counter[str] = Counter()
    for s in snap:
        r = s.latest
        outcome[
            "ok" if r is not None and r.success else (r.reason.value if r and r.reason else "none")
        ] += 1
    failures: Counter[str] = Counter()
    for s in snap:
        failures.update(s.failures)
    span = samples[-1][0] - samples[0][0] if len(samples) > 1 else 1.0
    cpu = samples[-1][1] - samples[0][1] if len(samples) > 1 else 0.0
    return {
        "jobs": len(firsts),
        "interval": interval,
        "duration": t_stop - t_start,
        "setup_seconds": setup,
        "runs_started": len(starts),
        "runs_due": len(due),
        "runs_checked": len(checked),
        "missed": len(late) + events["missed"] + events["max_instances"] + coalesced,
        "missed_detail": {
            "not_started_within_interval": len(late),
            "coalesced": coalesced,
            **events,
        },
        "lag": summary(lag),
        "run_time": summary(run_times),
        "loop_lag": summary(lags),
        "latest_outcome": dict(outcome),
        "failures_total": dict(failures),
        "cpu_seconds": cpu,
        "cpu_ratio": cpu / span,
        "rss_start": rss0,
        "rss_peak": max(s[2] for s in samples),
        "rss_end": rss_before_stop,
        "loop": type(asyncio.get_running_loop()).__module__.partition(".")[0],
        **traced,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--tracemalloc", action="store_true", help="trace allocations per module")
    p.add_argument("--loop", default="auto", help="auto, asyncio or uvloop (default auto)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    print(json.dumps(run_on_loop(main_async(args), args.loop)))


if __name__ == "__main__":
    main()
