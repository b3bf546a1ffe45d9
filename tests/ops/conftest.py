"""Fixtures for the operations tests: Debian's Prometheus and promtool, fetched when missing.

Prometheus comes from ``PATH`` when it is installed; otherwise Debian's ``prometheus`` package is
fetched with ``apt-get download`` and unpacked with ``dpkg -x`` into a private cache folder, so
the package's maintainer scripts never run and no system service is started.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from ops_helpers import CACHE, PrometheusTools

APT_TIMEOUT = 600


def _from_path() -> PrometheusTools | None:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus and promtool:
        return PrometheusTools(Path(prometheus), Path(promtool))
    return None


def _from_cache(root: Path) -> PrometheusTools | None:
    tools = PrometheusTools(root / "usr/bin/prometheus", root / "usr/bin/promtool")
    if tools.prometheus.is_file() and tools.promtool.is_file():
        return tools
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


def _download_and_unpack(root: Path) -> None:
    """``apt-get download prometheus`` (after ``apt-get update`` if needed), then ``dpkg -x``."""
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        _unavailable("prometheus is not installed and apt-get/dpkg are not available to fetch it")
    downloads = CACHE / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    for deb in downloads.glob("prometheus_*.deb"):
        deb.unlink()
    got = _apt("download", "prometheus", cwd=downloads)
    if got.returncode != 0:
        updated = _apt("update", cwd=downloads)
        if updated.returncode != 0:
            _unavailable(f"apt-get update failed:\n{updated.stdout}{updated.stderr}")
        got = _apt("download", "prometheus", cwd=downloads)
    debs = sorted(downloads.glob("prometheus_*.deb"))
    if got.returncode != 0 or not debs:
        _unavailable(f"apt-get download prometheus failed:\n{got.stdout}{got.stderr}")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(partial)], check=True, timeout=120)
    partial.rename(root)


@pytest.fixture(scope="session")
def prometheus_tools() -> Iterator[PrometheusTools]:
    """Prometheus and promtool from PATH, or Debian's package unpacked into the cache folder."""
    found = _from_path()
    if found is not None:
        yield found
        return
    root = CACHE / "prometheus"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "prometheus.lock").open("w") as lock:
        # One download at a time, also across parallel pytest processes.
        fcntl.flock(lock, fcntl.LOCK_EX)
        tools = _from_cache(root)
        if tools is None:
            _download_and_unpack(root)
            tools = _from_cache(root)
    if tools is None:
        pytest.fail(f"the prometheus package unpacked into {root} has no usr/bin/prometheus")
    yield tools
