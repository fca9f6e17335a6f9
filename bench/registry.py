"""The benchmark registry: what a benchmark is, how it is registered and timed.

Its own module so that benchmarks can live in several files (`bench/bench_*.py`, imported
by run.py) without importing the runner script itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# Benchmark the working tree's mlsd, not whatever copy happens to be installed.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The console script next to the interpreter running us (`make bench` uses the venv's),
# else the repo venv's, so `python3 bench/run.py` still finds it.
MLSD = next(
    (p for p in (Path(sys.executable).parent / "mlsd", REPO / ".venv/bin/mlsd") if p.exists()),
    Path(sys.executable).parent / "mlsd",
)

# What a benchmark returns. The table knows: lines_per_s, seconds, events, peak_rss_mib,
# check ("ok" or what mismatched), cpu_s, and summary (free text for the notes column, for
# benchmarks that measure latency or memory rather than throughput). Everything goes to
# results.json.
Metrics = dict[str, Any]
BenchFn = Callable[["Context"], Metrics]
T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """What every benchmark gets: the log, what it contains, and how to measure."""

    log: Path
    counts: dict[str, int]
    repeat: int
    out: Path

    @property
    def lines(self) -> int:
        """Total lines in the log."""
        return self.counts["lines"]


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: a name for --only and the table, and the function."""

    name: str
    description: str
    run: BenchFn


REGISTRY: list[Benchmark] = []


def benchmark(name: str, description: str) -> Callable[[BenchFn], BenchFn]:
    """Register `fn(ctx) -> metrics` under `name`; table order is registration order."""

    def register(fn: BenchFn) -> BenchFn:
        if any(b.name == name for b in REGISTRY):
            raise ValueError(f"duplicate benchmark {name!r}")
        REGISTRY.append(Benchmark(name, description, fn))
        return fn

    return register


def best_of(repeat: int, fn: Callable[[], T]) -> tuple[float, list[float], T]:
    """Run `fn` `repeat` times (at least once); return (best seconds, all of them, last result).

    Best rather than mean: on a shared machine noise only ever adds time, so the minimum
    is the closest estimate of what the code itself costs.
    """
    times: list[float] = []
    while True:
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= repeat:
            return min(times), times, result


def throughput(ctx: Context, best: float, runs: list[float]) -> Metrics:
    return {
        # max(): a sub-resolution time must not divide by zero (nor put Infinity in the JSON).
        "lines_per_s": ctx.lines / max(best, 1e-9),
        "seconds": best,
        "runs": [round(t, 4) for t in runs],
    }


def check(got: int, want: int) -> str:
    return "ok" if got == want else f"MISMATCH: got {got}, generator says {want}"


def taskset() -> list[str]:
    # Pinning to one core stops the scheduler from migrating the (single-threaded) child
    # between cores mid-run, which on a 2-core box is a visible source of run-to-run noise.
    path = shutil.which("taskset")
    return [path, "-c", "0"] if path else []


@dataclass(frozen=True)
class Spawned:
    """How a measured child ended: exit code, wall time, CPU time and peak RSS, its own."""

    code: int
    wall: float
    cpu: float
    maxrss_kib: int


# A child's peak RSS (`ru_maxrss`) counts what it had before its exec: a child of this
# process starts as a copy of it (or shares it, with vfork), and Linux keeps that high-water
# mark across exec. After building a store or a log in-process this parent is 50-100 MiB,
# and every child "peaked" there. So children are started by this small launcher
# (`python -S`, ~9 MiB), which forks, execs the command, and writes its own child's
# figures to a file: the command's peak, its wall time from fork to reap, its CPU time.
_LAUNCHER = """
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as out:
    out.write(f"{os.waitstatus_to_exitcode(status)} {wall} "
              f"{usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}")
"""


def spawn_measured(
    cmd: Sequence[str],
    *,
    stdout: Any = None,
    stderr: Any = None,
    env: dict[str, str] | None = None,
) -> Spawned:
    """Run `cmd` to its end through the launcher; its own figures (see `_LAUNCHER`)."""
    with tempfile.NamedTemporaryFile("r", prefix="mlsd-bench-", suffix=".spawn") as figures:
        subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, figures.name, *cmd],
            stdout=stdout,
            stderr=stderr,
            env=env,
            check=False,
        )
        text = figures.read().split()
    if len(text) != 4:
        raise RuntimeError(f"the launcher of {cmd[0]} wrote no figures")
    return Spawned(int(text[0]), float(text[1]), float(text[2]), int(text[3]))
