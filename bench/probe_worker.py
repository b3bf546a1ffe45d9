"""Worker process: the exporter's ``repository`` probe and the raw ssl+socket floor, interleaved.

Run by ``bench/run.py``; prints one JSON object. Each iteration runs one exporter probe
(``run_probe`` on a ``Prober``, the daemon's code path) and one raw request over a
shared ``SSLContext``, in random order, so both see the same machine state. CPU is this
process's CPU time (``time.process_time``, every thread, so the resolver's thread pool counts)
around each probe; the simulator runs in another process.

``--loop`` picks the event loop as the daemon's ``--runtime.loop`` does (when the checkout has
it); ``--resolver aiodns`` swaps in a c-ares resolver through the probe's injectable resolver,
to measure that lever without changing the exporter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import resource
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # the repository, if not installed

from _common import USER_HEADER, XRFKEY, summary

from exporter.checks.context import new_xrfkey
from exporter.config import parse_config
from exporter.runner import Prober, run_probe


def raw_context(sim: dict[str, Any]) -> ssl.SSLContext:
    """One verifying client context with the client certificate, shared by every raw request."""
    files = sim["files"]
    ctx = ssl.create_default_context(cafile=files["root.pem"])
    ctx.load_cert_chain(files["client.pem"], files["client_key.pem"])
    return ctx


def raw_request(ctx: ssl.SSLContext, host: str, port: int) -> bytes:
    """GET /qrs/about over a fresh TLS connection; returns the body."""
    key = new_xrfkey()
    with (
        socket.create_connection((host, port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname=host) as tls,
    ):
        tls.sendall(
            (
                f"GET /qrs/about?xrfkey={key} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Accept: application/json\r\nX-Qlik-Xrfkey: {key}\r\n"
                f"X-Qlik-User: {USER_HEADER}\r\nConnection: close\r\n\r\n"
            ).encode()
        )
        data = bytearray()
        while True:
            head, sep, body = bytes(data).partition(b"\r\n\r\n")
            if sep:
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    None,
                )
                if length is not None and len(body) >= length:
                    break
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"raw request failed: {bytes(data[:80])!r}")
    return body


class AiodnsResolver:
    """c-ares (aiodns) lookups, one channel for the whole run; a bench-only lever."""

    def __init__(self) -> None:
        import aiodns

        self._aiodns = aiodns
        self._resolver = aiodns.DNSResolver()

    async def resolve(self, host: str, port: int) -> list[str]:
        try:
            res = await self._resolver.getaddrinfo(
                host, port=port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except self._aiodns.error.DNSError as exc:
            raise socket.gaierror(socket.EAI_NONAME, str(exc)) from None
        return list(dict.fromkeys(n.addr[0].decode() for n in res.nodes))


def run_on_loop(main: Any, loop: str) -> Any:
    """``main`` on the loop ``loop`` names; asyncio's own when the checkout predates the flag."""
    try:
        from exporter import runtime
    except ImportError:
        if loop not in ("auto", "asyncio"):
            raise SystemExit(f"this checkout has no exporter.runtime for --loop {loop}") from None
        return asyncio.run(main)
    return runtime.run(main, loop)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    sim = json.loads(Path(args.sim).read_text())  # noqa: ASYNC240 - before any probe
    config = parse_config({"targets": [json.loads(args.target)]}, base_dir=Path.cwd())
    rt = Prober.build(config.targets[0])
    resolver = AiodnsResolver() if args.resolver == "aiodns" else None
    loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]
    ctx = raw_context(sim)
    host, port = sim["host"], sim["ports"]["repository"]
    assert XRFKEY  # the raw floor varies its key per request like the exporter does

    async def exporter_once() -> tuple[float, float, bool, dict[str, float]]:
        c0, t0 = time.process_time(), time.perf_counter()
        r = await run_probe(rt, "repository", resolver=resolver)
        t1, c1 = time.perf_counter(), time.process_time()
        del t0, t1
        return c1 - c0, r.duration, r.success, r.phases

    def raw_once() -> tuple[float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        raw_request(ctx, host, port)
        t1, c1 = time.perf_counter(), time.process_time()
        return c1 - c0, t1 - t0

    for _ in range(args.warmup):
        await exporter_once()
        raw_once()
    exp_cpu: list[float] = []
    exp_dur: list[float] = []
    raw_cpu: list[float] = []
    raw_dur: list[float] = []
    phases: dict[str, list[float]] = {}
    failures = 0
    rng = random.Random(1)
    for _ in range(args.n):
        order = [0, 1]
        rng.shuffle(order)
        for which in order:
            if which == 0:
                cpu, dur, ok, ph = await exporter_once()
                exp_cpu.append(cpu)
                exp_dur.append(dur)
                failures += not ok
                for k, v in ph.items():
                    phases.setdefault(k, []).append(v)
            else:
                cpu, dur = raw_once()
                raw_cpu.append(cpu)
                raw_dur.append(dur)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "process_cpu": usage.ru_utime + usage.ru_stime,
        "loop": "uvloop" if loop == "uvloop" else "asyncio",
        "resolver": args.resolver,
        "exporter": {
            "cpu": summary(exp_cpu),
            "duration": summary(exp_dur),
            "failures": failures,
            "phases_p50": {k: summary(v)["p50"] for k, v in phases.items()},
        },
        "raw": {"cpu": summary(raw_cpu), "duration": summary(raw_dur)},
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sim", required=True, help="the simulator's sim.json")
    p.add_argument("--target", required=True, help="the target dict as JSON")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--profile", help="write a cProfile of the exporter probes here")
    p.add_argument("--loop", default="auto", help="auto, asyncio or uvloop (default auto)")
    p.add_argument("--resolver", choices=("system", "aiodns"), default="system")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        out = run_on_loop(main_async(args), args.loop)
        prof.disable()
        prof.dump_stats(args.profile)
    else:
        out = run_on_loop(main_async(args), args.loop)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
