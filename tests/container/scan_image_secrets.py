"""Search every layer of a saved container image for key material and credentials.

Usage: python3 scan_image_secrets.py IMAGE.tar   (a `podman image save --format docker-archive`)

Every layer is read on its own, so a secret that one layer adds and a later one deletes is still
found. Exits 1 and lists the findings when anything is found; prints what was searched either way.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

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
# Third-party packages' own test data may hold throwaway keys; our own package may not.
THIRD_PARTY_TEST_DATA = re.compile(r"/site-packages/(?!exporter/)[^/]+/(?:.*/)?(?:tests?|testdata)/")
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
        report.allowed.append(f"{where}: {path} (a third-party package's test data)")
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
            report.allowed.append(line + " in a third-party package's test data")
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


def scan_config(config: dict[str, object], report: Report) -> None:
    """Flags secret-looking variables and build arguments in the image config and history."""
    env = (config.get("config") or {}).get("Env") or []  # type: ignore[union-attr]
    for entry in env:
        name, _, value = str(entry).partition("=")
        if SECRET_ENV.search(name) and value:
            report.findings.append(f"image config: ENV {name} has a value")
    for step in config.get("history") or []:  # type: ignore[union-attr]
        created_by = str(step.get("created_by", ""))
        if JWT.search(created_by.encode()) or PRIVATE_KEY.search(created_by.encode()):
            report.findings.append(f"image history: a secret in {created_by[:80]!r}")


def main(archive_path: str) -> int:
    report = Report()
    with tarfile.open(archive_path) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        for image in manifest:
            scan_config(json.load(archive.extractfile(image["Config"])), report)  # type: ignore[arg-type]
            for index, layer_name in enumerate(image["Layers"], start=1):
                layer_file = archive.extractfile(layer_name)
                assert layer_file is not None, layer_name
                with tarfile.open(fileobj=layer_file, mode="r|*") as layer:
                    scan_layer(layer, f"layer {index}", report)
                report.layers += 1
    print(
        f"searched {report.layers} layers, {report.files} files, {report.bytes / 1e6:.0f} MB, "
        "and the image config/history for: PEM private key blocks, JWTs (eyJ….eyJ….), "
        f"files named *{{{','.join(sorted(KEY_SUFFIXES))}}} or like id_rsa/.env/.netrc/.pypirc outside "
        "the CA trust stores, and ENV names with KEY/TOKEN/SECRET/PASSWORD that carry a value"
    )
    for line in report.allowed:
        print(f"  allowed: {line}")
    for line in report.findings:
        print(f"  FOUND: {line}")
    return 1 if report.findings else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
