"""Property tests: whatever YAML-like data the config holds, validation either succeeds or
raises ConfigError with clean one-line errors; nothing else ever escapes."""

from __future__ import annotations

import copy
import datetime
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import Config, ConfigError, load_config, parse_config

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,  # no example database in the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# `path: message` where path is keys, [index] or ['odd key'], or a message alone.
_PATH = r"(?:[A-Za-z0-9_-]+|\[.*?\])(?:\.[A-Za-z0-9_-]+|\[.*?\])*"
LINE = re.compile(rf"^{_PATH}: \S")
TOP_LEVEL = "the top level must be a mapping with a targets list, not a "

# Keys the config knows, so that random mappings often hit real validators.
KNOWN_KEYS = [
    "defaults",
    "targets",
    "name",
    "type",
    "host",
    "auth",
    "method",
    "checks",
    "ports",
    "port",
    "repository",
    "proxy",
    "engine",
    "virtual_proxy",
    "tls_verify",
    "ca_file",
    "interval",
    "timeout",
    "cert_file",
    "key_file",
    "key_password",
    "key_password_file",
    "key_password_env",
    "user_directory",
    "user_id",
    "token",
    "token_file",
    "token_env",
    "signing_key_file",
    "signing_cert_file",
    "algorithm",
    "audience",
    "token_lifetime",
    "claims",
    "extra_claims",
    "header_name",
    "header_pattern",
    "api_key",
    "api_key_file",
    "api_key_env",
]
KNOWN_VALUES = [
    "qseow",
    "cloud",
    "certificate",
    "jwt",
    "header",
    "apikey",
    "repository",
    "tenant",
    "engine_session",
    "30s",
    "500ms",
    "5q",
    "0s",
    "-1",
    "certs/client.pem",
    "missing.pem",
    "~nobody-here/x",
    "/jwt/",
    "X-Qlik-User",
    "$ud\\$id",
    "https://x",
    "HOME",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(KNOWN_VALUES),
    st.dates(min_value=datetime.date(1970, 1, 1), max_value=datetime.date(2100, 1, 1)),
    st.binary(max_size=4),
)
keys = st.one_of(
    st.sampled_from(KNOWN_KEYS),
    st.text(max_size=8),
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
)
yaml_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)


def valid_config() -> dict[str, Any]:
    """A config valid against the files of the ``base`` fixture, one target per method."""
    cert = {
        "method": "certificate",
        "cert_file": "certs/client.pem",
        "key_file": "certs/client_key.pem",
    }
    return {
        "defaults": {"interval": "60s", "timeout": "10s", "ca_file": "certs/root.pem"},
        "targets": [
            {
                "name": "central",
                "type": "qseow",
                "host": "sense.example.com",
                "checks": ["repository", "proxy", "engine", "engine_session"],
                "ports": {"repository": 4242, "proxy": 4243, "engine": 4747},
                "auth": cert,
            },
            {
                "name": "central-jwt",
                "type": "qseow",
                "host": "sense.example.com",
                "virtual_proxy": "/jwt/",
                "auth": {
                    "method": "jwt",
                    "signing_key_file": "certs/client_key.pem",
                    "user_directory": "LAB",
                    "user_id": "monitor",
                    "extra_claims": {"groups": ["a"]},
                },
            },
            {
                "name": "central-header",
                "type": "qseow",
                "host": "sense.example.com",
                "virtual_proxy": "hdr",
                "auth": {
                    "method": "header",
                    "header_name": "X-Sso-User",
                    "user_id": "monitor",
                    "user_directory": "LAB",
                    "header_pattern": "$ud\\$id",
                },
            },
            {
                "name": "cloud-eu",
                "type": "cloud",
                "host": "mytenant.eu.qlikcloud.com",
                "auth": {"method": "apikey", "api_key_file": "secrets/cloud.key"},
            },
        ],
    }


def containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every dict and list inside ``node``, ``node`` itself first."""
    out = [path]
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, dict | list):
            out += containers(value, (*path, key))
    return out


def at(node: Any, path: tuple[Any, ...]) -> Any:
    """The value at ``path`` inside ``node``."""
    for key in path:
        node = node[key]
    return node


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """The valid config with a few keys dropped, values replaced or keys added."""
    config = copy.deepcopy(valid_config())
    for _ in range(draw(st.integers(1, 4))):
        container = at(config, draw(st.sampled_from(containers(config))))
        op = draw(st.sampled_from(["drop", "replace", "add"]))
        if isinstance(container, dict):
            if op == "add" or not container:
                container[draw(keys)] = draw(yaml_like)
                continue
            key = draw(st.sampled_from(sorted(container, key=repr)))
        else:
            if op == "add" or not container:
                container.append(draw(yaml_like))
                continue
            key = draw(st.integers(0, len(container) - 1))
        if op == "drop":
            del container[key]
        else:
            container[key] = draw(yaml_like | st.sampled_from(KNOWN_VALUES))
    return config


def assert_clean(error: ConfigError, file: Path | None = None) -> None:
    """Every line of ``error`` is non-empty, one line, and starts with a path or a message.

    Problems with the file as a whole (unreadable, not YAML) start with the ``file`` path.
    """
    assert error.errors
    assert str(error) == "\n".join(error.errors)
    for line in error.errors:
        assert line
        assert line == line.strip()
        assert len(line.splitlines()) == 1
        whole_file = file is not None and line.startswith(f"{file}: ")
        assert LINE.match(line) or line.startswith(TOP_LEVEL) or whole_file, line


def check(data: Any, base: Path) -> None:
    """``parse_config(data)`` returns a Config or raises a clean ConfigError, nothing else."""
    try:
        result = parse_config(data, base_dir=base)
    except ConfigError as exc:
        assert_clean(exc)
    else:
        assert isinstance(result, Config)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A config folder holding the files ``valid_config`` names."""
    (tmp_path / "certs").mkdir()
    (tmp_path / "secrets").mkdir()
    for name in ("client.pem", "client_key.pem", "root.pem"):
        (tmp_path / "certs" / name).write_text("placeholder\n")
    (tmp_path / "secrets" / "cloud.key").write_text("key\n")
    return tmp_path


def test_valid_config_is_valid(base: Path) -> None:
    """The config the mutations start from is itself valid."""
    assert len(parse_config(valid_config(), base_dir=base).targets) == 4


@PROPERTY
@given(data=yaml_like)
def test_arbitrary_data_gives_config_or_clean_errors(base: Path, data: Any) -> None:
    """Any YAML-like value parses to a Config or raises ConfigError with clean lines."""
    check(data, base)


@PROPERTY
@given(data=st.dictionaries(st.sampled_from(["defaults", "targets"]), yaml_like, max_size=2))
def test_arbitrary_sections_give_config_or_clean_errors(base: Path, data: Any) -> None:
    """Random ``defaults:`` and ``targets:`` values parse or raise clean ConfigErrors."""
    check(data, base)


@PROPERTY
@given(data=mutated_configs())
def test_mutated_valid_config_gives_config_or_clean_errors(base: Path, data: Any) -> None:
    """A valid config with dropped keys or random values parses or raises clean errors."""
    check(data, base)


@PROPERTY
@given(
    text=st.text(
        alphabet=st.sampled_from(list("targets:-[]{}!&*|>'\"#%@` \n\tab1.?,")), max_size=80
    )
)
def test_arbitrary_yaml_text_gives_config_or_clean_errors(base: Path, text: str) -> None:
    """Any text in the config file loads to a Config or raises ConfigError with clean lines."""
    path = base / "config.yml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert_clean(exc, path)


@PROPERTY
@given(data=mutated_configs())
def test_mutated_config_file_gives_config_or_clean_errors(base: Path, data: Any) -> None:
    """A mutated config written as YAML loads or raises clean errors, never anything else."""
    path = base / "config.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert_clean(exc, path)
