"""What the follower knows of the generations around the one it reads, and the gaps.

Which generation comes after the one being read (`successor`), which were sealed here (never
to be read again, whatever their names say later), which were listed ahead of the reader
(so that one logrotate deletes unread is a gap, not silence), and the `gap` lines
themselves: where lines were lost, how many bytes, and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mlsd import logs
from mlsd.ingest.checkpoint import GenerationId, fingerprint
from mlsd.ingest.sources.file.generations import (
    Candidate,
    another,
    candidate,
    ident_of,
    matches,
    packed_reason,
    rotated_siblings,
)
from mlsd.ingest.sources.file.reading import Generation

log = logs.get("mlsd.follow")

SEALED_KEPT: Final = 8
"""Generations remembered as read to their end (here and in the checkpoint)."""
MTIME_SLACK: Final = 0.05
"""Seconds: file times come from the kernel's coarse clock, which may lag `time.time()` by
a tick, so a write just after a decision can carry a time just before it."""


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


class Lineage:
    """The rotated generations of one log as the follower last saw them, and its gaps."""

    def __init__(self, logpath: Path, rotated_dir: Path | None = None) -> None:
        self.logpath = logpath
        self.rotated_dir = rotated_dir
        self.gaps = 0
        self.gap_bytes = 0
        self._sealed: list[GenerationId] = []
        """The last generations sealed here (never to be read again)."""
        self._ahead: list[_Ahead] = []
        """The generations listed ahead of the reader at the last look (see `expect`)."""

    def siblings(self) -> list[Candidate]:
        """The rotated generations, oldest first (see `rotated_siblings`)."""
        return rotated_siblings(self.logpath, self.rotated_dir)

    def gap(self, what: str, offset: int, lost: int | None, why: str) -> None:
        """Count and say a loss: `what` generation, from `offset`, `lost` bytes (None: not
        known), and why."""
        self.gaps += 1
        if lost:
            self.gap_bytes += lost
        log.warning(
            "gap",
            generation=what,
            unread_from=offset,
            lost_bytes="unknown" if lost is None else lost,
            reason=why,
        )

    def sealed(self, cur: Generation) -> None:
        """`cur` was read to its end and let go: never read it again."""
        if cur.head:
            self._sealed = [*self._sealed[-(SEALED_KEPT - 1) :], cur.ident()]

    def sealed_ids(self) -> tuple[GenerationId, ...]:
        """The generations sealed here, for the checkpoint (Checkpoint.sealed)."""
        return tuple(self._sealed)

    def restore(self, sealed: tuple[GenerationId, ...]) -> None:
        """Know again, after a restart, the generations a previous run sealed."""
        self._sealed = list(sealed[-SEALED_KEPT:])

    def successor(
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
            later = [c for c in later if not self.was_sealed(c)]
            self.expect(later)
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

    def expect(self, gens: list[Candidate]) -> None:
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
            self.gap(a.label, 0, a.size, "deleted by logrotate before mlsd read it")
        self._ahead = left

    def was_sealed(self, c: Candidate) -> bool:
        """Whether `c` is one of the generations sealed here (read to its end)."""
        return any(matches(c, g) for g in self._sealed)


def _holds(cur: Generation, gen: GenerationId) -> bool:
    """Whether the open generation `cur` starts with the head recorded for `gen`."""
    return len(cur.head) >= gen.head_len and (
        fingerprint(cur.head[: gen.head_len]) == gen.head_sha256
    )


def named(c: Candidate) -> str:
    """The gap reason for a generation held only by `c`, which mlsd cannot read."""
    return f"{packed_reason(c.packed or '')} ({c.path})"
