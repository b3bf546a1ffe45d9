"""The tables behind config validation, pinned down value by value.

Which checks each auth method runs, which methods each target type takes, the ports, the
reserved header names, what a host may look like and every default: a user's config relies on
each of them, and each is written out here once, so a change to any is a deliberate one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import catalog
from exporter.auth.certificate import CertificateAuth
from exporter.auth.header import HeaderAuth
from exporter.auth.jwt import JwtAuth
from exporter.config import ConfigError, Target, parse_config
from exporter.metrics import QlikCollector
from exporter.results import CheckValues, ProbeResult, ResultStore

CHECKS_BY_METHOD = {
    "certificate": ("repository", "proxy", "engine", "engine_session", "services", "license"),
    "jwt": ("repository", "proxy", "engine"),
    "header": ("repository", "proxy", "engine"),
    "apikey": ("engine_session", "tenant", "license"),
    "oauth": ("engine_session", "tenant", "license"),
}
METHODS_BY_TYPE = {"qseow": ("certificate", "jwt", "header"), "cloud": ("apikey", "oauth")}
DEFAULT_CHECKS = {
    "certificate": ["repository"],
    "jwt": ["repository"],
    "header": ["repository"],
    "apikey": ["tenant"],
    "oauth": ["tenant"],
}
# Qlik refuses these header names for header authentication (help.qlik.com, virtual proxies).
RESERVED_HEADERS = [
    "X-Qlik-User",
    "X-Qlik-Security",
    "X-Qlik-ProxySession",
    "X-Qlik-ProxyId",
    "X-Qlik-Trace",
    "X-Qlik-App",
    "X-Qlik-Capabilities",
]


def _auth(method: str, folder: Path) -> dict[str, Any]:
    """The smallest valid ``auth:`` of each method (files exist; contents are not read)."""
    (folder / "client.pem").write_text("placeholder\n")
    (folder / "client_key.pem").write_text("placeholder\n")
    return {
        "certificate": {
            "method": "certificate",
            "cert_file": "client.pem",
            "key_file": "client_key.pem",
        },
        "jwt": {"method": "jwt", "token": "a.b.c"},
        "header": {"method": "header", "header_name": "X-Monitor-User", "user_id": "monitor"},
        "apikey": {"method": "apikey", "api_key": "k"},
        "oauth": {"method": "oauth", "client_id": "c", "client_secret": "s"},
    }[method]


def _type_of(method: str) -> str:
    return "cloud" if method in ("apikey", "oauth") else "qseow"


def _target(folder: Path, method: str, **keys: Any) -> dict[str, Any]:
    return {
        "name": "site",
        "type": _type_of(method),
        "host": "sense.example.com",
        "auth": _auth(method, folder),
    } | keys


def _parse(folder: Path, target: dict[str, Any]) -> Target:
    return parse_config({"targets": [target]}, base_dir=folder).targets[0]


def _errors(folder: Path, target: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"targets": [target]}, base_dir=folder)
    return caught.value.errors


# --- the catalog ---------------------------------------------------------------------------


def test_the_checks_each_auth_method_runs() -> None:
    """Certificate auth reaches the engine websocket too; the proxies do not; Cloud has tenant."""
    assert {m: catalog.checks_for(m) for m in catalog.METHODS} == CHECKS_BY_METHOD
    assert catalog.checks_for("unknown") == ()


def test_the_auth_methods_each_target_type_takes() -> None:
    """QSEoW takes the three on-premises methods, Cloud only API keys."""
    assert {t: catalog.methods_for(t) for t in catalog.TARGET_TYPES} == METHODS_BY_TYPE
    assert catalog.methods_for("unknown") == ()


def test_the_default_checks_of_each_method() -> None:
    """A target without ``checks:`` runs the repository check, or tenant on Cloud."""
    assert {m: catalog.default_checks(m) for m in catalog.METHODS} == DEFAULT_CHECKS


@pytest.mark.parametrize(
    ("method", "ports"),
    [
        (
            "certificate",
            {"repository": "repository", "proxy": "proxy", "engine": "engine"}
            | {"engine_session": "engine", "services": "repository", "license": "repository"},
        ),
        ("jwt", dict.fromkeys(CHECKS_BY_METHOD["jwt"], "front")),
        ("header", dict.fromkeys(CHECKS_BY_METHOD["header"], "front")),
        ("apikey", dict.fromkeys(CHECKS_BY_METHOD["apikey"], "front")),
        ("oauth", dict.fromkeys(CHECKS_BY_METHOD["oauth"], "front")),
    ],
)
def test_the_port_each_check_connects_to(method: str, ports: dict[str, str]) -> None:
    """Certificate auth goes to each service's own port; the others to the front end."""
    assert {c: catalog.port_key(method, c) for c in CHECKS_BY_METHOD[method]} == ports


@pytest.mark.parametrize(
    ("names", "text"),
    [
        (("a",), "a"),
        (("a", "b"), "a or b"),
        (["a", "b", "c"], "a, b or c"),
        (("certificate", "jwt", "header", "apikey"), "certificate, jwt, header or apikey"),
        (tuple(catalog.METHODS), "certificate, jwt, header, apikey or oauth"),
    ],
)
def test_choice_lists_names_as_an_error_message_does(
    names: tuple[str, ...] | list[str], text: str
) -> None:
    """Names are joined with commas and a final "or"."""
    assert catalog.choice(names) == text


# --- what config validation makes of the catalog ------------------------------------------


@pytest.mark.parametrize("method", list(CHECKS_BY_METHOD))
def test_config_accepts_exactly_the_checks_of_the_method(tmp_path: Path, method: str) -> None:
    """Every allowed check loads; any other is refused naming the method and the choices."""
    allowed = CHECKS_BY_METHOD[method]
    target = _parse(tmp_path, _target(tmp_path, method, checks=list(allowed)))
    assert target.enabled_checks == list(allowed)
    for i, check in enumerate(c for c in catalog.CHECKS if c not in allowed):
        errors = _errors(tmp_path, _target(tmp_path, method, checks=[allowed[0], check]))
        assert errors == [
            f"targets[0].checks[1]: {check} is not available with {method} auth"
            f" (use {', '.join(allowed)})"
        ], i


@pytest.mark.parametrize(("method", "wrong_type"), [("certificate", "cloud"), ("apikey", "qseow")])
def test_config_refuses_a_method_on_the_other_target_type(
    tmp_path: Path, method: str, wrong_type: str
) -> None:
    """An auth method of the other kind of site is one line naming the valid ones."""
    errors = _errors(tmp_path, _target(tmp_path, method, type=wrong_type))
    allowed = ", ".join(METHODS_BY_TYPE[wrong_type])
    assert errors == [
        f"targets[0].auth.method: {method} is not valid for type {wrong_type} (use {allowed})"
    ]


@pytest.mark.parametrize("method", list(CHECKS_BY_METHOD))
def test_a_target_without_checks_runs_the_default_ones(tmp_path: Path, method: str) -> None:
    """No ``checks:`` means the method's defaults."""
    assert _parse(tmp_path, _target(tmp_path, method)).enabled_checks == DEFAULT_CHECKS[method]


def test_ports_of_the_checks_come_from_ports_or_port(tmp_path: Path) -> None:
    """Each check's port: the ``ports:`` entry of its service, or the front-end ``port``."""
    ports = {"repository": 14242, "proxy": 14243, "engine": 14747}
    cert = _parse(tmp_path, _target(tmp_path, "certificate", ports=ports, port=8443))
    assert {c: cert.port_for(c) for c in CHECKS_BY_METHOD["certificate"]} == {
        "repository": 14242,
        "proxy": 14243,
        "engine": 14747,
        "engine_session": 14747,
        "services": 14242,
        "license": 14242,
    }
    assert cert.via_proxy is False
    jwt = _parse(tmp_path, _target(tmp_path, "jwt", ports=ports, port=8443))
    assert {jwt.port_for(c) for c in CHECKS_BY_METHOD["jwt"]} == {8443}
    assert jwt.via_proxy is True
    cloud = _parse(tmp_path, _target(tmp_path, "apikey", port=9443))
    assert {cloud.port_for(c) for c in CHECKS_BY_METHOD["apikey"]} == {9443}
    assert cloud.via_proxy is False


# --- header auth: reserved names ----------------------------------------------------------


@pytest.mark.parametrize("name", RESERVED_HEADERS)
@pytest.mark.parametrize(
    "spell",
    [str, str.lower, str.upper, lambda n: f"{n}-Extra", lambda n: f"My-{n.lower()}"],
    ids=["as-is", "lower", "upper", "prefix-of", "inside"],
)
def test_every_reserved_header_name_is_refused_in_any_case_and_inside_another(
    tmp_path: Path, name: str, spell: Any
) -> None:
    """Qlik's own headers cannot carry the user, whatever their case or surroundings."""
    header = spell(name)
    target = _target(tmp_path, "header")
    target["auth"]["header_name"] = header
    assert _errors(tmp_path, target) == [
        f"targets[0].auth.header_name: header name {header!r} is reserved by Qlik Sense"
    ]


@pytest.mark.parametrize("header", ["X-Monitor-User", "X-Qlik-Monitor", "X-Qlik-Usr", "QlikUser"])
def test_other_header_names_are_accepted(tmp_path: Path, header: str) -> None:
    """A name that merely resembles Qlik's headers is fine."""
    target = _target(tmp_path, "header")
    target["auth"]["header_name"] = header
    auth = _parse(tmp_path, target).auth
    assert isinstance(auth, HeaderAuth)
    assert auth.header_name == header


# --- hosts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "https://sense.example.com",
        "sense.example.com://",
        "sense.example.com/hub",
        "sense.example.com/",
        "/sense",
        "sense example.com",
        "sense.example.com ",
        " sense.example.com",
        "sense\texample.com",
        "sense.example.com\n",
        "",
    ],
)
def test_a_host_that_is_not_a_bare_name_is_refused(tmp_path: Path, host: str) -> None:
    """A URL, a path or whitespace in ``host`` is one line showing the value and an example."""
    assert _errors(tmp_path, _target(tmp_path, "header", host=host)) == [
        f"targets[0].host: invalid host {host!r}: give a bare host name, e.g. sense.example.com"
    ]


@pytest.mark.parametrize(
    "host", ["sense.example.com", "QLIKSRV01", "10.0.0.5", "[2001:db8::1]", "sense:8443"]
)
def test_bare_hosts_and_addresses_are_accepted(tmp_path: Path, host: str) -> None:
    """Names, IPv4 and bracketed IPv6 addresses load as given."""
    assert _parse(tmp_path, _target(tmp_path, "header", host=host)).host == host


# --- defaults ------------------------------------------------------------------------------


def test_target_defaults(tmp_path: Path) -> None:
    """Every default a target gets when its config and ``defaults:`` say nothing."""
    target = _parse(tmp_path, _target(tmp_path, "certificate"))
    assert target.interval == 60.0
    assert target.timeout == 10.0
    assert (target.ports.repository, target.ports.proxy, target.ports.engine) == (
        4242,
        4243,
        4747,
    )
    assert target.port == 443
    assert target.tls_verify is True
    assert target.ca_file is None
    assert target.virtual_proxy == ""
    assert target.checks is None
    auth = target.auth
    assert isinstance(auth, CertificateAuth)
    assert (auth.user_directory, auth.user_id) == ("INTERNAL", "sa_api")
    assert auth.key_password is None


def test_jwt_defaults(tmp_path: Path) -> None:
    """A JWT is RS256 for Qlik's audience, minted for 5 minutes, with Qlik's claim names."""
    auth = _parse(tmp_path, _target(tmp_path, "jwt")).auth
    assert isinstance(auth, JwtAuth)
    assert auth.audience == "qlik.api/login/jwt-session"
    assert auth.algorithm == "RS256"
    assert auth.token_lifetime == 300.0
    assert (auth.claims.user_id, auth.claims.user_directory) == ("userId", "userDirectory")
    assert auth.extra_claims == {}


def test_header_defaults(tmp_path: Path) -> None:
    """Header auth has a static user directory unless a pattern is given."""
    auth = _parse(tmp_path, _target(tmp_path, "header")).auth
    assert isinstance(auth, HeaderAuth)
    assert (auth.user_directory, auth.header_pattern) == (None, None)
    assert auth.header_value() == "monitor"


def test_empty_config_has_defaults_and_no_targets(tmp_path: Path) -> None:
    """An empty file is valid: no targets, and the documented defaults."""
    config = parse_config(None, base_dir=tmp_path)
    assert config.targets == []
    assert (config.defaults.interval, config.defaults.timeout) == (60.0, 10.0)
    assert config.target("site") is None


# --- the virtual_proxy label --------------------------------------------------------------


def test_proxy_sessions_carry_the_virtual_proxy_label(tmp_path: Path) -> None:
    """``qlik_proxy_sessions`` is labelled ``target`` and ``virtual_proxy`` (a user contract),
    in both the collector's families and the cached text of ``/metrics``."""
    store = ResultStore()
    for target, vp, count in (("central", "jwt", 2), ("rim", "", 5)):
        store.record_start(target, "proxy", "n1")
        store.record(
            ProbeResult(
                target=target,
                node="n1",
                check="proxy",
                success=True,
                reason=None,
                error="",
                started=1.0,
                finished=1.5,
                duration=0.5,
                values=CheckValues(proxy_sessions=(vp, count)),
            )
        )
    collector = QlikCollector(store)
    text = collector.render_text().decode()
    assert 'qlik_proxy_sessions{target="central",node="n1",virtual_proxy="jwt"} 2' in text
    assert 'qlik_proxy_sessions{target="rim",node="n1",virtual_proxy=""} 5' in text
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "qlik_proxy_sessions"]
    assert [(s.labels, s.value) for s in family.samples] == [
        ({"target": "central", "node": "n1", "virtual_proxy": "jwt"}, 2.0),
        ({"target": "rim", "node": "n1", "virtual_proxy": ""}, 5.0),
    ]
    [collected] = [f for f in collector.collect() if f.name == "qlik_proxy_sessions"]
    assert [(s.labels, s.value) for s in collected.samples] == [
        ({"target": "central", "node": "n1", "virtual_proxy": "jwt"}, 2.0),
        ({"target": "rim", "node": "n1", "virtual_proxy": ""}, 5.0),
    ]
