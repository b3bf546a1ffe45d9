"""The YAML configuration: one bad file per error with its exact message, valid configs, and
``--config.check`` through the command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from exporter.auth.apikey import ApiKeyAuth
from exporter.auth.certificate import CertificateAuth
from exporter.cli import main
from exporter.config import ConfigError, load_config, parse_config

TESTDATA = Path(__file__).parent / "testdata"
BAD = sorted((TESTDATA / "bad").glob("*.yml"))
UNSET_ENV = "QLIK_EXPORTER_TEST_UNSET_API_KEY"
SECRET_MARK = "s3cr3t"  # every inline secret in testdata contains this


def expected_lines(path: Path) -> list[str]:
    """The ``# expect:`` lines at the top of a bad file, ``{file}`` standing for its path."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("# expect: "):
            break
        lines.append(line.removeprefix("# expect: ").replace("{file}", str(path)))
    return lines


def errors_of(path: Path) -> list[str]:
    """The error lines ``load_config`` reports for ``path``."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.errors


def write(folder: Path, data: Any, name: str = "config.yml") -> Path:
    """``data`` as a YAML file in ``folder``."""
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder with placeholder certificate, key and secret files next to a config file."""
    (tmp_path / "certs").mkdir()
    (tmp_path / "secrets").mkdir()
    for name in ("client.pem", "client_key.pem", "root.pem", "bundle.pfx", "sign.pem"):
        (tmp_path / "certs" / name).write_text("placeholder\n")
    (tmp_path / "secrets" / "cloud.key").write_text("file-api-key-value\n")
    (tmp_path / "secrets" / "monitor.jwt").write_text("file-jwt-value\n")
    (tmp_path / "secrets" / "key_password").write_text("file-key-password\n")
    return tmp_path


def real_credentials(folder: Path) -> Path:
    """Replace the placeholders of ``files`` with credentials that pass the offline checks of
    ``--config.check``: a client certificate, its key and CA, and a JWT-shaped API key."""
    import time

    import jwt

    from exporter.sim.certs import CertificateAuthority, write_client_files

    out = write_client_files(folder / "issued", CertificateAuthority.create("Test-CA"))
    for name, path in (
        ("client.pem", out.cert_file),
        ("client_key.pem", out.key_file),
        ("root.pem", out.root_file),
    ):
        (folder / "certs" / name).write_bytes(path.read_bytes())
    key = jwt.encode({"exp": int(time.time()) + 86400, "sub": "u"}, "k" * 32, algorithm="HS256")
    (folder / "secrets" / "cloud.key").write_text(key + "\n")
    return folder


def cert_target(name: str = "central", **over: Any) -> dict[str, Any]:
    """A valid certificate-auth target whose files live in ``certs/``."""
    target: dict[str, Any] = {
        "name": name,
        "type": "qseow",
        "host": "sense.example.com",
        "auth": {
            "method": "certificate",
            "cert_file": "certs/client.pem",
            "key_file": "certs/client_key.pem",
        },
    }
    return {**target, **over}


def cloud_target(name: str = "cloud-eu", **auth: Any) -> dict[str, Any]:
    """A valid Cloud target with the given ``apikey`` auth keys."""
    return {
        "name": name,
        "type": "cloud",
        "host": "mytenant.eu.qlikcloud.com",
        "auth": {"method": "apikey", **auth},
    }


# -- one bad file per error ---------------------------------------------------------------


def test_bad_files_cover_every_listed_error() -> None:
    """There is one bad file per error case, at least 25 of them."""
    assert len(BAD) >= 25


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_reports_exactly_the_expected_lines(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a bad file raises ConfigError with exactly its ``# expect:`` lines."""
    monkeypatch.delenv(UNSET_ENV, raising=False)
    expected = expected_lines(path)
    assert expected, f"{path.name} has no '# expect:' line"
    assert sorted(errors_of(path)) == sorted(expected)


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_error_never_contains_an_inline_secret(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No error line of a bad file repeats an inline secret written in it."""
    monkeypatch.delenv(UNSET_ENV, raising=False)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert SECRET_MARK not in str(info.value)


def test_missing_config_file_is_named() -> None:
    """A config file that does not exist is reported by its path."""
    path = TESTDATA / "no-such-config.yml"
    assert errors_of(path) == [f"{path}: config file not found"]


def test_non_finite_duration_is_rejected() -> None:
    """A YAML ``.inf`` or ``.nan`` interval is an invalid duration, not an endless one."""
    for value in (float("inf"), float("nan"), 10**400, "9" * 400 + "s"):
        with pytest.raises(ConfigError) as info:
            parse_config({"targets": [cert_target(interval=value)]}, base_dir=TESTDATA)
        [line] = info.value.errors
        assert line.startswith("targets[0].interval: invalid duration")


def test_unknown_home_directory_is_a_missing_file() -> None:
    """A ``~user`` path for a user that does not exist is reported as not found."""
    target = cert_target(ca_file="~no-such-user-qlik/root.pem")
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [target]}, base_dir=TESTDATA)
    assert info.value.errors[0] == "targets[0].ca_file: file not found: ~no-such-user-qlik/root.pem"


def test_file_name_too_long_is_a_missing_file() -> None:
    """A file name longer than the file system allows is reported as not found."""
    name = "x" * 300 + ".pem"
    target = cert_target(ca_file=name)
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [target]}, base_dir=TESTDATA)
    assert info.value.errors == [f"targets[0].ca_file: file not found: {name}"]


def test_file_key_that_is_not_a_string_is_rejected() -> None:
    """A number where a file path belongs is reported as not a path."""
    target = cert_target(auth={**cert_target()["auth"], "cert_file": 5})
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [target]}, base_dir=TESTDATA)
    assert info.value.errors == ["targets[0].auth.cert_file: expected a file path"]


def test_odd_unknown_key_is_quoted_on_one_line() -> None:
    """An unknown key containing a newline is quoted so its error stays one line."""
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [], "bad\nkey": 1}, base_dir=TESTDATA)
    assert info.value.errors == ["['bad\\nkey']: unknown key"]


def test_bad_claim_value_gives_one_line() -> None:
    """An extra claim of an unsupported type is one line naming the claim."""
    auth = {"method": "jwt", "token": "t", "extra_claims": {"groups": {"a": 1}}}
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [cert_target(auth=auth)]}, base_dir=TESTDATA)
    assert info.value.errors == [
        "targets[0].auth.extra_claims: claim groups must be a string, integer, boolean"
        " or list of strings"
    ]


# -- valid configs --------------------------------------------------------------------------


def test_design_example_is_valid(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example configuration from DESIGN.md loads with every target."""
    config = {
        "defaults": {"interval": "60s", "timeout": "10s", "tls_verify": True},
        "targets": [
            {
                **cert_target(),
                "checks": ["repository", "proxy", "engine", "engine_session"],
                "ports": {"repository": 4242, "proxy": 4243, "engine": 4747},
                "ca_file": "certs/root.pem",
            },
            {
                "name": "central-jwt",
                "type": "qseow",
                "host": "sense.example.com",
                "port": 443,
                "virtual_proxy": "jwt",
                "auth": {"method": "jwt", "token_file": "secrets/monitor.jwt"},
            },
            {
                "name": "central-header",
                "type": "qseow",
                "host": "sense.example.com",
                "virtual_proxy": "hdr",
                "auth": {"method": "header", "header_name": "X-Sso-User", "user_id": "monitor"},
            },
            cloud_target(api_key_file="secrets/cloud.key"),
        ],
    }
    loaded = load_config(write(files, config))
    assert [t.name for t in loaded.targets] == [
        "central",
        "central-jwt",
        "central-header",
        "cloud-eu",
    ]


def test_defaults_are_merged_into_targets(files: Path) -> None:
    """A key set only in ``defaults:`` applies to every target."""
    data = {
        "defaults": {"interval": "2m", "tls_verify": False},
        "targets": [cert_target("a"), cert_target("b")],
    }
    config = load_config(write(files, data))
    assert [(t.interval, t.tls_verify) for t in config.targets] == [(120.0, False)] * 2


def test_target_value_wins_over_default(files: Path) -> None:
    """A target's own value overrides the same key in ``defaults:``."""
    data = {
        "defaults": {"interval": "2m", "port": 8443},
        "targets": [cert_target("a", interval="30s"), cert_target("b")],
    }
    a, b = load_config(write(files, data)).targets
    assert (a.interval, a.port, b.interval, b.port) == (30.0, 8443, 120.0, 8443)


def test_empty_defaults_and_targets_mean_none(files: Path) -> None:
    """``defaults:`` and ``targets:`` with every entry commented out are valid and empty."""
    path = files / "config.yml"
    path.write_text("defaults:\n#  interval: 30s\ntargets:\n#  - name: x\n")
    assert load_config(path).targets == []


def test_empty_file_has_no_targets(files: Path) -> None:
    """An empty config file is valid and configures no target."""
    path = files / "config.yml"
    path.write_text("")
    assert load_config(path).targets == []


def test_relative_paths_resolve_against_config_folder(
    files: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative file paths are taken from the config file's folder, not the working directory."""
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    data = {"defaults": {"ca_file": "certs/root.pem"}, "targets": [cert_target()]}
    [target] = load_config(write(files, data)).targets
    assert isinstance(target.auth, CertificateAuth)
    assert target.auth.cert_file == files / "certs" / "client.pem"
    assert target.auth.key_file == files / "certs" / "client_key.pem"
    assert target.ca_file == files / "certs" / "root.pem"


def test_relative_path_is_not_found_in_working_directory(
    files: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that exists only relative to the working directory is reported as not found."""
    sub = files / "conf"
    sub.mkdir()
    monkeypatch.chdir(files)
    with pytest.raises(ConfigError) as info:
        load_config(write(sub, {"targets": [cert_target()]}))
    assert info.value.errors == [
        "targets[0].auth.cert_file: file not found: certs/client.pem",
        "targets[0].auth.key_file: file not found: certs/client_key.pem",
    ]


def test_pkcs12_bundle_needs_no_key_file(files: Path) -> None:
    """A ``.pfx`` client certificate is valid without ``key_file``."""
    auth = {"method": "certificate", "cert_file": "certs/bundle.pfx"}
    [target] = load_config(write(files, {"targets": [cert_target(auth=auth)]})).targets
    assert isinstance(target.auth, CertificateAuth)
    assert target.auth.is_pkcs12


@pytest.mark.parametrize("source", ["file", "env", "inline"])
def test_secret_sources_give_same_secret(
    files: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """An API key from ``_file``, ``_env`` or inline becomes the same SecretStr."""
    monkeypatch.setenv("QLIK_TEST_CLOUD_KEY", "file-api-key-value")
    auth = {
        "file": {"api_key_file": "secrets/cloud.key"},
        "env": {"api_key_env": "QLIK_TEST_CLOUD_KEY"},
        "inline": {"api_key": "file-api-key-value"},
    }[source]
    [target] = load_config(write(files, {"targets": [cloud_target(**auth)]})).targets
    assert isinstance(target.auth, ApiKeyAuth)
    assert target.auth.api_key == SecretStr("file-api-key-value")


def test_secret_file_path_is_kept_resolved(files: Path) -> None:
    """An ``api_key_file`` is kept as a path resolved against the config folder."""
    data = {"targets": [cloud_target(api_key_file="secrets/cloud.key")]}
    [target] = load_config(write(files, data)).targets
    assert isinstance(target.auth, ApiKeyAuth)
    assert target.auth.api_key_file == files / "secrets" / "cloud.key"


def test_secret_values_never_appear_in_repr_or_json(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No secret value is visible in ``repr``, ``str`` or ``model_dump_json`` of a Config."""
    monkeypatch.setenv("QLIK_TEST_JWT", "env-jwt-value")
    data = {
        "targets": [
            cert_target(auth={**cert_target()["auth"], "key_password": "inline-key-password"}),
            cert_target("jwt-env", auth={"method": "jwt", "token_env": "QLIK_TEST_JWT"}),
            cert_target("jwt-file", auth={"method": "jwt", "token_file": "secrets/monitor.jwt"}),
            cloud_target(api_key_file="secrets/cloud.key"),
            cloud_target("cloud-inline", api_key="inline-api-key"),
        ]
    }
    config = load_config(write(files, data))
    shown = repr(config) + str(config) + config.model_dump_json() + repr(config.model_dump())
    for value in (
        "inline-key-password",
        "env-jwt-value",
        "file-jwt-value",
        "file-api-key-value",
        "inline-api-key",
    ):
        assert value not in shown


def test_secret_value_never_appears_in_config_error(files: Path) -> None:
    """A ConfigError about a target with an inline secret does not repeat the secret."""
    target = cloud_target(api_key="inline-api-key", bogus=1)
    target["auth"]["api_key_env"] = "ALSO"
    data = {"targets": [target, {**cloud_target("x", api_key=["inline-api-key"])}]}
    with pytest.raises(ConfigError) as info:
        load_config(write(files, data))
    assert info.value.errors
    assert "inline-api-key" not in str(info.value)
    assert "inline-api-key" not in repr(info.value.errors)


@pytest.mark.parametrize(
    ("target", "checks"),
    [(cert_target(), ["repository"]), (cloud_target(api_key="k"), ["tenant"])],
    ids=["qseow", "cloud"],
)
def test_default_checks_per_type(files: Path, target: dict[str, Any], checks: list[str]) -> None:
    """A target without ``checks:`` runs its type's default checks."""
    [loaded] = load_config(write(files, {"targets": [target]})).targets
    assert loaded.checks is None
    assert loaded.enabled_checks == checks


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        (45, 45.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("1.5m", 90.0),
    ],
)
def test_durations_parse_to_seconds(value: object, seconds: float) -> None:
    """Durations with a unit, or plain numbers of seconds, parse to seconds."""
    data = {"targets": [cert_target(interval="1h", timeout=value)]}
    [target] = parse_config(data, base_dir=TESTDATA).targets
    assert target.timeout == seconds


@pytest.mark.parametrize(("given", "prefix"), [("/jwt/", "jwt"), ("jwt", "jwt"), ("/", "")])
def test_virtual_proxy_prefix_is_normalized(given: str, prefix: str) -> None:
    """Leading and trailing slashes are dropped from ``virtual_proxy``."""
    data = {"targets": [cert_target(virtual_proxy=given)]}
    [target] = parse_config(data, base_dir=TESTDATA).targets
    assert target.virtual_proxy == prefix


def test_header_pattern_fills_directory_and_user() -> None:
    """A dynamic header pattern is filled with the user directory and id."""
    auth = {
        "method": "header",
        "header_name": "X-Sso-User",
        "user_id": "monitor",
        "user_directory": "LAB",
        "header_pattern": "$ud\\$id",
    }
    [target] = parse_config({"targets": [cert_target(auth=auth)]}, base_dir=TESTDATA).targets
    assert target.auth.header_value() == "LAB\\monitor"  # type: ignore[union-attr]


# -- --config.check -------------------------------------------------------------------------


def test_config_check_valid_exits_zero_with_summary(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config.check`` on a valid file exits 0 and prints one summary line."""
    real_credentials(files)
    data = {
        "targets": [
            cert_target(checks=["repository", "proxy"]),
            cloud_target(api_key_file="secrets/cloud.key"),
        ]
    }
    path = write(files, data)
    assert main(["--config.file", str(path), "--config.check"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK (2 targets, 3 checks)\n"
    assert err == ""


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_config_check_invalid_exits_one_with_error_lines(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--config.check`` on a bad file exits 1 and prints exactly its error lines on stderr."""
    monkeypatch.delenv(UNSET_ENV, raising=False)
    assert main(["--config.file", str(path), "--config.check"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert sorted(err.splitlines()) == sorted(expected_lines(path))


def test_config_check_missing_file_exits_one_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config.check`` on a missing file exits 1 and names the file."""
    path = tmp_path / "absent.yml"
    assert main(["--config.file", str(path), "--config.check"]) == 1
    assert capsys.readouterr().err == f"{path}: config file not found\n"


def test_config_check_reads_file_from_environment(
    files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--config.check`` without ``--config.file`` checks ``QLIK_EXPORTER_CONFIG_FILE``."""
    path = write(real_credentials(files), {"targets": [cert_target()]})
    monkeypatch.setenv("QLIK_EXPORTER_CONFIG_FILE", os.fspath(path))
    assert main(["--config.check"]) == 0
    assert capsys.readouterr().out == f"{path}: OK (1 targets, 1 checks)\n"


@pytest.mark.parametrize(
    "text",
    ["targets:\n  - name: a\n   host: b\n", "targets: [a, b\n", "a: b: c\n", "targets:\n\t- x\n"],
)
def test_yaml_errors_read_the_same_with_and_without_libyaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """The config is parsed by libyaml when PyYAML has it, but errors keep PyYAML's wording."""
    import exporter.config as config_module

    path = tmp_path / "bad.yml"
    path.write_text(text)
    lines = {}
    for loader in (yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        monkeypatch.setattr(config_module, "_SAFE_LOADER", loader)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        lines[loader.__name__] = info.value.errors
    assert len(set(map(tuple, lines.values()))) == 1, lines
    assert next(iter(lines.values()))[0].startswith(f"{path}: invalid YAML at line ")


def test_config_is_parsed_with_libyaml_when_pyyaml_has_it() -> None:
    """PyYAML's wheels bundle libyaml; a large config then parses in C."""
    import exporter.config as config_module

    assert yaml.__with_libyaml__
    assert config_module._SAFE_LOADER is yaml.CSafeLoader


@pytest.mark.parametrize(
    ("auth", "line"),
    [
        (
            {"user_id": "monitor\r\nHost: evil"},
            "targets[0].auth.user_id: the header value must not hold line breaks or control "
            "characters",
        ),
        (
            {"user_id": "Łukasz"},
            "targets[0].auth.user_id: the header value can only hold Latin-1 characters",
        ),
        (
            {"user_id": "monitor", "user_directory": "LAB\n", "header_pattern": "$ud\\$id"},
            "targets[0].auth.header_pattern: the header value must not hold line breaks or "
            "control characters",
        ),
    ],
)
def test_header_auth_values_that_cannot_be_sent_as_a_header_are_refused(
    auth: dict[str, str], line: str
) -> None:
    """Header auth sends its value raw: a line break would inject headers, and HTTP/1.1 only
    carries Latin-1; both are config errors, not probe failures."""
    target = {
        "name": "h",
        "type": "qseow",
        "host": "sense.example.com",
        "virtual_proxy": "hdr",
        "auth": {"method": "header", "header_name": "X-Monitor", **auth},
    }
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [target]}, base_dir=Path())
    assert info.value.errors == [line]


def test_header_auth_accepts_latin1_user_ids() -> None:
    """Accented Latin-1 names are what many directories hold; they go through."""
    target = {
        "name": "h",
        "type": "qseow",
        "host": "sense.example.com",
        "virtual_proxy": "hdr",
        "auth": {"method": "header", "header_name": "X-Monitor", "user_id": "Zoë"},
    }
    assert parse_config({"targets": [target]}, base_dir=Path()).targets[0].auth.method == "header"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("targets: " + "[" * 100_000 + "]" * 100_000 + "\n", 1),
        ("targets:\n  - name: a\n    auth: " + "{a: " * 70 + "1" + "}" * 70 + "\n", 3),
        ("targets:\n" + "".join(" " * (2 * i) + "- \n" for i in range(200)), 67),
    ],
    ids=["flow", "flow-in-a-target", "block"],
)
def test_deeply_nested_yaml_is_one_line_and_exit_1(
    tmp_path: Path, text: str, line: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """YAML nested beyond any real config is refused in one line before the parser recurses
    (a crash or minutes of CPU otherwise), and ``--config.check`` exits 1."""
    path = tmp_path / "deep.yml"
    path.write_text(text)
    assert errors_of(path) == [f"{path}: invalid YAML at line {line}: nested more than 64 deep"]
    assert main(["--config.file", str(path), "--config.check"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_nesting_inside_quotes_and_comments_does_not_count(tmp_path: Path) -> None:
    """Brackets in strings and comments are text, not nesting."""
    path = tmp_path / "ok.yml"
    path.write_text(
        "# " + "[" * 100 + '\ntargets: []\ndefaults: {virtual_proxy: "' + "{" * 100 + '"}\n'
    )
    assert errors_of(path) == [
        "defaults.virtual_proxy: invalid virtual proxy prefix '" + "{" * 100 + "'"
    ]
