"""Certificates and credentials: every expiry exported, also when things are broken."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import yaml
from cryptography import x509

from exporter.reasons import Reason
from exporter.runner import Prober
from exporter.sim import Simulator
from exporter.sim.certs import ClientFiles
from tests.core.conftest import build, cert_target, cloud_target, jwt_target, probe

PASSWORD = "s3cret-pass"


def _with(sim: Simulator, files: ClientFiles, **auth: Any) -> dict[str, Any]:
    return cert_target(
        sim,
        checks=["repository"],
        auth={"cert_file": str(files.cert_file), "key_file": str(files.key_file), **auth},
    )


def _expected(files: ClientFiles) -> tuple[float, float]:
    cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


async def test_client_certificate_expiry_is_exported_to_the_second(
    sim: Simulator, tmp_path: Path, client_cert_expiring_soon: ClientFiles
) -> None:
    """The client certificate's not_before/not_after are the file's, to the second."""
    result = await probe(_with(sim, client_cert_expiring_soon), "repository", tmp_path)
    assert result.success, result.error
    client = next(c for c in result.certificates if c.source == "client")
    assert (client.not_before, client.not_after) == _expected(client_cert_expiring_soon)
    assert 9 * 86400 < client.not_after - time.time() <= 10 * 86400
    assert (client.subject_cn, client.issuer_cn) == ("QlikClient", f"{sim.host}-CA")


@pytest.mark.parametrize(
    "fixture", ["pkcs8_client_key", "encrypted_client_key", "encrypted_pkcs8_client_key"]
)
async def test_key_formats_work(
    sim: Simulator, tmp_path: Path, fixture: str, request: pytest.FixtureRequest
) -> None:
    """PKCS#8 and password-protected keys (legacy PEM and PKCS#8) all authenticate."""
    files: ClientFiles = request.getfixturevalue(fixture)
    auth: dict[str, Any] = {}
    if files.key_password:
        pw = tmp_path / "key_password"
        pw.write_text(files.key_password + "\n")
        auth["key_password_file"] = str(pw)
    result = await probe(_with(sim, files, **auth), "repository", tmp_path)
    assert result.success, result.error


async def test_key_password_from_environment(
    sim: Simulator,
    tmp_path: Path,
    encrypted_client_key: ClientFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key password can come from an environment variable."""
    assert encrypted_client_key.key_password is not None
    monkeypatch.setenv("QLIK_KEY_PW", encrypted_client_key.key_password)
    target = _with(sim, encrypted_client_key, key_password_env="QLIK_KEY_PW")
    assert (await probe(target, "repository", tmp_path)).success


async def test_pfx_bundle_from_the_windows_export_works(
    sim: Simulator, tmp_path: Path, client_pfx: ClientFiles
) -> None:
    """The QMC's Windows-format .pfx bundle authenticates with its password."""
    assert client_pfx.pfx_file is not None
    target = cert_target(
        sim,
        checks=["repository"],
        auth={"cert_file": str(client_pfx.pfx_file), "key_password": "pfx-pass"},
    )
    target["auth"].pop("key_file")
    result = await probe(target, "repository", tmp_path)
    assert result.success, result.error
    assert "client" in {c.source for c in result.certificates}


async def test_wrong_key_password_is_credential_invalid_and_never_logged(
    sim: Simulator,
    tmp_path: Path,
    encrypted_client_key: ClientFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong key password fails before connecting, and the password appears nowhere."""
    wrong = "Wr0ng-Passw0rd-XYZ"
    caplog.set_level(logging.DEBUG)
    result = await probe(
        _with(sim, encrypted_client_key, key_password=wrong), "repository", tmp_path
    )
    assert result.reason == Reason.CREDENTIAL_INVALID
    assert "wrong key password" in result.error
    everything = caplog.text + result.error + "\n".join(result.log) + repr(result)
    assert wrong not in everything
    assert PASSWORD not in everything


async def test_encrypted_key_without_password_says_so(
    sim: Simulator, tmp_path: Path, encrypted_client_key: ClientFiles
) -> None:
    """An encrypted key with no password configured names the missing setting."""
    result = await probe(_with(sim, encrypted_client_key), "repository", tmp_path)
    assert result.reason == Reason.CREDENTIAL_INVALID
    assert "key_password" in result.error


async def test_not_yet_valid_client_certificate(
    sim: Simulator, tmp_path: Path, not_yet_valid_client_cert: ClientFiles
) -> None:
    """A client certificate that is not valid yet fails as credential_invalid, with its dates."""
    result = await probe(_with(sim, not_yet_valid_client_cert), "repository", tmp_path)
    assert result.reason == Reason.CREDENTIAL_INVALID
    assert "not valid before" in result.error
    client = next(c for c in result.certificates if c.source == "client")
    assert (client.not_before, client.not_after) == _expected(not_yet_valid_client_cert)


async def test_key_that_does_not_match_the_certificate(
    sim: Simulator,
    tmp_path: Path,
    pkcs8_client_key: ClientFiles,
    foreign_ca_client_cert: ClientFiles,
) -> None:
    """A key from another key pair is caught before connecting."""
    target = _with(sim, pkcs8_client_key)
    target["auth"]["key_file"] = str(foreign_ca_client_cert.key_file)
    if foreign_ca_client_cert.key_file.read_bytes() == pkcs8_client_key.key_file.read_bytes():
        pytest.fail("the fixtures share a key; the test needs two key pairs")
    result = await probe(target, "repository", tmp_path)
    assert result.reason == Reason.CREDENTIAL_INVALID
    assert "does not match" in result.error


async def test_client_certificate_from_a_regenerated_ca(
    sim: Simulator, tmp_path: Path, foreign_ca_client_cert: ClientFiles
) -> None:
    """A client certificate not issued by the CA in ca_file is flagged as regenerated certs."""
    result = await probe(_with(sim, foreign_ca_client_cert), "repository", tmp_path)
    assert result.reason == Reason.CREDENTIAL_INVALID
    assert "not issued by the CA in ca_file" in result.error


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "file not found"), (b"hello", "not a PEM certificate")],
)
async def test_unreadable_client_certificate_file(
    sim: Simulator, tmp_path: Path, content: bytes | None, message: str
) -> None:
    """A client certificate file that vanished or is not PEM gives a precise error."""
    cert = tmp_path / "client.pem"
    cert.write_bytes(b"placeholder")
    target = cert_target(sim, checks=["repository"], auth={"cert_file": str(cert)})
    rt = Prober.build(build(target, tmp_path))
    if content is None:
        cert.unlink()
    else:
        cert.write_bytes(content)
    result = await probe({}, "repository", tmp_path, rt=rt)
    assert result.reason == Reason.CREDENTIAL_INVALID
    assert message in result.error
    assert "root" in {c.source for c in result.certificates}


async def test_rotated_client_certificate_is_picked_up_next_cycle(
    sim: Simulator, tmp_path: Path, client_cert_expiring_soon: ClientFiles
) -> None:
    """Replacing the certificate files is seen by the next run without a restart."""
    live = tmp_path / "live"
    live.mkdir()
    for name in ("client.pem", "client_key.pem"):
        (live / name).write_bytes((sim.certs_dir / name).read_bytes())
    target = cert_target(
        sim,
        checks=["repository"],
        auth={"cert_file": str(live / "client.pem"), "key_file": str(live / "client_key.pem")},
    )
    rt = Prober.build(build(target, tmp_path))
    first = await probe({}, "repository", tmp_path, rt=rt)
    for name in ("client.pem", "client_key.pem"):
        src = client_cert_expiring_soon.cert_file.parent / name
        (live / name).write_bytes(src.read_bytes())
    second = await probe({}, "repository", tmp_path, rt=rt)
    before = next(c for c in first.certificates if c.source == "client")
    after = next(c for c in second.certificates if c.source == "client")
    assert second.success, second.error
    assert after.not_after == _expected(client_cert_expiring_soon)[1]
    assert after.serial != before.serial


async def test_hostname_match_reported_with_verification_off(
    sim: Simulator, tmp_path: Path
) -> None:
    """With tls_verify false, a wrong-host certificate passes but hostname_match is 0."""
    sim.faults.set("repository", "cert_wrong_host")
    result = await probe(cert_target(sim, tls_verify=False), "repository", tmp_path)
    assert result.success, result.error
    assert result.hostname_match is False


async def test_untrusted_server_certificate_is_exported(sim: Simulator, tmp_path: Path) -> None:
    """A server certificate from an unknown CA is still described, issuer and all."""
    normal = await probe(cert_target(sim), "repository", tmp_path)
    sim.faults.set("repository", "cert_untrusted")
    result = await probe(cert_target(sim), "repository", tmp_path)
    assert result.reason == Reason.SERVER_CERTIFICATE_UNTRUSTED
    server = next(c for c in result.certificates if c.source == "server_repository")
    trusted = next(c for c in normal.certificates if c.source == "server_repository")
    assert server.serial != trusted.serial
    assert server.subject_cn == sim.host


async def test_expired_static_jwt_is_not_sent(sim: Simulator, tmp_path: Path) -> None:
    """An expired static token fails as credential_invalid before any connection."""
    key = (sim.certs_dir / "jwt_signing_key.pem").read_bytes()
    exp = int(time.time()) - 60
    token = pyjwt.encode({"userId": "monitor", "exp": exp}, key, algorithm="RS256")
    target = jwt_target(sim)
    target["auth"] = {"method": "jwt", "token": token}
    result = await probe(target, "repository", tmp_path)
    assert result.reason == Reason.CREDENTIAL_INVALID
    assert result.phases == {}
    assert [(c.kind, c.expires) for c in result.credentials] == [("jwt", float(exp))]
    assert token not in result.error


async def test_api_key_without_exp_has_no_expiry(sim: Simulator, tmp_path: Path) -> None:
    """An API key without exp exports no credential expiry."""
    key = sim.cloud_issue_api_key(sub=sim.cloud_user_id, expires_in=None)
    result = await probe(cloud_target(sim, key), "tenant", tmp_path)
    assert result.success, result.error
    assert result.credentials == []


async def test_regenerated_ca_error_names_at_most_three_cas_of_a_bundle(
    sim: Simulator, tmp_path: Path, foreign_ca_client_cert: ClientFiles
) -> None:
    """With a CA bundle as ca_file, the error names three CAs and counts the rest."""
    target = _with(sim, foreign_ca_client_cert)
    bundle = tmp_path / "bundle.pem"
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    await asyncio.to_thread(lambda: bundle.write_bytes(system.read_bytes()))
    target["ca_file"] = str(bundle)
    result = await probe(target, "repository", tmp_path)
    assert result.reason == Reason.CREDENTIAL_INVALID
    assert result.error.count("CN=") == 4  # the client's issuer and three CAs
    assert re.search(r" and \d+ more\)", result.error)


@pytest.mark.parametrize("case", ["key-as-cert", "wrong-pfx-password", "mismatched-key", "expired"])
async def test_config_check_catches_credentials_it_can_check_offline(
    sim: Simulator, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--config.check exits 1 with one line naming the target for a key file given as the
    certificate, a wrong PFX password, a key of another pair and an expired certificate; the
    good target beside it is not named."""
    from exporter.cli import main
    from exporter.sim.certs import new_rsa_key

    files = sim.issue_client_files(
        tmp_path / "creds", pfx_password="right", expired=case == "expired"
    )
    other = sim.issue_client_files(tmp_path / "other", key=new_rsa_key())  # another key pair
    broken = cert_target(sim, "broken", checks=["repository"])
    auth = broken["auth"]
    auth["cert_file"], auth["key_file"] = str(files.cert_file), str(files.key_file)
    if case == "key-as-cert":
        auth["cert_file"] = str(files.key_file)
    elif case == "wrong-pfx-password":
        assert files.pfx_file is not None
        auth |= {"cert_file": str(files.pfx_file), "key_password": "wrong"}
        del auth["key_file"]
    elif case == "mismatched-key":
        auth["key_file"] = str(other.key_file)
    good = cert_target(sim, "good", checks=["repository"])
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({"targets": [good, broken]}))
    assert await asyncio.to_thread(main, ["--config.file", str(config), "--config.check"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("targets[1].auth (broken): ")
    expected = {
        "key-as-cert": "not a PEM certificate",
        "wrong-pfx-password": "wrong key password",
        "mismatched-key": "does not match",
        "expired": "expired at",
    }[case]
    assert expected in line
