"""Qlik Cloud rate limits: a fixed-window counter and the documented 429 answer."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(slots=True)
class FixedWindow:
    """A per-caller request counter over fixed windows (Qlik evaluates limits per user)."""

    limit: int
    window: float
    _windows: dict[str, tuple[float, int]] = field(default_factory=dict)

    def retry_after(self, who: str) -> int | None:
        """Count one request; seconds to wait when over the limit, else ``None``."""
        now = time.monotonic()
        start, count = self._windows.get(who, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        self._windows[who] = (start, count + 1)
        if count + 1 > self.limit:
            return max(1, math.ceil(start + self.window - now))
        return None


def rate_limited(retry_after: int) -> web.Response:
    """429 with ``retry-after`` and the body from qlik.dev ``apis/rest/rate-limiting``."""
    detail = f"You need to wait {retry_after} seconds until limit is lifted."
    body = {"errors": [{"code": "HTTP-429", "title": "API rate limit reached.", "detail": detail}]}
    return web.json_response(body, status=429, headers={"retry-after": str(retry_after)})
