"""The shipper: follows the CSV's committed rows into a sink, exactly once, never in the way.

It reads from the sink's stored position up to what the checkpoint has committed (rows
past it may still be cut back by recovery, so they are never shipped), in batches of
bounded size, and hands each to the sink, which stores rows and end position in one
transaction. A sink that fails is retried with capped exponential backoff (one log line
per outage, one when it resumes); meanwhile the rows wait in the CSV, on disk, and
following the mail log goes on: nothing here is awaited by the follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Final

from mlsd import logs
from mlsd.safefs import nofollow_opener
from mlsd.store.contract import Batch, Position, ReadsCsv, Row, Sink, Span, StoreConflict
from mlsd.store.csvrows import read_rows
from mlsd.store.handover import Leg, Moved, next_leg
from mlsd.store.journals import EVENTS, Journal
from mlsd.untrusted import terminal

log = logs.get("mlsd.store")

BATCH_ROWS: Final = 5000
"""Rows per transaction: bounded memory, and few commits (one fsync each) when catching up."""
FIRST_DELAY: Final = 0.5
MAX_DELAY: Final = 60.0
"""Backoff between attempts while a sink fails: doubling from FIRST_DELAY up to this."""
IN_CALL_BATCHES: Final = 20
"""Batches one call to a sink that reads the CSV itself (`ReadsCsv`) stores at most: the
shipper comes back to the event loop (a stop, a wake) at least that often."""
PROGRESS_EVERY: Final = 10.0
"""Seconds between two progress lines while a (re)build catches up."""

Committed = Callable[[], Position | None]
"""What the checkpoint has committed (None before the CSV is pinned)."""
OnMismatch = Callable[[Position, Position, str], Awaitable[None]]
"""Called with (stored, committed, why) when the sink's position is not on this CSV's
committed rows; must leave the sink with no position for the node (a rebuild), or raise."""


@dataclass(frozen=True, slots=True)
class Lag:
    """How far the sink is behind the CSV's committed rows (for `status` and STATUS=)."""

    bytes: int | None
    """Committed CSV bytes not yet stored; None while the sink's position is unknown."""
    rows: int | None
    """Committed rows not yet stored (counted at the last round); None while unknown."""
    last_time: datetime | None
    """The time of the last row shipped since start (None before the first)."""
    stored: Position | None
    """The sink's position as last seen."""
    error: str | None
    """Why the sink is not being written to right now (None when it is)."""


class Shipper:
    """Follows the committed rows of one CSV (one `Journal`: the failures CSV by default,
    or the logins CSV) into one sink for one node.

    `committed` is called each round; `wake` is set by the checkpoint (after each commit);
    `run` returns once `stop` is set and what was committed before is stored (or the sink
    fails: the rest waits for the next start).
    """

    def __init__(
        self,
        csv_path: Path,
        committed: Committed,
        sink: Sink,
        node: str,
        *,
        tz: tzinfo = UTC,
        journal: Journal = EVENTS,
        on_mismatch: OnMismatch | None = None,
        moved: Callable[[], list[Moved]] | None = None,
        batch_rows: int = BATCH_ROWS,
        max_delay: float = MAX_DELAY,
    ) -> None:
        self.csv_path = csv_path
        self.committed = committed
        self.sink = sink
        self.node = node
        self.tz = tz
        self.journal = journal
        self._first = len(journal.header)
        """The offset of the CSV's first row."""
        self.on_mismatch = on_mismatch
        self.moved = moved
        """The CSVs `mlsd reset` moved aside (mlsd.store.handover), for a sink that keeps
        its position across resets (the fleet); None: a moved CSV is a mismatch."""
        self._leg_path: Path | None = None
        """The CSV reset moved aside that was last said to be shipped on from."""
        self.batch_rows = batch_rows
        self.max_delay = max_delay
        self.wake = asyncio.Event()
        self.stored: Position | None = None
        """The sink's position as last read or written (None: not known yet)."""
        self.rows_shipped = 0
        self.skipped = 0
        """Committed lines that are not rows mlsd writes (a hand-edited CSV): passed over."""
        self.last_time: datetime | None = None
        self.error: str | None = None
        self._known = False
        """Whether `stored` is the sink's position now (False: ask it before the next batch)."""
        self._seen = False
        """Whether the sink's position was ever read (lag is unknown before)."""
        self._counted_to = 0
        self._rows_behind: int | None = None
        self._build: tuple[float, int] | None = None
        """(monotonic start, rows shipped at start) while shipping from the first row."""
        self._progress_at = 0.0

    # ---- status

    def lag(self) -> Lag:
        """How far behind the sink is, from what is known without touching it."""
        target = self.committed()
        stored = self.stored if self._seen else None
        behind: int | None = None
        if target is not None and self._seen:
            same = stored is not None and (stored.csv_dev, stored.csv_ino) == (
                target.csv_dev,
                target.csv_ino,
            )
            start = stored.csv_offset if stored is not None and same else self._first
            behind = max(0, target.csv_offset - start)
        return Lag(behind, self._rows_behind, self.last_time, stored, self.error)

    # ---- the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Ship until `stop` is set, then once more (what was committed before it)."""
        delay = FIRST_DELAY
        while True:
            self.wake.clear()
            final = stop.is_set()
            try:
                await self.ship_committed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure is an outage: retried, never fatal
                self._known = False  # ask the sink again: the failed write may have landed
                if self.error is None:
                    log.warning(
                        "store unavailable, rows wait in the CSV",
                        sink=self.sink.name,
                        error=terminal(str(exc) or type(exc).__name__),
                        retry_s=delay,
                    )
                self.error = terminal(str(exc) or type(exc).__name__)
                if final:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, self.max_delay)
                continue
            if self.error is not None:
                log.info("store resumed", sink=self.sink.name, stored=self._offset())
                self.error = None
            delay = FIRST_DELAY
            if final:
                return
            await first_set(self.wake, stop)

    async def ship_committed(self) -> int:
        """Store every row committed now (and any committed meanwhile); rows stored."""
        shipped = 0
        while True:
            target = self.committed()
            if target is None:
                return shipped
            leg = await self._start(target)
            start, until = leg.read_from, leg.until
            if start.csv_offset >= until.csv_offset:
                if leg.path == self.csv_path:
                    self._count_behind(start, target)  # at the end: nothing to count
                self._built()
                return shipped
            sink = self.sink
            if isinstance(sink, ReadsCsv) and leg.expect == start and leg.path == self.csv_path:
                # Read and stored batch after batch by the sink itself, in one call.
                shipped += await self._ship_span(sink, leg, target)
                continue
            # Counted and read in one worker call: while the follower catches up, the event
            # loop gets a turn only between its batches, and each call costs one.
            rows, end, skipped = await asyncio.to_thread(
                self._count_and_read, start, until, leg.path, target
            )
            await self.sink.append(self.node, Batch(rows, leg.expect, end))
            self.stored = end
            shipped += len(rows)
            self._account(len(rows), skipped, rows[-1].time if rows else None)

    async def _start(self, target: Position) -> Leg:
        """What to ship next toward `target`: from the sink's position on this CSV, from
        this CSV's first row (no position, or a rebuild), or on from a CSV `mlsd reset`
        moved aside."""
        if not self._known:
            self.stored = await self.sink.position(self.node)
            self._known = self._seen = True
        stored = self.stored
        if stored is None:
            if target.csv_offset > self._first:
                self._building()
            return self._live(Position(target.csv_dev, target.csv_ino, self._first), target)
        why = self._mismatch(stored, target)
        if why is None:
            return self._live(stored, target)
        leg = (
            None
            if self.moved is None
            else next_leg(self.moved(), stored, self.csv_path, target, self._first)
        )
        if leg is not None:
            if leg.path != self._leg_path:  # once per file
                self._leg_path = leg.path
                log.info(
                    "shipping on after mlsd reset",
                    sink=self.sink.name,
                    node=self.node,
                    csv=str(leg.path),
                    stored=_show(stored),
                )
            return leg
        if self.on_mismatch is None:
            raise StoreConflict(
                f"the {self.sink.name}'s position for {self.node} ({_show(stored)}) is not "
                f"on the CSV's committed rows ({_show(target)}): {why}"
            )
        await self.on_mismatch(stored, target, why)
        self._known = False
        self.stored = await self.sink.position(self.node)
        self._known = True
        if self.stored is not None:
            raise StoreConflict(f"the {self.sink.name} still holds a position after a rebuild")
        self._counted_to, self._rows_behind = 0, None
        self._building()
        return self._live(Position(target.csv_dev, target.csv_ino, self._first), target)

    def _live(self, start: Position, target: Position) -> Leg:
        """This CSV from `start` (the sink's position, or none yet) to the committed end."""
        return Leg(self.csv_path, start, target, start)

    def _mismatch(self, stored: Position, target: Position) -> str | None:
        if (stored.csv_dev, stored.csv_ino) != (target.csv_dev, target.csv_ino):
            return "another CSV file (moved aside by `mlsd reset`, or restored)"
        if stored.csv_offset > target.csv_offset:
            return "it is past the committed end of the CSV"
        if stored.csv_offset < self._first or not self._at_boundary(stored.csv_offset):
            return "it is not at a row boundary"
        return None

    def _at_boundary(self, offset: int) -> bool:
        if offset == self._first:
            return True
        with open(self.csv_path, "rb", opener=nofollow_opener) as fh:
            fh.seek(offset - 1)
            return fh.read(1) == b"\n"

    async def _ship_span(self, sink: ReadsCsv, leg: Leg, target: Position) -> int:
        """Up to IN_CALL_BATCHES batches of the live CSV toward `leg.until`, read and stored
        by the sink; the rows stored. An error leaves `stored` at the last batch stored, as
        the batch-by-batch path does, and is raised."""
        await asyncio.to_thread(self._count_behind, leg.read_from, target)
        span = Span(self.csv_path, leg.read_from, leg.until, self.batch_rows, IN_CALL_BATCHES,
                    self.tz)  # fmt: skip
        done = await sink.ship_span(self.node, span)
        self.stored = done.end
        self._account(done.rows, done.skipped, done.last_time)
        if done.error is not None:
            raise done.error
        return done.rows

    # ---- reading the CSV (in a worker thread)

    def _count_and_read(
        self, start: Position, until: Position, path: Path, target: Position
    ) -> tuple[list[Row], Position, int]:
        """In a worker: count what is behind (this CSV only), then read up to `batch_rows`
        rows of `path` from `start`, never past `until` (mlsd.store.csvrows)."""
        if path == self.csv_path:
            self._count_behind(start, target)
        return read_rows(path, self.journal, start, until, most=self.batch_rows, tz=self.tz)

    def _count_behind(self, start: Position, target: Position) -> None:
        """Rows between `start` and `target`, counting each byte once (newlines only)."""
        if self._rows_behind is None or self._counted_to < start.csv_offset:
            self._counted_to, self._rows_behind = start.csv_offset, 0
        if self._counted_to >= target.csv_offset:
            return
        with open(self.csv_path, "rb", opener=nofollow_opener) as fh:
            fh.seek(self._counted_to)
            left = target.csv_offset - self._counted_to
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    break
                self._rows_behind += chunk.count(b"\n")
                left -= len(chunk)
        self._counted_to = target.csv_offset - left

    def _account(self, rows: int, skipped: int, last: datetime | None) -> None:
        """Rows stored (and lines passed over) by one batch or span, the last one's time."""
        self.rows_shipped += rows
        if self._rows_behind is not None:
            self._rows_behind = max(0, self._rows_behind - rows - skipped)
        if last is not None:
            self.last_time = last
        if skipped:
            self.skipped += skipped
            log.warning(
                "csv lines that are not rows passed over",
                sink=self.sink.name,
                lines=skipped,
                reason="not a row mlsd writes (edited by hand?)",
            )
        build = self._build
        if build is not None and time.monotonic() - self._progress_at >= PROGRESS_EVERY:
            self._progress_at = time.monotonic()
            log.info(
                "store rebuilding",
                sink=self.sink.name,
                rows=self.rows_shipped - build[1],
                rows_left=self._rows_behind,
            )

    def _building(self) -> None:
        if self._build is None:
            self._build = (time.monotonic(), self.rows_shipped)
            self._progress_at = time.monotonic()

    def _built(self) -> None:
        build = self._build
        if build is None:
            return
        self._build = None
        log.info(
            "store rebuilt",
            sink=self.sink.name,
            rows=self.rows_shipped - build[1],
            seconds=round(time.monotonic() - build[0], 1),
        )

    def _offset(self) -> int:
        return self.stored.csv_offset if self.stored is not None else 0


def _show(p: Position) -> str:
    return f"dev {p.csv_dev} inode {p.csv_ino} offset {p.csv_offset}"


async def first_set(*events: asyncio.Event) -> None:
    """Return once any of `events` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
