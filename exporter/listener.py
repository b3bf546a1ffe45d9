"""The exporter's listening socket, guarded against clients that hold it hostage.

aiohttp serves the endpoints; this module owns the socket they are served on, because aiohttp
sets no limit on how long a client may take to send a request's head and none on how many
connections may be open. Without them, a few hundred slow clients ("slowloris") hold every
file descriptor the process has, and the probes fail to connect to healthy targets. So:

- at most ``max_connections`` connections at once; one more is closed at once;
- a connection that has not sent a whole request head ``header_timeout`` seconds after it was
  accepted (the TLS handshake included) is closed;
- running out of descriptors (``EMFILE``/``ENFILE``) while accepting is one log line per ten
  seconds, not a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from typing import Any, Final, cast

from aiohttp import web

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS: Final = 256
DEFAULT_HEADER_TIMEOUT: Final = 10.0
_QUIET_FOR: Final = 10.0  # seconds between two "out of descriptors" lines


class _Limits:
    def __init__(self, max_connections: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.open = 0


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the connection cap and the head timer."""

    def __init__(self, inner: asyncio.Protocol, limits: _Limits) -> None:
        self._inner = inner
        self._limits = limits
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen, to find the end of a head split across reads
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's connections are full transports; not isinstance: uvloop's do not
        # derive from asyncio's classes.
        transport = cast(asyncio.Transport, transport)
        if self._limits.open >= self._limits.max_connections:
            transport.abort()
            return
        self._limits.open += 1
        self._counted = True
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._limits.header_timeout, transport.abort)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._timer.cancel()
                self._timer = None
            self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counted:
            self._counted = False
            self._limits.open -= 1
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections are capped and must send their head in time."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int,
        *,
        ssl_context: Any = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host, self._port = host, port
        self._limits = _Limits(max_connections, header_timeout)

    @property
    def name(self) -> str:
        """The URL this site serves."""
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._port}"  # noqa: S104  # a URL

    @property
    def open_connections(self) -> int:
        """Connections open now."""
        return self._limits.open

    async def start(self) -> None:
        """Listen, and register with the runner (which reports the bound addresses)."""
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        quiet_accept_errors(loop)

        def factory() -> asyncio.Protocol:
            return _Guarded(server(), self._limits)

        tls: dict[str, Any] = {}
        if self._ssl_context is not None:
            tls = {"ssl": self._ssl_context, "ssl_handshake_timeout": self._limits.header_timeout}
        self._server = await loop.create_server(
            factory, self._host, self._port, backlog=self._backlog, reuse_address=True, **tls
        )


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Turn asyncio's traceback per failed accept for lack of descriptors into one log line
    every ten seconds; every other loop error keeps the handler it had."""
    previous = loop.get_exception_handler()
    last = [0.0]

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            now = time.monotonic()
            if now - last[0] >= _QUIET_FOR:
                last[0] = now
                log.warning(
                    "out of file descriptors: new connections wait; raise LimitNOFILE or lower "
                    "--web.max-connections",
                    extra={"error": exc.strerror},
                )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    if getattr(previous, "quiet_accept", False):
        return
    handler.quiet_accept = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)
