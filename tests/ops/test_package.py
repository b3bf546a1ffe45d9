"""The package as a user gets it: sdist and wheel built and checked, the wheel installed into a
fresh virtual environment and run from there.

``python -m build`` builds the sdist from a copy of the repository's files and the wheel from that
sdist, so a file missing from either fails here. The venv gets the wheel and its dependencies from
the package index, nothing from this checkout: every command runs outside the repository with no
``PYTHONPATH``, and the test checks that ``exporter`` is imported from the venv.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ops_helpers import DEPLOY, REPO

from exporter.sim.certs import CertificateAuthority, write_client_files

pytestmark = pytest.mark.slow

EXAMPLE_CONFIG = DEPLOY / "compose" / "qlik-sense-exporter.yml"
DEMO_TARGETS = {"demo-certificate", "demo-jwt", "demo-header", "demo-cloud", "demo-cloud-oauth"}
DEMO_WAIT_SECONDS = 60.0


def source_version() -> str:
    """``__version__`` as written in exporter/__init__.py (read, not imported)."""
    tree = ast.parse((REPO / "exporter" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [
            "__version__"
        ]:
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value)
    raise AssertionError("exporter/__init__.py sets no __version__")


def repository_files() -> list[str]:
    """Files git tracks or would track (untracked, not ignored), relative to the repository."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return [name for name in out.split("\0") if name and (REPO / name).is_file()]


def package_files() -> set[str]:
    """Every file of the ``exporter`` package in the repository (code and data)."""
    return {name for name in repository_files() if name.startswith("exporter/")}


def clean_env() -> dict[str, str]:
    """The environment without anything that would point Python at this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command with the clean environment; the result, whatever its exit code."""
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_ok(*args: str | Path, cwd: Path, timeout: float = 300) -> str:
    """Run a command; fail the test with its output unless it exits 0."""
    proc = run(*args, cwd=cwd, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


@dataclass(frozen=True, slots=True)
class Dist:
    """The built sdist and wheel."""

    sdist: Path
    wheel: Path


@dataclass(frozen=True, slots=True)
class Venv:
    """A virtual environment with the wheel installed, and a folder outside the repository."""

    bin: Path
    work: Path

    def cli(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the installed ``qlik-sense-exporter`` console script."""
        return run(self.bin / "qlik-sense-exporter", *args, cwd=self.work, timeout=timeout)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """``python -m build`` on a copy of the repository's files."""
    root = tmp_path_factory.mktemp("package")
    src, out = root / "src", root / "dist"
    for name in repository_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    run_ok(sys.executable, "-m", "build", "--outdir", out, src, cwd=root, timeout=600)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dist(sdist, wheel)


@pytest.fixture(scope="module")
def venv(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv (no system site-packages) with the wheel and its dependencies installed."""
    root = tmp_path_factory.mktemp("venv")
    run_ok(sys.executable, "-m", "venv", root / "venv", cwd=root)
    bin_dir = root / "venv" / "bin"
    run_ok(bin_dir / "python", "-m", "pip", "install", "--quiet", dist.wheel, cwd=root)
    work = root / "work"
    work.mkdir()
    return Venv(bin_dir, work)


def test_sdist_and_wheel_pass_twine_check(dist: Dist) -> None:
    """twine accepts both (metadata complete, README renders as the long description)."""
    output = run_ok(
        sys.executable, "-m", "twine", "check", "--strict", dist.sdist, dist.wheel, cwd=REPO
    )
    assert output.count("PASSED") == 2, output


def test_file_names_carry_the_source_version(dist: Dist) -> None:
    """pyproject.toml takes the version from exporter/__init__.py, the only place it is set."""
    version = source_version()
    assert dist.wheel.name == f"qlik_sense_exporter-{version}-py3-none-any.whl"
    assert dist.sdist.name == f"qlik_sense_exporter-{version}.tar.gz"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "exporter.__version__"}


def documentation_files() -> list[Path]:
    """The README, docs/ and deploy/: where install commands and image tags are written."""
    deploy = [path for path in DEPLOY.rglob("*") if path.is_file()]
    return [REPO / "README.md", *REPO.glob("docs/*.md"), *deploy]


def test_docs_and_manifests_name_this_version() -> None:
    """Every image tag (``qlik-sense-exporter:X.Y.Z``) and wheel file name written in the docs,
    the compose file and the manifests is this version: a release changes them with it."""
    image, wheel = r"qlik-sense-exporter:(\d+\.\d+[\w.+-]*)", r"qlik_sense_exporter-(\d[^-\s]*)-py3"
    pattern = re.compile(f"{image}|{wheel}")
    named = {
        (path.relative_to(REPO).as_posix(), match.group(1) or match.group(2))
        for path in documentation_files()
        for match in pattern.finditer(path.read_text(encoding="utf-8"))
    }
    assert {"deploy/compose/compose.yml", "docs/operations.md"} <= {path for path, _ in named}
    assert {version for _, version in named} == {source_version()}, sorted(named)


def test_no_instruction_installs_from_pypi() -> None:
    """The package is not on PyPI: no doc tells anyone to ``pip install qlik-sense-exporter``."""
    wrong = re.compile(r"pip install (--\S+ )*qlik-sense-exporter\b")
    found = [
        path.relative_to(REPO).as_posix()
        for path in documentation_files()
        if wrong.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_wheel_holds_every_package_file(dist: Dist) -> None:
    """Every file under exporter/ (code and any data) is in the wheel, and nothing else is."""
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = {n for n in wheel.namelist() if not n.startswith("qlik_sense_exporter-")}
    assert sorted(package_files() - names) == [], "missing from the wheel"
    assert sorted(names - package_files()) == [], "in the wheel but not in the repository"


def test_sdist_holds_package_readme_and_license(dist: Dist) -> None:
    """The sdist can rebuild the wheel: package files, pyproject.toml, README and LICENSE."""
    with tarfile.open(dist.sdist) as sdist:
        prefix = dist.sdist.name.removesuffix(".tar.gz") + "/"
        names = {m.name.removeprefix(prefix) for m in sdist.getmembers() if m.isfile()}
    needed = package_files() | {"pyproject.toml", "README.md", "LICENSE"}
    assert sorted(needed - names) == [], "missing from the sdist"


def test_installed_version_is_the_source_version(venv: Venv) -> None:
    """``qlik-sense-exporter --version`` from the venv prints the version, imported from there."""
    proc = venv.cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"qlik-sense-exporter {source_version()}"
    where = run_ok(
        venv.bin / "python", "-c", "import exporter; print(exporter.__file__)", cwd=venv.work
    )
    assert Path(where.strip()).is_relative_to(venv.bin.parent)


def test_config_check_on_the_example_config(venv: Venv) -> None:
    """The compose example config names three files; without them each is one error line, with
    them (a CA and a client certificate as the QMC exports them) the config is valid."""
    folder = venv.work / "etc"
    config = folder / "config.yml"
    folder.mkdir()
    shutil.copy(EXAMPLE_CONFIG, config)
    missing = venv.cli("--config.check", "--config.file", config)
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == [
        "targets[0].ca_file: file not found: secrets/root.pem",
        "targets[0].auth.cert_file: file not found: secrets/client.pem",
        "targets[0].auth.key_file: file not found: secrets/client_key.pem",
    ]
    write_client_files(folder / "secrets", CertificateAuthority.create())
    valid = venv.cli("--config.check", "--config.file", config)
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.strip() == f"{config}: OK (1 targets, 4 checks)"


@dataclass(frozen=True, slots=True)
class Demo:
    """A running ``qlik-sense-exporter demo``: its URL, its folder and its output."""

    url: str
    folder: Path
    log: Path

    def get(self, path: str) -> str:
        """The body of a GET on the exporter."""
        with urllib.request.urlopen(self.url + path, timeout=5) as response:  # noqa: S310
            return str(response.read().decode())

    def output(self) -> str:
        """The tail of what the demo printed, for failure messages."""
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def demo(venv: Venv, tmp_path: Path) -> Iterator[Demo]:
    """``qlik-sense-exporter demo`` from the venv on a free port of 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    running = Demo(f"http://127.0.0.1:{port}", tmp_path / "demo", tmp_path / "demo.log")
    args = ["demo", "--web.listen-address", f"127.0.0.1:{port}", "--dir", str(running.folder)]
    with running.log.open("wb") as out:
        proc = subprocess.Popen(
            [str(venv.bin / "qlik-sense-exporter"), *args, "--interval", "2s"],
            cwd=venv.work,
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield running
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def succeeding_targets(metrics: str) -> set[str]:
    """Targets with at least one ``qlik_probe_success ... 1.0`` series."""
    pattern = r'^qlik_probe_success\{target="([^"]+)",node="[^"]*",check="[^"]+"\} 1\.0$'
    return set(re.findall(pattern, metrics, re.MULTILINE))


def test_demo_and_probe_run_from_the_wheel(venv: Venv, demo: Demo) -> None:
    """The README's first command from the installed wheel: the simulator and the exporter start,
    every demo target succeeds, the status page renders, and ``probe`` reports OK."""
    deadline = time.monotonic() + DEMO_WAIT_SECONDS
    succeeding: set[str] = set()
    while time.monotonic() < deadline and succeeding != DEMO_TARGETS:
        time.sleep(0.5)
        try:
            succeeding = succeeding_targets(demo.get("/metrics"))
        except OSError:
            continue
    assert succeeding == DEMO_TARGETS, demo.output()
    assert "demo-certificate" in demo.get("/")
    config = demo.folder / "demo-config.yml"
    report = venv.cli("probe", "demo-certificate", "--check", "repository", "--config.file", config)
    assert report.returncode == 0, report.stdout + report.stderr
    assert "OK in" in report.stdout
