"""Issue 17 finding 2: a report's memory is never the daemon's.

A day of many distinct usernames and IPs (what an attacker chooses for free) is made for
real, and the real daemon builds its report on SIGUSR1. The build runs in a child process
with an address-space limit: the daemon's own peak memory stays small, and a day beyond
`[report] max_memory` fails that report with a clear error while following goes on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tests.followkit import Env, Writer, now_line, wait_for

DISTINCT = 150_000
"""Rows with a distinct username and a distinct IPv6 address each (a ~23 MB log)."""


def _big_day(env: Env) -> None:
    stamp = datetime.now(UTC).strftime("%b %e %H:%M:%S").encode()
    with open(env.log, "wb") as fh:
        for i in range(DISTINCT):
            fh.write(
                b"%s mx postfix/smtpd[4242]: warning: unknown[2001:db8::%x:%x]: SASL LOGIN "
                b"authentication failed: UGFzc3dvcmQ6, sasl_username=user%07d\n"
                % (stamp, i >> 16, i & 0xFFFF, i)
            )
    env.scan()


def _peak_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_big_report_is_built_outside_the_daemon(env: Env) -> None:
    """150,000 distinct names and IPs: the report is built and written, and the daemon's
    peak memory stays that of a follower (before: the build's hundreds of MB were its own).
    Its figures come from the store's SQL, within the smallest `[report] max_memory`."""
    _big_day(env)
    env.extra = "[report]\nmax_memory = 256\n"
    env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
    proc = env.start()
    # After the sentinel's warm-up: its counters of the same 150,000 failures are its own,
    # bounded by mlsd.sentinel.caps (tests/test_sentinel_rules.py), not the report's.
    wait_for(lambda: "sentinel watching" in env.stderr(proc), 60)
    before = _peak_kib(proc.pid)
    proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "events=150000" in env.stderr(proc), 120)
    peak = _peak_kib(proc.pid)
    assert env.stop(proc) == 0
    assert peak - before < 60 * 1024, (before, peak)
    assert peak < 150 * 1024, (before, peak)
    text = next((env.state / "reports").glob("*-so-far.txt")).read_text()
    assert "150,000 rows" in text
    assert "Figures counted from the CSV" not in text


def test_a_day_beyond_max_memory_fails_its_report_not_the_daemon(env: Env) -> None:
    """While the store cannot be written (here: its "directory" is a file), the report counts
    from the CSV, whose memory grows with the day's distinct names and IPs: with
    `[report] max_memory = 256` the same day does not fit. The report fails with a clear
    error (to be tried again), the daemon goes on following."""
    _big_day(env)
    blocker = env.state.parent / "not-a-directory"
    blocker.write_text("")
    env.extra = f"[report]\nmax_memory = 256\n[store]\npath = {blocker}/events.sqlite3\n"
    env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
    proc = env.start()
    wait_for(lambda: "daily report at" in env.stderr(proc), 30)
    proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "needs more than [report] max_memory = 256 MiB" in env.stderr(proc), 120)
    err = env.stderr(proc)
    assert "report counted from the CSV: the event store is not caught up" in err
    line = next(x for x in err.splitlines() if "needs more than" in x)
    assert "report could not be built or queued day=" in line
    assert 'retry_s=300 error="report of ' in line
    assert "Traceback" not in err
    assert proc.poll() is None
    # Following goes on.
    w = Writer(env.log)
    w.write(now_line("after"))
    wait_for(lambda: env.rows()["after"] == 1, 30)
    assert env.stop(proc) == 0
    assert not list((env.state / "reports").glob("*-so-far.txt"))
    assert Counter(env.rows())["after"] == 1
    assert os.path.exists(env.csv)


def test_a_limit_the_kernel_refuses_is_said_in_mlsd_log_format() -> None:
    """prlimit refused (a syscall filter, a container): the child, in a fork server that
    never set logging up, still says so as an mlsd log line, and the job runs unlimited."""
    code = (
        "import errno, multiprocessing, resource\n"
        "from mlsd.app import isolate\n"
        "def refuse(*_): raise OSError(errno.EPERM, 'Operation not permitted')\n"
        "resource.prlimit = refuse\n"
        "got, sent = multiprocessing.Pipe(duplex=False)\n"
        "isolate._child(sent, 1 << 30, len, ('abc',), {})\n"
        "print(got.recv())\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (0, "('ok', 3)\n") == (res.returncode, res.stdout), res.stderr
    line = res.stderr.strip()
    assert "[warning" in line and "memory limit not applied" in line, line
    assert "logger=mlsd.isolate" in line and "Operation not permitted" in line, line


def test_a_child_whose_daemon_is_gone_ends_quietly() -> None:
    """The daemon was killed while a report was being built: the child's result has no one
    to go to. It ends without a traceback, which in the journal read like a crash (seen
    after the chaos suite's kill -9)."""
    code = (
        "import multiprocessing\n"
        "from mlsd.app import isolate\n"
        "got, sent = multiprocessing.Pipe(duplex=False)\n"
        "got.close()\n"
        "isolate._child(sent, 0, len, ('abc',), {})\n"
        "print('ended')\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (0, "ended\n", "") == (res.returncode, res.stdout, res.stderr)
