"""Scenarios with mlsd down in between: real `mlsd scan` processes before and after, real
logrotate between.

Each test writes sequence-numbered lines and asserts the exact multiset of CSV rows. The
plain down-time scenarios are data in tests/test_follow_table.py (scan's code in-process);
these are the ones that check what the command says, or need more than a script of steps.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from tests.followkit import Env, Writer, lines, users


def test_empty_and_missing_log(env: Env) -> None:
    """No log file at all: scan says it is waiting and exits 0; then the file is read."""
    res = env.scan()
    assert "waiting for the log file" in res.stderr
    Writer(env.log).seq(range(3))
    env.scan()
    assert users(range(3)) == env.rows()


def test_create_rotation_down_once(env: Env) -> None:
    """logrotate `create` while down; the writer appends to the old inode before reopening."""
    w = Writer(env.log)
    w.seq(range(10))
    env.scan()
    w.seq(range(10, 20))
    env.logrotate("create")
    w.seq(range(20, 25))  # still the renamed file: the writer has not reopened yet
    w.reopen()
    w.seq(range(25, 30))
    env.scan()
    assert users(range(30)) == env.rows()


def test_postfix_logrotate_names_down(env: Env) -> None:
    """`postfix logrotate`: rename to `.YYYYMMDD-HHMMSS`, gzip at once (Python renames)."""
    w = Writer(env.log)
    w.seq(range(10))
    env.scan()
    w.seq(range(10, 20))
    for i, stamp in enumerate(("20261125-041200", "20261125-041300")):
        dst = env.logdir / f"mail.log.{stamp}"
        os.rename(env.log, dst)
        w.reopen()
        with open(dst, "rb") as src, gzip.open(str(dst) + ".gz", "wb") as gz:
            gz.write(src.read())
        dst.unlink()
        w.seq(range(20 + 10 * i, 30 + 10 * i))
    env.scan()
    assert users(range(40)) == env.rows()


def test_copytruncate_down_once(env: Env) -> None:
    """copytruncate while down: the rest is read from the copy at the old offset."""
    w = Writer(env.log)
    w.seq(range(10))
    env.scan()
    w.seq(range(10, 20))
    env.logrotate("copytruncate")
    w.seq(range(20, 30))
    env.scan()
    assert users(range(30)) == env.rows()


def test_partial_line_stranded_in_rotated_file(env: Env) -> None:
    """A rotated file that ends without a newline: that torn line is never parsed (its
    user or address may be cut short to another valid one); it is a gap of its size."""
    w = Writer(env.log)
    w.seq(range(5))
    torn = lines([5]).rstrip(b"\n").split(b"\n")[0][:-3]  # seq 5, cut inside its user
    w.write(torn)
    env.scan()
    assert users(range(5)) == env.rows()
    env.logrotate("create")
    w.reopen()
    w.seq(range(6, 10))
    said = env.scan().stderr + env.scan().stderr
    assert users([*range(5), *range(6, 10)]) == env.rows()
    gaps = [g for g in said.splitlines() if "gap " in g]
    assert len(gaps) == 1 and f"lost_bytes={len(torn)} " in gaps[0], said
    # Only that gap: the offset after the torn line is not taken for a truncation.
    assert "unterminated last line" in gaps[0], said


def test_huge_line_nul_and_invalid_utf8(env: Env) -> None:
    """A 10 MiB line, NUL bytes and invalid UTF-8 around real lines: every real line counts."""
    w = Writer(env.log)
    w.seq(range(3))
    w.write(b"Nov 25 05:00:00 srv postfix/smtpd[1]: " + b"x" * (10 << 20) + b"\n")
    w.write(b"\x00\x00\xff\xfe garbage \xc3\x28\n")
    w.seq(range(3, 6))
    bad = lines([6]).replace(b"seq000006", b"seq000006\xff\x00")
    w.write(bad)
    w.seq(range(7, 9))
    env.scan()
    got = env.rows()
    odd = [u for u in got if u.startswith("seq000006")]
    assert len(odd) == 1
    del got[odd[0]]
    assert users([*range(6), 7, 8]) == got


def test_start_at_end(tmp_path: Path) -> None:
    """start_at = end: what was in the log before `run`'s first start is not imported
    (`scan` on a fresh state imports the backlog whatever start_at says: tests/test_scan.py)."""
    env = Env(tmp_path, start_at="end")
    w = Writer(env.log)
    w.seq(range(10))
    w.write(lines([10])[:30])  # a partial line at the end is finished later, so it counts
    proc = env.start()
    w.write(lines([10])[30:])
    w.seq(range(11, 15))
    env.wait_rows(users(range(10, 15)))
    assert env.stop(proc) == 0
    env.cleanup()


def test_import_rotated(tmp_path: Path) -> None:
    """import_rotated = yes: the rotated history (gz included) is imported once, in order."""
    env = Env(tmp_path, import_rotated="yes")
    w = Writer(env.log)
    for i in range(3):
        w.seq(range(10 * i, 10 * i + 10))
        env.logrotate("create", "compress", "delaycompress")
        w.reopen()
    w.seq(range(30, 35))
    env.scan()
    env.scan()
    assert users(range(35)) == env.rows()


def test_damaged_gz_is_a_gap(env: Env) -> None:
    """A rotated .gz cut short: reported as a gap, nothing repeated, newer lines all read."""
    w = Writer(env.log)
    w.seq(range(10))
    env.scan()
    w.seq(range(10, 60))
    env.logrotate("create", "compress")
    w.reopen()
    w.seq(range(60, 70))
    gz = env.logdir / "mail.log.1.gz"
    os.truncate(gz, gz.stat().st_size * 2 // 3)
    res = env.scan()
    assert "gap generation=" in res.stderr
    got = env.rows()
    assert max(got.values()) == 1
    assert users([*range(10), *range(60, 70)]) - got == users([])
    assert set(got) <= set(users(range(70)))
