"""Reading the config file: YAML errors, nesting limits, error lines and the lenient load.

The lenient load (``missing_files``) is the daemon's: a credential file that is not there yet
fails only its target. ``--config.check`` and the strict load refuse the file instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from exporter.auth.apikey import ApiKeyAuth
from exporter.auth.certificate import CertificateAuth
from exporter.config import MAX_DEPTH, ConfigError, load_config, parse_config, read_yaml


def _yaml_errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_yaml(path, "config file")
    return [line.removeprefix(f"{path}: ") for line in caught.value.errors]


def _loads(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "config.yml"
    path.write_text(text, encoding="utf-8")
    return read_yaml(path, "config file")


def test_a_config_error_reads_as_its_lines() -> None:
    """The exception's text is its lines, one per line."""
    exc = ConfigError(["targets[0].host: required", "targets[1].name: required"])
    assert str(exc) == "targets[0].host: required\ntargets[1].name: required"
    assert exc.errors == ["targets[0].host: required", "targets[1].name: required"]


# --- nesting ---------------------------------------------------------------------------------


def test_flow_nesting_up_to_the_limit_loads(tmp_path: Path) -> None:
    """Exactly MAX_DEPTH nested brackets are fine."""
    assert MAX_DEPTH == 64
    data = _loads(tmp_path, "a: " + "[" * 64 + "]" * 64 + "\n")
    depth = 0
    while isinstance(data, dict | list) and data:
        data = data["a"] if isinstance(data, dict) else data[0]
        depth += 1
    assert depth == 64  # the mapping and 63 lists around the innermost empty one


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: " + "[" * 65 + "]" * 65 + "\n", 1),
        ("# a comment\nb: 1\nc: " + "{x: " * 65 + "}" * 65 + "\n", 3),
        ("a: '[[['\nb: \"{{\"\nc: " + "[" * 65 + "]" * 65 + "\n", 3),
        ("a: [[]\n" + "[" * 64 + "]" * 65 + "\n", 2),  # one left open, then 64 more
    ],
    ids=["first-line", "after-comment", "after-quotes", "unclosed"],
)
def test_flow_nesting_beyond_the_limit_is_one_line_naming_the_line(
    tmp_path: Path, text: str, line: int
) -> None:
    """Nesting deeper than MAX_DEPTH names the line where it goes too deep."""
    assert _yaml_errors(tmp_path, text) == [
        f"invalid YAML at line {line}: nested more than 64 deep"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "a: [[]]\nb: " + "[" * 64 + "]" * 64 + "\n",  # closed brackets count down to zero
        "a: [" + "[], " * 100 + "[]]\n",  # many siblings are not depth
        "a: '" + "[" * 100 + "'\n",  # in quotes
        'a: "' + "{" * 100 + '"\n',
        "# " + "[" * 100 + "\na: 1\n",  # in a comment
        "a: 1  # " + "{" * 100 + "\n",
        "a: x" + "]" * 70 + "}" * 70 + "\n",  # closing brackets in a plain value
    ],
    ids=["closed", "siblings", "single-quoted", "double-quoted", "comment", "trailing", "plain"],
)
def test_brackets_that_do_not_nest_do_not_count(tmp_path: Path, text: str) -> None:
    """Closed brackets, quoted strings and comments are not nesting."""
    assert _loads(tmp_path, text) is not None


def test_stray_closing_brackets_do_not_go_below_zero(tmp_path: Path) -> None:
    """A ``]`` too many (a YAML error of its own) does not buy room for deeper nesting."""
    text = "a: 'x' ]]]]]\n" + "b: " + "[" * 65 + "]" * 65 + "\n"
    assert _yaml_errors(tmp_path, text) == ["invalid YAML at line 2: nested more than 64 deep"]


def test_block_nesting_by_indentation_is_limited_too(tmp_path: Path) -> None:
    """A line indented more than twice MAX_DEPTH spaces is too deep."""
    text = "a:\n" + " " * 129 + "b: 1\n"
    assert _yaml_errors(tmp_path, text) == ["invalid YAML at line 2: nested more than 64 deep"]


# --- YAML and file errors -------------------------------------------------------------------


def test_a_character_yaml_cannot_read_is_a_syntax_error_without_position(tmp_path: Path) -> None:
    """PyYAML's reader errors carry no mark or problem: the line still says what failed."""
    assert _yaml_errors(tmp_path, "a: \x07\n") == ["invalid YAML: syntax error"]


def test_a_yaml_syntax_error_names_line_column_and_problem(tmp_path: Path) -> None:
    """A marked YAML error gives its 1-based position and PyYAML's problem text."""
    [line] = _yaml_errors(tmp_path, "a: [1, 2\nb: 3\n")
    assert line.startswith("invalid YAML at line 2, column 2: ")


def test_a_config_that_is_a_directory_cannot_be_read(tmp_path: Path) -> None:
    """An unreadable path is one line naming it and why."""
    with pytest.raises(ConfigError) as caught:
        read_yaml(tmp_path, "config file")
    [line] = caught.value.errors
    assert line.startswith(f"{tmp_path}: cannot read config file: ")
    assert "Is a directory" in line


# --- error lines -------------------------------------------------------------------------------


def test_an_odd_nested_key_is_quoted_after_its_path(tmp_path: Path) -> None:
    """A key with spaces deep in a target keeps the path before it."""
    data = {
        "targets": [
            {
                "name": "a",
                "type": "cloud",
                "host": "h",
                "auth": {"method": "apikey", "api_key": "k", "odd key": 1},
            }
        ]
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=tmp_path)
    assert caught.value.errors == ["targets[0].auth['odd key']: unknown key"]


# --- the lenient load ------------------------------------------------------------------------


def _cert_target(**auth: Any) -> dict[str, Any]:
    return {
        "targets": [
            {
                "name": "a",
                "type": "qseow",
                "host": "h",
                "auth": {"method": "certificate", "cert_file": "certs/client.pem"} | auth,
            }
        ]
    }


def test_the_strict_load_refuses_a_missing_credential_file(tmp_path: Path) -> None:
    """Without ``missing_files`` a file that is not there is a config error."""
    with pytest.raises(ConfigError) as caught:
        parse_config(_cert_target(key_file="certs/key.pem"), base_dir=tmp_path)
    assert caught.value.errors == [
        "targets[0].auth.cert_file: file not found: certs/client.pem",
        "targets[0].auth.key_file: file not found: certs/key.pem",
    ]


def test_the_lenient_load_lists_missing_credential_files(tmp_path: Path) -> None:
    """With ``missing_files`` the config loads and every missing file is listed, resolved."""
    missing: list[str] = []
    config = parse_config(
        _cert_target(key_file="certs/key.pem"), base_dir=tmp_path, missing_files=missing
    )
    assert missing == [str(tmp_path / "certs/client.pem"), str(tmp_path / "certs/key.pem")]
    auth = config.targets[0].auth
    assert isinstance(auth, CertificateAuth)
    assert auth.cert_file == tmp_path / "certs/client.pem"


def test_load_config_passes_the_lenient_list_on(tmp_path: Path) -> None:
    """``load_config`` with ``missing_files`` is lenient too, against the file's folder."""
    path = tmp_path / "config.yml"
    path.write_text(
        "targets:\n  - name: a\n    type: qseow\n    host: h\n"
        "    auth: {method: certificate, cert_file: c.pem, key_file: k.pem}\n",
        encoding="utf-8",
    )
    missing: list[str] = []
    load_config(path, missing_files=missing)
    assert missing == [str(tmp_path / "c.pem"), str(tmp_path / "k.pem")]
    with pytest.raises(ConfigError):
        load_config(path)


def test_a_missing_secret_file_loads_empty_in_the_lenient_load(tmp_path: Path) -> None:
    """A secret file that is not there yet is listed and holds nothing (never sent: the file
    is read again on every probe); the strict load refuses it."""
    data = {
        "targets": [
            {
                "name": "a",
                "type": "cloud",
                "host": "h",
                "auth": {"method": "apikey", "api_key_file": "secrets/cloud.key"},
            }
        ]
    }
    missing: list[str] = []
    auth = parse_config(data, base_dir=tmp_path, missing_files=missing).targets[0].auth
    assert isinstance(auth, ApiKeyAuth)
    assert isinstance(auth.api_key, SecretStr)
    assert auth.api_key.get_secret_value() == ""
    assert auth.api_key_file == tmp_path / "secrets/cloud.key"
    assert missing == [str(tmp_path / "secrets/cloud.key")]
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=tmp_path)
    assert caught.value.errors == [
        "targets[0].auth.api_key_file: file not found: secrets/cloud.key"
    ]


def test_an_unreadable_secret_file_is_named_with_the_reason(tmp_path: Path) -> None:
    """A secret file that is there but is not UTF-8 text is one line naming the file and the
    reason (never its content) in the strict load, and an empty secret in the lenient one."""
    (tmp_path / "cloud.key").write_bytes(b"\xff\xfe s3cr3t")
    data = {
        "targets": [
            {
                "name": "a",
                "type": "cloud",
                "host": "h",
                "auth": {"method": "apikey", "api_key_file": "cloud.key"},
            }
        ]
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=tmp_path)
    assert caught.value.errors == [
        "targets[0].auth.api_key_file: cannot read cloud.key: UnicodeDecodeError"
    ]
    missing: list[str] = []
    auth = parse_config(data, base_dir=tmp_path, missing_files=missing).targets[0].auth
    assert isinstance(auth, ApiKeyAuth)
    assert auth.api_key.get_secret_value() == ""
    assert missing == []  # it is there: the probe will say why it cannot be used
