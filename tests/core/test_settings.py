"""Process settings: flags over ``QLIK_EXPORTER_*`` variables over defaults, and clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from exporter.cli import build_parser, main, settings_from
from exporter.settings import Settings, split_address


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``QLIK_EXPORTER_*`` variable from the surrounding environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("QLIK_EXPORTER_"):
            monkeypatch.delenv(name)


def from_argv(*argv: str) -> Settings:
    """The settings the command line ``argv`` gives."""
    return settings_from(build_parser().parse_args(list(argv)))


def test_defaults_without_flags_or_environment() -> None:
    """With no flag and no variable every setting has its documented default."""
    s = from_argv()
    assert (s.config_file, s.web_listen_address, s.web_config_file) == (
        Path("qlik-sense-exporter.yml"),
        ":9851",
        None,
    )
    assert (s.log_level, s.log_format, s.shard_spec) == ("info", "logfmt", None)


def test_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``QLIK_EXPORTER_*`` variable overrides the default."""
    monkeypatch.setenv("QLIK_EXPORTER_LOG_LEVEL", "debug")
    monkeypatch.setenv("QLIK_EXPORTER_WEB_LISTEN_ADDRESS", "127.0.0.1:9000")
    monkeypatch.setenv("QLIK_EXPORTER_CONFIG_FILE", "/etc/qlik/exporter.yml")
    s = from_argv()
    assert (s.log_level, s.web_listen_address, s.config_file) == (
        "debug",
        "127.0.0.1:9000",
        Path("/etc/qlik/exporter.yml"),
    )


def test_flag_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag on the command line overrides the same setting's variable."""
    monkeypatch.setenv("QLIK_EXPORTER_LOG_LEVEL", "debug")
    monkeypatch.setenv("QLIK_EXPORTER_SHARD", "0/2")
    monkeypatch.setenv("QLIK_EXPORTER_CONFIG_FILE", "env.yml")
    s = from_argv("--log.level", "warning", "--shard", "1/2", "--config.file", "flag.yml")
    assert (s.log_level, s.shard_spec, s.config_file) == ("warning", (1, 2), Path("flag.yml"))


def test_environment_fills_settings_no_flag_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag for one setting leaves the variable of another setting in force."""
    monkeypatch.setenv("QLIK_EXPORTER_LOG_FORMAT", "json")
    s = from_argv("--log.level", "error")
    assert (s.log_level, s.log_format) == ("error", "json")


def test_subcommand_flag_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag given after a subcommand also overrides the variable."""
    monkeypatch.setenv("QLIK_EXPORTER_CONFIG_FILE", "env.yml")
    assert from_argv("probe", "central", "--config.file", "sub.yml").config_file == Path("sub.yml")


@pytest.mark.parametrize(("shard", "spec"), [("0/1", (0, 1)), ("1/3", (1, 3)), ("", None)])
def test_valid_shard_parses(shard: str, spec: tuple[int, int] | None) -> None:
    """``I/N`` with ``0 <= I < N`` is a shard; an empty value turns sharding off."""
    assert Settings(shard=shard).shard_spec == spec


@pytest.mark.parametrize("shard", ["2/2", "3/2", "1/0", "a/b", "-1/2", "1", "1/2/3"])
def test_invalid_shard_is_rejected(shard: str) -> None:
    """A shard outside ``0 <= I < N`` or not ``I/N`` is a validation error naming the value."""
    with pytest.raises(ValidationError) as info:
        Settings(shard=shard)
    assert f"invalid shard {shard!r}" in str(info.value)


@pytest.mark.parametrize(
    ("address", "split"),
    [(":9851", ("", 9851)), ("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:9851", ("::1", 9851))],
)
def test_listen_address_splits_into_host_and_port(address: str, split: tuple[str, int]) -> None:
    """``HOST:PORT``, with an empty or bracketed IPv6 host, splits into host and port."""
    assert split_address(address) == split


@pytest.mark.parametrize("address", ["nope", "host:", "host:http", ":65536", ""])
def test_invalid_listen_address_is_rejected(address: str) -> None:
    """A listen address without a numeric port in range is a validation error."""
    with pytest.raises(ValidationError):
        Settings(web_listen_address=address)


def test_main_invalid_shard_flag_exits_two(capsys: pytest.CaptureFixture[str]) -> None:
    """``--shard 2/2`` makes ``main`` exit 2 with one line naming the flag."""
    assert main(["--shard", "2/2", "--config.check"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "--shard: invalid shard '2/2': expected I/N with 0 <= I < N, e.g. 0/2\n"


def test_main_invalid_listen_address_flag_exits_two(capsys: pytest.CaptureFixture[str]) -> None:
    """``--web.listen-address nope`` makes ``main`` exit 2 with one line naming the flag."""
    assert main(["--web.listen-address", "nope", "--config.check"]) == 2
    assert capsys.readouterr().err == (
        "--web.listen-address: invalid listen address 'nope': expected HOST:PORT, e.g. :9851\n"
    )


def test_main_invalid_environment_names_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid ``QLIK_EXPORTER_SHARD`` makes ``main`` exit 2 naming the variable."""
    monkeypatch.setenv("QLIK_EXPORTER_SHARD", "5/2")
    assert main(["--config.check"]) == 2
    assert capsys.readouterr().err == (
        "QLIK_EXPORTER_SHARD: invalid shard '5/2': expected I/N with 0 <= I < N, e.g. 0/2\n"
    )


def test_main_reports_every_invalid_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two invalid settings give two error lines and exit 2."""
    monkeypatch.setenv("QLIK_EXPORTER_LOG_LEVEL", "loud")
    assert main(["--shard", "2/2", "--config.check"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("QLIK_EXPORTER_LOG_LEVEL: ")
    assert lines[1].startswith("--shard: invalid shard '2/2'")


def test_unknown_log_level_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """``--log.level loud`` is refused by the parser with exit code 2."""
    with pytest.raises(SystemExit) as info:
        main(["--log.level", "loud"])
    assert info.value.code == 2
    assert "--log.level" in capsys.readouterr().err


@pytest.mark.parametrize("address", [":²", "127.0.0.1:٩٠٠٠", ":65536", ":-1", "127.0.0.1"])
def test_listen_address_with_a_port_that_is_not_ascii_digits_in_range_is_refused(
    address: str,
) -> None:
    """Only 0-65535 in ASCII digits; other Unicode digits get the same clear message."""
    with pytest.raises(ValueError, match="invalid listen address"):
        split_address(address)
