"""Measure mlsd under an inotify flood: events/s made, the daemon's CPU, and row delay.

Not a test (wall-clock numbers): run by hand, e.g.

    .venv/bin/python -m tests.bench_inotify_flood            # this checkout
    MLSD_SRC=/tmp/old .venv/bin/python -m tests.bench_inotify_flood   # /tmp/old/mlsd/

A child process creates and removes files in the log directory as fast as it can (two
events each) while a line is appended every 0.2 s; the delay is from the write to its row
in the CSV. The daemon's CPU is read from /proc/PID/stat.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.followkit import Env, Writer, now_line

SECONDS = 20.0


def _flood(directory: str, seconds: float, out: multiprocessing.Queue[int]) -> None:
    # Renames are the cheapest way to make events: each one is IN_MOVED_FROM + IN_MOVED_TO.
    a, b = os.path.join(directory, "flood-a"), os.path.join(directory, "flood-b")
    Path(a).touch()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(500):
            os.rename(a, b)
            os.rename(b, a)
        n += 1000
    out.put(n * 2)


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    """Print one line of numbers for the mlsd that `python -m mlsd` imports."""
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(Path(tmp))
        w = Writer(env.log)
        src = os.environ.get("MLSD_SRC")
        if src:
            # The editable install's finder would win over PYTHONPATH: drop it in the child.
            boot = (
                "import runpy, sys; sys.meta_path[:] = [f for f in sys.meta_path "
                f"if 'Editable' not in type(f).__name__]; sys.path.insert(0, {src!r}); "
                "runpy.run_module('mlsd', run_name='__main__', alter_sys=True)"
            )
            env.cmd = lambda *args: [sys.executable, "-c", boot, *args, "-c", str(env.conf)]  # type: ignore[method-assign]
        proc = env.start()
        print("mlsd from", src or "this checkout", "pid", proc.pid)
        try:
            time.sleep(1.0)
            q: multiprocessing.Queue[int] = multiprocessing.Queue()
            flooder = multiprocessing.Process(target=_flood, args=(str(env.logdir), SECONDS, q))
            cpu0, t0 = _cpu(proc.pid), time.monotonic()
            flooder.start()
            written: dict[str, float] = {}
            seen: dict[str, float] = {}
            i = 0
            while flooder.is_alive() or len(seen) < len(written):
                if flooder.is_alive():
                    user = f"probe{i}"
                    w.write(now_line(user))
                    written[user] = time.monotonic()
                    i += 1
                for user in env.rows():
                    seen.setdefault(user, time.monotonic())
                if time.monotonic() - t0 > SECONDS + 30:
                    break
                time.sleep(0.2)
            cpu1, t1 = _cpu(proc.pid), time.monotonic()
            events = q.get(timeout=5)
            delays = [seen[u] - written[u] for u in written if u in seen]
            cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
            print(
                f"events/s={events / SECONDS:,.0f} daemon_cpu={cpu:.0f}% "
                f"rows={len(delays)}/{len(written)} "
                f"delay_median={statistics.median(delays):.2f}s delay_max={max(delays):.2f}s"
                " (delay includes up to 0.2 s of polling the CSV)"
            )
        finally:
            env.cleanup()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
