"""Following the log across generations: where reading stands, rotation, truncation.

Synchronous and event-free on purpose: the daemon calls `Follower.next_batch()` whenever
inotify (or the reconcile timer) says something may have changed, and `mlsd scan` calls it
until the live file is read to its end. The file system is the truth; events are hints.
Offsets always refer to one generation (see `generations`) and sit at a line start,
so every batch ends on a newline and the checkpoint names the first unread byte. The one
exception is a line too long to parse (`reading.LINE_MAX`): once that much of it has
been seen it is counted, and the offset moves on inside it with `discard_line` set, so the
rest up to its newline is skipped without ever being held in memory or read twice.

Where reading starts is mlsd.ingest.sources.file.start's job; which generation comes next,
and the gaps, mlsd.ingest.sources.file.lineage's.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlsd import logs
from mlsd.config import StartAt
from mlsd.ingest.checkpoint import Checkpoint, FirstStart, GenerationId
from mlsd.ingest.sources.file.generations import (
    HEAD_MAX,
    Candidate,
    candidate,
    file_kind,
    matches,
    packed_reason,
)
from mlsd.ingest.sources.file.lineage import MTIME_SLACK, Lineage, named
from mlsd.ingest.sources.file.reading import LINE_MAX, Generation, Piece
from mlsd.ingest.sources.file.start import Placement, Started

log = logs.get("mlsd.follow")


@dataclass(frozen=True, slots=True)
class Batch:
    """Complete lines read from one generation, and where reading resumes after them."""

    data: bytes
    ref: datetime
    """Reference time for year inference: the file's mtime if rotated, now if live."""
    position: GenerationId
    offset: int
    size: int = -1
    """Bytes of the generation this batch moved past (-1: `len(data)`)."""
    too_long: int = 0
    """Lines too long to parse that this batch skipped (counted as Skip.TOO_LONG)."""
    discard_line: bool = False
    """`offset` is inside an over-long line (see Checkpoint.discard_line)."""
    mtime: float | None = None
    """The generation's last-write time when read (see Checkpoint.generation_mtime)."""
    sealed: tuple[GenerationId, ...] = ()
    """The generations read to their end before this one (see Checkpoint.sealed)."""

    @property
    def consumed(self) -> int:
        """Bytes of the generation this batch moved past."""
        return len(self.data) if self.size < 0 else self.size


class Follower:
    """Where reading stands, and how it moves from generation to generation."""

    def __init__(
        self,
        logpath: Path,
        *,
        grace: float = 1.0,
        clock: Callable[[], float] = time.time,
        rotated_dir: Path | None = None,
    ) -> None:
        self.logpath = logpath
        self.grace = grace
        self.lineage = Lineage(logpath, rotated_dir)
        self._clock = clock
        self.cur: Generation | None = None
        self.wake_at: float | None = None
        """Wall time at which a quiet period ends and `next_batch` has work again."""
        self.rotations = 0
        self.first: FirstStart | None = None
        """The first-start decision taken (or resumed) by `start`, to be checkpointed."""
        self.problem: str | None = None
        """Why the live log cannot be read right now (not a regular file), for STATUS=."""
        self._waiting_said = False

    @property
    def gaps(self) -> int:
        """How many gaps were said (see `Lineage.gap`)."""
        return self.lineage.gaps

    # ---- start

    def start(self, cp: Checkpoint | None, *, start_at: StartAt, import_rotated: bool) -> Started:
        """Place the reader from the checkpoint (or the first-start policy); returns how."""
        if cp is not None:
            self.lineage.restore(cp.sealed)
        placed = Placement(self.lineage, self.logpath)
        how = placed.start(cp, start_at=start_at, import_rotated=import_rotated)
        self.cur, self.first = placed.cur, placed.first
        if placed.absent:
            self._say_nonregular()
        return how

    def _say_nonregular(self) -> None:
        """An error (once per change) when the log path is there but not a regular file."""
        try:
            mode = os.stat(self.logpath).st_mode
        except OSError:
            self.problem = None
            return
        if stat.S_ISREG(mode):
            self.problem = None
            return
        kind = file_kind(mode)
        problem = f"{self.logpath} is a {kind}, not a regular file"
        if problem != self.problem:
            log.error(
                "log file is not a regular file",
                source=str(self.logpath),
                type=kind,
                fix="mlsd follows a log file (offsets, rotation): point [paths] mail_log at "
                "the file your syslog daemon writes",
            )
        self.problem = problem

    # ---- reading

    def next_batch(self) -> Batch | None:
        """The next complete lines to commit, or None when there is nothing to do yet."""
        self.wake_at = None
        for _ in range(64):  # each turn moves state forward; the bound is a safety net
            cur = self.cur
            if cur is None:
                live = candidate(self.logpath)
                if live is None:
                    self._say_nonregular()
                    if not self._waiting_said and self.problem is None:
                        log.warning("waiting for the log file", source=str(self.logpath))
                        self._waiting_said = True
                    return None
                self.problem = None
                log.info("log file appeared", source=str(self.logpath))
                if not self._open(live, 0):
                    return None
                continue
            live_st = self._stat_live()
            is_live = live_st is not None and (live_st.st_dev, live_st.st_ino) == (cur.dev, cur.ino)
            if not cur.head and not cur.gz and cur.offset == 0:
                # (Before still_same(), which takes whatever the file starts with now.)
                moved = self._copied_while_empty(cur)
                if moved is None:
                    return None  # the copy vanished as we opened it: look again soon
                if moved:
                    continue
            if not cur.still_same():
                self._truncated(cur)
                continue
            piece = cur.read(final=False)
            if piece.size and not cur.still_same():
                continue  # truncated while we read: those bytes are judged again from the copy
            if piece.size:
                return self._batch(cur, piece, is_live)
            if is_live:
                return None
            succ, unreadable = self.lineage.successor(cur, live_st)
            if succ is None:
                return None
            quiet_at = cur.stat().st_mtime + self.grace
            if not cur.gz and self._clock() < quiet_at:
                # The writer may still be appending to the renamed file: wait it out.
                self.wake_at = quiet_at
                return None
            piece = cur.read(final=True)
            if piece.size:
                return self._batch(cur, piece, is_live)
            if cur.broken:
                self.lineage.gap(cur.label(), cur.offset, None, "damaged or cut-short gzip file")
            self.rotations += 1
            # Open the next one before letting go of this one: if it vanished in between
            # (compressed just now), we stay sealed here and look again.
            if not self._open(succ, 0):
                return None
            for c in unreadable:
                self.lineage.gap(
                    f"{c.path} ({c.dev}:{c.ino})", 0, c.size, packed_reason(c.packed or "")
                )
            log.info("rotation", sealed=cur.label(), offset=cur.offset, next=str(succ.path))
            self.lineage.sealed(cur)
            cur.close()
        self.wake_at = self._clock()  # the safety bound was hit: come back at once
        return None

    def _open(self, cand: Candidate, offset: int, *, discard: bool = False) -> bool:
        """Make `cand` current; False (retry soon) if it vanished since it was listed."""
        try:
            self.cur = Generation(cand, offset, discard=discard)
        except OSError as exc:
            # logrotate may delete a file between our listing and our open (compression).
            log.info("generation vanished, looking again", path=str(cand.path), error=str(exc))
            self.wake_at = self._clock() + 0.1
            return False
        return True

    def _batch(self, cur: Generation, piece: Piece, is_live: bool) -> Batch:
        if piece.torn:
            self.lineage.gap(
                cur.label(),
                cur.offset + piece.size - piece.torn,
                piece.torn,
                "unterminated last line of a rotated generation: the rest of it was written "
                "between copy and truncate, or never (a writer that died mid-line)",
            )
        cur.advance(piece)
        if piece.too_long:
            log.info(
                "line too long skipped",
                generation=cur.label(),
                before=cur.offset,
                count=piece.too_long,
                limit_bytes=LINE_MAX,  # lines this long or longer are not read
            )
        mtime = cur.stat().st_mtime
        ref = datetime.now(UTC) if is_live else datetime.fromtimestamp(mtime, UTC)
        return Batch(
            piece.data,
            ref,
            cur.ident(),
            cur.offset,
            piece.size,
            piece.too_long,
            cur.discard,
            mtime,
            self.lineage.sealed_ids(),
        )

    def _stat_live(self) -> os.stat_result | None:
        try:
            return os.stat(self.logpath)
        except OSError:
            return None

    def _truncated(self, cur: Generation) -> None:
        """copytruncate (or a plain truncate): the unread rest is in the copy, if anywhere."""
        gen = cur.ident()
        sibs = self.lineage.siblings()
        copies = [
            c
            for c in sibs
            if matches(c, gen) and not c.packed and (c.dev, c.ino) != (cur.dev, cur.ino)
        ]
        self.rotations += 1
        if copies:
            copy = copies[-1]
            end = max(cur.offset, copy.size)
            if not copy.gz and cur.seen_size > end:
                # We saw bytes that the copy does not hold: they were written between
                # logrotate's copy and its truncate, and logrotate destroyed them.
                self.lineage.gap(
                    cur.label(), end, cur.seen_size - end, "written between copy and truncate"
                )
            log.info(
                "rotation copytruncate",
                generation=cur.label(),
                offset=cur.offset,
                copy=str(copy.path),
            )
            cur.close()
            self.cur = None
            # Read past the copy's end (lines written after the copy, before the truncate):
            # the copy has nothing more for us, and opening it beyond its end would look
            # like another truncate and read it again from its start. (A .gz copy's size
            # is not its length: there, reading on from the offset finds the end.)
            at = cur.offset if copy.gz else min(cur.offset, copy.size)
            if not self._open(copy, at, discard=cur.discard and at == cur.offset):
                self.lineage.gap(
                    cur.label(), cur.offset, None, "the copy vanished before it was read"
                )
            return
        # The copy may exist in a compression mlsd cannot read (compress without delaycompress).
        packed = [c for c in sibs if c.packed and c.mtime >= cur.stat().st_mtime - 1]
        why = (
            f"truncated in place; the copy is {packed_reason(packed[-1].packed or '')} "
            f"({packed[-1].path})"
            if packed
            else "truncated in place and no copy found"
        )
        self.lineage.gap(cur.label(), cur.offset, None, why)
        # Not the live file's start: logrotate may have renamed this file (create) since it
        # truncated it, and lines were written to it in between (chaos seed 129 lost them).
        cur.restart()

    def _copied_while_empty(self, cur: Generation) -> bool | None:
        """copytruncate of a generation that was empty when we opened it: it has no head
        to tell a truncation by, so a copy is recognised by time instead: a rotated file
        last written after our open, not one we sealed, whose content is not what the
        generation holds now (so the generation was truncated since the copy). Its lines
        come first; the generation is then read again from its start. True when the
        reader moved to the copy, None to look again soon."""
        if cur.stat().st_size == 0:
            return False
        now = os.pread(cur.fd, HEAD_MAX, 0)
        since = cur.opened_at - MTIME_SLACK
        for c in self.lineage.siblings():
            if c.packed or not c.head or c.mtime <= since or (c.dev, c.ino) == (cur.dev, cur.ino):
                continue
            common = min(len(c.head), len(now))
            if c.head[:common] == now[:common] or self.lineage.was_sealed(c):
                continue
            try:
                copy = Generation(c, 0)
            except OSError:
                self.wake_at = self._clock() + 0.1
                return None
            log.info(
                "rotation copytruncate",
                generation=cur.label(),
                offset=0,
                copy=str(c.path),
                opened="empty",
            )
            self.rotations += 1
            cur.close()
            self.cur = copy
            return True
        live_st = self._stat_live()
        if live_st is not None and (live_st.st_dev, live_st.st_ino) == (cur.dev, cur.ino):
            # Still the live file, so a rotation since our open was a copytruncate: a copy
            # in a form mlsd cannot read holds what was written before it (no lines read
            # here yet). Said once; what the file holds now is read from its start.
            packed = [
                c
                for c in self.lineage.siblings()
                if c.packed and c.mtime > since and (c.dev, c.ino) != (cur.dev, cur.ino)
            ]
            if packed:
                why = f"truncated in place; the copy is {named(packed[-1])}"
                self.lineage.gap(cur.label(), 0, None, why)
                self.rotations += 1
                cur.opened_at = time.time()
        return False

    def close(self) -> None:
        """Close the open generation."""
        if self.cur is not None:
            self.cur.close()
            self.cur = None
