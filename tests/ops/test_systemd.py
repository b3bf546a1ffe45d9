"""The systemd unit: sandboxed, reloadable, and accepted by systemd-analyze verify."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
from ops_helpers import DEPLOY

UNIT = DEPLOY / "systemd" / "qlik-sense-exporter.service"
SANDBOX = {
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "DynamicUser": "yes",
}


def service_section() -> dict[str, list[str]]:
    """The [Service] directives, each with every value it is given."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value.strip())
    return values


@pytest.mark.parametrize(("key", "value"), SANDBOX.items())
def test_unit_sets_sandbox_option(key: str, value: str) -> None:
    """Each required sandboxing option is set to its strict value."""
    assert service_section()[key] == [value]


def test_unit_restricts_address_families_and_system_calls() -> None:
    """Only IP and Unix sockets, and only the @system-service system calls."""
    directives = service_section()
    assert directives["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert "@system-service" in directives["SystemCallFilter"]


def test_unit_reads_config_read_only_and_secrets_as_credentials() -> None:
    """The config folder is read-only and secrets arrive through LoadCredential."""
    directives = service_section()
    assert directives["ReadOnlyPaths"] == ["/etc/qlik-sense-exporter"]
    assert directives["LoadCredential"]


def test_unit_reloads_with_sighup() -> None:
    """`systemctl reload` sends SIGHUP to the main process."""
    assert service_section()["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (ExecStart pointed at an existing binary)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    binary = shutil.which("qlik-sense-exporter") or "/bin/true"
    unit = tmp_path / UNIT.name
    text = UNIT.read_text(encoding="utf-8")
    unit.write_text(text.replace("/opt/qlik-sense-exporter/bin/qlik-sense-exporter", binary))
    proc = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "qlik-sense-exporter.service" not in proc.stderr, proc.stderr


def test_unit_file_is_well_formed_ini() -> None:
    """The unit parses as sections of key=value lines (with repeated keys allowed)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    assert parser.sections() == ["Unit", "Service", "Install"]


def test_unit_raises_the_descriptor_limit_above_the_served_connection_cap() -> None:
    """LimitNOFILE leaves room for probes beyond the exporter's --web.max-connections."""
    from exporter.listener import DEFAULT_MAX_CONNECTIONS

    [limit] = service_section()["LimitNOFILE"]
    assert int(limit) >= 4 * DEFAULT_MAX_CONNECTIONS
