"""The status page at ``/``: what is failing and since when, each target's versions, and what
expires next.

Fed by the config (which checks each target runs), the result store's snapshots and the
per-target view that ``/metrics`` also uses. Plain HTML and CSS that reflows into cards on a
phone; it reloads itself every check interval. Every server-provided string is escaped.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from exporter import __version__
from exporter.catalog import DISCOVERY
from exporter.config import Config
from exporter.results import CertificateInfo, SeriesSnapshot
from exporter.state import DaemonStatus
from exporter.targetview import NodeView, TargetView, target_view

# The dashboard's "days left" thresholds and Grafana's colours for them.
_RED_DAYS, _ORANGE_DAYS = 7, 30
_REFRESH_BOUNDS = (10, 300)  # seconds: not hammering the exporter, not going stale


@dataclass(frozen=True, slots=True)
class _Check:
    target: str
    node: str
    check: str
    snap: SeriesSnapshot | None

    @property
    def failing(self) -> bool:
        return (
            self.snap is not None and self.snap.latest is not None and not self.snap.latest.success
        )


def render_status_page(
    config: Config, snapshots: Sequence[SeriesSnapshot], status: DaemonStatus, now: float
) -> str:
    """The HTML status page."""
    by_target: dict[str, list[SeriesSnapshot]] = {}
    for snap in snapshots:
        by_target.setdefault(snap.target, []).append(snap)
    checks = _checks(config, by_target)
    order = {(c.target, c.node, c.check): i for i, c in enumerate(checks)}
    checks.sort(key=lambda c: (not c.failing, c.target, order[(c.target, c.node, c.check)]))
    views = [
        target_view(t.name, by_target.get(t.name, []))
        for t in sorted(config.targets, key=lambda t: t.name)
    ]
    failing = sum(c.failing for c in checks)
    intervals = [t.interval for t in config.targets]
    refresh = round(min(max(min(intervals, default=60.0), _REFRESH_BOUNDS[0]), _REFRESH_BOUNDS[1]))
    title = f"{failing} failing" if failing else "all OK"
    body = (
        _header(status, failing, len(checks), refresh, now)
        + _section("checks", "Checks", _checks_table(checks, now), "no targets configured")
        + _section("targets", "Targets", _targets_table(views), "no targets configured")
        + _section(
            "expiry", "Certificates and credentials", _expiry_table(views, now), "none seen yet"
        )
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{refresh}">'
        f"<title>qlik-sense-exporter: {title}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def _checks(config: Config, by_target: dict[str, list[SeriesSnapshot]]) -> list[_Check]:
    """Every configured target's runs: discovery first, then each check on each node it ran
    on, in config order; a check that has not run on any node yet shows as pending."""
    out: list[_Check] = []
    for t in config.targets:
        mine = by_target.get(t.name, [])
        out += [_Check(t.name, "", s.check, s) for s in mine if s.check == DISCOVERY]
        for check in t.enabled_checks:
            ran = [s for s in mine if s.check == check]
            out += [_Check(t.name, s.node, check, s) for s in ran]
            if not ran:
                out.append(_Check(t.name, t.host, check, None))
    return out


def _header(status: DaemonStatus, failing: int, total: int, refresh: int, now: float) -> str:
    verdict = (
        f'<p class="verdict bad">{failing} of {total} checks failing</p>'
        if failing
        else f'<p class="verdict good">all {total} checks OK</p>'
    )
    reload = "config loaded" if status.reload_ok else "config reload FAILED: previous config runs"
    facts = [
        f"version {_e(__version__)}",
        "ready" if status.ready else "NOT ready",
        reload,
        f"{status.targets} targets",
        f"{_utc(now)}, refreshes every {refresh} s",
    ]
    links = ("/metrics", "/-/config", "/-/healthy", "/-/ready")
    nav = " ".join(f'<a href="{link}">{link}</a>' for link in links)
    return (
        f"<header><h1>qlik-sense-exporter</h1>{verdict}"
        f'<p class="facts">{" &middot; ".join(facts)}</p><nav>{nav}</nav></header>'
    )


def _checks_table(checks: list[_Check], now: float) -> str:
    rows = [(_check_class(c), [cell(c, now) for _, cell in _CHECK_COLUMNS]) for c in checks]
    return _table([name for name, _ in _CHECK_COLUMNS], rows)


def _check_class(c: _Check) -> str:
    if c.snap is None or c.snap.latest is None:
        return "pending"
    return "failed" if c.failing else "ok"


def _result(c: _Check, now: float) -> str:
    r = c.snap.latest if c.snap else None
    if r is None:
        return '<span class="badge pending">not run yet</span>'
    if r.success:
        return '<span class="badge ok">OK</span>'
    reason = _e(r.reason or "failed").replace("_", "_<wbr>")  # long reasons wrap on a phone
    return f'<span class="badge failed">{reason}</span>'


def _failing_since(c: _Check, now: float) -> str:
    since = c.snap.failing_since if c.snap and c.failing else None
    return "" if since is None else _when(since, now)


def _last_run(c: _Check, now: float) -> str:
    r = c.snap.latest if c.snap else None
    return "" if r is None else f"{_ago(r.finished, now)} <small>took {r.duration:.2f} s</small>"


def _error(c: _Check, now: float) -> str:
    r = c.snap.latest if c.snap else None
    return f'<span class="error">{_e(r.error)}</span>' if r is not None and r.error else ""


def _check(c: _Check, now: float) -> str:
    """The check's name, and a link that runs it now with the debug log (discovery: the
    target's every check, discovery first)."""
    query = f"target={quote(c.target, safe='')}"
    if c.check != DISCOVERY:
        query += f"&check={quote(c.check, safe='')}"
    query += "&debug=true"
    return f'{_e(c.check)} <small><a href="/probe?{_e(query)}">probe now</a></small>'


# Each table is a list of columns: a heading and the cell's HTML for one row.
_CHECK_COLUMNS: tuple[tuple[str, Callable[[_Check, float], str]], ...] = (
    ("target", lambda c, now: f"<b>{_e(c.target)}</b>"),
    ("node", lambda c, now: _e(c.node)),
    ("check", _check),
    ("result", _result),
    ("failing since", _failing_since),
    ("last run", _last_run),
    ("error", _error),
)


def _targets_table(views: list[TargetView]) -> str:
    """One row per node a check ran on (a Cloud tenant: one row)."""
    rows = [
        ("", [cell(v, n) for _, cell in _TARGET_COLUMNS])
        for v in views
        for n in (v.nodes or (NodeView(""),))
    ]
    return _table([name for name, _ in _TARGET_COLUMNS], rows)


def _node_cell(v: TargetView, n: NodeView) -> str:
    info = next((d for d in v.discovered or () if d.host_name == n.node), None)
    if info is None:
        return _e(n.node)
    role = "central node" if info.central else "rim node"
    return f"{_e(n.node)} <small>{_e(info.name)}, {role}</small>"


_TARGET_COLUMNS: tuple[tuple[str, Callable[[TargetView, NodeView], str]], ...] = (
    ("target", lambda v, n: f"<b>{_e(v.target)}</b>"),
    ("node", _node_cell),
    ("repository build", lambda v, n: _e(n.build[0]) if n.build else ""),
    ("build date", lambda v, n: _e(n.build[1]) if n.build else ""),
    ("engine version", lambda v, n: _e(n.engine_version or "")),
    ("tenant", lambda v, n: _e(v.tenant.tenant_name or v.tenant.tenant_id) if v.tenant else ""),
)


def _expiry_table(views: list[TargetView], now: float) -> str:
    items = [
        (c.not_after, v.target, _cert_what(c), c.subject_cn, c.issuer_cn, False)
        for v in views
        for c in v.certificates
    ]
    items += [
        (c.expires, v.target, f"{c.kind} credential", "", "", c.renewed)
        for v in views
        for c in v.credentials
    ]
    rows = []
    for expires, target, what, subject, issuer, renewed in sorted(items, key=lambda i: i[:2]):
        days = (expires - now) / 86400
        colour = "red" if days < _RED_DAYS else "orange" if days < _ORANGE_DAYS else "green"
        if renewed and days >= 0:
            colour = "green"  # the exporter renews it itself
        cells = [f'<span class="days {colour}">{days:.1f}</span>', f"<b>{_e(target)}</b>"]
        cells += [_e(what), _e(subject), _e(issuer), _e(_utc(expires))]
        rows.append((colour, cells))
    return _table(["days left", "target", "what", "subject", "issuer", "expires"], rows)


def _cert_what(c: CertificateInfo) -> str:
    return f"{c.source} certificate of {c.node}" if c.node else f"{c.source} certificate"


def _table(headings: list[str], rows: list[tuple[str, list[str]]]) -> str:
    """A table that becomes one card per row on a narrow screen (the headings move into each
    cell's ``data-label``); empty cells are left out of the cards."""
    if not rows:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    body = "".join(
        f'<tr class="{css}">'
        + "".join(
            f'<td data-label="{_e(h)}"{"" if cell else " class=empty"}><div>{cell}</div></td>'
            for h, cell in zip(headings, cells, strict=True)
        )
        + "</tr>"
        for css, cells in rows
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _section(id_: str, title: str, table: str, empty: str) -> str:
    return f'<section id="{id_}"><h2>{title}</h2>{table or f"<p class=none>{empty}</p>"}</section>'


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _when(ts: float, now: float) -> str:
    """How long ago, with the time itself under it."""
    clock = "%H:%M:%S UTC" if now - ts < 86400 else "%Y-%m-%d %H:%M UTC"
    return f"{_ago(ts, now)} <small>{time.strftime(clock, time.gmtime(ts))}</small>"


def _ago(ts: float, now: float) -> str:
    seconds = max(0.0, now - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


_STYLE = """
:root{--red:#F2495C;--orange:#FF9830;--green:#73BF69;--line:#d8dce3;--muted:#5f6673}
*{box-sizing:border-box}
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:1rem;
color:#1d2330;background:#f4f5f8}
h1{font-size:1.3rem;margin:0 0 .4rem}h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
header{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.8rem 1rem}
.verdict{font-size:1.15rem;font-weight:600;margin:.2rem 0}.verdict.bad{color:#c4162a}
.verdict.good{color:#37872d}.facts{color:var(--muted);margin:.2rem 0}
nav a{margin-right:.8rem}a{color:#1f60c4}small{display:block;color:var(--muted);font-size:.8rem}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line)}
.scroll{overflow-x:auto}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
td b,td a,td small,.badge,.days{white-space:nowrap}
th{background:#eceef2;font-weight:600;font-size:.85rem}
tr.failed td:first-child{box-shadow:inset 4px 0 var(--red)}
tr.ok td:first-child{box-shadow:inset 4px 0 var(--green)}
tr.pending td:first-child{box-shadow:inset 4px 0 var(--line)}
.error{display:block;min-width:14rem;font:.85rem/1.4 ui-monospace,Menlo,Consolas,monospace;
overflow-wrap:anywhere}
.badge,.days{display:inline-block;padding:.05rem .5rem;border-radius:4px;font-weight:600}
@media (min-width:1001px){wbr{display:none}}
.badge.ok{background:var(--green)}.badge.failed{background:var(--red)}
.badge.pending{background:#eceef2;color:var(--muted)}
.days.red{background:var(--red)}.days.orange{background:var(--orange)}
.days.green{background:var(--green)}.none{color:var(--muted)}
@media (max-width:1000px){
body{padding:.5rem}thead{display:none}table,tbody,tr,td{display:block;width:100%}
table{border:0;background:none}
tr{background:#fff;border:1px solid var(--line);border-radius:8px;margin:0 0 .6rem;padding:.3rem 0}
tr.failed{border-left:5px solid var(--red)}tr.ok{border-left:5px solid var(--green)}
tr.red{border-left:5px solid var(--red)}tr.orange{border-left:5px solid var(--orange)}
tr.green{border-left:5px solid var(--green)}td:first-child{box-shadow:none!important}
td{border:0;padding:.2rem .8rem;display:flex;gap:.6rem;white-space:normal}td.empty{display:none}
td::before{content:attr(data-label);flex:0 0 6.5rem;color:var(--muted);font-size:.85rem}
td>div{min-width:0;overflow-wrap:break-word}.error{min-width:0}
}
"""
