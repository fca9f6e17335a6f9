"""Gaps at a restart: the reason said is the true one, and what is still readable is read.

In-process and deterministic: the follower is started from a hand-made checkpoint on files
laid out as logrotate leaves them, with file times set explicitly.
"""

from __future__ import annotations

import gzip
import lzma
import os
import time
import zlib
from pathlib import Path

from mlsd.ingest.checkpoint import Checkpoint
from mlsd.ingest.sources.file.follow import Follower
from mlsd.ingest.sources.file.generations import candidate
from mlsd.ingest.sources.file.reading import Generation
from tests.followkit import Writer, lines, logged


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


def _decompressing(packed: bytes) -> bytes:
    """What a cut-short gzip stream still decompresses to."""
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(packed)


def _seqs(data: bytes) -> list[int]:
    return [int(w[17:23]) for w in data.split() if w.startswith(b"sasl_username=seq")]


def test_gone_generation_beside_a_cut_short_gz_of_another_is_not_found(tmp_path: Path) -> None:
    """The checkpointed generation was deleted while mlsd was down; the oldest generation
    written after it is a .gz cut short (it decompresses to a few hundred bytes, not the
    1 KiB head), then a plain one. The lost generation's gap says "not found", the cut
    .gz has its own "damaged" gap, and the plain one and the live log are read (chaos seed
    160: the lost generation's gap blamed the damaged .gz, whose own loss went unsaid)."""
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.seq(range(20))
    x = candidate(log)
    assert x is not None
    g = Generation(x, 0)
    gen = g.ident()
    g.close()
    offset = len(lines(range(10)))
    log.unlink()  # deleted (rotate N exceeded) while down: lines 10-19 are lost
    w.reopen()
    packed = gzip.compress(lines(range(100, 130)))
    damaged = tmp_path / "mail.log.2.gz"
    damaged.write_bytes(packed[: len(packed) // 3])
    (tmp_path / "mail.log.1").write_bytes(lines(range(200, 205)))
    w.seq(range(300, 305))
    t = x.mtime
    os.utime(damaged, (t + 1, t + 1))
    os.utime(tmp_path / "mail.log.1", (t + 2, t + 2))
    # The cut .gz still shows another generation's first line, but not a whole head.
    shows = _decompressing(damaged.read_bytes())
    assert shows.startswith(lines(range(100, 101))[:60]) and len(shows) < gen.head_len
    cp = Checkpoint(
        source=str(log),
        generation=gen,
        offset=offset,
        csv_dev=0,
        csv_ino=0,
        csv_length=0,
        committed_at=t + 3,
        generation_mtime=t,
    )
    f = Follower(log, grace=0.01)
    with logged() as said:
        assert "gap" == f.start(cp, start_at="beginning", import_rotated=False)
        got = _seqs(_drain(f))
    gaps = [s.text for s in said if s.text.startswith("gap generation=")]
    assert 2 == len(gaps), gaps
    assert f"{gen.ino} unread_from={offset}" in gaps[0]
    assert "not found among the rotated files" in gaps[0]
    assert "mail.log.2.gz" in gaps[1] and "damaged or cut-short gzip file" in gaps[1]
    assert [*range(200, 205), *range(300, 305)] == got


def test_gone_generation_cut_short_as_gz_is_a_damaged_gap(tmp_path: Path) -> None:
    """The checkpointed generation (young: its head is its first two lines) survives only
    as a .gz cut short before 1 KiB but after that head: its gap names that .gz as damaged
    (its head says it is the one), and the generation after it is read."""
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.seq(range(2))
    x = candidate(log)
    assert x is not None
    g = Generation(x, 0)
    gen = g.ident()
    g.close()
    w.seq(range(2, 40))
    whole = log.read_bytes()
    log.unlink()
    w.reopen()
    packed = gzip.compress(whole, compresslevel=0)  # stored: the cut is where we say
    damaged = tmp_path / "mail.log.2.gz"
    damaged.write_bytes(packed[: gen.head_len + 100])
    assert gen.head_len <= len(_decompressing(damaged.read_bytes())) < 1024
    (tmp_path / "mail.log.1").write_bytes(lines(range(200, 205)))
    w.seq(range(300, 302))
    t = x.mtime
    os.utime(damaged, (t, t))
    os.utime(tmp_path / "mail.log.1", (t + 2, t + 2))
    cp = Checkpoint(
        source=str(log),
        generation=gen,
        offset=gen.head_len,
        csv_dev=0,
        csv_ino=0,
        csv_length=0,
        committed_at=t + 3,
        generation_mtime=t - 1,
    )
    f = Follower(log, grace=0.01)
    with logged() as said:
        assert "gap" == f.start(cp, start_at="beginning", import_rotated=False)
        got = _seqs(_drain(f))
    gaps = [s.text for s in said if s.text.startswith("gap generation=")]
    assert 1 == len(gaps), gaps
    assert "damaged or cut-short gzip file" in gaps[0] and "mail.log.2.gz" in gaps[0]
    assert [*range(200, 205), *range(300, 302)] == got


def test_copytruncate_to_xz_of_a_generation_opened_empty_is_a_gap(tmp_path: Path) -> None:
    """The follower opened the live log while it was empty; before it read anything, lines
    were written and logrotate copytruncated them into a copy compressed with xz. The
    live file then holds new lines: those are read, and the lines only in the .xz are a
    gap that says so (chaos seed 26: line 0 was lost without a word, as an empty head
    tells no truncation and the copy search skipped what it cannot read)."""
    log = tmp_path / "mail.log"
    w = Writer(log)
    f = Follower(log, grace=0.01)
    f.start(None, start_at="beginning", import_rotated=False)
    assert f.next_batch() is None
    w.seq(range(5))
    (tmp_path / "mail.log.1.xz").write_bytes(lzma.compress(log.read_bytes()))
    os.truncate(log, 0)
    w.seq(range(10, 13))
    with logged() as said:
        got = _seqs(_drain(f))
    gaps = [s.text for s in said if s.text.startswith("gap generation=")]
    assert 1 == len(gaps), gaps
    assert "unread_from=0" in gaps[0] and "truncated in place" in gaps[0]
    assert "compressed with xz" in gaps[0] and "mail.log.1.xz" in gaps[0]
    assert [10, 11, 12] == got


def test_sealed_generation_is_not_read_again_after_an_empty_one(tmp_path: Path) -> None:
    """Chaos seed 114: an empty generation and the one before it had the same mtime tick
    (the writer was still appending to the renamed file), so their order came from their
    names, which logrotate changes at every run. After the follower sealed the full one
    and opened the empty one, the next listing put the full one's .gz after the empty one:
    it was read a second time (23 duplicate rows). A sealed generation is never read again."""
    log = tmp_path / "mail.log"
    full = tmp_path / "mail.log.2"
    empty = tmp_path / "mail.log.1"
    full.write_bytes(lines(range(10)))
    empty.write_bytes(b"")
    log.write_bytes(b"")  # nothing newer yet: the follower stays at the empty one
    t = time.time() - 100
    for p in (full, empty):
        os.utime(p, (t, t))
    x = candidate(full)
    assert x is not None
    g = Generation(x, 0)
    gen = g.ident()
    g.close()
    cp = Checkpoint(
        source=str(log),
        generation=gen,
        offset=0,
        csv_dev=0,
        csv_ino=0,
        csv_length=0,
        committed_at=t,
        generation_mtime=t,
    )
    f = Follower(log, grace=0.01)
    assert "checkpoint (rotated)" == f.start(cp, start_at="beginning", import_rotated=False)
    got = _drain(f)
    assert f.cur is not None and f.cur.path == empty
    # logrotate runs: the full one is compressed to .3.gz (times kept), the empty one
    # renamed to .4: same mtimes, so the names now put the .gz after the empty one.
    packed = tmp_path / "mail.log.3.gz"
    packed.write_bytes(gzip.compress(full.read_bytes()))
    os.utime(packed, (t, t))
    full.unlink()
    empty.rename(tmp_path / "mail.log.4")
    Writer(log).seq(range(100, 103))
    got += _drain(f)
    assert [*range(10), *range(100, 103)] == _seqs(got)


def test_generation_deleted_unread_while_reading_an_older_one_is_a_gap(tmp_path: Path) -> None:
    """Chaos seed 180 (real process): mlsd imports three rotated generations; while it
    reads the oldest, two rotations with `rotate 2` delete it and the next one. Before,
    the reader moved from its deleted generation to the oldest one left, and the lines of
    the one in between were lost unsaid. Now that one is a gap of its size, named."""
    log = tmp_path / "mail.log"
    oldest, middle, newest = (tmp_path / f"mail.log.{n}" for n in (3, 2, 1))
    t = time.time() - 100
    for i, p in enumerate((oldest, middle, newest)):
        p.write_bytes(lines(range(100 * i, 100 * i + 5)))
        os.utime(p, (t + i, t + i))
    Writer(log).seq(range(300, 303))
    os.utime(log, (t + 3, t + 3))
    f = Follower(log, grace=0.01)
    with logged() as said:
        f.start(None, start_at="beginning", import_rotated=True)
        batch = f.next_batch()
        assert batch is not None and [0, 1, 2, 3, 4] == _seqs(batch.data)
        # logrotate, twice, with `rotate 2`, while mlsd holds the oldest one open.
        size = middle.stat().st_size
        oldest.unlink()
        middle.unlink()
        newest.rename(tmp_path / "mail.log.2")
        got = _seqs(_drain(f))
    assert [*range(200, 205), *range(300, 303)] == got
    gaps = [s.text for s in said if s.text.startswith("gap generation=")]
    assert 1 == len(gaps), gaps
    assert f"{middle} (" in gaps[0] and f"unread_from=0 lost_bytes={size} " in gaps[0]
    assert "deleted by logrotate before mlsd read it" in gaps[0]


def test_lines_written_after_a_truncate_to_a_file_renamed_since_are_read(
    tmp_path: Path,
) -> None:
    """Chaos seed 129: copytruncate with the copy compressed by xz (unreadable), more
    lines written to the truncated file, then a `create` rotation renamed it before mlsd
    looked. The lines only in the .xz are a gap; the lines written after the truncate,
    now in the renamed file, are read. Before, the reader jumped to the new live file and
    lost them unsaid."""
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.seq(range(5))
    f = Follower(log, grace=0.01)
    f.start(None, start_at="beginning", import_rotated=False)
    assert [0, 1, 2, 3, 4] == _seqs(_drain(f))
    w.seq(range(5, 8))
    (tmp_path / "mail.log.2.xz").write_bytes(lzma.compress(log.read_bytes()))
    os.truncate(log, 0)
    w.seq(range(100, 120))  # longer than what was read: the size alone tells nothing
    log.rename(tmp_path / "mail.log.1")
    w.write(b"")  # the writer still holds the renamed file
    w.seq(range(120, 122))
    w.path = log
    w.reopen()
    w.seq(range(200, 203))
    with logged() as said:
        got = _seqs(_drain(f))
    assert [*range(100, 122), *range(200, 203)] == got
    gaps = [s.text for s in said if s.text.startswith("gap generation=")]
    assert 1 == len(gaps), gaps
    assert "truncated in place" in gaps[0] and "compressed with xz" in gaps[0]
