"""The scheduled daemon: isolation of slow targets, reloads, sharding."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from exporter.cli import main
from exporter.config import load_config
from exporter.daemon import Daemon, in_shard
from exporter.reasons import Reason
from exporter.sim import Simulator
from tests.core.conftest import cert_target, closed_port, cloud_target


def _write(path: Path, targets: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"targets": targets}))
    return path


def _runs(daemon: Daemon, target: str, check: str) -> int:
    return next(
        (s.runs for s in daemon.store.snapshot() if (s.target, s.check) == (target, check)), 0
    )


async def test_hung_target_times_out_while_healthy_target_stays_on_schedule(
    sim: Simulator, tmp_path: Path
) -> None:
    """A hanging target ends at its 2 s timeout; a healthy 1 s target keeps running meanwhile."""
    sim.faults.set("proxy", "hang")
    hung = cert_target(sim, "hung", checks=["proxy"], timeout="2s", interval="3s")
    healthy = cert_target(sim, "healthy", checks=["repository"], timeout="1s", interval="1s")
    config = _write(tmp_path / "c.yml", [hung, healthy])
    daemon = Daemon(config)
    daemon.start(load_config(config))
    try:
        await asyncio.sleep(7.5)
    finally:
        await daemon.stop()
    snaps = {(s.target, s.check): s for s in daemon.store.snapshot()}
    hung_result = snaps[("hung", "proxy")].latest
    assert hung_result is not None
    assert hung_result.reason == Reason.TIMEOUT
    assert 1.9 < hung_result.duration < 2.6
    # About 7 runs fit in 7.5 s for a 1 s interval starting within the first second or so.
    assert snaps[("healthy", "repository")].runs >= 6
    assert snaps[("healthy", "repository")].latest is not None
    assert snaps[("healthy", "repository")].latest.success


async def test_reload_adds_removes_and_changes_targets(sim: Simulator, tmp_path: Path) -> None:
    """A reload starts new targets, drops removed ones from the store and applies changes."""
    config = tmp_path / "c.yml"
    _write(config, [cert_target(sim, "a", checks=["repository"], interval="1s", timeout="1s")])
    daemon = Daemon(config)
    daemon.start(load_config(config))
    try:
        await asyncio.sleep(1.5)
        assert {s.target for s in daemon.store.snapshot()} == {"a"}
        _write(
            config,
            [
                cert_target(
                    sim,
                    "b",
                    checks=["repository"],
                    interval="1s",
                    timeout="1s",
                    ports={"repository": closed_port()},
                )
            ],
        )
        assert await daemon.reload() == []
        await asyncio.sleep(1.5)
        snaps = {(s.target, s.check): s for s in daemon.store.snapshot()}
        assert set(snaps) == {("b", "repository")}
        latest = snaps[("b", "repository")].latest
        assert latest is not None
        assert latest.reason == Reason.CONNECT_REFUSED
        # Change b's port to the live one: the next results succeed.
        _write(config, [cert_target(sim, "b", checks=["repository"], interval="1s", timeout="1s")])
        assert await daemon.reload() == []
        await asyncio.sleep(1.5)
        latest = daemon.store.snapshot()[0].latest
        assert latest is not None
        assert latest.success
        assert daemon.status.reload_ok
    finally:
        await daemon.stop()


async def test_invalid_reload_keeps_the_old_config_running(sim: Simulator, tmp_path: Path) -> None:
    """An invalid file is rejected with its errors, counted, and the old targets keep running."""
    config = tmp_path / "c.yml"
    _write(config, [cert_target(sim, "a", checks=["repository"], interval="1s", timeout="1s")])
    daemon = Daemon(config)
    daemon.start(load_config(config))
    try:
        config.write_text("targets:\n  - name: a\n    type: nope\n")
        errors = await daemon.reload()
        assert errors
        assert errors[0].startswith("targets[0].")
        assert not daemon.status.reload_ok
        before = _runs(daemon, "a", "repository")
        await asyncio.sleep(2.2)
        assert _runs(daemon, "a", "repository") >= before + 2
        assert [t.name for t in daemon.config.targets] == ["a"]
    finally:
        await daemon.stop()


def test_shards_split_targets_stably_and_completely() -> None:
    """Every target lands in exactly one of N shards, the same one every time."""
    names = [f"site-{i}" for i in range(200)]
    owners = [[i for i in range(3) if in_shard(n, (i, 3))] for n in names]
    assert all(len(o) == 1 for o in owners)
    assert owners == [[i for i in range(3) if in_shard(n, (i, 3))] for n in names]
    counts = [sum(o == [i] for o in owners) for i in range(3)]
    assert min(counts) > 40


async def test_rate_limited_target_skips_runs_until_retry_after(
    sim: Simulator, tmp_path: Path
) -> None:
    """After a 429 with retry-after, scheduled runs wait instead of hammering the tenant."""
    from tests.core.conftest import cloud_target

    key = sim.cloud_issue_api_key(sub=sim.cloud_user_id)
    sim.faults.set("cloud", "status", status=429, retry_after=30)
    config = _write(tmp_path / "c.yml", [cloud_target(sim, key, "c", interval="1s", timeout="1s")])
    daemon = Daemon(config)
    daemon.start(load_config(config))
    try:
        await asyncio.sleep(3.5)
    finally:
        await daemon.stop()
    assert _runs(daemon, "c", "tenant") == 1


async def test_rate_limited_target_skips_runs_for_retry_after(
    sim: Simulator, tmp_path: Path
) -> None:
    """After a 429 with Retry-After, scheduled runs of that target are skipped until it passes;
    other targets run."""
    key = sim.cloud_issue_api_key(sub=sim.cloud_user_id)
    sim.faults.set("cloud", "status", status=429, retry_after=13)
    limited = cloud_target(sim, key, name="limited")
    other = cert_target(sim, "other", checks=["repository"])
    config = _write(tmp_path / "c.yml", [limited, other])
    daemon = Daemon(config)
    daemon.apply(load_config(config))
    first = await daemon.run_job("limited", "tenant")
    assert first is not None
    assert first.reason == Reason.RATE_LIMITED
    sim.faults.clear()
    assert await daemon.run_job("limited", "tenant") is None  # backing off
    assert _runs(daemon, "limited", "tenant") == 1
    ok = await daemon.run_job("other", "repository")
    assert ok is not None
    assert ok.success


@pytest.mark.parametrize(
    "key", ["cert_file", "key_file", "ca_file", "key_password_file"], ids=lambda k: f"missing-{k}"
)
async def test_missing_credential_file_fails_only_its_target_until_it_appears(
    sim: Simulator, tmp_path: Path, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon loads a config whose credential file is missing: that target fails as
    credential_invalid naming the file, the others run, and the file's arrival mends it;
    ``--config.check`` stays strict."""
    broken, path, kept = _target_without(sim, tmp_path / "certs", key)
    healthy = cert_target(sim, "healthy", checks=["repository"])
    config = _write(tmp_path / "c.yml", [broken, healthy])
    assert main(["--config.file", str(config), "--config.check"]) == 1
    assert f"file not found: {path}" in capsys.readouterr().err

    daemon = Daemon(config)
    daemon.apply(daemon.read_config())
    assert str(path) in capsys.readouterr().err  # the load names the missing file
    failed = await daemon.run_job("broken", "repository")
    assert failed is not None
    assert failed.reason == Reason.CREDENTIAL_INVALID
    assert str(path) in failed.error
    ok = await daemon.run_job("healthy", "repository")
    assert ok is not None
    assert ok.success
    path.write_bytes(kept)  # a test's own small file
    mended = await daemon.run_job("broken", "repository")
    assert mended is not None
    assert mended.success, mended.error


def _target_without(sim: Simulator, certs: Path, key: str) -> tuple[dict[str, Any], Path, bytes]:
    """A certificate target on a copy of the simulator's files, with ``key``'s file removed;
    the file's path and content."""
    shutil.copytree(sim.certs_dir, certs)
    target = cert_target(sim, "broken", checks=["repository"], ca_file=str(certs / "root.pem"))
    auth = target["auth"]
    auth["cert_file"], auth["key_file"] = str(certs / "client.pem"), str(certs / "client_key.pem")
    if key == "key_password_file":
        auth[key] = str(certs / "key_password")
        (certs / "client_key.pem").write_bytes(_encrypted_key(certs / "client_key.pem", b"pw"))
        (certs / "key_password").write_bytes(b"pw")
    path = Path(auth.get(key) or target[key])
    kept = path.read_bytes()
    path.unlink()
    return target, path, kept


def _encrypted_key(path: Path, password: bytes) -> bytes:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"checks": ["repository", "repository"]},
        {"interval": "99999999999999s"},
    ],
    ids=["check-twice", "interval-too-long"],
)
async def test_unschedulable_reload_is_rejected_and_old_jobs_keep_running(
    sim: Simulator, tmp_path: Path, bad: dict[str, Any]
) -> None:
    """A config the scheduler could not run is rejected at load: reload fails, says so in
    reload_successful, and the running jobs and config stay."""
    config = _write(tmp_path / "c.yml", [cert_target(sim, "a", checks=["repository"])])
    daemon = Daemon(config)
    daemon.start(load_config(config))
    try:
        jobs = daemon.jobs()
        _write(config, [cert_target(sim, "b", **bad)])
        errors = await daemon.reload()
        assert len(errors) == 1
        assert errors[0].startswith("targets[0].")
        assert not daemon.status.reload_ok
        assert daemon.status.ready
        assert daemon.jobs() == jobs
        assert daemon.scheduler is not None
        assert [j.id for j in daemon.scheduler.get_jobs()] == ["a/localhost/repository"]
    finally:
        await daemon.stop()
