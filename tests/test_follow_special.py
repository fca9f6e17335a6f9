"""A FIFO, a device, a line without end (issue 15, hole 6).

Opening the log never blocks (a FIFO without a writer used to hang `run` before READY,
deaf to SIGTERM); a non-regular log is an error naming the file; a line of 64 KiB or
more is counted as too long and skipped without being gathered in memory or re-read
from its start at every wake-up, and a checkpoint inside it resumes exactly.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from mlsd.ingest.checkpoint import Checkpoint
from mlsd.ingest.grammar import MAX_CANDIDATE_LINE
from mlsd.ingest.sources.file.follow import Batch, Follower
from mlsd.ingest.sources.file.reading import CHUNK, LINE_MAX, cut
from tests.followkit import ENV, STARTED, Env, Writer, lines, logged, users, wait_for


def _seqs(data: bytes) -> list[int]:
    return [int(w[17:23]) for w in data.split() if w.startswith(b"sasl_username=seq")]


def _batches(f: Follower) -> list[Batch]:
    out: list[Batch] = []
    for _ in range(10_000):
        batch = f.next_batch()
        if batch is None:
            if f.wake_at is None:
                return out
            time.sleep(max(0.0, f.wake_at - time.time()))
            continue
        out.append(batch)
    raise AssertionError("the follower never settled")


def _resume(log: Path, b: Batch) -> Checkpoint:
    return Checkpoint(
        source=str(log),
        generation=b.position,
        offset=b.offset,
        csv_dev=0,
        csv_ino=0,
        csv_length=0,
        committed_at=time.time(),
        discard_line=b.discard_line,
    )


# ---- FIFO and devices


def test_fifo_as_mail_log_does_not_block_run(env: Env) -> None:
    """`mlsd run` with a FIFO as mail_log gets to READY, says what is wrong (an error
    naming the file), and stops on SIGTERM; the old code hung in open()."""
    os.mkfifo(env.log)
    proc = env.start(wait=False)
    try:
        wait_for(lambda: STARTED in env.stderr(proc), timeout=20)
        wait_for(lambda: "log file is not a regular file" in env.stderr(proc), timeout=20)
        err = env.stderr(proc)
        assert "FIFO (named pipe)" in err and str(env.log) in err
        assert "waiting for the log file" not in err
        assert env.stop(proc) == 0
    finally:
        env.cleanup()


def test_fifo_as_rotated_sibling_does_not_block_scan(tmp_path: Path) -> None:
    """A FIFO named like a rotated log (`mail.log.1`) is no generation: `mlsd scan`
    imports the rest and exits, instead of hanging in open()."""
    env = Env(tmp_path, import_rotated="yes")
    os.mkfifo(env.logdir / "mail.log.1")
    (env.logdir / "mail.log.2").write_bytes(lines(range(5)))
    os.utime(env.logdir / "mail.log.2", (1_000_000, 1_000_000))
    Writer(env.log).seq(range(5, 10))
    res = subprocess.run(
        env.cmd("scan"), capture_output=True, text=True, timeout=30, check=False, env=ENV
    )
    assert res.returncode == 0, res.stderr
    assert users(range(10)) == env.rows()


def test_device_as_mail_log_is_an_error(tmp_path: Path) -> None:
    """A symlink to a character device: an error naming the file and its type (once), not
    "waiting for the log file"."""
    log = tmp_path / "mail.log"
    log.symlink_to("/dev/null")
    f = Follower(log)
    with logged() as said:
        f.start(None, start_at="beginning", import_rotated=False)
        assert f.next_batch() is None
        assert f.next_batch() is None
    errors = [s.text for s in said if s.level == "error"]
    assert 1 == len(errors), errors
    assert "not a regular file" in errors[0] and "character device" in errors[0]
    assert str(log) in errors[0]
    assert f.problem == f"{log} is a character device, not a regular file"
    log.unlink()
    Writer(log).seq(range(3))
    assert [0, 1, 2] == _seqs(b"".join(b.data for b in _batches(f)))
    assert f.problem is None


# ---- over-long lines


def test_cut_at_the_parser_limit() -> None:
    """A line is read whole up to the parser's limit and skipped from there, exactly at
    the same length (`LINE_MAX` bytes of text, the newline not counted)."""
    assert MAX_CANDIDATE_LINE == LINE_MAX
    ok = b"a" * (LINE_MAX - 1) + b"\n"
    long = b"b" * LINE_MAX + b"\n"
    p = cut(ok + long + b"c\n", discard=False, last=False)
    assert (ok + b"c\n", len(ok + long) + 2, 1, False) == (p.data, p.size, p.too_long, p.discard)
    # A partial line just under the limit waits for its newline (offset at its start)...
    p = cut(b"x\n" + b"d" * (LINE_MAX - 1), discard=False, last=False)
    assert (b"x\n", 2, 0, False) == (p.data, p.size, p.too_long, p.discard)
    # ...one at the limit is counted now and skipped, the offset moving past it.
    p = cut(b"x\n" + b"d" * LINE_MAX, discard=False, last=False)
    assert (b"x\n", 2 + LINE_MAX, 1, True) == (p.data, p.size, p.too_long, p.discard)
    # Skipping: up to the newline, then lines again; a sealed file's end ends the skip.
    p = cut(b"ddd\ny\n", discard=True, last=False)
    assert (b"y\n", 6, 0, False) == (p.data, p.size, p.too_long, p.discard)
    p = cut(b"ddd", discard=True, last=True)
    assert (b"", 3, 0, False) == (p.data, p.size, p.too_long, p.discard)


def test_cut_torn_last_line_of_a_sealed_generation() -> None:
    """A sealed generation's unterminated last line is moved past as torn, never handed
    out (it is a prefix of a line: `user=seq00` of `user=seq0042`); a live one waits."""
    p = cut(b"a\nuser=seq00", discard=False, last=True)
    assert (b"a\n", 12, 10) == (p.data, p.size, p.torn)
    assert p.discard  # the offset sits inside that line: a late rest of it is skipped too
    p = cut(b"a\nuser=seq00", discard=False, last=False)
    assert (b"a\n", 2, 0) == (p.data, p.size, p.torn)
    p = cut(b"a\nb\n", discard=False, last=True)
    assert (b"a\nb\n", 4, 0) == (p.data, p.size, p.torn)


def test_growing_line_is_not_gathered_nor_reread(tmp_path: Path) -> None:
    """A line without a newline growing to 48 MiB, one wake-up per 4 MiB: memory stays
    near one chunk (the old code held the whole line and read it again from its start
    at each wake-up), the offset moves inside the line, it counts once as too long, and
    the lines around it are read exactly once."""
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.seq(range(3))
    f = Follower(log)
    f.start(None, start_at="beginning", import_rotated=False)
    got = _batches(f)
    piece = b"z" * (4 << 20)
    tracemalloc.start()
    try:
        for _ in range(12):
            w.write(piece)
            got += _batches(f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * CHUNK, peak
    line_start = len(lines(range(3)))
    assert got[-1].offset == line_start + 12 * len(piece)
    assert got[-1].discard_line
    w.write(b"end of the long line\n")
    w.seq(range(3, 6))
    got += _batches(f)
    assert list(range(6)) == _seqs(b"".join(b.data for b in got))
    assert 1 == sum(b.too_long for b in got)
    assert not got[-1].discard_line


def test_checkpoint_inside_a_long_line_resumes_exactly(tmp_path: Path) -> None:
    """A restart from a checkpoint taken while skipping: the rest of the line is skipped
    (not counted again), the next lines are read once."""
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.seq(range(2))
    w.write(b"q" * (LINE_MAX * 3))
    f = Follower(log)
    f.start(None, start_at="beginning", import_rotated=False)
    first = _batches(f)
    assert first[-1].discard_line
    w.write(b"q" * 1000 + b"\n")
    w.seq(range(2, 4))
    g = Follower(log)
    assert "checkpoint" == g.start(_resume(log, first[-1]), start_at="end", import_rotated=False)
    rest = _batches(g)
    assert [2, 3] == _seqs(b"".join(b.data for b in rest))
    assert 0 == sum(b.too_long for b in rest)
    assert [0, 1] == _seqs(b"".join(b.data for b in first))


def test_long_line_in_a_gz_generation(tmp_path: Path) -> None:
    """The same in a rotated .gz (read as a stream): lines around a 20 MiB line, once."""
    log = tmp_path / "mail.log"
    gz = tmp_path / "mail.log.1.gz"
    body = lines(range(3)) + b"x" * (20 << 20) + b"\n" + lines(range(3, 6))
    gz.write_bytes(gzip.compress(body, compresslevel=1))
    os.utime(gz, (1_000_000, 1_000_000))
    Writer(log).seq(range(6, 8))
    f = Follower(log)
    f.start(None, start_at="beginning", import_rotated=True)
    tracemalloc.start()
    try:
        got = _batches(f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * CHUNK, peak
    assert list(range(8)) == _seqs(b"".join(b.data for b in got))
    assert 1 == sum(b.too_long for b in got)


def test_scan_counts_and_checkpoints_a_long_partial_line(env: Env) -> None:
    """`mlsd scan` over a 20 MiB line still being written: the checkpoint sits inside it
    (discard_line), the summary counts it once as too long, and once completed the next
    lines become rows."""
    w = Writer(env.log)
    w.seq(range(3))
    start = env.log.stat().st_size
    w.write(b"Nov 25 05:00:00 srv postfix/smtpd[1]: " + b"y" * (20 << 20))
    res = env.scan()
    assert "skipped=too_long:1" in res.stderr
    cp = json.loads((env.state / "checkpoint.json").read_text())
    assert cp["offset"] > start + LINE_MAX
    assert cp["discard_line"] is True
    w.write(b"y" * 100 + b"\n")
    w.seq(range(3, 6))
    res = env.scan()
    assert "too_long" not in res.stderr
    assert users(range(6)) == env.rows()
    assert Counter() == env.rows() - users(range(6))


def test_scan_of_a_fifo_fails_naming_it(env: Env) -> None:
    """`mlsd scan` with a FIFO as mail_log exits 1 with one sentence naming it (it used
    to hang in open())."""
    os.mkfifo(env.log)
    res = subprocess.run(
        env.cmd("scan"), capture_output=True, text=True, timeout=30, check=False, env=ENV
    )
    assert 1 == res.returncode, res.stderr
    # The one sentence of mlsd.access (the config key and the fix with it).
    assert (
        f"mlsd: {env.log} ([paths] mail_log) is a FIFO (named pipe), not a regular file"
    ) in res.stderr
    assert 1 == len(res.stderr.splitlines()), res.stderr
