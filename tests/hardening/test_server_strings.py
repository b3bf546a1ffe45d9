"""Strings from a server are made safe where they enter: arbitrary Unicode in any field a check
exports never breaks ``/metrics`` (text and OpenMetrics) for anyone."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from exporter.auth import Prepared
from exporter.auth.common import TlsContexts
from exporter.checks import ProbeContext, check_fn
from exporter.config import Target, parse_config
from exporter.metrics import QlikCollector
from exporter.results import ProbeResult, ResultStore
from exporter.transport import HttpResponse

# Any code point, lone surrogates included (json.dumps writes them as \ud800 escapes).
ANY_TEXT = st.text(st.characters(codec=None, min_codepoint=0), min_size=1, max_size=40)


class Answers:
    """An HttpSession stand-in that answers each path with its JSON document."""

    def __init__(self, documents: dict[str, Any]) -> None:
        self.documents = documents
        self.phases: dict[str, float] = {}

    async def request(
        self, method: str, host: str, port: int, ctx: Any, target: str, headers: Any
    ) -> HttpResponse:
        path = target.split("?", 1)[0]
        body = json.dumps(self.documents[path]).encode()
        return HttpResponse(200, "OK", CIMultiDict(), body)


def _target(kind: str) -> Target:
    auth = (
        {"method": "apikey", "api_key": "k"}
        if kind == "cloud"
        else {"method": "certificate", "cert_file": __file__, "key_file": __file__}
    )
    data = {"name": "t", "type": kind, "host": "localhost", "auth": auth}
    return parse_config({"targets": [data]}, base_dir=Path(".")).targets[0]


async def _run(kind: str, check: str, documents: dict[str, Any]) -> ProbeResult:
    ctx_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx = ProbeContext(
        _target(kind), check, Prepared(TlsContexts(ctx_ssl, ctx_ssl)), Answers(documents)
    )  # type: ignore[arg-type]
    values = await check_fn(check)(ctx)
    result = ProbeResult("t", check, True, None, "", 1.0, 2.0, 0.1, values=values)
    return result


def _assert_exposition_sound(results: list[ProbeResult]) -> None:
    store = ResultStore()
    for result in results:
        store.record_start(result.target, result.check)
        store.record(result)
    text = QlikCollector(store).render_text().decode("utf-8")
    families = {f.name for f in text_string_to_metric_families(text)}
    assert "qlik_probe_success" in families
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QlikCollector(store))
    assert list(text_string_to_metric_families(generate_latest(registry).decode("utf-8")))
    assert list(parse_om(generate_openmetrics(registry).decode("utf-8")))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=ANY_TEXT, date=ANY_TEXT, engine=ANY_TEXT, ids=st.lists(ANY_TEXT, min_size=4, max_size=4)
)
async def test_any_unicode_from_servers_keeps_metrics_sound(
    version: str, date: str, engine: str, ids: list[str]
) -> None:
    """Build versions, engine versions and Cloud ids of any Unicode render and parse."""
    health = {
        "version": engine,
        "apps": {"loaded_docs": []},
        "session": {"active": 1},
        "users": {"active": 1},
        "mem": {"committed": 1},
        "cpu": {"total": 1},
    }
    tenant = {"id": ids[0], "tenantId": ids[1], "status": ids[2]}
    results = [
        await _run(
            "qseow", "repository", {"/qrs/about": {"buildVersion": version, "buildDate": date}}
        ),
        await _run("qseow", "engine", {"/engine/healthcheck": health}),
        await _run(
            "cloud", "tenant", {"/api/v1/users/me": tenant, "/api/v1/tenants/me": {"name": ids[3]}}
        ),
    ]
    _assert_exposition_sound(results)


@pytest.mark.parametrize("bad", ["\ud800", "a\udfffb", "\udbff\udbff"])
async def test_lone_surrogates_are_replaced_where_they_enter(bad: str) -> None:
    """A lone surrogate in a build version reaches the result already replaced."""
    result = await _run(
        "qseow", "repository", {"/qrs/about": {"buildVersion": f"v{bad}", "buildDate": "d"}}
    )
    assert result.values.repository_build is not None
    version = result.values.repository_build[0]
    version.encode("utf-8")  # would raise for a lone surrogate
    assert version == "v" + "".join("?" if 0xD800 <= ord(c) <= 0xDFFF else c for c in bad)
