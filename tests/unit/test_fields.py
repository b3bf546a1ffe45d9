"""The config's building blocks: how values are shown in errors, durations, paths, secrets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from exporter.auth.certificate import CertificateAuth
from exporter.fields import is_latin1, parse_duration, show


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("certs/client.pem", "certs/client.pem"),
        (42, "42"),
        ("", "''"),  # an empty value is visible
        ("a\nb", "'a\\nb'"),  # a line break would split the error line
        ("tab\there", "'tab\\there'"),
        (" padded", "' padded'"),  # surrounding spaces would be invisible
        ("padded ", "'padded '"),
    ],
)
def test_show_quotes_only_what_would_not_read_as_one_line(value: object, shown: str) -> None:
    """Plain values as they are; empty, unprintable or padded ones quoted."""
    assert show(value) == shown


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("2.5", 2.5), (7, 7.0)],
)
def test_durations_in_every_unit(value: object, seconds: float) -> None:
    """Milliseconds, seconds, minutes, hours, or a bare number of seconds."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "expected a duration like 30s, 5m or 500ms"),
        ("abc", "invalid duration 'abc': expected a duration like 30s, 5m or 500ms"),
        ("5d", "invalid duration '5d': expected a duration like 30s, 5m or 500ms"),
        (math.inf, "invalid duration value: expected a duration like 30s, 5m or 500ms"),
        (10**400, "invalid duration value: expected a duration like 30s, 5m or 500ms"),
        ([5], "invalid duration value: expected a duration like 30s, 5m or 500ms"),
        (0, "duration must be positive"),
        ("0s", "duration must be positive"),
    ],
)
def test_bad_durations_say_what_is_expected(value: object, message: str) -> None:
    """A wrong duration shows the text given (never a non-text value) and an example."""
    with pytest.raises(ValueError, match=r".") as caught:
        parse_duration(value)
    assert str(caught.value) == message


def test_a_file_validated_without_a_config_folder_is_looked_up_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings validated on their own (no config file) resolve relative paths against the
    working folder."""
    (tmp_path / "client.pem").write_text("placeholder\n")
    (tmp_path / "client_key.pem").write_text("placeholder\n")
    monkeypatch.chdir(tmp_path)
    auth = CertificateAuth.model_validate(
        {"method": "certificate", "cert_file": "client.pem", "key_file": "client_key.pem"}
    )
    assert auth.cert_file == Path("client.pem")
    assert auth.cert_file.is_file()
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(ValidationError, match=r"file not found: client\.pem"):
        CertificateAuth.model_validate(
            {"method": "certificate", "cert_file": "client.pem", "key_file": "client_key.pem"}
        )


@pytest.mark.parametrize(
    ("text", "latin1"),
    [("monitor", True), ("müller", True), ("Zoë Ñ", True), ("łukasz", False), ("用户", False)],
)
def test_latin1_is_what_an_http_header_can_carry(text: str, latin1: bool) -> None:
    """Header values are sent as Latin-1: anything beyond it is refused at load."""
    assert is_latin1(text) is latin1
