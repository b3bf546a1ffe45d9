"""Fixtures for the operations tests: Debian's Prometheus, promtool, Alertmanager and amtool,
fetched when missing.

Each comes from ``PATH`` when it is installed (``.ci/run`` installs them); otherwise Debian's
``prometheus`` or ``prometheus-alertmanager`` package is fetched with ``apt-get download`` and
unpacked with ``dpkg -x`` into a private cache folder, so the package's maintainer scripts never
run and no system service is started.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest
from ops_helpers import CACHE, AlertmanagerTools, PrometheusTools

APT_TIMEOUT = 600


def _prometheus_in(root: Path) -> PrometheusTools:
    return PrometheusTools(root / "prometheus", root / "promtool")


def _alertmanager_in(root: Path) -> AlertmanagerTools:
    # Debian names the server prometheus-alertmanager.
    return AlertmanagerTools(root / "prometheus-alertmanager", root / "amtool")


def _on_path(*names: str) -> Path | None:
    """The folder holding every one of ``names`` on PATH, if there is one."""
    found = [shutil.which(name) for name in names]
    if all(found) and len({Path(f).parent for f in found if f}) == 1:
        return Path(str(found[0])).parent
    return None


def _apt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=APT_TIMEOUT,
        check=False,
    )


def _unavailable(message: str) -> NoReturn:
    """Skip on a developer machine without apt; in CI a missing Prometheus is a failure."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _download_and_unpack(package: str, root: Path) -> None:
    """``apt-get download PACKAGE`` (after ``apt-get update`` if needed), then ``dpkg -x``."""
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        _unavailable(f"{package} is not installed and apt-get/dpkg are not available to fetch it")
    downloads = CACHE / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    for deb in downloads.glob(f"{package}_*.deb"):
        deb.unlink()
    got = _apt("download", package, cwd=downloads)
    if got.returncode != 0:
        updated = _apt("update", cwd=downloads)
        if updated.returncode != 0:
            _unavailable(f"apt-get update failed:\n{updated.stdout}{updated.stderr}")
        got = _apt("download", package, cwd=downloads)
    debs = sorted(downloads.glob(f"{package}_*.deb"))
    if got.returncode != 0 or not debs:
        _unavailable(f"apt-get download {package} failed:\n{got.stdout}{got.stderr}")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(partial)], check=True, timeout=120)
    partial.rename(root)


def _debian_binaries(package: str, names: tuple[str, ...]) -> Path:
    """The folder with ``names``: on PATH, or from ``package`` unpacked into the cache folder."""
    found = _on_path(*names)
    if found is not None:
        return found
    root = CACHE / package
    binaries = root / "usr" / "bin"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{package}.lock").open("w") as lock:
        # One download at a time, also across parallel pytest processes.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((binaries / name).is_file() for name in names):
            shutil.rmtree(root, ignore_errors=True)
            _download_and_unpack(package, root)
    missing = [name for name in names if not (binaries / name).is_file()]
    if missing:
        pytest.fail(f"the {package} package unpacked into {root} has no usr/bin/{missing[0]}")
    return binaries


@pytest.fixture(scope="session")
def prometheus_tools() -> PrometheusTools:
    """Prometheus and promtool from PATH, or Debian's package unpacked into the cache folder."""
    return _prometheus_in(_debian_binaries("prometheus", ("prometheus", "promtool")))


@pytest.fixture(scope="session")
def alertmanager_tools() -> AlertmanagerTools:
    """Alertmanager and amtool from PATH, or Debian's package unpacked into the cache folder."""
    upstream = _on_path("alertmanager", "amtool")  # the upstream release's name
    if upstream is not None:
        return AlertmanagerTools(upstream / "alertmanager", upstream / "amtool")
    names = ("prometheus-alertmanager", "amtool")
    return _alertmanager_in(_debian_binaries("prometheus-alertmanager", names))
