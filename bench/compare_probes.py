"""CPU per probe of two or more checkouts, side by side: ``python bench/compare_probes.py``.

    python bench/compare_probes.py before=/path/to/main after=. [--rounds 10] [--n 300]

Runs ``bench/probe_worker.py`` (the probe comparison of ``bench/run.py``) from each checkout in
turn against one simulator, for several rounds, reversing the order every round, so that the
checkouts share the machine's load. The simulator is pinned to the last CPU and the workers to
the first when there are at least two. Prints one line per worker run and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import cert_target  # noqa: E402


def pinned(cpu: int) -> Any:
    """A preexec_fn that pins the child to ``cpu`` where the platform allows it."""

    def pin() -> None:
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {cpu})

    return pin


def start_simulator(tree: Path, work: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """The simulator of ``tree`` on 127.0.0.1, and its sim.json once written."""
    argv = [sys.executable, "-m", "exporter.sim", "--dir", str(work), "--bind", "127.0.0.1"]
    with open(work / "sim.log", "wb") as log:
        proc = subprocess.Popen(
            [*argv, "--log-level", "WARNING"],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned((os.cpu_count() or 1) - 1),
        )
    state = work / "sim.json"
    deadline = time.monotonic() + 60
    while not state.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"simulator did not start; see {work / 'sim.log'}")
        time.sleep(0.1)
    time.sleep(0.5)
    return proc, state


def run_worker(tree: Path, state: Path, target: str, n: int) -> dict[str, Any]:
    """One probe_worker run of ``tree``: its JSON result."""
    argv = [sys.executable, str(tree / "bench" / "probe_worker.py"), "--sim", str(state)]
    out = subprocess.run(
        [*argv, "--target", target, "--n", str(n), "--warmup", "20"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        check=True,
        preexec_fn=pinned(0),
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def line(name: str, d: dict[str, Any]) -> str:
    e = d["exporter"]
    return (
        f"{name:8s} cpu mean {e['cpu']['mean'] * 1e3:.3f} ms, p50 {e['cpu']['p50'] * 1e3:.3f} ms;"
        f" raw floor {d['raw']['cpu']['mean'] * 1e3:.3f} ms; duration p50"
        f" {e['duration']['p50'] * 1e3:.2f} ms; failures {e['failures']}"
    )


def summary(name: str, runs: list[dict[str, Any]]) -> str:
    cpu = statistics.fmean(d["exporter"]["cpu"]["mean"] for d in runs)
    p50 = statistics.median(d["exporter"]["cpu"]["p50"] for d in runs)
    raw = statistics.fmean(d["raw"]["cpu"]["mean"] for d in runs)
    dur = statistics.median(d["exporter"]["duration"]["p50"] for d in runs)
    return (
        f"{name:8s} CPU per probe: mean {cpu * 1e3:.3f} ms, median p50 {p50 * 1e3:.3f} ms,"
        f" / raw floor {cpu / raw:.2f}; duration p50 {dur * 1e3:.2f} ms"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="+", help="NAME=PATH of each checkout")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--n", type=int, default=300, help="probes per worker run")
    args = p.parse_args()
    trees = {k: Path(v).resolve() for k, v in (t.split("=", 1) for t in args.trees)}
    work = Path(tempfile.mkdtemp(prefix="compare-probes-"))
    sim, state = start_simulator(next(iter(trees.values())), work)
    try:
        target = json.dumps(cert_target(json.loads(state.read_text()), "bench"))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        print(f"load average before: {os.getloadavg()}", flush=True)
        for r in range(args.rounds):
            order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
            for name, tree in order:
                runs[name].append(run_worker(tree, state, target, args.n))
                print(f"round {r} {line(name, runs[name][-1])}", flush=True)
        print(f"load average after: {os.getloadavg()}")
        for name, results in runs.items():
            print(summary(name, results))
    finally:
        sim.terminate()
        sim.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
