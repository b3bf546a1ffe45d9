"""The catalog is the one table of checks and auth methods: everything else agrees with it."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from exporter import catalog
from exporter.config import ConfigError, Ports, parse_config
from exporter.fields import AuthSettings

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def _rows(header: str) -> dict[str, list[str]]:
    """The rows of the README table whose header line starts with ``header``, by first cell."""
    lines = README[README.index(header) :].splitlines()
    rows: dict[str, list[str]] = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


@pytest.mark.parametrize("name", list(catalog.CHECKS))
def test_every_check_module_has_a_run_coroutine(name: str) -> None:
    """The module a check entry names defines ``async def run(ctx)``."""
    module = importlib.import_module(catalog.CHECKS[name].module)
    assert inspect.iscoroutinefunction(module.run)


@pytest.mark.parametrize("name", list(catalog.METHODS))
def test_every_auth_module_has_settings_tagged_with_its_name(name: str) -> None:
    """The module an auth entry names defines Settings (tagged ``method: <name>``) and Method."""
    module = importlib.import_module(catalog.METHODS[name].module)
    assert issubclass(module.Settings, AuthSettings)
    tag = module.Settings.model_fields["method"].annotation
    assert tag.__args__ == (name,)
    assert callable(module.Method)


def test_every_port_key_is_a_ports_field_or_the_front_end() -> None:
    """A check connects to a ``ports:`` key or to the front-end ``port``, nothing else."""
    for check in catalog.CHECKS.values():
        assert check.port == "front" or check.port in Ports.model_fields, check.name


def test_every_check_runs_with_some_method_and_every_method_on_some_type() -> None:
    """No entry is unreachable from a config."""
    for check in catalog.CHECKS.values():
        assert set(check.methods) <= set(catalog.METHODS), check.name
        assert check.methods, check.name
    for method in catalog.METHODS.values():
        assert set(method.target_types) <= set(catalog.TARGET_TYPES), method.name


def test_default_checks_come_from_the_catalog() -> None:
    """A target without ``checks:`` runs its method's default checks from the catalog."""
    for method in catalog.METHODS.values():
        defaults = catalog.default_checks(method.name)
        assert defaults, method.name
        assert set(defaults) <= set(catalog.checks_for(method.name))
    assert catalog.default_checks("certificate") == ["repository"]
    assert catalog.default_checks("apikey") == ["tenant"]


def test_readme_checks_table_matches_the_catalog() -> None:
    """The README's checks table lists every check, with a path exactly where it is supported."""
    rows = _rows("| check | certificate auth |")
    assert list(rows) == list(catalog.CHECKS)
    for name, (cert, proxied, cloud) in rows.items():
        methods = set(catalog.CHECKS[name].methods)
        cloud_methods = set(catalog.methods_for("cloud"))
        assert (cert != "–") == ("certificate" in methods), name
        assert (proxied != "–") == bool({"jwt", "header"} & methods), name
        assert (cloud != "–") == bool(cloud_methods & methods), name


def test_readme_auth_table_lists_every_method() -> None:
    """The README's auth keys table has one row per catalog method, in catalog order."""
    assert list(_rows("| method | keys |")) == list(catalog.METHODS)


def test_config_errors_list_the_catalog() -> None:
    """Unknown methods and checks are answered with the catalog's names."""
    target = {"name": "t", "type": "qseow", "host": "h", "auth": {"method": "nope"}}
    with pytest.raises(ConfigError) as err:
        parse_config({"targets": [target]}, base_dir=Path("."))
    assert err.value.errors == [
        f"targets[0].auth: unknown auth method: expected {catalog.choice(list(catalog.METHODS))}"
    ]
    target = {
        "name": "t",
        "type": "cloud",
        "host": "h",
        "checks": ["tenant", "nope"],
        "auth": {"method": "apikey", "api_key": "k"},
    }
    with pytest.raises(ConfigError) as err:
        parse_config({"targets": [target]}, base_dir=Path("."))
    quoted = [f"'{c}'" for c in catalog.CHECKS]
    assert err.value.errors == [f"targets[0].checks[1]: Input should be {catalog.choice(quoted)}"]


@pytest.mark.parametrize(
    ("method", "check", "port"),
    [
        ("certificate", "repository", 1),
        ("certificate", "proxy", 2),
        ("certificate", "engine", 3),
        ("certificate", "engine_session", 3),
        ("header", "repository", 443),
        ("header", "engine", 443),
        ("apikey", "tenant", 443),
    ],
)
def test_port_for_follows_the_catalog(method: str, check: str, port: int) -> None:
    """Direct checks use their service's port; proxied and Cloud checks the front end."""
    auth = {
        "certificate": {"method": "certificate", "cert_file": __file__, "key_file": __file__},
        "header": {"method": "header", "header_name": "X-User", "user_id": "u"},
        "apikey": {"method": "apikey", "api_key": "k"},
    }[method]
    target = {
        "name": "t",
        "type": "cloud" if method == "apikey" else "qseow",
        "host": "h",
        "ports": {"repository": 1, "proxy": 2, "engine": 3},
        "auth": auth,
    }
    loaded = parse_config({"targets": [target]}, base_dir=Path(".")).targets[0]
    assert loaded.port_for(check) == port


def test_readme_metrics_table_lists_every_family_with_its_labels() -> None:
    """The README's metric table names every family the exporter exposes with exactly the
    labels it carries (dashboards and rules are written from that table)."""
    from exporter.families import PROBE_FAMILIES, SELF_FAMILIES

    text = Path("README.md").read_text(encoding="utf-8")
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`qlik_"):
            continue
        labels = {
            word.strip("`")
            for word in cells[2].replace('(`""`)', "").replace(",", " ").split()
            if word.strip("`") and word != "same"
        }
        for name in re.findall(r"`(qlik_[a-z_]+)`", cells[0]):
            rows[name] = labels
    for family in (*PROBE_FAMILIES, *SELF_FAMILIES):
        name = family.sample if family.type == "counter" else family.name
        assert name in rows, f"{name} is not in the README's metric table"
        if rows[name]:  # "same" rows repeat the row above
            assert rows[name] == set(family.labels), name
