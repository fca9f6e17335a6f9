"""Following the log across generations: where reading stands, rotation, catch-up, gaps.

Synchronous and event-free on purpose: the daemon calls `Follower.next_batch()` whenever
inotify (or the reconcile timer) says something may have changed, and `mlsd scan` calls it
until the live file is read to its end. The file system is the truth; events are hints.
Offsets always refer to one generation (see `mlsd.generations`) and sit at a line start,
so every batch ends on a newline and the checkpoint names the first unread byte. The one
exception is a line too long to parse (`generations.LINE_MAX`): once that much of it has
been seen it is counted, and the offset moves on inside it with `discard_line` set, so the
rest up to its newline is skipped without ever being held in memory or read twice.

The first start's decision is checkpointed before READY=1 (`FirstStart`); a restart
before the first commit carries it out instead of deciding again.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from mlsd.ingest.checkpoint import Checkpoint, FirstStart, GenerationId, Policy, fingerprint
from mlsd.ingest.sources.file.generations import (
    CHUNK,
    HEAD_MAX,
    LINE_MAX,
    OPEN_FLAGS,
    Candidate,
    Generation,
    Piece,
    another,
    candidate,
    file_kind,
    ident_of,
    matches,
    packed_reason,
    rotated_siblings,
)

log = logging.getLogger("mlsd.follow")

MTIME_SLACK: Final = 0.05
"""Seconds: file times come from the kernel's coarse clock, which may lag `time.time()` by
a tick, so a write just after a decision can carry a time just before it."""


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

    @property
    def consumed(self) -> int:
        """Bytes of the generation this batch moved past."""
        return len(self.data) if self.size < 0 else self.size


@dataclass(frozen=True, slots=True)
class _Ahead:
    """A rotated generation listed ahead of the reader and not read yet."""

    gen: GenerationId
    dev: int
    ino: int
    label: str
    size: int

    @classmethod
    def of(cls, c: Candidate) -> _Ahead:
        """What to remember of `c` to tell later whether it is still there."""
        return cls(ident_of(c), c.dev, c.ino, f"{c.path} ({c.dev}:{c.ino})", c.size)


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
        self.rotated_dir = rotated_dir
        self._clock = clock
        self.cur: Generation | None = None
        self.wake_at: float | None = None
        """Wall time at which a quiet period ends and `next_batch` has work again."""
        self.gaps = 0
        self.gap_bytes = 0
        self.rotations = 0
        self.first: FirstStart | None = None
        """The first-start decision taken (or resumed) by `start`, to be checkpointed."""
        self.problem: str | None = None
        """Why the live log cannot be read right now (not a regular file), for STATUS=."""
        self._waiting_said = False
        self._sealed: list[GenerationId] = []
        """The last generations sealed here (never to be read again)."""
        self._ahead: list[_Ahead] = []
        """The generations listed ahead of the reader at the last look (see `_expect`)."""

    def siblings(self) -> list[Candidate]:
        """The rotated generations, oldest first (see `rotated_siblings`)."""
        return rotated_siblings(self.logpath, self.rotated_dir)

    # ---- start

    def start(self, cp: Checkpoint | None, *, start_at: str, import_rotated: bool) -> str:
        """Place the reader from the checkpoint (or the first-start policy); returns how."""
        gen = None if cp is None else cp.generation
        if cp is None or gen is None:
            if cp is not None and cp.first_start is not None:
                return self._resume_first(cp.first_start)
            return self._first_start(start_at, import_rotated)
        discard = cp.discard_line
        live = candidate(self.logpath)
        if live is not None and (live.dev, live.ino) == (gen.dev, gen.ino) and matches(live, gen):
            if live.size >= cp.offset and self._at_line_start(live.path, cp.offset, discard):
                self.cur = Generation(live, cp.offset, discard=discard)
                return "checkpoint"
        sibs = self.siblings()
        found = [c for c in sibs if matches(c, gen) and not c.packed]
        if found:
            # Same inode first (rename rotation), then the newest copy that reaches the offset.
            found.sort(key=lambda c: ((c.dev, c.ino) == (gen.dev, gen.ino), c.size >= cp.offset))
            self.cur = Generation(found[-1], cp.offset, discard=discard)
            self._expect(sibs[sibs.index(found[-1]) + 1 :])
            log.info("catch-up generation=%s offset=%d", self.cur.label(), cp.offset)
            return "checkpoint (rotated)"
        damaged = [c for c in sibs if c.packed and matches(c, gen)]
        if damaged:
            # Its head still decompresses: it is there, cut short. What follows it is next.
            lost = damaged[-1]
            self._gap(f"{gen.dev}:{gen.ino}", cp.offset, None, _named(lost))
            self._place_first_of(sibs[sibs.index(lost) + 1 :], live)
            return "gap"
        # Where it was: the newest generation last written by then, or the oldest after
        # it. If one of those is a compression mlsd cannot read, that is the reason. "By
        # then" is the generation's own last write when the checkpoint has it: a position
        # pinned at start-up was committed after newer generations were written.
        then = cp.committed_at if cp.generation_mtime is None else cp.generation_mtime
        older = [c for c in sibs if c.mtime <= then]
        newer = [c for c in sibs if c.mtime > then]
        # A damaged .gz whose head is surely another generation's is not where it was:
        # it is a gap of its own (in `newer`), not the reason.
        packed = [c for c in (older[-1:] + newer[:1]) if c.packed and not another(c, gen)]
        why = _named(packed[0]) if packed else "not found among the rotated files"
        self._gap(f"{gen.dev}:{gen.ino}", cp.offset, None, why)
        self._place_first_of(newer, live, skip=packed[:1])
        return "gap"

    def _place_first_of(
        self, gens: list[Candidate], live: Candidate | None, skip: list[Candidate] | None = None
    ) -> None:
        """Read from the first readable of `gens` (an unreadable one is a gap), else live."""
        for c in gens:
            if c.packed:
                if c not in (skip or []):
                    self._gap(f"{c.path} ({c.dev}:{c.ino})", 0, c.size, packed_reason(c.packed))
                continue
            self.cur = Generation(c, 0)
            self._expect(gens[gens.index(c) + 1 :])
            return
        if live is not None:
            self.cur = Generation(live, 0)

    def _first_start(self, start_at: str, import_rotated: bool) -> str:
        live = candidate(self.logpath)
        policy: Policy = (
            "import_rotated" if import_rotated else "end" if start_at == "end" else "beginning"
        )
        # Taken before looking at the files: whatever is written after it is read. The
        # wall clock, not the injected one: it is compared with file times.
        self.first = FirstStart(
            policy=policy,
            decided_at=time.time(),
            dev=None if live is None else live.dev,
            ino=None if live is None else live.ino,
        )
        if import_rotated:
            old = self.siblings()
            if any(not c.packed for c in old):
                # Those older than the first readable one are gaps (packed), said now.
                self._place_first_of(old, None)
                return "beginning (importing rotated files)"
            for c in old:  # only unreadable ones: each is a gap, then the live log
                self._gap(f"{c.path} ({c.dev}:{c.ino})", 0, c.size, packed_reason(c.packed or ""))
        if live is None:
            self._say_nonregular()
            return "none (no log file yet)"
        offset = 0
        if start_at == "end" and live.size:
            fd = os.open(live.path, OPEN_FLAGS)
            try:
                tail = os.pread(fd, min(live.size, CHUNK), max(0, live.size - CHUNK))
            finally:
                os.close(fd)
            # Start after the last complete line: a partial one is finished by what follows.
            offset = live.size - len(tail) + tail.rfind(b"\n") + 1
        self.cur = Generation(live, offset)
        return start_at

    def _resume_first(self, first: FirstStart) -> str:
        """A restart before the first commit: carry out the recorded decision, not a new one.

        Nothing was committed, so nothing can be read twice. With `import_rotated` every
        generation still present is imported again. Otherwise the live log was empty or
        absent at the decision (else its head would be pinned in the checkpoint), so all
        it will ever hold was written after `decided_at`: read every generation last
        written since then, oldest first. (At worst this also reads a generation rotated
        just before the decision that its writer appended to after it.)
        """
        self.first = first
        how = f"first start of {first.policy} resumed"
        if first.policy == "import_rotated":
            self._first_start("beginning", True)
            self.first = first
            return how
        since = first.decided_at - MTIME_SLACK
        live = candidate(self.logpath)
        newer = [c for c in self.siblings() if c.mtime > since]
        self._place_first_of(newer, live)
        if self.cur is None:
            self._say_nonregular()
        return how

    @staticmethod
    def _at_line_start(path: Path, offset: int, discard: bool) -> bool:
        """Whether the byte before `offset` ends a line (inside an over-long one: does not)."""
        if offset == 0:
            return not discard
        fd = os.open(path, OPEN_FLAGS)
        try:
            before = os.pread(fd, 1, offset - 1)
        finally:
            os.close(fd)
        return bool(before) and (before == b"\n") != discard

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
                "log file is not a regular file source=%s type=%r; mlsd follows a log file "
                "(offsets, rotation): point [paths] mail_log at the file your syslog daemon "
                "writes",
                self.logpath,
                kind,
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
                        log.warning("waiting for the log file source=%s", self.logpath)
                        self._waiting_said = True
                    return None
                self.problem = None
                log.info("log file appeared source=%s", self.logpath)
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
            succ, unreadable = self._successor(cur, live_st)
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
                self._gap(cur.label(), cur.offset, None, "damaged or cut-short gzip file")
            self.rotations += 1
            # Open the next one before letting go of this one: if it vanished in between
            # (compressed just now), we stay sealed here and look again.
            if not self._open(succ, 0):
                return None
            for c in unreadable:
                self._gap(f"{c.path} ({c.dev}:{c.ino})", 0, c.size, packed_reason(c.packed or ""))
            log.info("rotation sealed=%s offset=%d next=%s", cur.label(), cur.offset, succ.path)
            if cur.head:
                self._sealed = [*self._sealed[-7:], cur.ident()]
            cur.close()
        self.wake_at = self._clock()  # the safety bound was hit: come back at once
        return None

    def _open(self, cand: Candidate, offset: int, *, discard: bool = False) -> bool:
        """Make `cand` current; False (retry soon) if it vanished since it was listed."""
        try:
            self.cur = Generation(cand, offset, discard=discard)
        except OSError as exc:
            # logrotate may delete a file between our listing and our open (compression).
            log.info("generation vanished path=%s error=%r; looking again", cand.path, str(exc))
            self.wake_at = self._clock() + 0.1
            return False
        return True

    def _batch(self, cur: Generation, piece: Piece, is_live: bool) -> Batch:
        if piece.torn:
            self._gap(
                cur.label(),
                cur.offset + piece.size - piece.torn,
                piece.torn,
                "unterminated last line of a rotated generation: the rest of it was written "
                "between copy and truncate, or never (a writer that died mid-line)",
            )
        cur.advance(piece)
        if piece.too_long:
            log.info(
                "line too long skipped generation=%s before=%d count=%d (lines of %d bytes "
                "or more are not read)",
                cur.label(),
                cur.offset,
                piece.too_long,
                LINE_MAX,
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
        )

    def _stat_live(self) -> os.stat_result | None:
        try:
            return os.stat(self.logpath)
        except OSError:
            return None

    def _successor(
        self, cur: Generation, live_st: os.stat_result | None
    ) -> tuple[Candidate | None, list[Candidate]]:
        """The generation that follows `cur`, once `cur` is no longer the live file, and
        the unreadable (packed) generations between them, each a gap once we move on."""
        sibs = self.siblings()
        self._say_deleted(sibs, cur)
        idx = next((i for i, c in enumerate(sibs) if (c.dev, c.ino) == (cur.dev, cur.ino)), None)
        if idx is None and cur.head:
            # Compressed (another inode) or deleted: find it by content. Newest first, as
            # every older generation has already been read.
            gen = cur.ident()
            idx = next((i for i in reversed(range(len(sibs))) if matches(sibs[i], gen)), None)
        later: list[Candidate] | None = None
        if idx is not None:
            later = sibs[idx + 1 :]
        elif not cur.head or cur.stat().st_nlink == 0:
            # Gone (deleted, e.g. `rotate N` exceeded, its last bytes read through our
            # descriptor), or empty and gone (an empty head matches anything): what was
            # last written after it comes after it, not only the live log. (A predecessor
            # sealed here may have been written after it, by a lagging writer: those
            # are known and left out.)
            since = cur.stat().st_mtime - MTIME_SLACK
            later = [c for c in sibs if c.mtime > since and c.size]
        if later is not None:
            # A generation sealed here was read to its end. Generations last written in
            # the same clock tick are ordered by their names, which logrotate changes at
            # every run: one sealed before may sort after this one now (an empty
            # generation created while its predecessor was still written to).
            later = [c for c in later if not self._was_sealed(c)]
            self._expect(later)
            unreadable: list[Candidate] = []
            for c in later:
                if not c.packed:
                    return c, unreadable
                unreadable.append(c)
            if unreadable and live_st is not None and live_st.st_size:
                return candidate(self.logpath), unreadable
        if live_st is None or live_st.st_size == 0:
            return None, []  # nothing newer has data yet: keep reading the old one
        return candidate(self.logpath), []

    def _expect(self, gens: list[Candidate]) -> None:
        """Remember the generations listed ahead of the reader, not read yet: if one of
        them is gone at the next look, logrotate deleted it unread (see `_say_deleted`)."""
        self._ahead = [_Ahead.of(c) for c in gens if c.head and not c.packed]

    def _say_deleted(self, sibs: list[Candidate], cur: Generation) -> None:
        """A gap for each generation listed ahead of the reader that is no longer there:
        `rotate N` deleted it while mlsd was behind (several rotations while it read one
        generation, or while it was catching up after a restart). Without this, a reader
        whose own generation was deleted too moves on to the oldest one left, and the
        lines of those in between are lost unsaid."""
        left: list[_Ahead] = []
        for a in self._ahead:
            if (a.dev, a.ino) == (cur.dev, cur.ino) or _holds(cur, a.gen):
                continue  # the one being read now
            # A .gz being written right now decompresses to less than its head: not
            # surely another one, so it is still there.
            if any(matches(c, a.gen) or (c.packed and not another(c, a.gen)) for c in sibs):
                left.append(a)
                continue
            self._gap(a.label, 0, a.size, "deleted by logrotate before mlsd read it")
        self._ahead = left

    def _was_sealed(self, c: Candidate) -> bool:
        """Whether `c` is one of the generations sealed here (read to its end)."""
        return any(matches(c, g) for g in self._sealed)

    def _truncated(self, cur: Generation) -> None:
        """copytruncate (or a plain truncate): the unread rest is in the copy, if anywhere."""
        gen = cur.ident()
        sibs = self.siblings()
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
            if not self._open(copy, cur.offset, discard=cur.discard):
                self._gap(cur.label(), cur.offset, None, "the copy vanished before it was read")
            return
        # The copy may exist in a compression mlsd cannot read (compress without delaycompress).
        packed = [c for c in sibs if c.packed and c.mtime >= cur.stat().st_mtime - 1]
        why = (
            f"truncated in place; the copy is {packed_reason(packed[-1].packed or '')} "
            f"({packed[-1].path})"
            if packed
            else "truncated in place and no copy found"
        )
        self._gap(cur.label(), cur.offset, None, why)
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
        for c in self.siblings():
            if c.packed or not c.head or c.mtime <= since or (c.dev, c.ino) == (cur.dev, cur.ino):
                continue
            common = min(len(c.head), len(now))
            if c.head[:common] == now[:common] or self._was_sealed(c):
                continue
            try:
                copy = Generation(c, 0)
            except OSError:
                self.wake_at = self._clock() + 0.1
                return None
            log.info(
                "rotation copytruncate generation=%s offset=0 copy=%s (empty when opened)",
                cur.label(),
                c.path,
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
                for c in self.siblings()
                if c.packed and c.mtime > since and (c.dev, c.ino) != (cur.dev, cur.ino)
            ]
            if packed:
                why = f"truncated in place; the copy is {_named(packed[-1])}"
                self._gap(cur.label(), 0, None, why)
                self.rotations += 1
                cur.opened_at = time.time()
        return False

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


def _holds(cur: Generation, gen: GenerationId) -> bool:
    """Whether the open generation `cur` starts with the head recorded for `gen`."""
    return len(cur.head) >= gen.head_len and (
        fingerprint(cur.head[: gen.head_len]) == gen.head_sha256
    )


def _named(c: Candidate) -> str:
    """The gap reason for a generation held only by `c`, which mlsd cannot read."""
    return f"{packed_reason(c.packed or '')} ({c.path})"
