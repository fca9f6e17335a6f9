"""Where the follower starts reading: from the checkpoint, or by the first-start policy.

A checkpointed generation is found by inode and head, live or rotated; one that is gone
or unreadable is a gap, and reading goes on with what was written after it. Without one,
the first start's decision (`FirstStart`) is taken, or, on a restart before the first
commit, the recorded one is carried out instead of deciding again.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Final, Literal

from mlsd import logs
from mlsd.config import StartAt
from mlsd.ingest.checkpoint import Checkpoint, FirstStart, Policy
from mlsd.ingest.sources.file.generations import (
    OPEN_FLAGS,
    Candidate,
    another,
    candidate,
    ident_of,
    matches,
    packed_reason,
)
from mlsd.ingest.sources.file.lineage import MTIME_SLACK, Lineage, named
from mlsd.ingest.sources.file.reading import CHUNK, Generation

log = logs.get("mlsd.follow")

Started = Literal[
    "checkpoint",
    "checkpoint (rotated)",
    "gap",
    "beginning",
    "end",
    "beginning (importing rotated files)",
    "none (no log file yet)",
    "first start of beginning resumed",
    "first start of end resumed",
    "first start of import_rotated resumed",
]
"""How a start placed the reader: the `start=` of the started line, and `gap` (the
checkpointed generation is gone: reading goes on after a gap) for the session to act on."""
_RESUMED: Final[dict[Policy, Started]] = {
    "beginning": "first start of beginning resumed",
    "end": "first start of end resumed",
    "import_rotated": "first start of import_rotated resumed",
}


class Placement:
    """One start: where it put the reader (`cur`), the first-start decision (`first`), and
    whether the live log is missing with nothing else to read (`absent`: say why)."""

    def __init__(self, lineage: Lineage, logpath: Path) -> None:
        self.lineage = lineage
        self.logpath = logpath
        self.cur: Generation | None = None
        self.first: FirstStart | None = None
        self.absent = False

    def start(self, cp: Checkpoint | None, *, start_at: StartAt, import_rotated: bool) -> Started:
        """Place the reader from the checkpoint (or the first-start policy); returns how."""
        gen = None if cp is None else cp.generation
        if cp is None or gen is None:
            if cp is not None and cp.first_start is not None:
                return self._resume_first(cp.first_start)
            return self._first_start(start_at, import_rotated)
        discard = cp.discard_line
        live = candidate(self.logpath)
        if live is not None and (live.dev, live.ino) == (gen.dev, gen.ino) and matches(live, gen):
            if live.size >= cp.offset and _at_line_start(live.path, cp.offset, discard):
                self.cur = Generation(live, cp.offset, discard=discard)
                return "checkpoint"
        sibs = self.lineage.siblings()
        found = [c for c in sibs if matches(c, gen) and not c.packed]
        if found:
            # Same inode first (rename rotation), then the newest copy that reaches the offset.
            found.sort(key=lambda c: ((c.dev, c.ino) == (gen.dev, gen.ino), c.size >= cp.offset))
            self.cur = Generation(found[-1], cp.offset, discard=discard)
            self.lineage.expect(sibs[sibs.index(found[-1]) + 1 :])
            log.info("catch-up", generation=self.cur.label(), offset=cp.offset)
            return "checkpoint (rotated)"
        damaged = [c for c in sibs if c.packed and matches(c, gen)]
        if damaged:
            # Its head still decompresses: it is there, cut short. What follows it is next.
            lost = damaged[-1]
            self.lineage.gap(f"{gen.dev}:{gen.ino}", cp.offset, None, named(lost))
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
        why = named(packed[0]) if packed else "not found among the rotated files"
        self.lineage.gap(f"{gen.dev}:{gen.ino}", cp.offset, None, why)
        self._place_first_of(newer, live, skip=packed[:1])
        return "gap"

    def _place_first_of(
        self, gens: list[Candidate], live: Candidate | None, skip: list[Candidate] | None = None
    ) -> None:
        """Read from the first readable of `gens` (an unreadable one is a gap), else live."""
        for c in gens:
            if c.packed:
                if c not in (skip or []):
                    self.lineage.gap(
                        f"{c.path} ({c.dev}:{c.ino})", 0, c.size, packed_reason(c.packed)
                    )
                continue
            self.cur = Generation(c, 0)
            self.lineage.expect(gens[gens.index(c) + 1 :])
            return
        if live is not None:
            self.cur = Generation(live, 0)

    def _first_start(self, start_at: StartAt, import_rotated: bool) -> Started:
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
            old = self.lineage.siblings()
            # What there is to import, by content: a restart before the first commit can
            # then tell which of them logrotate deleted in between (see _resume_first).
            listed = tuple(ident_of(c) for c in old if c.head and not c.packed)
            self.first = dataclasses.replace(self.first, rotated=listed)
            if any(not c.packed for c in old):
                # Those older than the first readable one are gaps (packed), said now.
                self._place_first_of(old, None)
                return "beginning (importing rotated files)"
            for c in old:  # only unreadable ones: each is a gap, then the live log
                self.lineage.gap(
                    f"{c.path} ({c.dev}:{c.ino})", 0, c.size, packed_reason(c.packed or "")
                )
        if live is None:
            self.absent = True
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

    def _resume_first(self, first: FirstStart) -> Started:
        """A restart before the first commit: carry out the recorded decision, not a new one.

        Nothing was committed, so nothing can be read twice. With `import_rotated` every
        generation still present is imported again. Otherwise the live log was empty or
        absent at the decision (else its head would be pinned in the checkpoint), so all
        it will ever hold was written after `decided_at`: read every generation last
        written since then, oldest first. (At worst this also reads a generation rotated
        just before the decision that its writer appended to after it.)
        """
        self.first = first
        how = _RESUMED[first.policy]
        if first.policy == "import_rotated":
            sibs = self.lineage.siblings()
            for gen in first.rotated:
                # Gone unread: neither there by content nor left in a form that cannot be
                # read (that one is a gap of its own, said below).
                if not any(matches(c, gen) or (c.packed and not another(c, gen)) for c in sibs):
                    self.lineage.gap(
                        f"{gen.dev}:{gen.ino}", 0, None, "deleted by logrotate before mlsd read it"
                    )
            self._first_start("beginning", True)
            self.first = first
            return how
        since = first.decided_at - MTIME_SLACK
        live = candidate(self.logpath)
        newer = [c for c in self.lineage.siblings() if c.mtime > since]
        self._place_first_of(newer, live)
        if self.cur is None:
            self.absent = True
        return how


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
