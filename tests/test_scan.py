"""`mlsd scan` as the operator runs it: exit codes, the summary line, and a shared state
with `mlsd run` (the same code path, so either can take over from the other)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.followkit import ENV, Env, Writer, users


def test_scan_then_run_then_scan(tmp_path: Path) -> None:
    """scan, run, scan over one log: every line once, whichever command read it."""
    env = Env(tmp_path)
    w = Writer(env.log)
    w.seq(range(10))
    res = env.scan()
    assert "stopped lines_read=20 events_written=10 skipped=0 gaps=0 rotations=0" in res.stderr
    proc = env.start()
    w.seq(range(10, 20))
    env.wait_rows(users(range(20)))
    assert env.stop(proc) == 0
    w.seq(range(20, 25))
    env.scan()
    assert users(range(25)) == env.rows()
    env.cleanup()


def test_scan_bad_config_exits_2(tmp_path: Path) -> None:
    """A bad [follow] value is a usage error naming the key, before any state is touched."""
    env = Env(tmp_path, start_at="middle")
    res = env.scan(check=False)
    assert res.returncode == 2
    assert "[follow] start_at = 'middle'" in res.stderr
    assert not env.state.exists()


def _rotated_history(env: Env) -> Writer:
    """Three rotated generations (mail.log.3.gz, .2.gz, .1) of 10 events each, then a live
    file with 5: what a fresh install finds on a mail server."""
    w = Writer(env.log)
    for i in range(3):
        w.seq(range(10 * i, 10 * i + 10))
        env.logrotate("create", "compress", "delaycompress")
        w.reopen()
    w.seq(range(30, 35))
    return w


@pytest.mark.parametrize("follow", [{}, {"start_at": "end"}])
def test_scan_on_a_fresh_state_imports_the_rotated_generations(
    tmp_path: Path, follow: dict[str, str]
) -> None:
    """The backlog import: every generation, oldest first, whatever `run`'s first start is
    set to do, with one line per file and a summary; a second scan reads nothing again."""
    env = Env(tmp_path, **follow)
    _rotated_history(env)
    res = env.scan()
    assert users(range(35)) == env.rows()
    said = r'scan read generation="(\S+) \(\d+:\d+\)" lines=(\d+) rows=(\d+)'
    read = re.findall(said, res.stderr)
    logdir = str(env.logdir)
    assert [
        (f"{logdir}/mail.log.3.gz", "20", "10"),
        (f"{logdir}/mail.log.2.gz", "20", "10"),
        (f"{logdir}/mail.log.1", "20", "10"),
        (f"{logdir}/mail.log", "10", "5"),
    ] == read
    assert "scan done files=4 lines=70 rows=35" in res.stderr
    again = env.scan()
    assert "scan done files=0 lines=0 rows=0" in again.stderr
    assert users(range(35)) == env.rows()


def test_scan_live_only_reads_the_live_file_from_its_beginning(tmp_path: Path) -> None:
    """--live-only: the rotated files are left alone; later scans go on from there."""
    env = Env(tmp_path, start_at="end")
    w = _rotated_history(env)
    res = subprocess.run(
        env.cmd("scan", "--live-only"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=ENV,
    )
    assert users(range(30, 35)) == env.rows()
    assert "scan done files=1 lines=10 rows=5" in res.stderr
    w.seq(range(35, 37))
    env.scan()
    assert users(range(30, 37)) == env.rows()


def test_run_first_start_still_follows_its_config(tmp_path: Path) -> None:
    """`run` on a fresh state keeps [follow] start_at / import_rotated (here: the defaults,
    the live file from its beginning, no rotated files): only `scan` imports the backlog."""
    env = Env(tmp_path)
    w = _rotated_history(env)
    proc = env.start()
    w.seq(range(35, 37))
    env.wait_rows(users(range(30, 37)))
    assert env.stop(proc) == 0
    env.cleanup()
