"""Families, sample rows and the text format, from constructed results: licence and service
values, self-metrics, label escaping and label sets the renderer has not seen before.

Samples are looked up by label name (``get_sample_value`` with a dict, or a parsed text's
label dict), never by position, so a label added to a family leaves these tests standing.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter import families as F
from exporter.exposition import RenderCache
from exporter.families import Family
from exporter.metrics import QlikCollector
from exporter.results import (
    SERVICE_STATES,
    CheckValues,
    LicenseInfo,
    ProbeResult,
    ResultStore,
    ServiceState,
)
from exporter.state import DaemonStatus
from exporter.targetview import target_view

NODE = "sense.example.com"


def result(check: str = "license", target: str = "central", **values: Any) -> ProbeResult:
    return ProbeResult(
        target=target,
        check=check,
        success=True,
        reason=None,
        error="",
        started=1000.0,
        finished=1000.5,
        duration=0.5,
        values=CheckValues(**values),
        node=NODE,
    )


def store_of(*results: ProbeResult) -> ResultStore:
    store = ResultStore()
    for r in results:
        store.record_start(r.target, r.check, r.node)
        store.record(r)
    return store


def registry_of(store: ResultStore, status: DaemonStatus | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(QlikCollector(store, status=None if status is None else lambda: status))
    return registry


def text_samples(text: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The samples of an exposition by name, each with its labels by name."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def both_formats(store: ResultStore) -> list[dict[str, list[tuple[dict[str, str], float]]]]:
    """The samples the collector gives and those the cached text renderer writes."""
    collected: dict[str, list[tuple[dict[str, str], float]]] = {}
    for metric in QlikCollector(store).collect():
        for s in metric.samples:
            collected.setdefault(s.name, []).append((dict(s.labels), s.value))
    return [collected, text_samples(QlikCollector(store, cache=RenderCache()).render_text())]


def value(samples: list[tuple[dict[str, str], float]], **labels: str) -> float | None:
    """The value of the one sample whose labels include ``labels``."""
    found = [v for lab, v in samples if labels.items() <= lab.items()]
    assert len(found) <= 1, (labels, found)
    return found[0] if found else None


def test_a_family_derives_its_sample_name_and_header() -> None:
    """Counters expose ``_total``; HELP escapes backslash and line break as the format says."""
    counter = Family("x_events", "counter", "a\\b\nc", "one two")
    assert (counter.name, counter.type, counter.help) == ("x_events", "counter", "a\\b\nc")
    assert counter.labels == ("one", "two")
    assert counter.sample == "x_events_total"
    assert counter.header == "# HELP x_events_total a\\\\b\\nc\n# TYPE x_events_total counter\n"
    gauge = Family("x_level", "gauge", "plain")
    assert (gauge.labels, gauge.sample) == ((), "x_level")
    assert gauge.header == "# HELP x_level plain\n# TYPE x_level gauge\n"


def test_gauges_and_last_run_gauges_say_what_they_hold() -> None:
    gauge = F._gauge("x_level", "How high.")
    assert (gauge.name, gauge.type, gauge.help, gauge.labels) == (
        "x_level",
        "gauge",
        "How high.",
        (),
    )
    last = F._last_run("x_seen", "What was seen.", "target node")
    assert (last.name, last.type, last.labels) == ("x_seen", "gauge", ("target", "node"))
    assert last.help == "What was seen. Value from the last scheduled run."


def test_license_values_are_exported_per_target_and_access_type() -> None:
    lic = LicenseInfo(True, 1.9e9, {"professional": (10.0, 3.0), "analyzer": (20.0, 5.0)})
    for samples in both_formats(store_of(result(license=lic))):
        assert value(samples["qlik_license_expired"], target="central") == 1.0
        assert value(samples["qlik_license_expiry_timestamp_seconds"], target="central") == 1.9e9
        total, available = (
            samples["qlik_license_access_total"],
            samples["qlik_license_access_available"],
        )
        assert value(total, target="central", type="professional") == 10.0
        assert value(available, target="central", type="professional") == 3.0
        assert value(total, target="central", type="analyzer") == 20.0
        assert value(available, target="central", type="analyzer") == 5.0


def test_a_licence_that_does_not_expire_has_no_expiry_and_no_access_without_types() -> None:
    lic = LicenseInfo(False, None, {})
    for samples in both_formats(store_of(result(license=lic))):
        assert value(samples["qlik_license_expired"], target="central") == 0.0
        assert "qlik_license_expiry_timestamp_seconds" not in samples
        assert "qlik_license_access_total" not in samples
        assert "qlik_license_access_available" not in samples


def test_service_states_are_one_hot_per_node_and_service() -> None:
    services = (
        ServiceState("n1.example.com", "engine", "running", 1.7e9),
        ServiceState("n2.example.com", "proxy", "disabled", None),
    )
    for samples in both_formats(store_of(result("services", services=services))):
        states = samples["qlik_service_state"]
        for state in SERVICE_STATES:
            one = {"target": "central", "node": "n1.example.com", "service": "engine"}
            assert value(states, **one, state=state) == (1.0 if state == "running" else 0.0)
            two = {"target": "central", "node": "n2.example.com", "service": "proxy"}
            assert value(states, **two, state=state) == (1.0 if state == "disabled" else 0.0)
        times = samples["qlik_service_status_timestamp_seconds"]
        assert value(times, node="n1.example.com", service="engine") == 1.7e9
        assert value(times, node="n2.example.com") is None


def test_self_metrics_say_ready_and_reloaded_in_both_formats() -> None:
    """1 for a good reload and a running scheduler, the series count, and a scrape's time."""
    status = DaemonStatus(
        reload_ok=True, last_reload_success_ts=5.0, targets=1, started=1.0, ready=False
    )
    store = store_of(result(), result("repository"))
    registry = registry_of(store, status)
    began = time.perf_counter()
    text = QlikCollector(store, status=lambda: status).render_text()
    took = time.perf_counter() - began
    assert "\nqlik_exporter_checks 2.0\n" in text.decode()
    assert "\nqlik_exporter_ready 0.0\n" in text.decode()
    assert "\nqlik_exporter_config_last_reload_successful 1.0\n" in text.decode()
    assert registry.get_sample_value("qlik_exporter_config_last_reload_successful") == 1.0
    assert registry.get_sample_value("qlik_exporter_ready") == 0.0
    assert registry.get_sample_value("qlik_exporter_checks") == 2.0
    collect = text_samples(text)["qlik_exporter_collect_duration_seconds"][0][1]
    assert 0 <= collect <= took
    # the probe families are there too, next to the self-metrics
    license_check = {"target": "central", "node": NODE, "check": "license"}
    assert registry.get_sample_value("qlik_probe_success", license_check) == 1.0


def test_describe_names_the_self_families_only_with_a_status() -> None:
    store = ResultStore()
    status = DaemonStatus(True, None, 0, 1.0, True)
    probe_names = [f.name for f in F.PROBE_FAMILIES]
    self_names = [f.name for f in F.SELF_FAMILIES]
    assert [m.name for m in QlikCollector(store).describe()] == probe_names
    described = [m.name for m in QlikCollector(store, status=lambda: status).describe()]
    assert described == probe_names + self_names


def test_label_values_escape_each_special_character_on_its_own() -> None:
    """A backslash, a quote and a line break each make an escaped label value."""
    store = store_of(
        *(result(target=name) for name in ("back\\slash", 'qu"ote', "line\nbreak", "plain"))
    )
    text = QlikCollector(store, cache=RenderCache()).render_text().decode()
    for escaped in ('"back\\\\slash"', '"qu\\"ote"', '"line\\nbreak"', '"plain"'):
        assert f"qlik_probe_runs_total{{target={escaped}," in text
    targets = {lab["target"] for lab, _ in text_samples(text.encode())["qlik_probe_runs_total"]}
    assert targets == {"back\\slash", 'qu"ote', "line\nbreak", "plain"}


def test_a_label_set_the_renderer_has_not_seen_is_written_in_full() -> None:
    """An access type no earlier scrape had (its label suffixes are made, not reused)."""
    kind = f"type-{uuid.uuid4().hex}"
    lic = LicenseInfo(False, None, {kind: (7.0, 2.0), 'odd"kind': (1.0, 0.0)})
    text = QlikCollector(store_of(result(license=lic)), cache=RenderCache()).render_text()
    lines = text.decode().splitlines()
    assert f'qlik_license_access_total{{target="central",type="{kind}"}} 7.0' in lines
    assert 'qlik_license_access_available{target="central",type="odd\\"kind"} 0.0' in lines


def test_a_node_of_a_target_is_found_by_name() -> None:
    store = store_of(result("repository", repository_build=("1.2", "2026-01-01")))
    view = target_view("central", store.snapshot())
    found = view.node(NODE)
    assert found is not None
    assert (found.node, found.build) == (NODE, ("1.2", "2026-01-01"))
    assert view.node("other.example.com") is None


def test_hostname_match_is_one_when_the_certificate_covers_the_host() -> None:
    r = result("repository")
    r.hostname_match = True
    for samples in both_formats(store_of(r)):
        match = samples["qlik_certificate_hostname_match"]
        assert value(match, target="central", node=NODE, check="repository") == 1.0


def test_licence_and_services_come_from_the_newest_result_that_has_them() -> None:
    """A later run of another check (no licence, no services) keeps them; a services check
    that found none replaces the list with an empty one."""
    lic = LicenseInfo(False, 1.9e9, {})
    services = (ServiceState(NODE, "engine", "running", None),)
    older = result("license", license=lic, services=services)
    newer = result("repository")
    newer.finished = older.finished + 60
    view = target_view("central", store_of(older, newer).snapshot())
    assert (view.license, view.services) == (lic, services)
    emptied = result("services", services=())
    emptied.finished = newer.finished + 60
    view = target_view("central", store_of(older, newer, emptied).snapshot())
    assert (view.license, view.services) == (lic, ())


def test_an_unchanged_series_and_target_are_not_rendered_again() -> None:
    """The cache keeps a series' text while its version stays, and a target's text while its
    view stays, even when the target's series changed."""
    store = store_of(result("repository", repository_build=("1.2", "d")))
    cache = RenderCache()
    first = QlikCollector(store, cache=cache).render_text()
    (series_key,) = cache.series
    series_text, target_text = cache.series[series_key], cache.targets["central"][2]
    assert QlikCollector(store, cache=cache).render_text() == first
    assert cache.series[series_key] is series_text
    assert cache.targets["central"][2] is target_text
    store.record(result("repository", repository_build=("1.2", "d")))  # same values again
    QlikCollector(store, cache=cache).render_text()
    assert cache.series[series_key] is not series_text  # counters moved
    assert cache.targets["central"][2] is target_text  # the view did not


def test_the_label_memo_starts_afresh_beyond_8_per_series_plus_64() -> None:
    """Rotated certificates leave label sets behind; the memo forgets them past a bound."""
    store = store_of(result())
    for junk, kept in ((72, True), (73, False)):
        cache = RenderCache()
        stale = [(("target", f"gone-{i}"),) for i in range(junk)]
        cache.labels.update((labels, "x") for labels in stale)
        QlikCollector(store, cache=cache).render_text()
        assert (stale[0] in cache.labels) is kept, junk
