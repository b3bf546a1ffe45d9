"""``--runtime.loop``: which event loop the exporter runs on, and clear errors for bad values."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from exporter import runtime
from exporter.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``QLIK_EXPORTER_*`` variable from the surrounding environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("QLIK_EXPORTER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def no_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import uvloop`` fails, as on a machine without the extra (or on Windows)."""
    monkeypatch.setitem(sys.modules, "uvloop", None)


async def _running_loop() -> str:
    return runtime.loop_name(asyncio.get_running_loop())


@pytest.mark.parametrize(
    ("choice", "expected"), [("asyncio", "asyncio"), ("uvloop", "uvloop"), ("auto", "uvloop")]
)
def test_run_uses_the_loop_chosen(choice: str, expected: str) -> None:
    """Each choice runs the coroutine on its loop; ``auto`` takes uvloop when installed."""
    assert runtime.run(_running_loop(), choice) == expected


@pytest.mark.usefixtures("no_uvloop")
def test_auto_falls_back_to_asyncio_silently_without_uvloop(
    recwarn: pytest.WarningsRecorder,
) -> None:
    """Without uvloop, ``auto`` is asyncio's loop, with no error and no warning."""
    assert runtime.run(_running_loop(), "auto") == "asyncio"
    assert not recwarn.list


@pytest.mark.usefixtures("no_uvloop")
def test_uvloop_by_name_without_uvloop_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Asking for uvloop where it is missing exits 2 with one line saying how to get it."""
    config = tmp_path / "c.yml"
    config.write_text("targets: []\n")
    assert main(["--runtime.loop", "uvloop", "--config.file", str(config), "probe", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "--runtime.loop: uvloop is not installed: pip install 'qlik-sense-exporter[speed]', "
        "or use --runtime.loop=asyncio"
    ]


def test_unknown_loop_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad flag value exits 2 and lists the valid ones."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--runtime.loop", "fast"])
    assert exit_info.value.code == 2
    assert "--runtime.loop: invalid choice: 'fast'" in capsys.readouterr().err


def test_unknown_loop_variable_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad ``QLIK_EXPORTER_RUNTIME_LOOP`` exits 2 naming the variable and the valid values."""
    monkeypatch.setenv("QLIK_EXPORTER_RUNTIME_LOOP", "fast")
    assert main([]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "QLIK_EXPORTER_RUNTIME_LOOP: Input should be 'auto', 'asyncio' or 'uvloop'"
    ]


def test_unknown_loop_in_the_api_names_the_choices() -> None:
    """``runtime.run`` refuses an unknown name before starting the coroutine."""
    coro = _running_loop()
    with pytest.raises(ValueError, match="unknown event loop 'fast': expected one of auto, "):
        runtime.run(coro, "fast")
    assert coro.cr_frame is None  # closed, never started


def _listening_line(argv: list[str], env: dict[str, str]) -> str:
    """Start the daemon, return its ``listening`` log line, stop it with SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", *argv],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr or ()], daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if "msg=listening" in line:
                return line
        raise AssertionError("the daemon did not log that it is listening")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


@pytest.mark.parametrize(
    ("flag", "expected"), [("asyncio", "asyncio"), ("uvloop", "uvloop"), (None, "uvloop")]
)
def test_served_daemon_runs_on_the_loop_the_flag_names(
    tmp_path: Path, flag: str | None, expected: str
) -> None:
    """The daemon's startup line names its loop; without the flag it is uvloop if installed."""
    config = tmp_path / "c.yml"
    config.write_text("targets: []\n")
    argv = ["--config.file", str(config), "--web.listen-address", "127.0.0.1:0"]
    if flag is not None:
        argv += ["--runtime.loop", flag]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert f"loop={expected}" in _listening_line(argv, env).split()
