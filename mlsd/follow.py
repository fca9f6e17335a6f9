"""Following the log across generations: where reading stands, rotation, catch-up, gaps.

Synchronous and event-free on purpose: the daemon calls `Follower.next_batch()` whenever
inotify (or the reconcile timer) says something may have changed, and `mlsd scan` calls it
until the live file is read to its end. The file system is the truth; events are hints.
Offsets always refer to one generation (see `mlsd.generations`) and always sit at a line
start, so every batch ends on a newline and the checkpoint names the first unread byte.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlsd.checkpoint import Checkpoint, GenerationId
from mlsd.generations import (
    CHUNK,
    Candidate,
    Generation,
    candidate,
    matches,
    rotated_siblings,
)

log = logging.getLogger("mlsd.follow")


@dataclass(frozen=True, slots=True)
class Batch:
    """Complete lines read from one generation, and where reading resumes after them."""

    data: bytes
    ref: datetime
    """Reference time for year inference: the file's mtime if rotated, now if live."""
    position: GenerationId
    offset: int


class Follower:
    """Where reading stands, and how it moves from generation to generation."""

    def __init__(
        self,
        logpath: Path,
        *,
        grace: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.logpath = logpath
        self.grace = grace
        self._clock = clock
        self.cur: Generation | None = None
        self.wake_at: float | None = None
        """Wall time at which a quiet period ends and `next_batch` has work again."""
        self.gaps = 0
        self.gap_bytes = 0
        self.rotations = 0
        self._waiting_said = False

    # ---- start

    def start(self, cp: Checkpoint | None, *, start_at: str, import_rotated: bool) -> str:
        """Place the reader from the checkpoint (or the first-start policy); returns how."""
        gen = None if cp is None else cp.generation
        if cp is None or gen is None:
            return self._first_start(start_at, import_rotated)
        live = candidate(self.logpath)
        if live is not None and (live.dev, live.ino) == (gen.dev, gen.ino) and matches(live, gen):
            if live.size >= cp.offset and self._line_start(live.path, cp.offset):
                self.cur = Generation(live, cp.offset)
                return "checkpoint"
        found = [c for c in rotated_siblings(self.logpath) if matches(c, gen)]
        if found:
            # Same inode first (rename rotation), then the newest copy that reaches the offset.
            found.sort(key=lambda c: ((c.dev, c.ino) == (gen.dev, gen.ino), c.size >= cp.offset))
            self.cur = Generation(found[-1], cp.offset)
            log.info("catch-up generation=%s offset=%d", self.cur.label(), cp.offset)
            return "checkpoint (rotated)"
        self._gap(f"{gen.dev}:{gen.ino}", cp.offset, None, "not found among the rotated files")
        newer = [c for c in rotated_siblings(self.logpath) if c.mtime > cp.committed_at]
        if newer:
            self.cur = Generation(newer[0], 0)
        elif live is not None:
            self.cur = Generation(live, 0)
        return "gap"

    def _first_start(self, start_at: str, import_rotated: bool) -> str:
        if import_rotated:
            old = rotated_siblings(self.logpath)
            if old:
                self.cur = Generation(old[0], 0)
                return "beginning (importing rotated files)"
        live = candidate(self.logpath)
        if live is None:
            return "none (no log file yet)"
        offset = 0
        if start_at == "end" and live.size:
            fd = os.open(live.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                tail = os.pread(fd, min(live.size, CHUNK), max(0, live.size - CHUNK))
            finally:
                os.close(fd)
            # Start after the last complete line: a partial one is finished by what follows.
            offset = live.size - len(tail) + tail.rfind(b"\n") + 1
        self.cur = Generation(live, offset)
        return start_at

    @staticmethod
    def _line_start(path: Path, offset: int) -> bool:
        if offset == 0:
            return True
        with open(path, "rb") as fh:
            fh.seek(offset - 1)
            return fh.read(1) == b"\n"

    # ---- reading

    def next_batch(self) -> Batch | None:
        """The next complete lines to commit, or None when there is nothing to do yet."""
        self.wake_at = None
        for _ in range(64):  # each turn moves state forward; the bound is a safety net
            cur = self.cur
            if cur is None:
                live = candidate(self.logpath)
                if live is None:
                    if not self._waiting_said:
                        log.warning("waiting for the log file source=%s", self.logpath)
                        self._waiting_said = True
                    return None
                log.info("log file appeared source=%s", self.logpath)
                if not self._open(live, 0):
                    return None
                continue
            live_st = self._stat_live()
            is_live = live_st is not None and (live_st.st_dev, live_st.st_ino) == (cur.dev, cur.ino)
            if not cur.still_same():
                self._truncated(cur)
                continue
            data = cur.read(final=False)
            if data and not cur.still_same():
                continue  # truncated while we read: those bytes are judged again from the copy
            if data:
                return self._batch(cur, data, is_live)
            if is_live:
                return None
            succ = self._successor(cur, live_st)
            if succ is None:
                return None
            quiet_at = cur.stat().st_mtime + self.grace
            if not cur.gz and self._clock() < quiet_at:
                # The writer may still be appending to the renamed file: wait it out.
                self.wake_at = quiet_at
                return None
            data = cur.read(final=True)
            if data:
                return self._batch(cur, data, is_live)
            if cur.broken:
                self._gap(cur.label(), cur.offset, None, "damaged or cut-short gzip file")
            self.rotations += 1
            # Open the next one before letting go of this one: if it vanished in between
            # (compressed just now), we stay sealed here and look again.
            if not self._open(succ, 0):
                return None
            log.info("rotation sealed=%s offset=%d next=%s", cur.label(), cur.offset, succ.path)
            cur.close()
        self.wake_at = self._clock()  # the safety bound was hit: come back at once
        return None

    def _open(self, cand: Candidate, offset: int) -> bool:
        """Make `cand` current; False (retry soon) if it vanished since it was listed."""
        try:
            self.cur = Generation(cand, offset)
        except OSError as exc:
            # logrotate may delete a file between our listing and our open (compression).
            log.info("generation vanished path=%s error=%r; looking again", cand.path, str(exc))
            self.wake_at = self._clock() + 0.1
            return False
        return True

    def _batch(self, cur: Generation, data: bytes, is_live: bool) -> Batch:
        cur.advance(len(data))
        ref = datetime.now(UTC) if is_live else datetime.fromtimestamp(cur.stat().st_mtime, UTC)
        return Batch(data, ref, cur.ident(), cur.offset)

    def _stat_live(self) -> os.stat_result | None:
        try:
            return os.stat(self.logpath)
        except OSError:
            return None

    def _successor(self, cur: Generation, live_st: os.stat_result | None) -> Candidate | None:
        """The generation that follows `cur`, once `cur` is no longer the live file."""
        sibs = rotated_siblings(self.logpath)
        idx = next((i for i, c in enumerate(sibs) if (c.dev, c.ino) == (cur.dev, cur.ino)), None)
        if idx is None:
            # Compressed (another inode) or deleted: find it by content. Newest first, as
            # every older generation has already been read.
            gen = cur.ident()
            idx = next((i for i in reversed(range(len(sibs))) if matches(sibs[i], gen)), None)
        if idx is not None and idx + 1 < len(sibs):
            return sibs[idx + 1]
        if live_st is None or live_st.st_size == 0:
            return None  # nothing newer has data yet: keep reading the old one
        return candidate(self.logpath)

    def _truncated(self, cur: Generation) -> None:
        """copytruncate (or a plain truncate): the unread rest is in the copy, if anywhere."""
        gen = cur.ident()
        copies = [
            c
            for c in rotated_siblings(self.logpath)
            if matches(c, gen) and (c.dev, c.ino) != (cur.dev, cur.ino)
        ]
        self.rotations += 1
        live = candidate(self.logpath)
        if copies:
            copy = copies[-1]
            end = max(cur.offset, copy.size)
            if not copy.gz and cur.seen_size > end:
                # We saw bytes that the copy does not hold: they were written between
                # logrotate's copy and its truncate, and logrotate destroyed them.
                self._gap(
                    cur.label(), end, cur.seen_size - end, "written between copy and truncate"
                )
            log.info(
                "rotation copytruncate generation=%s offset=%d copy=%s",
                cur.label(),
                cur.offset,
                copy.path,
            )
            cur.close()
            self.cur = None
            if not self._open(copy, cur.offset):
                self._gap(cur.label(), cur.offset, None, "the copy vanished before it was read")
            return
        self._gap(cur.label(), cur.offset, None, "truncated in place and no copy found")
        cur.close()
        self.cur = None
        if live is not None:
            self._open(live, 0)

    def _gap(self, what: str, offset: int, lost: int | None, why: str) -> None:
        self.gaps += 1
        if lost:
            self.gap_bytes += lost
        log.warning(
            "gap generation=%s unread_from=%d lost_bytes=%s reason=%r",
            what,
            offset,
            "unknown" if lost is None else lost,
            why,
        )

    def close(self) -> None:
        """Close the open generation."""
        if self.cur is not None:
            self.cur.close()
            self.cur = None
