"""The status page at ``/``: every target and check, and the certificates and credentials.

Fed by the config (which checks each target runs), the result store's snapshots and the
per-target view that ``/metrics`` also uses. Every server-provided string is escaped.
"""

from __future__ import annotations

import html
import time
from urllib.parse import quote

from exporter import __version__
from exporter.config import Config
from exporter.results import SeriesSnapshot
from exporter.state import DaemonStatus
from exporter.targetview import TargetView, target_view

_WARN_DAYS = 30

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
