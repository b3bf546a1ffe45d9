"""The status page as HTML: order, failing-since, versions, expiry colours, refresh, escaping."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from exporter.config import Config, parse_config
from exporter.reasons import Reason
from exporter.results import (
    CertificateInfo,
    CheckValues,
    CredentialInfo,
    ProbeResult,
    ResultStore,
    TenantInfo,
)
from exporter.state import DaemonStatus
from exporter.statuspage import render_status_page

NOW = 1_800_000_000.0
DAY = 86400.0
SECRET = "s3cr3t-api-key-value"
STATUS = DaemonStatus(True, NOW - 60, 3, NOW - 3600, True, 5)


def config(tmp_path: Path, *targets: dict[str, Any]) -> Config:
    return parse_config({"targets": list(targets)}, base_dir=tmp_path)


def cloud(name: str, **over: Any) -> dict[str, Any]:
    auth = {"method": "apikey", "api_key": SECRET}
    return {"name": name, "type": "cloud", "host": f"{name}.eu.qlikcloud.com", "auth": auth, **over}


def result(target: str, check: str = "tenant", **kw: Any) -> ProbeResult:
    fields: dict[str, Any] = {
        "success": True,
        "reason": None,
        "error": "",
        "started": NOW - 31,
        "finished": NOW - 30,
        "duration": 0.25,
    }
    fields.update(kw)
    return ProbeResult(target=target, check=check, **fields)


def failure(target: str, finished: float, error: str = "401 from /api/v1/users/me") -> ProbeResult:
    reason = Reason.UNAUTHORIZED
    return result(target, success=False, reason=reason, error=error, finished=finished)


def store_of(*results: ProbeResult) -> ResultStore:
    store = ResultStore()
    for r in results:
        store.record_start(r.target, r.check)
        store.record(r)
    return store


class Rows(HTMLParser):
    """The text of each table row, by section id, as a reader sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.section = ""
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self._row: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.section = a.get("id") or ""
        elif tag == "tr" and "class" in a:
            self._row = {"class": a["class"], "text": ""}
            self.rows.setdefault(self.section, []).append(self._row)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row["text"] += data + " "


def rows(page: str, section: str) -> list[dict[str, Any]]:
    parser = Rows()
    parser.feed(page)
    return parser.rows.get(section, [])


def test_failing_checks_come_first_then_the_rest_by_target(tmp_path: Path) -> None:
    """A failing check leads the table even when its target sorts last; the rest follow by
    target name, a target's checks in configured order."""
    cfg = config(tmp_path, cloud("zulu"), cloud("alpha"), cloud("mike"))
    store = store_of(result("alpha"), failure("zulu", NOW - 10), result("mike"))
    page = render_status_page(cfg, store.snapshot(), STATUS, NOW)
    checks = rows(page, "checks")
    assert [r["text"].split()[0] for r in checks] == ["zulu", "alpha", "mike"]
    assert [r["class"] for r in checks] == ["failed", "ok", "ok"]
    assert "1 of 3 checks failing" in page
    assert "<title>qlik-sense-exporter: 1 failing</title>" in page


def test_failing_since_is_the_first_failure_after_the_last_success(tmp_path: Path) -> None:
    """Failing since counts from the first failure of the current run of failures, not the
    last one, and restarts after a success."""
    cfg = config(tmp_path, cloud("c"))
    store = store_of(
        failure("c", NOW - 7200), result("c", finished=NOW - 3600), failure("c", NOW - 1800)
    )
    store.record(failure("c", NOW - 60))
    snapshot = store.snapshot()
    assert snapshot[0].failing_since == NOW - 1800
    page = render_status_page(cfg, snapshot, STATUS, NOW)
    assert "30m ago" in rows(page, "checks")[0]["text"]  # 1800 s: the first of the two
    store.record(result("c", finished=NOW))
    assert store.snapshot()[0].failing_since is None


def test_error_detail_is_shown_as_text_and_escaped(tmp_path: Path) -> None:
    """The last error is in the row's visible text, not a tooltip, with its markup escaped."""
    cfg = config(tmp_path, cloud("c"))
    error = "answered 401 <script>alert(1)</script> & more"
    page = render_status_page(cfg, store_of(failure("c", NOW, error)).snapshot(), STATUS, NOW)
    assert "<script>" not in page
    assert "answered 401 &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert error in rows(page, "checks")[0]["text"]
    assert "title=" not in page


def test_certificates_and_credentials_sort_by_days_left_with_the_dashboard_colours(
    tmp_path: Path,
) -> None:
    """Soonest first; red below 7 days (and expired), orange below 30, green from 30 on."""
    certs = [
        CertificateInfo("client", "client-cn", "ca", "01", NOW - DAY, NOW + 30.5 * DAY),
        CertificateInfo("root", "ca", "ca", "02", NOW - DAY, NOW + 6.9 * DAY),
        CertificateInfo("server_tenant", "<b>host</b>", "ca", "03", NOW - DAY, NOW - 2 * DAY),
    ]
    creds = [CredentialInfo("apikey", NOW + 29.5 * DAY)]
    store = store_of(result("c", certificates=certs, credentials=creds))
    page = render_status_page(config(tmp_path, cloud("c")), store.snapshot(), STATUS, NOW)
    expiry = rows(page, "expiry")
    assert [r["text"].split()[0] for r in expiry] == ["-2.0", "6.9", "29.5", "30.5"]
    assert [r["class"] for r in expiry] == ["red", "red", "orange", "green"]
    assert "&lt;b&gt;host&lt;/b&gt;" in page


def test_a_certificate_seen_by_two_checks_is_listed_once(tmp_path: Path) -> None:
    """The page lists the certificates /metrics exports: one per source and serial."""
    client = CertificateInfo("client", "client-cn", "ca", "0a", NOW - DAY, NOW + 90 * DAY)
    target = {
        "name": "site",
        "type": "qseow",
        "host": "sense.example.com",
        "checks": ["repository", "proxy"],
        "auth": {"method": "header", "header_name": "X-User", "user_id": "monitor"},
    }
    store = store_of(
        result("site", "repository", certificates=[client]),
        result("site", "proxy", certificates=[client]),
    )
    page = render_status_page(config(tmp_path, target), store.snapshot(), STATUS, NOW)
    assert len(rows(page, "expiry")) == 1


def test_each_target_shows_its_build_engine_version_and_tenant(tmp_path: Path) -> None:
    """The newest repository build, engine version and tenant name appear on the target's row."""
    values = CheckValues(repository_build=("14.173.4", "2024-04-12"), engine_version="12.1823.6")
    tenant = CheckValues(tenant=TenantInfo("t-1", "u-1", "active", "Acme EU"))
    store = store_of(result("a", values=values), result("b", values=tenant))
    page = render_status_page(
        config(tmp_path, cloud("b"), cloud("a")), store.snapshot(), STATUS, NOW
    )
    targets = rows(page, "targets")
    assert targets[0]["text"].split() == ["a", "14.173.4", "2024-04-12", "12.1823.6"]
    assert targets[1]["text"].split() == ["b", "Acme", "EU"]


def test_the_page_refreshes_every_shortest_interval_within_bounds(tmp_path: Path) -> None:
    """The meta refresh follows the shortest check interval, never below 10 s or above 5 min."""

    def refresh(*intervals: str) -> int:
        targets = (cloud(f"t{i}", interval=v, timeout="1s") for i, v in enumerate(intervals))
        cfg = config(tmp_path, *targets)
        page = render_status_page(cfg, [], STATUS, NOW)
        found = re.search(r'<meta http-equiv="refresh" content="(\d+)">', page)
        assert found is not None
        return int(found.group(1))

    assert refresh("45s", "20s") == 20
    assert refresh("1s") == 10
    assert refresh("1h") == 300


def test_the_page_is_made_for_phones_and_never_shows_a_secret(tmp_path: Path) -> None:
    """A viewport meta and a narrow-screen layout; the config's API key is nowhere."""
    page = render_status_page(config(tmp_path, cloud("c")), [], STATUS, NOW)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "@media (max-width:1000px)" in page
    assert SECRET not in page
    assert "not run yet" in page


def test_an_oauth_token_hours_from_its_end_is_not_a_warning(tmp_path: Path) -> None:
    """The exporter renews OAuth access tokens itself: hours left is green; an API key with as
    little left stays red."""
    creds = [CredentialInfo("oauth_token", NOW + 0.25 * DAY)]
    store = store_of(
        result("c", credentials=creds),
        result("k", credentials=[CredentialInfo("apikey", NOW + 0.25 * DAY)]),
    )
    page = render_status_page(
        config(tmp_path, cloud("c"), cloud("k")), store.snapshot(), STATUS, NOW
    )
    expiry = rows(page, "expiry")
    assert sorted((r["text"].split()[1], r["class"]) for r in expiry) == [
        ("c", "green"),
        ("k", "red"),
    ]
