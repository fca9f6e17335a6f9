"""Benchmark runner: `make bench` / `python bench/run.py [--lines N] [--only NAME]...`.

Generates one seeded mail log (cached in the out dir), runs every registered benchmark on
it, prints a Markdown table and writes `results.json`. Each benchmark is a function that
takes the shared Context and returns a dict of metrics; register new ones with
`@benchmark("name", "what it measures")` and they appear in the table and the JSON.

Throughput figures are compared to `floor-python` (a bare binary line loop): that is the
most any pure-Python parser of this file can hope for on this machine, so the ratio says
how much of the budget the parser itself spends, independent of how fast the box is.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gen_log
from registry import (
    BENCH_DIR,
    MLSD,
    REGISTRY,
    REPO,
    Context,
    Metrics,
    benchmark,
    best_of,
    check,
    spawn_measured,
    taskset,
    throughput,
)

# --- benchmarks -------------------------------------------------------------------------


@benchmark("floor-python", "bare `for line in f: n += 1` over the file in binary mode")
def floor_python(ctx: Context) -> Metrics:
    """The ceiling for any pure-Python line parser: iterate the lines, do nothing."""

    def loop() -> int:
        n = 0
        with ctx.log.open("rb") as f:
            for _line in f:
                n += 1
        return n

    best, runs, n = best_of(ctx.repeat, loop)
    return {**throughput(ctx, best, runs), "check": check(n, ctx.lines)}


@benchmark("floor-python-cli", "the same bare loop as a command: interpreter start included")
def floor_python_cli(ctx: Context) -> Metrics:
    """The yardstick for parse-cli: a bare read loop run the way `mlsd parse` is run.

    Same interpreter, same pinning, wall time of the whole process, so the ratio of the
    two commands compares what each does with the file, start-up included on both sides.
    """
    # In a function, as floor-python: module-level names are dict lookups, a slower loop.
    code = (
        "import sys\n"
        "def loop(path):\n"
        "    n = 0\n"
        "    with open(path, 'rb') as f:\n"
        "        for _line in f:\n"
        "            n += 1\n"
        "    return n\n"
        "print(loop(sys.argv[1]))\n"
    )
    cmd = [*taskset(), sys.executable, "-c", code, str(ctx.log)]

    def once() -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    best, runs, proc = best_of(ctx.repeat, once)
    if proc.returncode != 0:
        return {"error": f"the bare loop exited {proc.returncode}: {proc.stderr.strip()[-200:]}"}
    return {**throughput(ctx, best, runs), "check": check(int(proc.stdout), ctx.lines)}


@benchmark("floor-grep", "`grep -c 'authentication failed\\|auth failed'` as a subprocess")
def floor_grep(ctx: Context) -> Metrics:
    """What a C prefilter over the same file costs, process start included."""
    grep = shutil.which("grep")
    if grep is None:
        return {"error": "grep not found on PATH"}
    cmd = [grep, "-c", r"authentication failed\|auth failed", str(ctx.log)]
    # LC_ALL=C: the log is ASCII, and a UTF-8 locale makes grep decode multibyte for nothing.
    env = {**os.environ, "LC_ALL": "C"}

    def once() -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)

    best, runs, proc = best_of(ctx.repeat, once)
    if proc.returncode not in (0, 1):  # 1 is "no match", still a valid count
        return {"error": f"grep exited {proc.returncode}: {proc.stderr.strip()}"}
    count = int(proc.stdout.strip() or 0)
    return {
        **throughput(ctx, best, runs),
        "events": count,
        "check": check(count, ctx.counts["failure_lines"]),
    }


@benchmark("parse-inprocess", "mlsd.ingest.grammar.parse_line on every line, in this process")
def parse_inprocess(ctx: Context) -> Metrics:
    """The parser alone: no CSV, no enrichment, no process start."""
    # Imported here, not at the top: a broken or half-written mlsd must give an error row
    # for this benchmark, not stop the floors from running.
    from mlsd.ingest.grammar import parse_line  # noqa: PLC0415

    ref = datetime(2026, 11, 26, tzinfo=UTC)
    tz = UTC

    def loop() -> tuple[int, int]:
        events = skips = 0
        with ctx.log.open("rb") as f:
            for line in f:
                r = parse_line(line, ref, tz)
                if r is not None:
                    # By type name so the count survives the class being moved or re-exported.
                    if type(r).__name__ == "AuthFailure":
                        events += 1
                    else:
                        skips += 1
        return events, skips

    best, runs, (events, skips) = best_of(ctx.repeat, loop)
    return {
        **throughput(ctx, best, runs),
        "events": events,
        "skips": skips,
        "check": check(events, ctx.counts["auth_failures"]),
    }


@benchmark(
    "parse-blocks", "mlsd parse's own block loop (mlsd.app.cmd_parse), no CSV, in this process"
)
def parse_blocks(ctx: Context) -> Metrics:
    """The parser as `mlsd parse` drives it: 1 MiB blocks, the anchored prefilter, then
    only candidate lines; events built, no CSV written.

    Sits between parse-inprocess (a Python call per line) and parse-cli (plus start-up
    and CSV output), so the three together say where the CLI's time goes.
    """
    from mlsd.app.cmd_parse import parse_one  # noqa: PLC0415 - see parse_inprocess

    def loop() -> Any:
        with open(os.devnull, "wb") as null:
            return parse_one(str(ctx.log), null, lambda events: b"", UTC)

    best, runs, stats = best_of(ctx.repeat, loop)
    events = stats["events"]
    skips = sum(n for key, n in stats.items() if key not in ("events", "bytes"))
    return {
        **throughput(ctx, best, runs),
        "events": events,
        "skips": skips,
        "check": check(events, ctx.counts["auth_failures"]),
    }


@benchmark("parse-main", "`mlsd parse --format csv` through mlsd.app.cli.main, in this process")
def parse_main(ctx: Context) -> Metrics:
    """The command's own work, without an interpreter start or imports on its clock: the
    like-for-like comparison with floor-python (parse-cli's is floor-python-cli)."""
    from mlsd.app.cli import main  # noqa: PLC0415 - see parse_inprocess

    def once() -> int:
        saved = sys.stdout, sys.stderr
        with open(os.devnull, "w") as null:
            sys.stdout = sys.stderr = null
            try:
                return main(["parse", "--format", "csv", str(ctx.log)])
            finally:
                sys.stdout, sys.stderr = saved

    best, runs, code = best_of(ctx.repeat, once)
    if code != 0:
        return {"error": f"mlsd.app.cli.main exited {code}"}
    return throughput(ctx, best, runs)


@benchmark("parse-cli", "`mlsd parse --format csv FILE > /dev/null`, pinned to one core")
def parse_cli(ctx: Context) -> Metrics:
    """The whole command: interpreter start, imports, parse, CSV out; with its peak RSS."""
    exe = MLSD
    if not exe.exists():
        return {"error": f"{exe} not found (is mlsd installed in this venv?)"}
    pin = taskset()
    cmd = [*pin, str(exe), "parse", "--format", "csv", str(ctx.log)]
    compile_bytecode()
    stats: list[tuple[int, float, int, str]] = []

    def once() -> float:
        # stderr to a file, not a pipe: a full pipe would deadlock the wait.
        with tempfile.TemporaryFile() as err:
            got = spawn_measured(cmd, stdout=subprocess.DEVNULL, stderr=err)
            err.seek(0)
            tail = err.read()[-2000:].decode("utf-8", "replace").strip()
        stats.append((got.code, got.cpu, got.maxrss_kib, tail))
        return got.wall

    runs = [once() for _ in range(max(1, ctx.repeat))]  # the child's own wall time
    best = min(runs)
    codes = {code for code, _, _, _ in stats}
    if codes != {0}:
        code, _, _, tail = next(s for s in stats if s[0] != 0)
        last = tail.splitlines()[-1] if tail else "(no stderr)"
        return {"error": f"`mlsd parse` exited {code}: {last}", "command": " ".join(cmd)}
    rows = _cli_rows(cmd)
    return {
        **throughput(ctx, best, runs),
        "events": rows,
        "check": check(rows, ctx.counts["auth_failures"]),
        "cpu_s": min(cpu for _, cpu, _, _ in stats),
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mib": max(rss for _, _, rss, _ in stats) / 1024,
        "pinned": bool(pin),
        "command": " ".join(cmd),
    }


def compile_bytecode() -> None:
    """Write mlsd's .pyc files first, as installing it does (pip compiles them).

    Without them every run compiles the package from source: 15 ms of each start, and
    none at all on an installed system. (PYTHONDONTWRITEBYTECODE, set on some build
    machines, would otherwise keep them from ever being written.)
    """
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "mlsd")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _cli_rows(cmd: list[str]) -> int:
    """One more, untimed run with stdout kept, to check the rows against the generator.

    The timed runs write to /dev/null so that disk speed is not measured; this one
    counts the CSV lines after the header (generated usernames never need quoting).
    """
    with tempfile.TemporaryFile() as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.DEVNULL, check=True)
        out.seek(0)
        return max(sum(1 for _ in out) - 1, 0)


def _load_benchmark_modules() -> None:
    """Benchmarks kept in their own files (`bench/bench_*.py`) register on import."""
    for path in sorted(BENCH_DIR.glob("bench_*.py")):
        try:
            importlib.import_module(path.stem)
        except Exception as exc:  # one broken file must not hide every other benchmark
            LOAD_ERRORS[path.name] = {"error": f"cannot load: {type(exc).__name__}: {exc}"}


LOAD_ERRORS: dict[str, Metrics] = {}


_load_benchmark_modules()


# --- driver -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Facts that make two results files comparable (or explain why they are not)."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": model or platform.processor(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        # Other work on a 2-core box skews everything; record how busy it was.
        "loadavg": os.getloadavg(),
    }


def prepare_log(out: Path, lines: int, seed: int, stamps: str) -> tuple[Path, dict[str, int]]:
    """Generate the log once per (lines, seed, stamps, generator version) and reuse it."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"mail-{lines}-s{seed}-{stamps}-v{gen_log.GENERATOR_VERSION}"
    log, meta = out / f"{stem}.log", out / f"{stem}.json"
    if log.exists() and meta.exists():
        counts: dict[str, int] = json.loads(meta.read_text())
        if counts.get("lines") == lines:
            return log, counts
    # Write under a temporary name: an interrupted run must not leave a truncated
    # log that the next run would trust.
    tmp = log.with_suffix(".tmp")
    t0 = time.perf_counter()
    counts = gen_log.generate(tmp, lines, seed, stamps)
    print(f"generated {log} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    tmp.replace(log)
    meta.write_text(json.dumps(counts, indent=2) + "\n")
    return log, counts


def _fmt_rate(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.0f} k"
    return f"{v:.0f}"


def _fmt_seconds(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "—"


def table(results: dict[str, Metrics]) -> str:
    """Render the results as a Markdown table, each rate also as a ratio to floor-python."""
    floor = results.get("floor-python", {}).get("lines_per_s")
    rows = [
        "| benchmark | lines/s | vs floor-python | best (s) | events | peak RSS | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, m in results.items():
        if "error" in m:
            # A `|` in an error message would split the Markdown cell.
            error = str(m["error"]).replace("|", "\\|")
            rows.append(f"| {name} | — | — | — | — | — | **error**: {error} |")
            continue
        rate = m.get("lines_per_s")
        ratio = f"{rate / floor:.2f}x" if rate and floor else "—"
        notes = []
        if "summary" in m:  # benchmarks that measure something other than throughput
            notes.append(str(m["summary"]))
        if m.get("check") not in (None, "ok"):
            notes.append(str(m["check"]))
        if "skips" in m:
            notes.append(f"{m['skips']} skips")
        if "candidates" in m:
            notes.append(f"{m['candidates']} candidate lines")
        if "cpu_s" in m:
            notes.append(f"child CPU {m['cpu_s']:.2f} s")
        if "pinned" in m:
            notes.append("taskset -c 0" if m["pinned"] else "not pinned")
        # Issue #2's bar: within 3x of a bare read loop's time.
        bases = {"parse-cli": ("floor-python-cli", "floor-python"), "parse-main": ("floor-python",)}
        if name in bases:
            for base in bases[name]:
                if "seconds" in results.get(base, {}) and "seconds" in m:
                    notes.append(f"{m['seconds'] / results[base]['seconds']:.2f}x {base}'s time")
        rss = f"{m['peak_rss_mib']:.0f} MiB" if "peak_rss_mib" in m else "—"
        rows.append(
            f"| {name} | {_fmt_rate(rate) if rate else '—'} | {ratio} | "
            f"{_fmt_seconds(m.get('seconds'))} | {m.get('events', '—')} | {rss} | "
            f"{'; '.join(notes)} |"
        )
    return "\n".join(rows)


@contextmanager
def _quiet_gc() -> Iterator[None]:
    # Garbage left by one benchmark must not be collected on the next one's clock.
    gc.collect()
    yield
    gc.collect()


def main(argv: list[str] | None = None) -> int:
    """Parse options, prepare the log, run the selected benchmarks, report."""
    ap = argparse.ArgumentParser(description="mlsd benchmarks")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--stamps", choices=gen_log.STAMP_STYLES, default="mixed")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    ap.add_argument("--repeat", type=int, default=3, help="runs per benchmark; best is kept")
    ap.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this benchmark (repeatable): " + ", ".join(b.name for b in REGISTRY),
    )
    args = ap.parse_args(argv)
    known = {b.name for b in REGISTRY}
    unknown = sorted(set(args.only or ()) - known)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    selected = [b for b in REGISTRY if not args.only or b.name in args.only]

    facts = machine()
    log, counts = prepare_log(args.out, args.lines, args.seed, args.stamps)
    ctx = Context(log=log, counts=counts, repeat=args.repeat, out=args.out)
    results: dict[str, Metrics] = dict(LOAD_ERRORS)  # shown as errors; the exit code is 1
    for b in selected:
        print(f"running {b.name} …", file=sys.stderr, flush=True)
        with _quiet_gc():
            try:
                results[b.name] = b.run(ctx)
            except Exception as exc:  # one broken benchmark must not hide the others
                results[b.name] = {"error": f"{type(exc).__name__}: {exc}"}

    print(table(results), flush=True)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": facts,
        "log": {
            "path": str(log),
            "bytes": log.stat().st_size,
            "seed": args.seed,
            "stamps": args.stamps,
            "generator_version": gen_log.GENERATOR_VERSION,
            "counts": counts,
        },
        "repeat": args.repeat,
        "benchmarks": {b.name: b.description for b in selected},
        "results": results,
    }
    path = args.out / "results.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}", file=sys.stderr)
    return 1 if any("error" in m for m in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
