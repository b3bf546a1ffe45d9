"""The HTTP endpoints: ``/metrics``, ``/probe``, ``/-/*`` and the status page at ``/``.

The application is built against :class:`~exporter.state.DaemonView`, a small protocol the
daemon implements, so the endpoints can be tested against a double. Metrics and the status page
are rendered in a worker thread so a large store never blocks the event loop. The page itself
is :mod:`exporter.statuspage`, ``/-/config``'s redaction :mod:`exporter.redact`, and ``/probe``'s
admission and debug report :mod:`exporter.webprobe`.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import (
    CONTENT_TYPE_PLAIN_0_0_4,
    choose_encoder,
    gzip_accepted,
)
from prometheus_client.registry import CollectorRegistry

from exporter.exposition import RenderCache
from exporter.listener import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, GuardedSite
from exporter.metrics import QlikCollector, probe_registry
from exporter.redact import redacted_config_yaml
from exporter.settings import split_address
from exporter.state import DaemonView
from exporter.statuspage import render_status_page
from exporter.webconfig import WebConfig, basic_auth_middleware
from exporter.webprobe import ProbeLimiter, probe_report

log = logging.getLogger(__name__)

STATE = web.AppKey[DaemonView]("state")
_PROCESS = web.AppKey("process_registry", CollectorRegistry)
_LIMITER = web.AppKey("probe_limiter", ProbeLimiter)
_RENDER_CACHE = web.AppKey("render_cache", RenderCache)


def create_app(
    state: DaemonView,
    *,
    probe_concurrency: int = 1,
    probe_queue: int = 2,
) -> web.Application:
    """The aiohttp application (``run_server`` adds TLS and basic auth from the web config)."""
    app = web.Application(middlewares=[_errors])
    app[STATE] = state
    app[_LIMITER] = ProbeLimiter(concurrency=probe_concurrency, queue=probe_queue)
    app[_PROCESS] = _process_registry()
    app[_RENDER_CACHE] = RenderCache()  # /metrics re-renders only the series that changed
    app.add_routes(
        [
            web.get("/", _status_page),
            web.get("/metrics", _metrics),
            web.get("/probe", _probe),
            web.get("/-/healthy", _healthy),
            web.get("/-/ready", _ready),
            web.post("/-/reload", _reload),
            web.get("/-/config", _config),
        ]
    )
    return app


async def run_server(
    app: web.Application,
    listen_address: str,
    web_config: WebConfig | None = None,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``listen_address`` (``:9851`` = all interfaces; port 0 = any free one).

    Applies ``web_config`` (TLS, basic auth) and the connection guards of
    :mod:`exporter.listener`. Returns the started runner (``await runner.cleanup()`` to stop)
    and the bound port.
    """
    host, port = split_address(listen_address)
    if web_config is not None and web_config.users:
        app.middlewares.insert(0, basic_auth_middleware(web_config.users))  # guards every route
    ssl_context = web_config.ssl_context() if web_config is not None else None
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = GuardedSite(
        runner,
        host or None,
        port,
        ssl_context=ssl_context,
        max_connections=max_connections,
        header_timeout=header_timeout,
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)


def _process_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def _text(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=message.rstrip("\n") + "\n", headers=headers)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Short plain-text answers for bad requests; never a traceback."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _text(404, f"404 Not Found: no endpoint at {request.path}; see / for the list")
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = f"405 Method Not Allowed: {request.method} {request.path}; use {allowed}"
        return _text(405, message, Allow=allowed)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("error handling %s %s", request.method, request.path)
        return _text(500, "500 Internal Server Error: see the exporter's log")


async def _healthy(request: web.Request) -> web.Response:
    return _text(200, "OK")


async def _ready(request: web.Request) -> web.Response:
    if request.app[STATE].status.ready:
        return _text(200, "OK")
    return _text(503, "503 Service Unavailable: config not loaded or scheduler not running")


async def _reload(request: web.Request) -> web.Response:
    errors = await request.app[STATE].reload()
    if not errors:
        return _text(200, "config reloaded")
    lines = "\n".join(errors)
    return _text(500, f"config reload failed; the previous config keeps running:\n{lines}")


async def _config(request: web.Request) -> web.Response:
    return web.Response(
        text=redacted_config_yaml(request.app[STATE].config), content_type="text/plain"
    )


# --- /metrics and /probe -------------------------------------------------------------------


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    status = state.status  # read on the loop; the collector runs in a worker thread
    collector = QlikCollector(state.store, status=lambda: status, cache=request.app[_RENDER_CACHE])
    accept = request.headers.get("Accept", "")
    zipped = gzip_accepted(request.headers.get("Accept-Encoding", ""))
    body, content_type = await asyncio.to_thread(
        _render_metrics, collector, request.app[_PROCESS], accept, zipped
    )
    return _exposition(body, content_type, zipped=zipped)


def _render_metrics(
    collector: QlikCollector, process: CollectorRegistry, accept: str, zipped: bool
) -> tuple[bytes, str]:
    encoder, content_type = choose_encoder(accept)
    if content_type == CONTENT_TYPE_PLAIN_0_0_4:
        body = collector.render_text() + encoder(process)  # the fast path for the usual format
    else:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        registry.register(process)
        body = encoder(registry)
    return (gzip.compress(body, compresslevel=1) if zipped else body), content_type


def _exposition(body: bytes, content_type: str, *, zipped: bool) -> web.Response:
    headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
    if zipped:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


async def _probe(request: web.Request) -> web.Response:
    state = request.app[STATE]
    name = request.query.get("target", "")
    if not name:
        return _text(400, "400 Bad Request: missing target parameter, e.g. /probe?target=NAME")
    target = state.config.target(name)
    if target is None:
        return _text(400, f"400 Bad Request: unknown target {name!r}: not in the loaded config")
    check = request.query.get("check") or None
    if check is not None and check not in target.enabled_checks:
        enabled = ", ".join(target.enabled_checks)
        message = f"unknown check {check!r} for target {name!r}; enabled checks: {enabled}"
        return _text(400, f"400 Bad Request: {message}")
    async with request.app[_LIMITER].slot(name) as admitted:
        if not admitted:
            message = f"too many /probe requests for target {name!r} in progress; retry later"
            return _text(429, f"429 Too Many Requests: {message}", **{"Retry-After": "1"})
        try:
            results = await state.probe(name, check)
        except (KeyError, ValueError) as exc:
            reason = exc.args[0] if exc.args else exc.__class__.__name__
            return _text(400, f"400 Bad Request: {reason}")
    registry = probe_registry(results)
    if request.query.get("debug", "").lower() in ("true", "1", "yes"):
        exposition = choose_encoder("")[0](registry).decode()
        return _text(
            200, f"{probe_report(results)}\nMetrics that would have been returned:\n{exposition}"
        )
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return _exposition(encoder(registry), content_type, zipped=False)


# --- the status page -----------------------------------------------------------------------


async def _status_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    config, status, store = state.config, state.status, state.store  # read on the loop
    # Rendered in a worker thread like /metrics: thousands of checks take tens of milliseconds.
    page = await asyncio.to_thread(
        lambda: render_status_page(config, store.snapshot(), status, time.time())
    )
    return web.Response(text=page, content_type="text/html")
