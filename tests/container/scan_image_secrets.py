"""Search every layer of a saved container image for key material and credentials.

Usage: python3 scan_image_secrets.py IMAGE.tar [BASE_LAYER_DIGEST ...]
  IMAGE.tar: a `podman image save --format docker-archive` (or `docker save`) of the image;
  BASE_LAYER_DIGEST: the diff IDs (sha256:...) of the base image's layers.

Every layer is read on its own, so a secret that one layer adds and a later one deletes is still
found. Exits 1 and lists the findings when anything is found in a layer this project's Dockerfile
added; what the base image itself holds (e.g. GnuTLS's built-in self-test key) is listed but
allowed. Prints what was searched either way.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

# A PEM private key block with a real base64 body (code that merely names the label, such as the
# `cryptography` bindings, has no body after it).
PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]{64,}")
# A JWT: base64url JSON header and payload (both start with `{"` -> `eyJ`).
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
# Files that hold keys, certificates or tokens by their name.
KEY_SUFFIXES = {".pem", ".key", ".pfx", ".p12", ".jwt", ".crt", ".der"}
KEY_NAMES = re.compile(r"^(id_rsa|id_ecdsa|id_ed25519|\.env|\.netrc|\.pypirc|credentials)$")
# Environment variable names that would carry a secret in the image config.
SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)

# Public trust anchors: the system CA store (with the bundle the test base copies in) and the CA
# bundles that Python packages vendor (certifi). Content checks still apply to them.
TRUST_STORES = (
    "etc/ssl/certs/",
    "usr/share/ca-certificates/",
    "usr/local/share/ca-certificates/",
)
VENDORED_CA_BUNDLES = re.compile(r"/site-packages/(?:pip/_vendor/)?certifi/cacert\.pem$")
# Third-party packages' own test data and documentation may hold throwaway keys or sample tokens
# (PyJWT's README, in its METADATA, decodes a sample JWT); our own package may not.
THIRD_PARTY_TEST_DATA = re.compile(
    r"/site-packages/(?:(?!exporter/)[^/]+/(?:.*/)?(?:tests?|testdata)/"
    r"|(?!qlik_sense_exporter-)[^/]+\.dist-info/METADATA$)"
)
MAX_READ = 64 * 1024 * 1024


@dataclass
class Report:
    layers: int = 0
    files: int = 0
    bytes: int = 0
    findings: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)


def check_name(path: str, report: Report, where: str) -> None:
    """Flags key-, certificate- and token-named files outside the allowed places."""
    name = PurePosixPath(path).name
    if PurePosixPath(name).suffix.lower() not in KEY_SUFFIXES and not KEY_NAMES.match(name):
        return
    if path.startswith(TRUST_STORES) or VENDORED_CA_BUNDLES.search("/" + path):
        return  # public CA certificates
    if THIRD_PARTY_TEST_DATA.search("/" + path):
        report.allowed.append(f"{where}: {path} (a third-party package's test data or docs)")
        return
    report.findings.append(f"{where}: {path}: key/certificate/token file name")


def check_content(path: str, data: bytes, report: Report, where: str) -> None:
    """Flags PEM private keys and JWTs inside any file."""
    for label, pattern in (("PEM private key", PRIVATE_KEY), ("JWT", JWT)):
        match = pattern.search(data)
        if match is None:
            continue
        line = f"{where}: {path}: {label} ({match.group()[:24].decode(errors='replace')}...)"
        if THIRD_PARTY_TEST_DATA.search("/" + path):
            report.allowed.append(line + " in a third-party package's test data or docs")
        else:
            report.findings.append(line)


def scan_layer(layer: tarfile.TarFile, where: str, report: Report) -> None:
    """Checks every regular file of one layer by name and by content."""
    for member in layer:
        if not member.isfile():
            continue
        path = member.name.removeprefix("./")
        report.files += 1
        check_name(path, report, where)
        handle = layer.extractfile(member)
        if handle is None:
            continue
        data = handle.read(MAX_READ)
        report.bytes += len(data)
        check_content(path, data, report, where)


def scan_config(config: dict[str, Any], report: Report) -> None:
    """Flags secret-looking variables in the image config and secrets in its history."""
    for entry in (config.get("config") or {}).get("Env") or []:
        name, _, value = str(entry).partition("=")
        if SECRET_ENV.search(name) and value:
            report.findings.append(f"image config: ENV {name} has a value")
    for step in config.get("history") or []:
        created_by = str(step.get("created_by", "")).encode()
        if JWT.search(created_by) or PRIVATE_KEY.search(created_by):
            report.findings.append(f"image history: a secret in {created_by[:80]!r}")


def read_json(archive: tarfile.TarFile, name: str) -> Any:
    handle = archive.extractfile(name)
    assert handle is not None, name
    return json.load(handle)


def scan_archive(archive_path: str, base_layers: set[str]) -> tuple[Report, Report]:
    """Scans the image config and every layer; returns (added by the Dockerfile, base image)."""
    report, base_report = Report(), Report()
    with tarfile.open(archive_path) as archive:
        for image in read_json(archive, "manifest.json"):
            config = read_json(archive, image["Config"])
            scan_config(config, report)
            layers = zip(image["Layers"], config["rootfs"]["diff_ids"], strict=True)
            for index, (layer_name, diff_id) in enumerate(layers, start=1):
                from_base = diff_id in base_layers
                layer_file = archive.extractfile(layer_name)
                assert layer_file is not None, layer_name
                where = f"layer {index}{' (base image)' if from_base else ''}"
                with tarfile.open(fileobj=layer_file, mode="r|*") as layer:
                    scan_layer(layer, where, base_report if from_base else report)
                report.layers += 1
    return report, base_report


def main(archive_path: str, base_layers: set[str]) -> int:
    report, base_report = scan_archive(archive_path, base_layers)
    suffixes = ",".join(sorted(KEY_SUFFIXES))
    print(
        f"searched {report.layers} layers ({report.files + base_report.files} files, "
        f"{(report.bytes + base_report.bytes) / 1e6:.0f} MB) and the image config and history "
        f"for: PEM private key blocks, JWTs (eyJ….eyJ….), files named *{{{suffixes}}} or "
        "id_rsa/.env/.netrc/.pypirc outside the CA trust stores, and ENV names with "
        "KEY/TOKEN/SECRET/PASSWORD that carry a value"
    )
    for line in base_report.allowed + report.allowed:
        print(f"  allowed: {line}")
    for line in base_report.findings:
        print(f"  allowed: {line} (in the base image, not added by this Dockerfile)")
    for line in report.findings:
        print(f"  FOUND: {line}")
    return 1 if report.findings else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], set(sys.argv[2:])))
