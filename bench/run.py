"""Performance benchmark of qlik-sense-exporter: ``python bench/run.py [--quick]``.

Not a test and not run in CI. It starts the simulator as separate processes (so their CPU is
not counted against the exporter), then measures, in one run:

1. CPU per probe and probe-duration p50 of a certificate-auth ``repository`` probe, against
   two floors, a raw Python ``ssl``+``socket`` request and OpenSSL's own C client
   (``openssl s_time -new``) with the same client certificate, and against Debian's
   prometheus-blackbox-exporter probing the same endpoint with the same certificate and
   headers; three rounds, each ratio reported as the median and spread of the rounds, the
   measured clients pinned to one CPU and the simulators to the other;
2. the real daemon (``Exporter`` with APScheduler) on 1,000 and 5,000 target-checks at a 30 s
   interval: missed runs, schedule lag, CPU and RSS;
3. ``/metrics`` render latency with about 10,000 series, and the event-loop stall a scrape
   causes.

It prints a Markdown table and writes it to ``bench/results.md`` (raw numbers in
``bench/results.json``). Everything binds 127.0.0.1; every child process is stopped at the
end, also on Ctrl-C. The load average before and after is recorded: the figures are ratios
measured side by side, because absolute times on a shared machine mean little.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _common import (  # noqa: E402
    USER_HEADER,
    XRFKEY,
    cert_target,
    cpu_jiffies,
    cpu_pressure,
    cpu_split,
    pinned,
    proc_cpu,
    proc_rss,
    summary,
)

CACHE = Path.home() / ".cache" / "qlik-sense-exporter-bench"
BLACKBOX_PKG = "prometheus-blackbox-exporter"

# The goals: ratios against the floors measured in the same run, and absolute limits where
# the machine's speed matters less (memory, /metrics on a mostly idle loop).
TARGETS = {
    "cpu_vs_raw": 1.20,
    "cpu_vs_openssl": 1.5,
    "p50_vs_raw": 1.08,
    "metrics_p50_ms": 3.0,
    "metrics_cold_p50_ms": 6.0,
    "loop_stall_ms": 10.0,
    "rss_1000_mib": 64.0,
    "lag_p99_5000_s": 0.100,
}
CLIENT_CPU, SERVER_CPU = cpu_split()
LOOP = "auto"  # the event loop of the exporter's workers: --loop


class Children:
    """Every child process this run started; all are stopped on exit, also on Ctrl-C."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: list[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- simulator -----------------------------------------------------------------------------


def start_simulator(children: Children, workdir: Path) -> tuple[subprocess.Popen[bytes], dict]:
    """``python -m exporter.sim`` on random loopback ports; returns it and its sim.json."""
    workdir.mkdir(parents=True, exist_ok=True)
    state = workdir / "sim.json"
    state.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "exporter.sim", "--dir", str(workdir), "--bind", "127.0.0.1"]
    proc = children.spawn(
        [*argv, "--log-level", "WARNING"],
        workdir / "sim.log",
        cwd=ROOT,
        preexec_fn=pinned(SERVER_CPU),
    )
    deadline = time.monotonic() + 60
    while not state.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"simulator did not start; see {workdir / 'sim.log'}")
        time.sleep(0.1)
    time.sleep(0.2)  # sim.json is written in one go, but let the writer finish
    return proc, json.loads(state.read_text())


# -- blackbox_exporter ---------------------------------------------------------------------


def blackbox_binary() -> Path:
    """Debian's blackbox_exporter, unpacked (never installed) into the private cache."""
    binary = CACHE / "root" / "usr" / "bin" / BLACKBOX_PKG
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    log("fetching prometheus-blackbox-exporter with apt-get download (into the bench cache)")
    subprocess.run(["apt-get", "download", BLACKBOX_PKG], cwd=CACHE, check=True)
    deb = sorted(CACHE.glob(f"{BLACKBOX_PKG}_*.deb"))[-1]
    subprocess.run(["dpkg", "-x", str(deb), str(CACHE / "root")], check=True)
    return binary


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def blackbox_config(sim: dict[str, Any], path: Path) -> None:
    files = sim["files"]
    module = {
        "prober": "http",
        "timeout": "5s",
        "http": {
            "method": "GET",
            "preferred_ip_protocol": "ip4",
            "valid_status_codes": [200],
            "fail_if_not_ssl": True,
            "headers": {
                "Accept": "application/json",
                "X-Qlik-Xrfkey": XRFKEY,
                "X-Qlik-User": USER_HEADER,
            },
            "tls_config": {
                "ca_file": files["root.pem"],
                "cert_file": files["client.pem"],
                "key_file": files["client_key.pem"],
            },
        },
    }
    path.write_text(json.dumps({"modules": {"qrs": module}}))  # JSON is YAML


def bench_blackbox(
    children: Children, sim: dict[str, Any], work: Path, n: int, warmup: int
) -> dict[str, Any]:
    """Hit blackbox_exporter's /probe n times; its CPU per probe from /proc/PID/stat."""
    binary = blackbox_binary()
    config = work / "blackbox.yml"
    blackbox_config(sim, config)
    port = free_port()
    proc = children.spawn(
        [
            str(binary),
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        work / "blackbox.log",
        preexec_fn=pinned(CLIENT_CPU),
    )
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        deadline = time.monotonic() + 20
        while True:
            try:
                conn.request("GET", "/-/healthy")
                conn.getresponse().read()
                break
            except OSError:
                conn.close()
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"blackbox_exporter did not start; see {work}") from None
                time.sleep(0.1)
        target = f"https://{sim['host']}:{sim['ports']['repository']}/qrs/about?xrfkey={XRFKEY}"
        path = "/probe?" + urllib.parse.urlencode({"module": "qrs", "target": target})

        def once() -> tuple[bool, float]:
            conn.request("GET", path)
            body = conn.getresponse().read().decode()
            values = {
                line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
                for line in body.splitlines()
                if line.startswith(("probe_success ", "probe_duration_seconds "))
            }
            return values.get("probe_success") == 1.0, values["probe_duration_seconds"]

        for _ in range(warmup):
            ok, _ = once()
            if not ok:
                raise RuntimeError(f"blackbox probe failed; see {work / 'blackbox.log'}")
        durations: list[float] = []
        failures = 0
        cpu0, t0 = proc_cpu(proc.pid), time.perf_counter()
        for _ in range(n):
            ok, d = once()
            durations.append(d)
            failures += not ok
        wall, cpu = time.perf_counter() - t0, proc_cpu(proc.pid) - cpu0
        conn.close()
        return {
            "process_cpu": proc_cpu(proc.pid),
            "cpu_per_probe": cpu / n,
            "duration": summary(durations),
            "failures": failures,
            "client_wall_per_probe": wall / n,
            "rss": proc_rss(proc.pid),
        }
    finally:
        children.stop(proc)


# -- OpenSSL's C client ---------------------------------------------------------------------


def bench_openssl(sim: dict[str, Any], work: Path, seconds: float) -> dict[str, Any]:
    """``openssl s_time -new`` with the same client certificate: OpenSSL's CPU per connection.

    Every connection is a full handshake with the RSA-2048 client certificate and one
    ``GET /qrs/about`` (HTTP/1.0, no Qlik headers, so the simulator answers 403 in ~200
    bytes). CPU is the process's user+sys from ``wait4``, divided by its connection count.
    """
    files = sim["files"]
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{sim['ports']['repository']}", "-new"]
    argv += ["-cert", files["client.pem"], "-key", files["client_key.pem"]]
    argv += ["-CAfile", files["root.pem"], "-time", f"{seconds:g}"]
    argv += ["-www", f"/qrs/about?xrfkey={XRFKEY}"]
    with open(work / "openssl.log", "wb") as log_file:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            preexec_fn=pinned(CLIENT_CPU),
        )
    # wait4, not Popen.wait: the rusage of this one child is the measurement.
    watchdog = threading.Timer(seconds + 60, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        watchdog.cancel()
        proc.stdout.close()
    text = out.decode(errors="replace")
    m = re.search(r"(\d+) connections in ([\d.]+)s;", text)
    b = re.search(r"(\d+) bytes read per connection", text)
    if not m or int(m.group(1)) == 0:
        raise RuntimeError(f"openssl s_time failed: {text[-300:]!r}")
    n = int(m.group(1))
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "connections": n,
        "process_cpu": cpu,
        "cpu_per_connection": cpu / n,
        "bytes_per_connection": int(b.group(1)) if b else None,
    }


# -- probe comparison ----------------------------------------------------------------------


def bench_probes(
    children: Children, sim: dict[str, Any], sim_json: Path, work: Path, n: int, warmup: int
) -> dict[str, Any]:
    """The exporter's probe and the raw floor, interleaved, in a worker process."""
    out = work / "probe_worker.out"
    target = json.dumps(cert_target(sim, "bench"))
    argv = [sys.executable, str(HERE / "probe_worker.py"), "--sim", str(sim_json)]
    argv += ["--target", target, "--n", str(n), "--warmup", str(warmup), "--loop", LOOP]
    with open(out, "wb") as f, open(work / "probe_worker.log", "wb") as err:
        proc = subprocess.Popen(argv, stdout=f, stderr=err, cwd=ROOT, preexec_fn=pinned(CLIENT_CPU))
        children.procs.append(proc)
        try:
            if proc.wait(timeout=300) != 0:
                raise RuntimeError(f"probe worker failed; see {work / 'probe_worker.log'}")
        finally:
            children.stop(proc)
    return json.loads(out.read_text())


def probe_round(
    children: Children,
    sim: dict[str, Any],
    sim_json: Path,
    work: Path,
    args: argparse.Namespace,
    index: int,
) -> dict[str, Any]:
    """One round of the probe comparison: the exporter with the raw floor, blackbox_exporter
    and openssl, in an order that rotates from round to round."""
    steps = ["probes", "blackbox", "openssl"]
    steps = steps[index % 3 :] + steps[: index % 3]
    out: dict[str, Any] = {"order": steps, "load_before": os.getloadavg()}
    busy0, total0 = cpu_jiffies(CLIENT_CPU)
    for step in steps:
        log(f"round {index + 1}: {step}")
        if step == "probes":
            out["probes"] = bench_probes(children, sim, sim_json, work, args.n, args.warmup)
        elif step == "blackbox":
            out["blackbox"] = bench_blackbox(children, sim, work, args.n, args.warmup)
        else:
            out["openssl"] = bench_openssl(sim, work, args.openssl_seconds)
    busy1, total1 = cpu_jiffies(CLIENT_CPU)
    ours = sum(out[k]["process_cpu"] for k in steps)
    # Another engineer's work on the measured CPU shows here: its busy time not spent by us.
    out["client_cpu"] = {
        "busy": busy1 - busy0,
        "span": total1 - total0,
        "ours": ours,
        "others": max(0.0, busy1 - busy0 - ours),
    }
    out["load_after"] = os.getloadavg()
    out["ratios"] = round_ratios(out)
    return out


def round_ratios(r: dict[str, Any]) -> dict[str, float]:
    """The ratios of one round: the exporter against each floor and against blackbox."""
    e, raw = r["probes"]["exporter"], r["probes"]["raw"]
    return {
        "cpu_vs_raw": e["cpu"]["mean"] / raw["cpu"]["mean"],
        "cpu_vs_openssl": e["cpu"]["mean"] / r["openssl"]["cpu_per_connection"],
        "p50_vs_raw": e["duration"]["p50"] / raw["duration"]["p50"],
        "cpu_vs_blackbox": e["cpu"]["mean"] / r["blackbox"]["cpu_per_probe"],
        "raw_vs_openssl": raw["cpu"]["mean"] / r["openssl"]["cpu_per_connection"],
    }


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min and max of the rounds' values."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "rounds": values,
    }


def round_figures(r: dict[str, Any]) -> dict[str, float]:
    """The absolute figures of one round, seconds."""
    p = r["probes"]
    return {
        "exporter_cpu": p["exporter"]["cpu"]["mean"],
        "raw_cpu": p["raw"]["cpu"]["mean"],
        "openssl_cpu": r["openssl"]["cpu_per_connection"],
        "blackbox_cpu": r["blackbox"]["cpu_per_probe"],
        "exporter_p50": p["exporter"]["duration"]["p50"],
        "raw_p50": p["raw"]["duration"]["p50"],
        "blackbox_p50": r["blackbox"]["duration"]["p50"],
    }


# -- scale ---------------------------------------------------------------------------------


def bench_scale(
    children: Children,
    sims: list[tuple[subprocess.Popen[bytes], dict[str, Any]]],
    work: Path,
    count: int,
    interval: int,
    duration: float,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The real daemon on ``count`` repository checks spread over the simulators."""
    name = f"scale_{count}{'_traced' if extra else ''}"
    targets = []
    for i in range(count):
        t = cert_target(sims[i % len(sims)][1], f"t{i:05d}")
        del t["timeout"]
        targets.append(t)
    config = work / f"{name}.yml"
    config.write_text(json.dumps({"defaults": {"interval": f"{interval}s"}, "targets": targets}))
    out = work / f"{name}.out"
    argv = [sys.executable, str(HERE / "scale_worker.py"), "--config", str(config)]
    argv += ["--duration", str(duration), "--loop", LOOP, *extra]
    sim_cpu0 = [proc_cpu(p.pid) for p, _ in sims]
    t0 = time.perf_counter()
    peak_rss, cpu_seen = 0, 0.0
    with open(out, "wb") as f, open(work / f"{name}.log", "wb") as err:
        proc = subprocess.Popen(argv, stdout=f, stderr=err, cwd=ROOT, preexec_fn=pinned(CLIENT_CPU))
        children.procs.append(proc)
        hard = duration * 1.5 + 10  # loop-blocked workers are killed here
        try:
            while proc.poll() is None and time.perf_counter() - t0 < hard:
                with contextlib.suppress(OSError):
                    peak_rss = max(peak_rss, proc_rss(proc.pid))
                    cpu_seen = proc_cpu(proc.pid)
                time.sleep(0.5)
            killed = proc.poll() is None
        finally:
            children.stop(proc)
    wall = time.perf_counter() - t0
    sim_cpu = [proc_cpu(p.pid) - c for (p, _), c in zip(sims, sim_cpu0, strict=True)]
    result: dict[str, Any] = {"count": count, "killed": killed}
    if not killed and out.stat().st_size:
        result |= json.loads(out.read_text())
    else:
        result |= {"cpu_seconds": cpu_seen, "cpu_ratio": cpu_seen / wall, "rss_peak": peak_rss}
    result["rss_peak_observed"] = max(peak_rss, result.get("rss_peak", 0))
    result["sim_cpu_ratio"] = [c / wall for c in sim_cpu]
    return result


# -- /metrics ------------------------------------------------------------------------------


def synthetic_store(checks: int) -> Any:
    """A ResultStore with ``checks`` successful repository results, like a real run leaves."""
    from exporter.reasons import Reason
    from exporter.results import CertificateInfo, CheckValues, ProbeResult, ResultStore

    store = ResultStore()
    now = time.time()
    for i in range(checks):
        name = f"target-{i:05d}"
        host = f"{name}.example.com"  # the node label, as on a real site
        certs = [
            CertificateInfo("client", "QlikClient", "site-CA", f"{i:x}01", now - 86400, now + 9e6),
            CertificateInfo("root", "site-CA", "site-CA", f"{i:x}02", now - 86400, now + 9e7),
            CertificateInfo(
                "server_repository", host, "site-CA", f"{i:x}03", now, now + 9e6, node=host
            ),
        ]
        for run in range(3):
            ok = run != 1
            store.record_start(name, "repository", host)
            store.record(
                ProbeResult(
                    target=name,
                    node=host,
                    check="repository",
                    success=ok,
                    reason=None if ok else Reason.TIMEOUT,
                    error="",
                    started=now,
                    finished=now + 0.01,
                    duration=0.0123 + run / 1000,
                    phases={
                        "resolve": 1e-4,
                        "connect": 2e-4,
                        "tls": 3e-3,
                        "request": 1e-3,
                        "read": 1e-5,
                    },
                    values=CheckValues(repository_build=("31.43.0.0", "4/12/2024 18:12:20 PM")),
                    certificates=certs,
                    hostname_match=True,
                )
            )
    return store


def churner(store: Any, fraction: float, seed: int = 1) -> Any:
    """A function that records a new result for ``fraction`` of the store's checks, as the
    probes finishing between two scrapes do."""
    import dataclasses

    rng = random.Random(seed)
    latest = [s.latest for s in store.snapshot() if s.latest is not None]

    def churn() -> None:
        for r in rng.sample(latest, round(len(latest) * fraction)):
            store.record_start(r.target, r.check, r.node)
            store.record(dataclasses.replace(r, duration=rng.random() / 10, finished=time.time()))

    return churn


def bench_metrics(series_target: int, reps: int) -> dict[str, Any]:
    """Render latency of the real render path, and the loop stall while scraping.

    Renders are timed three ways: nothing changed since the last scrape; half of the checks
    have a new result (the usual case: Prometheus scrapes every 15 s, checks run every 30 s);
    and cold, with an empty cache (every series rendered, as on the first scrape).
    """
    from exporter.exposition import RenderCache
    from exporter.metrics import QlikCollector
    from exporter.state import DaemonStatus

    def status() -> DaemonStatus:
        return DaemonStatus(True, time.time(), checks, time.time(), True, checks)

    checks = 10
    one = QlikCollector(synthetic_store(checks), status=status).render_text()
    per_check = sum(1 for line in one.splitlines() if not line.startswith(b"#")) / checks
    checks = max(1, round(series_target / per_check))
    store = synthetic_store(checks)
    collector = QlikCollector(store, status=status, cache=RenderCache())
    body = collector.render_text()
    series = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
    churn = churner(store, 0.5)

    def timed(before: Any, render: Any) -> dict[str, Any]:
        times = []
        for _ in range(reps):
            before()
            t = time.perf_counter()
            render()
            times.append(time.perf_counter() - t)
        return summary(times)

    unchanged = timed(lambda: None, collector.render_text)
    half = timed(churn, collector.render_text)
    cold = timed(lambda: None, lambda: QlikCollector(store, status=status).render_text())
    stall = asyncio.run(loop_stall(collector, reps, churn))
    return {
        "checks": checks,
        "series": series,
        "bytes": len(body),
        "render": half,
        "render_unchanged": unchanged,
        "render_cold": cold,
        **stall,
    }


async def loop_stall(collector: Any, reps: int, churn: Any) -> dict[str, Any]:
    """The longest event-loop stall while scraping, with half the checks changing between
    scrapes (``churn``).

    The renderer runs in a worker thread (as the handler does with ``to_thread``) and, for
    comparison, inline on the loop; with ``exporter.web`` present, its real aiohttp app is also
    scraped over HTTP on 127.0.0.1 by a blocking client in a thread.
    """
    period = 0.001

    async def measure(work: Any) -> float:
        lags: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                t = time.perf_counter()
                await asyncio.sleep(period)
                lags.append(time.perf_counter() - t - period)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        lags.clear()
        await work()
        done.set()
        await task
        return max(lags, default=0.0)

    async def idle() -> None:
        await asyncio.sleep(0.5)

    async def threaded() -> None:
        for _ in range(reps):
            churn()
            await asyncio.sleep(0)
            await asyncio.to_thread(collector.render_text)
            await asyncio.sleep(0.005)

    async def inline() -> None:
        for _ in range(reps):
            churn()
            await asyncio.sleep(0)
            collector.render_text()
            await asyncio.sleep(0.005)

    out: dict[str, Any] = {"stall_idle": await measure(idle)}
    out["stall_thread"] = await measure(threaded)
    out["stall_inline"] = await measure(inline)
    try:
        from exporter import web as exporter_web
    except ImportError:
        out["web_module"] = False
        return out
    out["web_module"] = True
    from aiohttp import web

    from exporter.config import Config

    status = collector._status  # the synthetic DaemonStatus callable
    state = type(
        "State",
        (),
        {"store": collector._store, "config": Config(), "status": property(lambda _: status())},
    )()
    runner = web.AppRunner(exporter_web.create_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    latencies: list[float] = []

    def scrape() -> None:  # a blocking client in a thread, as Prometheus would be elsewhere
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(reps):
            churn()
            t = time.perf_counter()
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            resp.read()
            latencies.append(time.perf_counter() - t)
            assert resp.status == 200
        conn.close()

    async def scrapes() -> None:
        await asyncio.to_thread(scrape)

    try:
        out["stall_web"] = await measure(scrapes)
        out["web_latency"] = summary(latencies)
    finally:
        await runner.cleanup()
    return out


# -- report --------------------------------------------------------------------------------


def ms(x: float | None) -> str:
    return "–" if x is None else f"{x * 1000:.2f} ms"


def mib(x: float | None) -> str:
    return "–" if not x else f"{x / 2**20:.0f} MiB"


def verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


GOAL_ROWS = (
    ("cpu_vs_raw", "exporter CPU per probe / raw Python ssl+socket floor", "≤ 1.20"),
    ("cpu_vs_openssl", "exporter CPU per probe / OpenSSL C floor (`s_time -new`)", "≤ 1.5"),
    ("p50_vs_raw", "probe duration p50 / raw floor p50", "≤ 1.08"),
)


def load(x: list[float] | tuple[float, ...]) -> str:
    return " / ".join(f"{v:.2f}" for v in x)


def pressure_text(p: dict[str, float | None]) -> str:
    if p.get("before") is None:
        return ""
    return (
        "Share of the last minute some task waited for a CPU (Linux PSI `cpu some avg60`): "
        + ", ".join(f"{v:.0%} {k.replace('_', ' ')}" for k, v in p.items() if v is not None)
        + ". "
    )


def report(res: dict[str, Any], args: argparse.Namespace) -> str:
    m, rounds = res["metrics"], res["rounds"]
    ratios, figures = res["ratio_rounds"], res["figures"]
    large = next((s for s in res["scale"] if s["count"] == args.large), None)
    small = next((s for s in res["scale"] if s["count"] == args.small), None)
    pin = res["pinning"]
    out = [
        f"## Results ({'quick' if args.quick else 'full'} run)",
        "",
        f"Load average (1 / 5 / 15 min): {load(res['load']['before'])} before, "
        f"{load(res['load']['after_probes'])} after the probe rounds, "
        f"{load(res['load']['after'])} at the end. "
        + pressure_text(res["cpu_pressure"])
        + (
            f"Measured clients (exporter, raw floor, openssl, blackbox_exporter, the daemon) "
            f"pinned to CPU {pin['client_cpu']} (the idlest when the run began); simulators and "
            f"the orchestrator to CPU "
            f"{pin['server_cpu']}."
            if pin["client_cpu"] is not None
            else "Only one CPU available: nothing pinned."
        ),
        "",
        f"### Goals: this run's medians ({len(rounds)} rounds of the probe comparison)",
        "",
        "| measure | median | spread (min–max) | goal | result |",
        "|---|---|---|---|---|",
    ]
    for key, label, goal in GOAL_ROWS:
        st = ratios[key]
        out.append(
            f"| {label} | {st['median']:.2f} | {st['min']:.2f}–{st['max']:.2f} | {goal} | "
            f"{verdict(st['median'] <= TARGETS[key])} |"
        )
    bb = ratios["cpu_vs_blackbox"]
    out.append(
        f"| exporter CPU per probe / blackbox_exporter (for reference) | {bb['median']:.2f} | "
        f"{bb['min']:.2f}–{bb['max']:.2f} | – | |"
    )
    if small is not None and not small["killed"]:
        rss = small["rss_peak_observed"] / 2**20
        out.append(
            f"| RSS peak, {small['count']} target-checks at {small['interval']:.0f} s | "
            f"{rss:.0f} MiB | one run | ≤ 64 MiB | {verdict(rss <= TARGETS['rss_1000_mib'])} |"
        )
    half, cold = m["render"]["p50"] * 1000, m["render_cold"]["p50"] * 1000
    out.append(
        f"| `/metrics`, {m['series']} series, half changed p50 / cold p50 | {half:.2f} / "
        f"{cold:.2f} ms | p50 of {m['render']['n']} | ≤ 3 / ≤ 6 ms | "
        f"{verdict(half <= TARGETS['metrics_p50_ms'] and cold <= TARGETS['metrics_cold_p50_ms'])} |"
    )
    if large is not None and not large["killed"]:
        lag = large["lag"]["p99"] or 0.0
        ok = large["missed"] == 0 and lag <= TARGETS["lag_p99_5000_s"]
        out.append(
            f"| {large['count']} target-checks at {large['interval']:.0f} s: missed, lag p99 | "
            f"{large['missed']}, {lag * 1000:.0f} ms | one run | 0, ≤ 100 ms | {verdict(ok)} |"
        )
    out += [
        "",
        "### Probe comparison, round by round",
        "",
        "| round | order | exporter CPU | raw CPU | openssl CPU | blackbox CPU | exporter p50 "
        "| raw p50 | blackbox p50 | CPU / raw | CPU / openssl | p50 / raw | CPU / blackbox "
        "| load before → after | others' CPU on the client CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rounds):
        f, q, c = round_figures(r), r["ratios"], r["client_cpu"]
        others = c["others"] / c["span"] if c["span"] else 0.0
        out.append(
            f"| {i + 1} | {', '.join(r['order'])} | {ms(f['exporter_cpu'])} | {ms(f['raw_cpu'])} "
            f"| {ms(f['openssl_cpu'])} | {ms(f['blackbox_cpu'])} | {ms(f['exporter_p50'])} | "
            f"{ms(f['raw_p50'])} | {ms(f['blackbox_p50'])} | {q['cpu_vs_raw']:.2f} | "
            f"{q['cpu_vs_openssl']:.2f} | {q['p50_vs_raw']:.2f} | {q['cpu_vs_blackbox']:.2f} | "
            f"{r['load_before'][0]:.2f} → {r['load_after'][0]:.2f} | {others:.0%} |"
        )
    med = {k: v["median"] for k, v in figures.items()}
    out.append(
        f"| median | | {ms(med['exporter_cpu'])} | {ms(med['raw_cpu'])} | "
        f"{ms(med['openssl_cpu'])} | {ms(med['blackbox_cpu'])} | {ms(med['exporter_p50'])} | "
        f"{ms(med['raw_p50'])} | {ms(med['blackbox_p50'])} | "
        f"{ratios['cpu_vs_raw']['median']:.2f} | {ratios['cpu_vs_openssl']['median']:.2f} | "
        f"{ratios['p50_vs_raw']['median']:.2f} | {ratios['cpu_vs_blackbox']['median']:.2f} | | |"
    )
    last = rounds[-1]
    phases = last["probes"]["exporter"]["phases_p50"]
    failures = sum(r["probes"]["exporter"]["failures"] for r in rounds)
    bb_failures = sum(r["blackbox"]["failures"] for r in rounds)
    out += [
        "",
        f"n = {args.n} probes per client per round (openssl: as many connections as fit in "
        f"{args.openssl_seconds:g} s, {last['openssl']['connections']} in the last round). "
        f"Event loop: {last['probes'].get('loop', 'asyncio')}. CPU is the mean per probe; "
        "the exporter and the raw floor run interleaved in one worker process; openssl's CPU is "
        "its user+sys (`wait4`) per connection; blackbox_exporter's is its process's CPU delta "
        "per `/probe`. *Others' CPU* is the client CPU's busy time during the round that none "
        "of the measured processes spent (other work on the machine).",
        "",
        "Exporter phase p50 (last round): "
        + ", ".join(f"{k} {ms(v)}" for k, v in phases.items())
        + f". Probe failures: exporter {failures}, blackbox {bb_failures}. "
        f"blackbox_exporter uses a fixed xrfkey (`{XRFKEY}`): it cannot vary one per request; "
        "the exporter and the raw floor use a fresh one. openssl sends no Qlik headers, so the "
        "simulator answers it 403 (the handshake with the client certificate is the same).",
    ]
    out += ["", "### Daemon at scale", ""]
    out.append(
        "| target-checks | interval | runs due / started | missed | lag p50 | lag p99 "
        "| latest ok | loop lag max | CPU (cores) | RSS peak | simulators' CPU | result |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in res["scale"]:
        if s["killed"]:
            out.append(
                f"| {s['count']} | {args.interval} s | – | did not finish: loop "
                f"blocked, killed after {s.get('hard', '?')} s | – | – | – | – | "
                f"{s['cpu_ratio']:.2f} | {mib(s['rss_peak_observed'])} | "
                f"{', '.join(f'{c:.2f}' for c in s['sim_cpu_ratio'])} | **FAIL** |"
            )
            continue
        ok = s["latest_outcome"].get("ok", 0)
        missed = s["missed"]
        checks = [missed == 0]
        if s["count"] == args.small:
            checks.append(s["rss_peak_observed"] / 2**20 <= TARGETS["rss_1000_mib"])
        if s["count"] == args.large:
            checks.append((s["lag"]["p99"] or 0.0) <= TARGETS["lag_p99_5000_s"])
        out.append(
            f"| {s['count']} | {s['interval']:.0f} s | {s['runs_due']} / "
            f"{s['runs_started']} | {missed} | {s['lag']['p50'] or 0:.3f} s | "
            f"{s['lag']['p99'] or 0:.3f} s | {ok}/{s['jobs']} | {s['loop_lag']['max']:.2f} s | "
            f"{s['cpu_ratio']:.2f} | {mib(s['rss_peak_observed'])} | "
            f"{', '.join(f'{c:.2f}' for c in s['sim_cpu_ratio'])} | {verdict(all(checks))} |"
        )
    out += [
        "",
        f"Goals: no missed run and lag p99 ≤ 100 ms at {args.large} target-checks; RSS ≤ 64 MiB "
        f"at {args.small}. *Missed* counts "
        "runs due at least one interval before the end that did not start within their "
        "interval, plus APScheduler's skipped (max instances), missed and coalesced runs. "
        "*Lag* is the run's actual start minus its scheduled time. *latest ok* is how many "
        "checks' last result was a success.",
        "",
        "### /metrics",
        "",
        "| measurement | value | goal | result |",
        "|---|---|---|---|",
        f"| render, {m['series']} series ({m['checks']} checks, {m['bytes'] / 1024:.0f} KiB), "
        f"half the checks changed since the last scrape, p50 | {ms(m['render']['p50'])} | ≤ 3 ms | "
        f"{verdict(m['render']['p50'] * 1000 <= TARGETS['metrics_p50_ms'])} |",
        f"| render, half changed, p99 | {ms(m['render']['p99'])} | | |",
        f"| render, nothing changed, p50 | {ms(m['render_unchanged']['p50'])} | | |",
        f"| render, cold (every series rendered, e.g. the first scrape), p50 / p99 | "
        f"{ms(m['render_cold']['p50'])} / {ms(m['render_cold']['p99'])} | ≤ 6 ms (p50) | "
        f"{verdict(m['render_cold']['p50'] * 1000 <= TARGETS['metrics_cold_p50_ms'])} |",
        *web_rows(m),
        f"| longest loop stall, render in a worker thread | {ms(m['stall_thread'])} | "
        + (
            "| |"
            if m["web_module"]
            else f"≤ 10 ms | {verdict(m['stall_thread'] * 1000 <= TARGETS['loop_stall_ms'])} |"
        ),
        f"| longest loop stall, render inline on the loop | {ms(m['stall_inline'])} | | |",
        f"| longest loop stall, idle loop (noise floor) | {ms(m['stall_idle'])} | | |",
        "",
        "Render is the real render path (`QlikCollector.render_text`) timed directly, with one "
        "`RenderCache` as the app keeps; before each timed render of the *half changed* rows and "
        "before each scrape, half the checks (chosen at random) get a new result. "
        + (
            "The scrape rows drive `exporter.web.create_app` served by aiohttp on 127.0.0.1, "
            "scraped by a blocking client in a thread; the stall is the longest lateness of a "
            "1 ms ticker task on the server's loop."
            if m["web_module"]
            else "`exporter.web` did not exist at the time of the run, so the stall is the "
            "longest lateness of a 1 ms ticker task while the renderer ran in a thread."
        ),
        "",
        f"Machine: {res['machine']}.",
    ]
    return "\n".join(out) + "\n"


def web_rows(m: dict[str, Any]) -> list[str]:
    if not m["web_module"]:
        return []
    lat = m["web_latency"]
    return [
        f"| GET /metrics over HTTP (exporter.web), p50 / p99 | {ms(lat['p50'])} / "
        f"{ms(lat['p99'])} | | |",
        f"| longest loop stall while scraping /metrics | {ms(m['stall_web'])} | ≤ 10 ms | "
        f"{verdict(m['stall_web'] * 1000 <= TARGETS['loop_stall_ms'])} |",
    ]


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import ssl

    return (
        f"{os.cpu_count()} × {cpu}, Linux {platform.release()}, Python "
        f"{platform.python_version()}, {ssl.OPENSSL_VERSION}"
    )


def run(args: argparse.Namespace, children: Children, work: Path) -> dict[str, Any]:
    parts = set(args.parts.split(","))
    res: dict[str, Any] = {
        "machine": machine(),
        "loop": LOOP,
        "pinning": {"client_cpu": CLIENT_CPU, "server_cpu": SERVER_CPU},
        "load": {"before": os.getloadavg()},
        "cpu_pressure": {"before": cpu_pressure()},
    }
    log(f"load average {load(res['load']['before'])}")
    everywhere = os.sched_getaffinity(0)
    if SERVER_CPU is not None:
        # This process drives blackbox_exporter as Prometheus would: off the measured CPU.
        os.sched_setaffinity(0, {SERVER_CPU})
    log("starting the simulator(s)")
    sims = [start_simulator(children, work / f"sim{i}") for i in range(args.sims)]
    _, sim = sims[0]
    sim_json = work / "sim0" / "sim.json"
    if "probes" in parts:
        log(f"probe comparison: {args.rounds} rounds of {args.n} probes each")
        rounds = [probe_round(children, sim, sim_json, work, args, i) for i in range(args.rounds)]
        res["rounds"] = rounds
        res["ratio_rounds"] = {
            k: spread([r["ratios"][k] for r in rounds]) for k in rounds[0]["ratios"]
        }
        res["ratios"] = {k: res["ratio_rounds"][k]["median"] for k in [g[0] for g in GOAL_ROWS]}
        res["figures"] = {
            k: spread([round_figures(r)[k] for r in rounds]) for k in round_figures(rounds[0])
        }
        res["load"]["after_probes"] = os.getloadavg()
        res["cpu_pressure"]["after_probes"] = cpu_pressure()
        log(f"ratios (medians): {res['ratios']}; load {load(res['load']['after_probes'])}")
    os.sched_setaffinity(0, everywhere)
    if "metrics" in parts:
        log("/metrics render")
        res["metrics"] = bench_metrics(10_000, args.metrics_reps)
    if "scale" in parts:
        res["scale"] = []
        duration = 2 * args.interval + 8
        counts = [int(c) for c in args.counts.split(",")] if args.counts else []
        for count in counts or [args.small, args.large]:
            log(f"daemon: {count} target-checks, ~{duration:.0f} s")
            s = bench_scale(children, sims, work, count, args.interval, duration)
            s["hard"] = round(duration * 1.5 + 10)
            res["scale"].append(s)
    res["load"]["after"] = os.getloadavg()
    res["cpu_pressure"]["after"] = cpu_pressure()
    return res


def memory(args: argparse.Namespace, children: Children, work: Path) -> str:
    """``--memory``: where the RSS of 1,000 target-checks goes, per module (tracemalloc)."""
    sims = [start_simulator(children, work / f"sim{i}") for i in range(args.sims)]
    duration = args.interval + 8
    log(f"daemon with tracemalloc: 1000 target-checks, ~{duration:.0f} s")
    s = bench_scale(children, sims, work, 1000, args.interval, duration, ("--tracemalloc",))
    rows = [
        f"RSS peak {mib(s['rss_peak_observed'])}, at the end {mib(s.get('rss_end'))}; "
        f"traced by Python: {mib(s.get('traced_current'))} at the end, peak "
        f"{mib(s.get('traced_peak'))}.",
        "",
        "| module | allocated at the end | of which after the imports |",
        "|---|---|---|",
    ]
    rows += [
        f"| {m['module']} | {m['size'] / 1024:.0f} KiB | {m['size_diff'] / 1024:.0f} KiB |"
        for m in sorted(s.get("by_module", []), key=lambda m: -m["size"])
    ]
    rows += ["", "| largest allocation sites at the end | size | blocks |", "|---|---|---|"]
    rows += [
        f"| {t['line']} | {t['size'] / 1024:.0f} KiB | {t['count']} |"
        for t in s.get("top_lines", [])
    ]
    return "\n".join(rows) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller and shorter (about a minute)")
    p.add_argument("--sims", type=int, default=2, help="simulator processes for the scale runs")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the probe comparison")
    p.add_argument(
        "--loop",
        default="auto",
        choices=("auto", "asyncio", "uvloop"),
        help="the exporter's event loop, as its --runtime.loop (default auto)",
    )
    p.add_argument(
        "--parts",
        default="probes,metrics,scale",
        help="comma-separated parts to run (default probes,metrics,scale)",
    )
    p.add_argument("--counts", help="target-checks of the scale runs, e.g. 1000 (partial runs)")
    p.add_argument(
        "--memory",
        action="store_true",
        help="only trace where the memory of 1,000 target-checks goes (tracemalloc), and print it",
    )
    args = p.parse_args()
    global LOOP
    LOOP = args.loop
    if args.quick:
        args.n, args.warmup, args.metrics_reps, args.openssl_seconds = 150, 10, 30, 2.0
        args.small, args.large, args.interval = 200, 1000, 10
    else:
        args.n, args.warmup, args.metrics_reps, args.openssl_seconds = 600, 30, 100, 5.0
        args.small, args.large, args.interval = 1000, 5000, 30
    children = Children()
    work = Path(tempfile.mkdtemp(prefix="qlik-exporter-bench-"))

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        if args.memory:
            print(memory(args, children, work))
            return 0
        res = run(args, children, work)
    except KeyboardInterrupt:
        log("interrupted; stopping child processes")
        return 130
    finally:
        children.stop_all()
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if set(args.parts.split(",")) != {"probes", "metrics", "scale"}:
        print(json.dumps(res, indent=1, default=str))  # a partial run leaves results.* alone
        return 0
    text = report(res, args)
    (HERE / "results.md").write_text(text)
    (HERE / "results.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
