"""Helpers shared by the benchmark's orchestrator and its worker processes."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
XRFKEY = "abcdefghijklmnop"  # fixed key, for blackbox_exporter (it cannot vary one per request)
USER_HEADER = "UserDirectory=INTERNAL; UserId=sa_api"


def proc_cpu(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss(pid: int | str = "self") -> int:
    """Resident set size in bytes."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cpu_split(sample: float = 1.0) -> tuple[int | None, int | None]:
    """The CPU for the measured clients and the one for the servers (simulators), or
    ``(None, None)`` when this process may run on only one CPU (then nothing is pinned).

    The clients get the CPU that was idlest over ``sample`` seconds: on a shared machine
    another long job (a test run, a build) often keeps one CPU busy.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return None, None
    before = {c: cpu_jiffies(c) for c in cpus}
    time.sleep(sample)
    busy = {c: cpu_jiffies(c)[0] - before[c][0] for c in cpus}
    ordered = sorted(cpus, key=lambda c: busy[c])
    return ordered[0], ordered[-1]


def pinned(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins a child process to ``cpu`` (None: no pinning)."""
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def cpu_jiffies(cpu: int | None) -> tuple[float, float]:
    """Busy and total seconds of one CPU since boot, from /proc/stat (all CPUs when None)."""
    name = "cpu" if cpu is None else f"cpu{cpu}"
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields[0] == name:
                ticks = [int(x) for x in fields[1:8]]  # user nice system idle iowait irq softirq
                total = sum(ticks)
                return (total - ticks[3] - ticks[4]) / CLK_TCK, total / CLK_TCK
    return 0.0, 0.0


def cpu_pressure() -> float | None:
    """The share of the last 60 s in which some runnable task waited for a CPU (Linux PSI)."""
    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()
    except OSError:
        return None
    return float(some[2].split("=")[1]) / 100  # "some avg10=… avg60=… avg300=… total=…"


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, Any]:
    """n, p50, p99, max and mean of a list."""
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None, "mean": None}
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def cert_target(sim: dict[str, Any], name: str, **over: Any) -> dict[str, Any]:
    """A certificate-auth target dict (as in tests/core/conftest.py) from a simulator's sim.json."""
    files = sim["files"]
    target: dict[str, Any] = {
        "name": name,
        "type": "qseow",
        "host": sim["host"],
        "ca_file": files["root.pem"],
        "checks": ["repository"],
        "ports": {
            "repository": sim["ports"]["repository"],
            "proxy": sim["ports"]["proxy"],
            "engine": sim["ports"]["engine"],
        },
        "timeout": "5s",
        "auth": {
            "method": "certificate",
            "cert_file": files["client.pem"],
            "key_file": files["client_key.pem"],
            "user_directory": "INTERNAL",
            "user_id": "sa_api",
        },
    }
    target.update(over)
    return target
