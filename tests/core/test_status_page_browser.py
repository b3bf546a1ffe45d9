"""The status page as a person sees it: headless Chromium against the real daemon and simulator.

The screenshots stay in the test's tmp dir (``status-*.png``) for CI to keep as artifacts.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import yaml

from exporter.config import load_config
from exporter.daemon import Daemon
from exporter.sim import Simulator
from exporter.web import create_app, run_server
from tests.core.conftest import cert_target

RED = (0xF2, 0x49, 0x5C)  # Grafana's red, which the page uses for a failed check
DESKTOP, PHONE = (1280, 900), (390, 844)


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed: the status page is tested in a real browser; "
            "install Debian's chromium package (apt-get install -y chromium)"
        )
    return path


async def run_chromium(tmp_path: Path, url: str, *action: str, size: tuple[int, int]) -> bytes:
    """Chromium's stdout for one headless ``action`` on ``url`` (loopback only, no services)."""
    argv = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--window-size={size[0]},{size[1]}",
        *action,
        url,
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


async def look(tmp_path: Path, url: str, name: str) -> tuple[str, list[Path]]:
    """The page's DOM after load, and screenshots at desktop and phone width."""
    shots = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        shot = tmp_path / f"status-{name}-{label}.png"
        await run_chromium(tmp_path, url, f"--screenshot={shot}", size=size)
        assert shot.stat().st_size > 10_000, f"{shot} looks empty"
        shots.append(shot)
    dom = await run_chromium(tmp_path, url, "--dump-dom", size=DESKTOP)
    return dom.decode(), shots


def check_rows(dom: str) -> list[tuple[str, str]]:
    """(row class, visible text) of each row of the checks table, top to bottom."""
    section = re.search(r'<section id="checks">(.*?)</section>', dom, re.S)
    assert section is not None, "no checks section in the page"
    rows = re.findall(r'<tr class="(\w+)">(.*?)</tr>', section.group(1), re.S)
    text = [re.sub(r"<[^>]+>", " ", body.replace("<wbr>", "")) for _, body in rows]
    return [(css, " ".join(t.split())) for (css, _), t in zip(rows, text, strict=True)]


def has_colour(png: Path, rgb: tuple[int, int, int]) -> bool:
    """Whether any pixel of the (8-bit RGB or RGBA, non-interlaced) screenshot is ``rgb``."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        header = chunk if kind == b"IHDR" else header
        idat += chunk if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, colour_type, interlace) in ((8, 2, 0), (8, 6, 0)), "unexpected PNG format"
    bpp = 3 if colour_type == 2 else 4
    raw, stride, prev = zlib.decompress(idat), width * bpp, bytearray(width * bpp)
    wanted = bytes(rgb)
    for y in range(height):
        filt, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if filt == 1:
                line[i] = (line[i] + a) & 0xFF
            elif filt == 2:
                line[i] = (line[i] + b) & 0xFF
            elif filt == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        if any(line[x : x + 3] == wanted for x in range(0, stride, bpp)):
            return True
        prev = line
    return False


async def until(condition: Callable[[], bool]) -> None:
    """Wait up to 30 s for ``condition``."""
    for _ in range(150):
        if condition():
            return
        await asyncio.sleep(0.2)
    pytest.fail("the daemon's results did not get there within 30 s")


@pytest.fixture
async def served(sim: Simulator, tmp_path: Path) -> AsyncIterator[tuple[Daemon, str]]:
    """The real daemon probing the simulator every second, its app served on 127.0.0.1."""
    targets = [
        cert_target(sim, "alpha", checks=["repository", "engine"], interval="1s", timeout="1s"),
        cert_target(sim, "zulu", checks=["proxy"], interval="1s", timeout="1s"),
    ]
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"targets": targets}))
    daemon = Daemon(config)
    daemon.start(load_config(config))
    runner, port = await run_server(create_app(daemon), "127.0.0.1:0")
    try:
        yield daemon, f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()
        await daemon.stop()


@pytest.mark.slow
async def test_status_page_in_a_browser_healthy_then_with_a_failing_check(
    served: tuple[Daemon, str], sim: Simulator, tmp_path: Path
) -> None:
    """Healthy: every check OK, nothing red. With the proxy answering 503: the failing check
    is the first row with its reason and error in view, in red, at desktop and phone width."""
    daemon, url = served

    def outcomes() -> dict[tuple[str, str], bool]:
        return {(s.target, s.check): s.latest.success for s in daemon.store.snapshot() if s.latest}

    await until(lambda: len(outcomes()) == 3 and all(outcomes().values()))
    dom, shots = await look(tmp_path, url, "healthy")
    assert "all 3 checks OK" in dom
    assert [css for css, _ in check_rows(dom)] == ["ok", "ok", "ok"]
    assert not any(has_colour(shot, RED) for shot in shots)

    sim.faults.set("proxy", "status", status=503)
    await until(lambda: outcomes().get(("zulu", "proxy")) is False)
    dom, shots = await look(tmp_path, url, "failing")
    rows = check_rows(dom)
    assert rows[0][0] == "failed", rows
    assert rows[0][1].startswith("zulu localhost proxy probe now server_error"), rows[0]
    assert "503" in rows[0][1]  # the error detail, visible without hovering
    assert [css for css, _ in rows[1:]] == ["ok", "ok"]
    assert "1 of 3 checks failing" in dom
    assert all(has_colour(shot, RED) for shot in shots)
