"""Scenarios with `mlsd run` following: a real subprocess, real signals, real logrotate.

SIGSTOP freezes the daemon to make it lag behind rotations; SIGCONT lets it catch up.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.followkit import Env, Writer, auth_line, lines, users, wait_for


def test_byte_by_byte_and_sigterm_summary(env: Env) -> None:
    """Lines written one byte at a time become rows only once complete; SIGTERM stops with
    exit 0 and the summary line, and a restart adds nothing twice."""
    w = Writer(env.log)
    proc = env.start()
    data = lines(range(3))
    for i in range(len(data)):
        w.write(data[i : i + 1])
        if data[i : i + 1] == b"\n" or i % 37 == 0:
            time.sleep(0.002)
    w.write(lines([3])[:50])
    env.wait_rows(users(range(3)))
    time.sleep(0.3)
    assert users(range(3)) == env.rows()  # the partial line is not parsed early
    w.write(lines([3])[50:])
    env.wait_rows(users(range(4)))
    assert env.stop(proc) == 0
    err = env.stderr(proc)
    assert "stopped lines_read=8 events_written=4" in err
    w.seq(range(4, 6))
    proc = env.start()
    env.wait_rows(users(range(6)))
    assert env.stop(proc, signal.SIGINT) == 0


def test_split_appends(env: Env) -> None:
    """Appends split at arbitrary points (mid-line, mid-needle) are reassembled."""
    w = Writer(env.log)
    proc = env.start()
    data = lines(range(50))
    for cut in range(0, len(data), 777):
        w.write(data[cut : cut + 777])
        time.sleep(0.01)
    env.wait_rows(users(range(50)))
    assert env.stop(proc) == 0


def test_create_rotation_caught_up_writer_lags(env: Env) -> None:
    """Rename+create while caught up; the writer keeps appending to the renamed file."""
    w = Writer(env.log)
    proc = env.start()
    w.seq(range(10))
    env.wait_rows(users(range(10)))
    env.logrotate("create")
    w.seq(range(10, 20))  # to the old inode, after the rename
    time.sleep(0.1)
    w.reopen()
    w.seq(range(20, 30))
    env.wait_rows(users(range(30)))
    assert "rotation sealed=" in env.stderr(proc)
    assert env.stop(proc) == 0


def test_copytruncate_caught_up(env: Env) -> None:
    """copytruncate while caught up: nothing lost, nothing read twice."""
    w = Writer(env.log)
    proc = env.start()
    w.seq(range(10))
    env.wait_rows(users(range(10)))
    env.logrotate("copytruncate")
    w.seq(range(10, 20))
    env.wait_rows(users(range(20)))
    env.logrotate("copytruncate", "compress")
    w.seq(range(20, 30))
    env.wait_rows(users(range(30)))
    assert env.stop(proc) == 0


def test_lagging_across_two_create_rotations_delaycompress(env: Env) -> None:
    """Frozen (SIGSTOP) across two rotations with delaycompress: the rest is in .2.gz."""
    w = Writer(env.log)
    proc = env.start()
    w.seq(range(10))
    env.wait_rows(users(range(10)))
    proc.send_signal(signal.SIGSTOP)
    w.seq(range(10, 20))
    env.logrotate("create", "compress", "delaycompress")
    w.reopen()
    w.seq(range(20, 30))
    env.logrotate("create", "compress", "delaycompress")
    w.reopen()
    w.seq(range(30, 40))
    proc.send_signal(signal.SIGCONT)
    env.wait_rows(users(range(40)))
    assert env.stop(proc) == 0


def test_lagging_across_copytruncate(env: Env) -> None:
    """Frozen while copytruncate runs and the file regrows past our offset."""
    w = Writer(env.log)
    proc = env.start()
    w.seq(range(10))
    env.wait_rows(users(range(10)))
    proc.send_signal(signal.SIGSTOP)
    w.seq(range(10, 20))
    env.logrotate("copytruncate")
    w.seq(range(20, 60))  # regrows well past the old offset
    proc.send_signal(signal.SIGCONT)
    env.wait_rows(users(range(60)))
    assert env.stop(proc) == 0


def test_postfix_style_rename_and_gzip_live(env: Env) -> None:
    """Rename to `.YYYYMMDD-HHMMSS` and gzip at once while following: the open descriptor
    of the deleted plain file is drained, then the live file follows."""
    import gzip

    w = Writer(env.log)
    proc = env.start()
    w.seq(range(10))
    env.wait_rows(users(range(10)))
    proc.send_signal(signal.SIGSTOP)
    w.seq(range(10, 20))
    dst = env.logdir / "mail.log.20261125-041200"
    os.rename(env.log, dst)
    w.reopen()
    with open(dst, "rb") as src, gzip.open(str(dst) + ".gz", "wb") as gz:
        gz.write(src.read())
    dst.unlink()
    w.seq(range(20, 30))
    proc.send_signal(signal.SIGCONT)
    env.wait_rows(users(range(30)))
    assert env.stop(proc) == 0


def test_copytruncate_racing_writes(env: Env) -> None:
    """Lines written while logrotate copies and truncates: lines between the copy and the
    truncate may be destroyed by logrotate itself (the only permitted loss); none twice,
    and every line written before logrotate started or after it returned is there."""
    w = Writer(env.log)
    proc = env.start()
    w.seq(range(100))
    env.wait_rows(users(range(100)))
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        n = 1000
        while not stop.is_set():
            w.write(auth_line(n))
            written.append(n)
            n += 1
            time.sleep(0.0005)

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.1)
    before = len(written)
    env.logrotate("copytruncate")
    after = len(written)
    time.sleep(0.1)
    stop.set()
    t.join()
    w.seq(range(100000, 100010))
    wait_for(lambda: env.rows()["seq100009"] == 1)
    time.sleep(0.5)
    got = env.rows()
    assert max(got.values()) == 1, "a row was written twice"
    must = [*range(100), *written[:before], *written[after:], *range(100000, 100010)]
    assert users(must) - got == Counter()
    assert env.stop(proc) == 0


def test_log_absent_at_start(env: Env) -> None:
    """No log at start: waits (says so once), then reads the file from its first byte."""
    proc = env.start()
    wait_for(lambda: "waiting for the log file" in env.stderr(proc))
    w = Writer(env.log)
    w.seq(range(5))
    env.wait_rows(users(range(5)))
    assert env.stderr(proc).count("waiting for the log file") == 1
    assert env.stop(proc) == 0


def test_deleted_and_recreated(env: Env) -> None:
    """The log deleted (the writer still holds it) and created again."""
    w = Writer(env.log)
    proc = env.start()
    w.seq(range(5))
    env.wait_rows(users(range(5)))
    env.log.unlink()
    w.seq(range(5, 10))  # to the deleted inode: still ours to read
    env.wait_rows(users(range(10)))
    w.reopen()
    w.seq(range(10, 15))
    env.wait_rows(users(range(15)))
    assert env.stop(proc) == 0


def test_replaced_by_rename_over(env: Env) -> None:
    """A new file renamed over the log (replace): old drained, new read from 0."""
    w = Writer(env.log)
    proc = env.start()
    w.seq(range(5))
    env.wait_rows(users(range(5)))
    tmp = env.logdir / "new.tmp"
    tmp.write_bytes(lines(range(5, 10)))
    os.rename(tmp, env.log)
    w.seq(range(10, 12))  # the writer's old descriptor: the replaced inode
    w.reopen()
    w.seq(range(12, 15))
    env.wait_rows(users(range(15)))
    assert env.stop(proc) == 0


def test_symlink_repointed(tmp_path: Path) -> None:
    """mail_log is a symlink; re-pointing it to another file is a rotation."""
    env = Env(tmp_path)
    real = tmp_path / "real"
    real.mkdir()
    a, b = real / "a.log", real / "b.log"
    wa = Writer(a)
    env.log.symlink_to(a)
    proc = env.start()
    wa.seq(range(5))
    env.wait_rows(users(range(5)))
    wb = Writer(b)
    wb.seq(range(5, 10))
    tmp_link = env.logdir / "link.tmp"
    tmp_link.symlink_to(b)
    os.rename(tmp_link, env.log)
    wa.seq(range(10, 12))  # late lines to the old target
    wb.seq(range(12, 15))
    env.wait_rows(users(range(15)))
    assert env.stop(proc) == 0
    env.cleanup()


def test_second_instance_refused(env: Env) -> None:
    """A second mlsd on the same state directory exits 1 naming the holder's pid."""
    Writer(env.log).seq(range(3))
    proc = env.start()
    env.wait_rows(users(range(3)))
    res = env.scan(check=False)
    assert res.returncode == 1
    assert f"another mlsd (pid {proc.pid})" in res.stderr
    assert env.stop(proc) == 0


def test_inotify_overflow(env: Env) -> None:
    """More events than max_queued_events while frozen: the overflow is handled (logged,
    rescan) and every line is read, across a rotation made during the flood."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    w = Writer(env.log)
    proc = env.start()
    w.seq(range(5))
    env.wait_rows(users(range(5)))
    proc.send_signal(signal.SIGSTOP)
    for i in range(limit + 500):
        # IN_CREATE in the watched directory: distinct names are never coalesced.
        os.close(os.open(env.logdir / f"flood.{i}", os.O_CREAT | os.O_WRONLY, 0o600))
    w.seq(range(5, 10))
    env.logrotate("create")
    w.reopen()
    w.seq(range(10, 15))
    proc.send_signal(signal.SIGCONT)
    env.wait_rows(users(range(15)), timeout=60)
    assert "inotify queue overflow" in env.stderr(proc)
    assert env.stop(proc) == 0


STYLES = {
    "compress": ("create", "compress"),
    "delaycompress": ("create", "compress", "delaycompress"),
    "dateext": ("create", "dateext", "dateformat -%Y%m%d%H%M%S"),
    "dateext-gz": ("create", "compress", "dateext", "dateformat -%Y%m%d%H%M%S"),
}


@pytest.mark.parametrize("lagging", [False, True], ids=["caught-up", "lagging"])
@pytest.mark.parametrize("style", sorted(STYLES))
def test_rotation_styles_live(env: Env, style: str, lagging: bool) -> None:
    """Each logrotate naming style while following, caught up or frozen (SIGSTOP)."""
    opts = STYLES[style]
    w = Writer(env.log)
    proc = env.start()
    w.seq(range(10))
    env.wait_rows(users(range(10)))
    if lagging:
        proc.send_signal(signal.SIGSTOP)
    w.seq(range(10, 20))
    env.logrotate(*opts)
    # compress without delaycompress deletes the renamed file at once: lines a writer adds
    # before reopening are destroyed by logrotate itself, so only the other styles get them.
    late = range(20, 25) if "delaycompress" in opts or "compress" not in opts else range(0)
    w.seq(late)  # the writer has not reopened yet: still the renamed file
    w.reopen()
    w.seq(range(25, 35))
    if lagging:
        proc.send_signal(signal.SIGCONT)
    env.wait_rows(users([*range(20), *late, *range(25, 35)]))
    assert env.stop(proc) == 0


def test_copytruncate_loss_is_reported(env: Env) -> None:
    """Bytes mlsd saw that the copy does not hold were destroyed between logrotate's copy
    and its truncate: mlsd says so (a gap with the byte count) and repeats nothing."""
    import shutil

    w = Writer(env.log)
    proc = env.start()
    w.seq(range(5))
    env.wait_rows(users(range(5)))
    shutil.copy(env.log, env.logdir / "mail.log.1")  # logrotate's copy
    half = lines([6])[:40]
    # Written after the copy, in one write: line 5 and the start of line 6. Once row 5 is
    # in, mlsd has read past it and seen the partial line too (no sleep to guess at).
    w.write(lines([5]) + half)
    env.wait_rows(users(range(6)))
    os.truncate(env.log, 0)  # logrotate's truncate
    w.seq(range(7, 10))
    env.wait_rows(users([*range(6), *range(7, 10)]))
    err = env.stderr(proc)
    assert f'lost_bytes={len(half)} reason="written between copy and truncate"' in err
    assert env.stop(proc) == 0
