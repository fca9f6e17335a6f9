"""The first start: its decision is on disk before READY=1 and a restart carries it out.

Issue 15, hole 1: a first start on a fresh state directory with no log yet, or an empty
one, pinned nothing; `kill -9` before the first commit, a rotation and a restart then
decided again ("resume=beginning" of the *new* live file) and silently skipped the lines
of the generation that was live at the first start.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import time
from pathlib import Path

import pytest

from mlsd.ingest.checkpoint import (
    Checkpoint,
    CheckpointStore,
    FirstStart,
    GenerationId,
    fingerprint,
)
from mlsd.ingest.sources.file.follow import Follower
from mlsd.ingest.sources.file.generations import candidate
from tests.followkit import STARTED, Env, Writer, kill9, lines, logged, users, wait_for


def _drain(f: Follower) -> bytes:
    """Everything the follower hands out until it has nothing (grace periods waited out)."""
    out = b""
    for _ in range(1000):
        batch = f.next_batch()
        if batch is not None:
            out += batch.data
            continue
        if f.wake_at is None:
            return out
        time.sleep(max(0.0, f.wake_at - time.time()))
    raise AssertionError("the follower never settled")


def _seqs(data: bytes) -> list[int]:
    return [int(w[17:23]) for w in data.split() if w.startswith(b"sasl_username=seq")]


def _started_then_killed(env: Env) -> None:
    """`mlsd run` up to READY (its start-up line), then kill -9: nothing committed."""
    proc = env.start()
    assert STARTED in env.stderr(proc), env.stderr(proc)
    kill9(proc)


@pytest.mark.parametrize("options", [("create",), ("create", "compress")])
def test_no_log_at_first_start_then_kill9_and_rotation(env: Env, options: tuple[str, ...]) -> None:
    """No log file at the first start; killed before any commit; the log is written,
    rotated (renamed, or renamed and gzipped) and written again while mlsd is down:
    every line of both generations becomes one row (the old code lost the first)."""
    _started_then_killed(env)
    w = Writer(env.log)
    w.seq(range(10))
    env.logrotate(*options)
    w.reopen()
    w.seq(range(10, 20))
    proc = env.start()
    env.wait_rows(users(range(20)))
    assert 'resume="first start of beginning resumed"' in env.stderr(proc)
    assert env.stop(proc) == 0
    assert "gap generation=" not in env.all_stderr()


def test_empty_log_at_first_start_then_kill9_and_two_rotations(env: Env) -> None:
    """An empty live log at the first start (start_at = end, so no head to pin), killed
    before any commit, two rotations with delaycompress while down: all lines, once."""
    env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1", "start_at": "end"})
    Writer(env.log).close()
    _started_then_killed(env)
    w = Writer(env.log)
    w.seq(range(10))
    env.logrotate("create", "compress", "delaycompress")
    w.reopen()
    w.seq(range(10, 20))
    env.logrotate("create", "compress", "delaycompress")
    w.reopen()
    w.seq(range(20, 25))
    assert (env.logdir / "mail.log.2.gz").exists()
    env.scan()
    assert users(range(25)) == env.rows()


def test_restart_keeps_the_recorded_policy(env: Env) -> None:
    """The decision, not today's config, rules a restart before the first commit: a
    first start at `end` of a log with lines pins that end, whatever start_at says now."""
    w = Writer(env.log)
    w.seq(range(5))  # before the first start: not imported with start_at = end
    env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1", "start_at": "end"})
    _started_then_killed(env)
    w.seq(range(5, 10))
    env.logrotate("create")
    w.reopen()
    w.seq(range(10, 15))
    env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})  # back to beginning
    env.scan()
    assert users(range(5, 15)) == env.rows()


@pytest.mark.parametrize("skew", [0.0, 36_000.0])
def test_file_appears_after_start_rotated_before_first_commit(tmp_path: Path, skew: float) -> None:
    """In process: the log appears after the decision, is written and rotated before the
    first commit; a restart from the checkpoint written at the decision reads it all.
    The decision time is wall time, whatever clock the follower is given for its grace
    periods (a test clock 10 h ahead made the restart skip everything: chaos seed 24)."""
    log = tmp_path / "mail.log"

    def clock() -> float:
        return time.time() + skew

    f = Follower(log, grace=0.01, clock=clock)
    assert f.start(None, start_at="beginning", import_rotated=False) == "none (no log file yet)"
    assert f.first is not None
    cp = Checkpoint(
        source=str(log),
        generation=None,
        offset=0,
        csv_dev=0,
        csv_ino=0,
        csv_length=0,
        committed_at=f.first.decided_at,
        first_start=f.first,
    )
    w = Writer(log)
    w.seq(range(10))
    (tmp_path / "mail.log.1").write_bytes(b"")  # an older, empty generation: not a hit
    log.rename(tmp_path / "mail.log-20261204-1796400000")
    w.seq(range(10, 13))  # the writer has not reopened yet
    w.reopen()
    w.seq(range(13, 20))
    g = Follower(log, grace=0.01, clock=clock)
    g.start(cp, start_at="end", import_rotated=False)
    assert list(range(20)) == _seqs(_drain(g))


def test_generation_rotated_just_before_the_decision_is_not_imported(tmp_path: Path) -> None:
    """The time rule reads generations written after the decision, not the older ones."""
    log = tmp_path / "mail.log"
    old = tmp_path / "mail.log.1"
    old.write_bytes(lines(range(5)))
    past = time.time() - 60
    os.utime(old, (past, past))
    log.write_bytes(b"")
    f = Follower(log, grace=0.01)
    f.start(None, start_at="beginning", import_rotated=False)
    assert f.first is not None
    cp = Checkpoint(
        source=str(log),
        generation=None,
        offset=0,
        csv_dev=0,
        csv_ino=0,
        csv_length=0,
        committed_at=f.first.decided_at,
        first_start=f.first,
    )
    w = Writer(log)
    w.seq(range(5, 10))
    g = Follower(log, grace=0.01)
    g.start(cp, start_at="beginning", import_rotated=False)
    assert list(range(5, 10)) == _seqs(_drain(g))


def test_version_1_checkpoint_still_loads_and_resumes(env: Env) -> None:
    """A checkpoint written by the previous format (version 1, no first_start) loads,
    and reading resumes from it exactly; the next commit writes version 2."""
    w = Writer(env.log)
    w.seq(range(10))
    env.scan()
    path = env.state / "checkpoint.json"
    data = json.loads(path.read_text())
    data["version"] = 1
    del data["first_start"]
    del data["discard_line"]
    del data["generation_mtime"]
    path.write_text(json.dumps(data))
    cp = CheckpointStore(env.state).load()
    assert cp is not None
    assert (None, False) == (cp.first_start, cp.discard_line)
    w.seq(range(10, 15))
    env.scan()
    assert users(range(15)) == env.rows()
    assert 2 == json.loads(path.read_text())["version"]


def test_first_start_record_round_trip(tmp_path: Path) -> None:
    """The decision record is saved and loaded as it was; a bad policy is refused."""
    store = CheckpointStore(tmp_path)
    cp = Checkpoint(
        source="/l",
        generation=None,
        offset=0,
        csv_dev=1,
        csv_ino=2,
        csv_length=3,
        committed_at=4.5,
        first_start=FirstStart(policy="end", decided_at=4.25, dev=7, ino=8),
    )
    store.save(cp)
    assert cp == store.load()
    listed = (GenerationId(dev=1, ino=2, head_len=3, head_sha256=fingerprint(b"abc")),)
    rotated = FirstStart(policy="import_rotated", decided_at=4.25, rotated=listed)
    store.save(dataclasses.replace(cp, first_start=rotated))
    loaded = store.load()
    assert loaded is not None and loaded.first_start == rotated
    store.save(cp)
    text = store.path.read_text().replace('"end"', '"middle"')
    store.path.write_text(text)
    with pytest.raises(Exception, match="first-start policy"):
        store.load()


def test_decision_is_on_disk_before_ready(env: Env) -> None:
    """The checkpoint holds the decision as soon as the start-up line is out."""
    proc = env.start(wait=False)
    wait_for(lambda: STARTED in env.stderr(proc))
    cp = CheckpointStore(env.state).load()
    assert cp is not None
    assert cp.first_start is not None
    assert ("beginning", None) == (cp.first_start.policy, cp.first_start.ino)
    assert env.stop(proc) == 0


def test_copytruncate_of_a_generation_empty_when_opened(env: Env) -> None:
    """The live log is empty when mlsd opens it (no head to tell a truncation by); lines
    are written, logrotate copytruncates before mlsd reads them, more lines follow: the
    first lines are read from the copy (chaos seed 32: they were lost without a gap)."""
    Writer(env.log).close()
    f = Follower(env.log, grace=0.01)
    f.start(None, start_at="beginning", import_rotated=False)
    assert f.next_batch() is None
    w = Writer(env.log)
    w.seq(range(5))
    env.logrotate("copytruncate", "dateext", "dateformat -%Y%m%d-%s")
    w.seq(range(5, 8))
    assert list(range(8)) == _seqs(_drain(f))
    w.seq(range(8, 10))
    assert [8, 9] == _seqs(_drain(f))


def test_copytruncate_not_yet_truncated_reads_once(env: Env) -> None:
    """The same generation copied but not truncated yet (logrotate between the two): the
    copy holds what the file holds, so nothing is read twice."""
    Writer(env.log).close()
    f = Follower(env.log, grace=0.01)
    f.start(None, start_at="beginning", import_rotated=False)
    assert f.next_batch() is None
    w = Writer(env.log)
    w.seq(range(5))
    (env.logdir / "mail.log.1").write_bytes(env.log.read_bytes())
    assert list(range(5)) == _seqs(_drain(f))
    os.truncate(env.log, 0)
    w.seq(range(5, 8))
    assert list(range(5, 8)) == _seqs(_drain(f))


def test_generation_deleted_under_the_reader_is_followed_by_the_next_rotated(
    tmp_path: Path,
) -> None:
    """The generation being read is deleted (`rotate 1` exceeded) while a newer rotated one
    and the live log exist: after its last bytes (read through the open descriptor) comes
    the rotated one, not the live log (chaos seed 45: it was skipped without a gap)."""
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.seq(range(5))
    f = Follower(log, grace=0.01)
    f.start(None, start_at="beginning", import_rotated=False)
    first = _drain(f)
    log.rename(tmp_path / "mail.log.1")
    w.seq(range(5, 10))  # the writer has not reopened yet
    w.reopen()
    w.seq(range(10, 15))
    (tmp_path / "mail.log.1").unlink()
    log.rename(tmp_path / "mail.log.1")
    w.reopen()
    w.seq(range(15, 20))
    assert list(range(20)) == _seqs(first + _drain(f))


def test_empty_generation_compressed_away_is_followed_by_time(tmp_path: Path) -> None:
    """The reader holds an empty live log; it is rotated and gzipped (its inode gone), a
    newer generation is written and rotated too: that one is read, not skipped because
    an empty head "matches" every file."""
    log = tmp_path / "mail.log"
    Writer(log).close()
    f = Follower(log, grace=0.01)
    f.start(None, start_at="beginning", import_rotated=False)
    assert f.next_batch() is None
    (tmp_path / "mail.log.1.gz").write_bytes(gzip.compress(b""))
    log.unlink()
    w = Writer(log)
    w.seq(range(5))
    (tmp_path / "mail.log.1.gz").rename(tmp_path / "mail.log.2.gz")
    log.rename(tmp_path / "mail.log.1")
    w.reopen()
    w.seq(range(5, 10))
    assert list(range(10)) == _seqs(_drain(f))


def test_gone_generation_pinned_late_is_followed_by_what_came_after_it(tmp_path: Path) -> None:
    """A position pinned at start-up (after a gap) is committed later than the next
    generations were written; that generation is then deleted: those generations are
    still read, as they were written after the pinned one (chaos seed 33: the commit
    time was used, and they were skipped under a gap naming another generation)."""
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.seq(range(5))
    g = candidate(log)
    assert g is not None
    gen = GenerationId(dev=g.dev, ino=g.ino, head_len=len(g.head), head_sha256=fingerprint(g.head))
    log.rename(tmp_path / "mail.log.1")
    w.reopen()
    w.seq(range(5, 10))
    (tmp_path / "mail.log.1").unlink()
    log.rename(tmp_path / "mail.log.1")
    w.reopen()
    w.seq(range(10, 15))
    time.sleep(0.1)
    cp = Checkpoint(
        source=str(log),
        generation=gen,
        offset=0,
        csv_dev=0,
        csv_ino=0,
        csv_length=0,
        committed_at=time.time(),
        generation_mtime=g.mtime,
    )
    f = Follower(log, grace=0.01)
    assert "gap" == f.start(cp, start_at="beginning", import_rotated=False)
    assert list(range(5, 15)) == _seqs(_drain(f))


def test_import_rotated_restart_says_a_generation_deleted_before_it_was_read(
    tmp_path: Path,
) -> None:
    """Chaos seed 180 (a real `mlsd run`): `import_rotated`, the oldest rotated file empty
    (so no generation is pinned, only the decision), `kill -9` before the first commit,
    then logrotate deleted a generation that held lines. The restart carries the decision
    out on what is left, and now names the deleted one as a gap instead of saying nothing."""
    log = tmp_path / "mail.log"
    oldest, full = tmp_path / "mail.log.2", tmp_path / "mail.log.1"
    t = time.time() - 100
    oldest.write_bytes(b"")
    full.write_bytes(lines(range(5)))
    Writer(log).seq(range(10, 13))
    for i, p in enumerate((oldest, full, log)):
        os.utime(p, (t + i, t + i))
    f = Follower(log, grace=0.01)
    f.start(None, start_at="beginning", import_rotated=True)
    assert f.first is not None and len(f.first.rotated) == 1
    cp = Checkpoint(
        source=str(log),
        generation=None,
        offset=0,
        csv_dev=0,
        csv_ino=0,
        csv_length=0,
        committed_at=t,
        first_start=f.first,
    )
    f.close()
    ino = full.stat().st_ino
    full.unlink()  # rotate N exceeded while mlsd was down
    again = Follower(log, grace=0.01)
    with logged() as said:
        assert again.start(cp, start_at="end", import_rotated=False).startswith("first start")
    gaps = [s.text for s in said if s.text.startswith("gap generation=")]
    assert 1 == len(gaps), gaps
    assert f":{ino} unread_from=0" in gaps[0] and "deleted by logrotate" in gaps[0]
