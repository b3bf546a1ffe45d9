"""CPU per probe of two or more checkouts, side by side: ``python bench/compare_probes.py``.

    python bench/compare_probes.py before=/path/to/main after=. [--rounds 10] [--n 300]
    python bench/compare_probes.py "asyncio=.::--loop asyncio" "uvloop=.::--loop uvloop"

Runs ``bench/probe_worker.py`` (the probe comparison of ``bench/run.py``) from each checkout in
turn against one simulator, for several rounds, reversing the order every round, so that the
checkouts share the machine's load. ``NAME=PATH::ARGS`` passes ARGS to that worker (the same
checkout can so be compared with itself, e.g. one event loop against another). The workers are
pinned to the idlest CPU and the simulator to another when there are at least two. Prints one
line per worker run and a summary: per variant the median over rounds of CPU / raw floor and
duration p50 / raw p50, with their spread (min–max).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import cert_target, cpu_split, pinned  # noqa: E402

CLIENT_CPU, SERVER_CPU = cpu_split()


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
            preexec_fn=pinned(SERVER_CPU),
        )
    state = work / "sim.json"
    deadline = time.monotonic() + 60
    while not state.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"simulator did not start; see {work / 'sim.log'}")
        time.sleep(0.1)
    time.sleep(0.5)
    return proc, state


def run_worker(tree: Path, state: Path, target: str, n: int, extra: list[str]) -> dict[str, Any]:
    """One probe_worker run of ``tree``: its JSON result."""
    argv = [sys.executable, str(tree / "bench" / "probe_worker.py"), "--sim", str(state)]
    out = subprocess.run(
        [*argv, "--target", target, "--n", str(n), "--warmup", "20", *extra],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        check=True,
        preexec_fn=pinned(CLIENT_CPU),
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


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def summary(name: str, runs: list[dict[str, Any]]) -> str:
    cpu = statistics.fmean(d["exporter"]["cpu"]["mean"] for d in runs)
    p50 = statistics.median(d["exporter"]["cpu"]["p50"] for d in runs)
    raw = statistics.fmean(d["raw"]["cpu"]["mean"] for d in runs)
    dur = statistics.median(d["exporter"]["duration"]["p50"] for d in runs)
    cpu_ratio = [d["exporter"]["cpu"]["mean"] / d["raw"]["cpu"]["mean"] for d in runs]
    dur_ratio = [d["exporter"]["duration"]["p50"] / d["raw"]["duration"]["p50"] for d in runs]
    resolve = statistics.median(d["exporter"]["phases_p50"].get("resolve", 0.0) for d in runs)
    return (
        f"{name:8s} CPU per probe: mean {cpu * 1e3:.3f} ms, median p50 {p50 * 1e3:.3f} ms,"
        f" raw floor {raw * 1e3:.3f} ms; duration p50 {dur * 1e3:.2f} ms,"
        f" resolve p50 {resolve * 1e3:.2f} ms\n"
        f"{'':8s} per round: CPU / raw {spread(cpu_ratio)}, p50 / raw p50 {spread(dur_ratio)}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="+", help="NAME=PATH of each checkout")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--n", type=int, default=300, help="probes per worker run")
    args = p.parse_args()
    trees: dict[str, tuple[Path, list[str]]] = {}
    for spec in args.trees:
        name, _, rest = spec.partition("=")
        path, _, extra = rest.partition("::")
        trees[name] = (Path(path).resolve(), shlex.split(extra))
    work = Path(tempfile.mkdtemp(prefix="compare-probes-"))
    sim, state = start_simulator(next(iter(trees.values()))[0], work)
    try:
        target = json.dumps(cert_target(json.loads(state.read_text()), "bench"))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        print(f"load average before: {os.getloadavg()}", flush=True)
        for r in range(args.rounds):
            order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
            for name, (tree, extra) in order:
                runs[name].append(run_worker(tree, state, target, args.n, extra))
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
