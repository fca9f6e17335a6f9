"""One batch of log lines → parse → enrich → CSV append → fdatasync → checkpoint; the counters.

The order of those writes is the exactly-once guarantee: rows reach the disk before the
checkpoint that says they exist, and recovery cuts the CSV back to what the checkpoint
says. Nothing here retries a failed write: after a failed fsync the kernel may have dropped
the data, so the only safe answer is to stop and say so.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from mlsd import logs
from mlsd.errors import StateError
from mlsd.ingest.checkpoint import Checkpoint, CheckpointStore, FirstStart, GenerationId, now
from mlsd.ingest.csvlog import CsvJournal, RowFormat
from mlsd.ingest.grammar import Skip, parse_block
from mlsd.ingest.prefilter import success_lines
from mlsd.ingest.sources.file.follow import Batch
from mlsd.rows import HEADER, AuthFailure, Enrichment
from mlsd.untrusted import raw_line

log = logs.get("mlsd.pipeline")
# structlog hands records to this stdlib logger, which filters them by level (mlsd.logs):
# asked once per batch whether the lines not recorded are worth collecting for `log`.
_level = logging.getLogger("mlsd.pipeline")

Enrich = Callable[[AuthFailure], Enrichment]


@dataclass(slots=True)
class Counters:
    """What the pipeline has done since start (for STATUS= and the report header)."""

    lines: int = 0
    events: int = 0
    batches: int = 0
    skipped: Counter[Skip] = field(default_factory=Counter)
    last_event: datetime | None = None
    """The log time of the newest event written (for STATUS=)."""


class SkipLog:
    """At debug level: each line that looked like a login attempt but is not recorded, and
    why, at most `per_second` a second; the rest are counted in one summary line, so a
    flood of garbage cannot fill the journal."""

    def __init__(self, per_second: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._second = -1
        self._shown = 0
        self.suppressed = 0

    def emit(self, rejected: list[tuple[Skip, bytes]]) -> None:
        """Log these (reason, line) pairs, within the rate limit."""
        for reason, line in rejected:
            second = int(self._clock())
            if second != self._second:
                self.flush()
                self._second, self._shown = second, 0
            if self._shown < self.per_second:
                self._shown += 1
                log.debug("not recorded", reason=reason.value, line=raw_line(line, 300))
            else:
                self.suppressed += 1

    def flush(self) -> None:
        """Say how many lines the rate limit kept out of the log."""
        if self.suppressed:
            log.debug(
                f"not recorded: {self.suppressed} more lines not shown "
                f"(at most {self.per_second} a second)"
            )
            self.suppressed = 0


class Pipeline:
    """Turns batches into committed rows; owns the CSV journal and the checkpoint store."""

    def __init__(
        self,
        *,
        source: str,
        journal: CsvJournal,
        store: CheckpointStore,
        enrich: Enrich,
        tz: tzinfo,
        date_format: str,
        cap: int,
    ) -> None:
        self.source = source
        self.journal = journal
        self.store = store
        self.enrich = enrich
        self.tz = tz
        self.date_format = date_format
        self.cap = cap
        self.counters = Counters()
        self.skiplog = SkipLog()
        self.position: tuple[GenerationId, int] | None = None
        """The last committed (generation, offset); None before the first batch."""
        self.first_start: FirstStart | None = None
        """The first-start decision, carried in every checkpoint once taken."""
        self.discard_line = False
        """The last committed offset is inside an over-long line (Checkpoint.discard_line)."""
        self.generation_mtime: float | None = None
        """The committed generation's last-write time (Checkpoint.generation_mtime)."""
        self.cursor: str | None = None
        """A journal source's last committed cursor (Checkpoint.cursor)."""
        self.committed: Checkpoint | None = None
        """The last checkpoint written or loaded: its CSV length is what readers of the CSV
        that must see only committed rows (the event store) may read up to."""
        self.on_commit: list[Callable[[], None]] = []
        """Called after each checkpoint is written (the store's shipper is woken)."""

    def reconfigure(self, *, tz: tzinfo, date_format: str, cap: int) -> None:
        """A reload's zone for stamps without one and row format (between two batches)."""
        self.tz = tz
        self.date_format = date_format
        self.cap = cap

    def open(self, cp: Checkpoint | None) -> None:
        """Open the CSV and reconcile it with the checkpoint (cut back, or refuse loudly)."""
        if cp is not None and cp.source != self.source:
            raise StateError(
                f"{self.store.path}: the checkpoint is for {cp.source}, not {self.source}; "
                "use another state_dir for another log, or move the checkpoint aside"
            )
        self.journal.open()
        st = self.journal.stat()
        size = st.st_size
        if cp is None:
            if size > len(HEADER):
                raise StateError(
                    f"{self.journal.path}: the CSV already holds rows but {self.store.path} "
                    "does not exist, so mlsd cannot tell which log lines they came from; "
                    "move the CSV aside (or restore the checkpoint) and start again"
                )
            # Pin the CSV before the first batch: a crash inside that batch then leaves a
            # CSV that is merely longer than the checkpoint says, which recovery cuts back.
            self._save(None, 0)
            return
        self.committed = cp
        self.position = None if cp.generation is None else (cp.generation, cp.offset)
        self.first_start = cp.first_start
        self.discard_line = cp.discard_line
        self.generation_mtime = cp.generation_mtime
        self.cursor = cp.cursor
        if (st.st_dev, st.st_ino) != (cp.csv_dev, cp.csv_ino):
            if size == len(HEADER):
                log.warning(
                    "csv is new, continuing from the checkpoint",
                    path=str(self.journal.path),
                    reason="the checkpointed one was moved away",
                )
                self._save(cp.generation, cp.offset)
                return
            raise StateError(
                f"{self.journal.path}: this is not the CSV the checkpoint was written with "
                f"(it had inode {cp.csv_ino}, this one {st.st_ino}); move it aside and start "
                "again, or restore the original"
            )
        if size > cp.csv_length:
            # Rows of a batch whose checkpoint never landed: the log gives them again.
            self.journal.truncate(cp.csv_length)
            log.warning(
                "csv cut back",
                path=str(self.journal.path),
                **{"from": size, "to": cp.csv_length},  # `from` is a keyword
                reason="uncommitted rows; they are read again",
            )
        elif size < cp.csv_length:
            raise StateError(
                f"{self.journal.path}: the CSV is {size} bytes but the checkpoint says "
                f"{cp.csv_length} were committed: rows were removed behind mlsd's back; "
                "restore the CSV, or move it and the checkpoint aside to start over"
            )

    def parse(self, batch: Batch) -> list[AuthFailure]:
        """The batch's events (skips counted); for an enrichment that must see them first."""
        # Batch data ends without a newline only for a sealed file's last line.
        skipped = self.counters.skipped
        if not _level.isEnabledFor(logging.DEBUG):
            return parse_block(batch.data, batch.ref, self.tz, skipped, final=True)
        rejected: list[tuple[Skip, bytes]] = []
        events = parse_block(batch.data, batch.ref, self.tz, skipped, final=True, rejected=rejected)
        rejected += [(Skip.SUCCESS, line) for line in success_lines(batch.data)]
        self.skiplog.emit(rejected)
        return events

    def commit(self, batch: Batch, events: list[AuthFailure] | None = None) -> int:
        """Record one batch: rows appended and synced, then the checkpoint. Returns rows.

        `events` are the batch's from `parse` (parsed here when not given).
        """
        data = batch.data
        if events is None:
            events = self.parse(batch)
        self._append(events)
        self.discard_line = batch.discard_line
        self.generation_mtime = batch.mtime
        self._save(batch.position, batch.offset)
        c = self.counters
        c.lines += data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)
        if batch.too_long:
            c.lines += batch.too_long
            c.skipped[Skip.TOO_LONG] += batch.too_long
        c.events += len(events)
        c.batches += 1
        if events:
            c.last_event = events[-1].time
        return len(events)

    def commit_entries(self, events: list[AuthFailure], cursor: str, entries: int) -> int:
        """Record journal entries: rows appended and synced, then the checkpoint with the
        cursor of the last entry read (`entries` of them). Returns rows."""
        self._append(events)
        self.cursor = cursor
        self._save(None, 0)
        c = self.counters
        c.lines += entries
        c.events += len(events)
        c.batches += 1
        if events:
            c.last_event = events[-1].time
        return len(events)

    def _append(self, events: list[AuthFailure]) -> None:
        if not events:
            return
        rows = RowFormat(tz=self.tz, date_format=self.date_format, cap=self.cap).encode(
            events, self.enrich
        )
        try:
            self.journal.append(rows)
            self.journal.sync()
        except OSError as exc:
            raise StateError(
                f"{self.journal.path}: writing rows failed: {exc.strerror}; stopping so "
                "that no row is lost or repeated (fix the disk, then start again)"
            ) from None

    def mark(
        self,
        position: GenerationId | None,
        offset: int,
        *,
        first_start: FirstStart | None = None,
        discard_line: bool = False,
        mtime: float | None = None,
    ) -> None:
        """Checkpoint a position without rows: the first-start decision (before READY=1),
        or where a gap left the reader. `mtime`: the generation's last-write time."""
        if first_start is not None:
            self.first_start = first_start
        self.discard_line = discard_line
        self.generation_mtime = mtime
        self._save(position, offset)

    def _save(self, position: GenerationId | None, offset: int) -> None:
        st = self.journal.stat()
        cp = Checkpoint(
            source=self.source,
            generation=position,
            offset=offset,
            csv_dev=st.st_dev,
            csv_ino=st.st_ino,
            csv_length=st.st_size,
            committed_at=now(),
            first_start=self.first_start,
            discard_line=self.discard_line,
            generation_mtime=self.generation_mtime,
            cursor=self.cursor,
        )
        self.store.save(cp)
        self.committed = cp  # only once on disk: a failed save must not let a row out
        self.position = None if position is None else (position, offset)
        for wake in self.on_commit:
            wake()

    def close(self) -> None:
        """Close the CSV."""
        self.skiplog.flush()
        self.journal.close()
