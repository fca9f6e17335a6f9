"""One batch of log lines → parse → enrich → CSV append → fdatasync → checkpoint; the counters.

The order of those writes is the exactly-once guarantee: rows reach the disk before the
checkpoint that says they exist, and recovery cuts the CSV back to what the checkpoint
says. Successful logins go the same way into the logins CSV, in the same checkpoint (both
files are synced before it), and each batch's failures and logins are handed to the
observer (the sentinel) once on disk, before the checkpoint: a crash in between hands the
batch over again when it is read again (the sentinel's alert ids make that harmless).
Nothing here retries a failed write: after a failed fsync the kernel may have dropped the
data, so the only safe answer is to stop and say so.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from operator import attrgetter

from mlsd import logs
from mlsd.alerts import Observation
from mlsd.errors import StateError
from mlsd.ingest.checkpoint import Checkpoint, CheckpointStore, FirstStart, GenerationId, now
from mlsd.ingest.csvlog import CsvJournal, LoginFormat, RowFormat
from mlsd.ingest.grammar import Skip, parse_block
from mlsd.ingest.logins import SubmitJoin, logins_of_block
from mlsd.ingest.observe import enrich_logins, observations
from mlsd.ingest.prefilter import success_lines
from mlsd.ingest.recovery import Pin, reconcile
from mlsd.ingest.sources.file.follow import Batch
from mlsd.logins import Login
from mlsd.rows import AuthFailure, Enrichment
from mlsd.untrusted import raw_line

log = logs.get("mlsd.pipeline")
# structlog hands records to this stdlib logger, which filters them by level (mlsd.logs):
# asked once per batch whether the lines not recorded are worth collecting for `log`.
_level = logging.getLogger("mlsd.pipeline")

Enrich = Callable[[AuthFailure], Enrichment]
Observe = Callable[[Sequence[Observation]], None]
SERVICES = 32
"""How many service names `Counters.by_service` keeps apart."""
_service = attrgetter("service")


@dataclass(slots=True)
class Counters:
    """What the pipeline has done since start (for STATUS= and the report header)."""

    lines: int = 0
    events: int = 0
    batches: int = 0
    skipped: Counter[Skip] = field(default_factory=Counter)
    last_event: datetime | None = None
    """The log time of the newest event written (for STATUS=)."""
    logins: int = 0
    """Logins and submissions committed (to the logins CSV when it is kept; to the
    observer either way)."""
    by_service: Counter[str] = field(default_factory=Counter)
    """Events written per service (for mlsd.metrics); at most SERVICES names, the rest under
    `other`: the service comes from the syslog tag, which any local user can forge."""

    def count_services(self, events: list[AuthFailure]) -> None:
        """Add `events` to `by_service`."""
        by = self.by_service
        # Tallied in C, then added once per name in the order names first appear: the same
        # counts as event by event (a name is kept or sent to `other` at its first event
        # and stays so, `by` only grows), without a Python round per event (4 ms in 1 M lines).
        for service, n in Counter(map(_service, events)).items():
            by[service if service in by or len(by) < SERVICES else "other"] += n


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
    """Turns batches into committed rows; owns the CSV journals and the checkpoint store."""

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
        logins: CsvJournal | None = None,
    ) -> None:
        """`logins`: the logins CSV (`[sentinel] record_logins`; None: no logins are
        written, the observer still gets them)."""
        self.source = source
        self.journal = journal
        self.logins = logins
        self.store = store
        self.enrich = enrich
        self.join = SubmitJoin()
        """smtpd logins waiting for qmgr's recipients, from batch to batch (memory only)."""
        self.observe: Observe | None = None
        """Handed each batch's failures and logins once they are on disk, before the
        checkpoint (the sentinel). None: logins are parsed only for the logins CSV."""
        self._logins_pin: Pin | None = None
        """The logins CSV as last checkpointed, carried over while it is not kept."""
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
        self.sealed: tuple[GenerationId, ...] = ()
        """The generations read to their end before the committed one (Checkpoint.sealed)."""
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
        if self.logins is not None:
            self.logins.open()
        if cp is None:
            for journal in self._journals():
                reconcile(journal, None, self.store.path, unpinned="does not exist")
            # Pin the CSVs before the first batch: a crash inside that batch then leaves
            # CSVs that are merely longer than the checkpoint says, which recovery cuts back.
            self._save(None, 0)
            return
        self.committed = cp
        self.position = None if cp.generation is None else (cp.generation, cp.offset)
        self.first_start = cp.first_start
        self.discard_line = cp.discard_line
        self.generation_mtime = cp.generation_mtime
        self.sealed = cp.sealed
        self.cursor = cp.cursor
        if cp.logins_dev is not None and cp.logins_ino is not None and cp.logins_length is not None:
            self._logins_pin = Pin(cp.logins_dev, cp.logins_ino, cp.logins_length)
        pin = Pin(cp.csv_dev, cp.csv_ino, cp.csv_length)
        save = reconcile(self.journal, pin, self.store.path, unpinned="")
        if self.logins is not None:
            save |= reconcile(
                self.logins,
                self._logins_pin,
                self.store.path,
                unpinned="does not pin it (no logins CSV was kept when it was written)",
            )
        if save:
            self._save(cp.generation, cp.offset)

    def _journals(self) -> list[CsvJournal]:
        return [self.journal] if self.logins is None else [self.journal, self.logins]

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

    def parse_logins(self, batch: Batch) -> list[Login]:
        """The batch's logins, in log order: none when nobody wants them (no logins CSV,
        no observer), so that a scan without them pays nothing."""
        if self.logins is None and self.observe is None:
            return []
        return logins_of_block(batch.data, batch.ref, self.tz, self.join, final=True)

    def commit(
        self,
        batch: Batch,
        events: list[AuthFailure] | None = None,
        logins: list[Login] | None = None,
    ) -> int:
        """Record one batch: rows appended and synced, then the checkpoint. Returns rows.

        `events` and `logins` are the batch's from `parse` and `parse_logins` (parsed here
        when not given).
        """
        data = batch.data
        if events is None:
            events = self.parse(batch)
        if logins is None:
            logins = self.parse_logins(batch)
        self._record(events, logins)
        self.discard_line = batch.discard_line
        self.generation_mtime = batch.mtime
        self.sealed = batch.sealed
        self._save(batch.position, batch.offset)
        c = self.counters
        c.lines += data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)
        if batch.too_long:
            c.lines += batch.too_long
            c.skipped[Skip.TOO_LONG] += batch.too_long
        c.events += len(events)
        c.logins += len(logins)
        c.count_services(events)
        c.batches += 1
        if events:
            c.last_event = events[-1].time
        return len(events)

    def commit_entries(
        self,
        events: list[AuthFailure],
        cursor: str,
        entries: int,
        logins: Sequence[Login] = (),
    ) -> int:
        """Record journal entries: rows appended and synced, then the checkpoint with the
        cursor of the last entry read (`entries` of them). Returns rows."""
        self._record(events, logins)
        self.cursor = cursor
        self._save(None, 0)
        c = self.counters
        c.lines += entries
        c.events += len(events)
        c.logins += len(logins)
        c.count_services(events)
        c.batches += 1
        if events:
            c.last_event = events[-1].time
        return len(events)

    def _record(self, events: list[AuthFailure], logins: Sequence[Login]) -> None:
        """Append and sync the batch's rows to both CSVs, then hand the batch to `observe`."""
        if not events and not logins:
            return
        extras = [self.enrich(ev) for ev in events]  # once: for the CSV and the observer
        enriched = enrich_logins(logins, self.enrich) if logins else []
        written = []
        if events:
            fmt = RowFormat(tz=self.tz, date_format=self.date_format, cap=self.cap)
            written.append((self.journal, fmt.encode_enriched(events, extras)))
        if enriched and self.logins is not None:
            lfmt = LoginFormat(tz=self.tz, date_format=self.date_format, cap=self.cap)
            written.append((self.logins, lfmt.encode(enriched)))
        journal = self.journal
        try:
            for journal, rows in written:
                journal.append(rows)
            for journal, _ in written:
                journal.sync()
        except OSError as exc:
            raise StateError(
                f"{journal.path}: writing rows failed: {exc.strerror}; stopping so "
                "that no row is lost or repeated (fix the disk, then start again)"
            ) from None
        if self.observe is not None:
            self.observe(observations(events, extras, enriched))

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
        if self.logins is not None:
            ls = self.logins.stat()
            self._logins_pin = Pin(ls.st_dev, ls.st_ino, ls.st_size)
        pin = self._logins_pin
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
            sealed=self.sealed,
            cursor=self.cursor,
            logins_dev=None if pin is None else pin.dev,
            logins_ino=None if pin is None else pin.ino,
            logins_length=None if pin is None else pin.length,
        )
        self.store.save(cp)
        self.committed = cp  # only once on disk: a failed save must not let a row out
        self.position = None if position is None else (position, offset)
        for wake in self.on_commit:
            wake()

    def close(self) -> None:
        """Close the CSVs."""
        self.skiplog.flush()
        self.journal.close()
        if self.logins is not None:
            self.logins.close()
