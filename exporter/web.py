"""The HTTP endpoints: ``/metrics``, ``/probe``, ``/-/*`` and a small status page at ``/``.

The application is built against :class:`DaemonView`, a small protocol the daemon implements,
so the endpoints can be tested against a double. Metrics are rendered in a worker thread so a
large store never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import html
import logging
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
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
from pydantic import SecretBytes, SecretStr

from exporter import __version__
from exporter.config import Config
from exporter.exposition import RenderCache
from exporter.metrics import QlikCollector, probe_registry
from exporter.results import ProbeResult, SeriesSnapshot
from exporter.settings import split_address
from exporter.state import DaemonStatus, DaemonView
from exporter.targetview import TargetView, target_view
from exporter.webconfig import WebConfig, basic_auth_middleware

log = logging.getLogger(__name__)

_WARN_DAYS = 30


STATE = web.AppKey[DaemonView]("state")
_PROCESS = web.AppKey("process_registry", CollectorRegistry)


class _ProbeLimiter:
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


_LIMITER = web.AppKey("probe_limiter", _ProbeLimiter)
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
    app[_LIMITER] = _ProbeLimiter(concurrency=probe_concurrency, queue=probe_queue)
    app[_PROCESS] = _process_registry()
    app[_RENDER_CACHE] = RenderCache()  # /metrics re-renders only the series that changed
    app.router.add_get("/", _status_page)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/probe", _probe)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/ready", _ready)
    app.router.add_post("/-/reload", _reload)
    app.router.add_get("/-/config", _config)
    return app


async def run_server(
    app: web.Application, listen_address: str, web_config: WebConfig | None = None
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``listen_address`` (``:9851`` = all interfaces; port 0 = any free one).

    Applies ``web_config`` (TLS, basic auth). Returns the started runner (``await
    runner.cleanup()`` to stop) and the bound port.
    """
    host, port = split_address(listen_address)
    if web_config is not None and web_config.users:
        app.middlewares.insert(0, basic_auth_middleware(web_config.users))  # guards every route
    ssl_context = web_config.ssl_context() if web_config is not None else None
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or None, port, ssl_context=ssl_context)
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


def redacted_config_yaml(config: Config) -> str:
    """The config as YAML with every secret shown as ``<secret>`` (files are never read)."""
    return yaml.safe_dump(
        _redact(config.model_dump(mode="python", exclude_none=True)),
        sort_keys=False,
        allow_unicode=True,
    )


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        return "<secret>"
    if isinstance(value, dict):
        return {str(k): _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


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
            200, f"{_probe_log(results)}\nMetrics that would have been returned:\n{exposition}"
        )
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return _exposition(encoder(registry), content_type, zipped=False)


def _probe_log(results: Iterable[ProbeResult]) -> str:
    lines: list[str] = []
    for r in results:
        outcome = "succeeded" if r.success else f"failed (reason: {r.reason or 'unknown'})"
        lines.append(
            f"Probe of target {r.target!r} check {r.check!r} {outcome} in {r.duration:.3f}s"
        )
        if r.error:
            lines.append(f"Error: {r.error}")
        lines.extend(f"  {line}" for line in r.log)
        lines.append("")
    return "\n".join(lines) if lines else "No checks ran.\n"


# --- the status page -----------------------------------------------------------------------


async def _status_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    config, status, store = state.config, state.status, state.store  # read on the loop
    # Rendered in a worker thread like /metrics: thousands of checks take tens of milliseconds.
    page = await asyncio.to_thread(
        lambda: render_status_page(config, store.snapshot(), status, time.time())
    )
    return web.Response(text=page, content_type="text/html")


_STYLE = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}.ok{color:#176617}
.failed{color:#b00020;font-weight:bold}.warn{background:#fff3cd}.expired{background:#f8d7da}
.none{color:#777}"""


def render_status_page(
    config: Config, snapshots: list[SeriesSnapshot], status: DaemonStatus, now: float
) -> str:
    """The HTML status page; every value is escaped."""
    by_key = {(s.target, s.check): s for s in snapshots}
    check_rows: list[str] = []
    expiry_rows: list[str] = []
    for target in config.targets:
        series = [by_key.get((target.name, c)) for c in target.enabled_checks]
        for check, snap in zip(target.enabled_checks, series, strict=True):
            check_rows.append(_check_row(target.name, check, snap, now))
        view = target_view(target.name, [s for s in series if s])
        expiry_rows.extend(_expiry_rows(view, now))
    reload = "ok" if status.reload_ok else "FAILED (previous config still running)"
    head = (
        f"<p>qlik-sense-exporter {_e(__version__)} &middot; ready: "
        f"{'yes' if status.ready else 'no'} &middot; last config reload: {_e(reload)} &middot; "
        f"{status.targets} targets</p>"
        '<p><a href="/metrics">/metrics</a> &middot; <a href="/-/config">/-/config</a> &middot; '
        '<a href="/-/healthy">/-/healthy</a> &middot; <a href="/-/ready">/-/ready</a></p>'
    )
    checks = (
        "<h2>Checks</h2><table><tr><th>target</th><th>check</th><th>last result</th>"
        "<th>reason</th><th>when</th><th>duration</th><th>debug</th></tr>"
        + "".join(check_rows)
        + "</table>"
    )
    expiry = (
        "<h2>Certificates and credentials</h2><table><tr><th>target</th><th>what</th>"
        "<th>subject</th><th>expires</th><th>days left</th></tr>"
        + ("".join(expiry_rows) or '<tr><td colspan="5" class="none">none seen yet</td></tr>')
        + "</table>"
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>qlik-sense-exporter</title>'
        f"<style>{_STYLE}</style></head><body><h1>qlik-sense-exporter</h1>"
        f"{head}{checks}{expiry}</body></html>\n"
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _check_row(target: str, check: str, snap: SeriesSnapshot | None, now: float) -> str:
    link = (
        f"/probe?target={quote(target, safe='')}&amp;check={quote(check, safe='')}&amp;debug=true"
    )
    cells = [_e(target), _e(check)]
    r = snap.latest if snap else None
    if r is None:
        cells += ['<span class="none">not run yet</span>', "", "", ""]
    else:
        result = '<span class="ok">ok</span>' if r.success else '<span class="failed">failed</span>'
        reason = f'<span title="{_e(r.error)}">{_e(r.reason or "")}</span>'
        cells += [result, reason, _e(_age(now - r.finished)), f"{r.duration:.3f}s"]
    cells.append(f'<a href="{link}">probe now</a>')
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _expiry_rows(view: TargetView, now: float) -> list[str]:
    items = [(f"certificate {c.source}", c.subject_cn, c.not_after) for c in view.certificates]
    items += [(c.kind, "", c.expires) for c in view.credentials]
    rows = []
    for what, subject, expires in items:
        days = (expires - now) / 86400
        css = "expired" if days < 0 else "warn" if days < _WARN_DAYS else ""
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires))
        cells = (_e(view.target), _e(what), _e(subject), _e(when), f"{days:.0f}")
        rows.append(f'<tr class="{css}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return rows


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"
