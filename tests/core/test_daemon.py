"""The scheduled daemon: isolation of slow targets, reloads, sharding."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

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
