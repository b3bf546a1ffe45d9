"""What ``/probe`` adds to running a target now: admission per target, and the debug report."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from exporter.results import ProbeResult


class ProbeLimiter:
    """Per target, ``concurrency`` running ``/probe`` requests and ``queue`` waiting; no more."""

    def __init__(self, *, concurrency: int, queue: int) -> None:
        self._concurrency = concurrency
        self._limit = concurrency + queue
        self._pending: dict[str, int] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def slot(self, target: str) -> AsyncIterator[bool]:
        """Yield ``False`` at once when the queue is full, else ``True`` once it is our turn."""
        pending = self._pending.get(target, 0)
        if pending >= self._limit:
            yield False
            return
        self._pending[target] = pending + 1
        semaphore = self._semaphores.setdefault(target, asyncio.Semaphore(self._concurrency))
        try:
            async with semaphore:
                yield True
        finally:
            self._pending[target] -= 1
            if not self._pending[target]:
                del self._pending[target], self._semaphores[target]


def probe_report(results: Iterable[ProbeResult]) -> str:
    """What ``/probe?debug=true`` prints before the metrics: outcome, error and log per check."""
    lines: list[str] = []
    for r in results:
        outcome = "succeeded" if r.success else f"failed (reason: {r.reason or 'unknown'})"
        node = f" on {r.node}" if r.node else ""
        lines.append(
            f"Probe of target {r.target!r} check {r.check!r}{node} {outcome} in {r.duration:.3f}s"
        )
        if r.error:
            lines.append(f"Error: {r.error}")
        lines.extend(f"  {line}" for line in r.log)
        lines.append("")
    return "\n".join(lines) if lines else "No checks ran.\n"
