"""Wiring for `mlsd run` and `mlsd scan`: lock, recovery, one batch at a time, the follow loop.

The service lifecycle around it (signals, sd_notify, watchdog, reload, report) lives in
mlsd.app.service; the inotify watches in mlsd.ingest.sources.file.watch. The loop here stops
when its `stop` event is set, between batches, so a stop never leaves half a batch behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol

import pyinotify

from mlsd import __version__, logs
from mlsd.config import Config, StartAt
from mlsd.enrich.enricher import Enricher
from mlsd.errors import InputError
from mlsd.ingest.checkpoint import CheckpointStore, StateLock, journal_source
from mlsd.ingest.csvlog import CsvJournal
from mlsd.ingest.journalfeed import JournalFeed
from mlsd.ingest.pipeline import Pipeline
from mlsd.ingest.sources.file.follow import Follower
from mlsd.ingest.sources.file.watch import InotifyWake, Watches, snapshot
from mlsd.logins import LOGIN_HEADER

log = logs.get("mlsd.daemon")

COMMIT_GAP: Final = 0.02
"""Seconds between two commits of the live loop, at least: at most 50 fsync rounds a
second whatever the write pattern, for at most 20 ms more delay to a row."""
FULL_BATCH: Final = 1 << 20
"""A batch this big means reading is behind: no gap before the next one."""


class FirstStart(NamedTuple):
    """Where a first start (no checkpointed generation) places the reader."""

    start_at: StartAt
    """`beginning` or `end` of the live file."""
    import_rotated: bool
    """Whether the rotated generations are read first, oldest first."""


BACKLOG: Final = FirstStart("beginning", import_rotated=True)
"""`mlsd scan`'s first start: every generation there is, from the oldest."""
LIVE_ONLY: Final = FirstStart("beginning", import_rotated=False)
"""`mlsd scan --live-only`'s first start: the live file from its beginning."""


@dataclass
class Session:
    """Everything `run` and `scan` share: the lock, the pipeline and the follower."""

    cfg: Config
    lock: StateLock
    pipeline: Pipeline
    follower: Follower
    enricher: Enricher
    first_start: str | None = None
    """How a first start (no checkpointed generation) placed the reader (`resume=`), or
    None when reading went on from a checkpoint: the day's report says mlsd started then."""
    inotify: InotifyWake | None = None
    """The inotify reader while following (its `reads` count wake-ups)."""
    commit_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held from reading a batch to its checkpoint: the follow loop and a report's
    catch-up (`drain`) must not interleave their batches."""
    journal: JournalFeed | None = None
    """The journal's reader with `[source] type = journal` (the follower is then idle)."""

    @property
    def gaps(self) -> int:
        """The gaps said since start, whichever the source."""
        return self.follower.gaps if self.journal is None else self.journal.gaps

    @property
    def overflows(self) -> int:
        """How many times inotify's queue overflowed while following."""
        return 0 if self.inotify is None else self.inotify.overflows

    async def apply_reload(self, cfg: Config) -> None:
        """SIGHUP: the new config's enrichment, row format and rotation grace, all together
        and between two batches: a batch is read, parsed, enriched and committed under one
        config, never half under the old one (see `step`). `[paths]` stay as they are."""
        async with self.commit_lock:
            await self.enricher.reload(cfg)
            self.pipeline.reconfigure(
                tz=cfg.log_tz(), date_format=cfg.csv.date_format, cap=cfg.csv.max_field_length
            )
            self.follower.grace = cfg.follow.rotate_grace
            self.cfg = cfg


def open_session(
    cfg: Config, enricher: Enricher, *, first_start: FirstStart | None = None
) -> Session:
    """Lock the state directory, reconcile CSV and checkpoint, place the reader.

    `first_start` overrides `[follow] start_at` and `import_rotated` for a first start
    (no checkpointed generation): `mlsd scan` imports the backlog whatever `run` is set to do.
    """
    lock = StateLock(cfg.paths.state_dir)
    lock.acquire()
    try:
        store = CheckpointStore(cfg.paths.state_dir)
        cp = store.load()
        journal = cfg.source.kind == "journal"
        pipeline = Pipeline(
            source=(
                journal_source(cfg.source.journal_directory) if journal else str(cfg.paths.mail_log)
            ),
            journal=CsvJournal(cfg.paths.csv),
            store=store,
            enrich=enricher,
            tz=cfg.log_tz(),
            date_format=cfg.csv.date_format,
            cap=cfg.csv.max_field_length,
            logins=(
                CsvJournal(cfg.paths.logins(), LOGIN_HEADER, "logins CSV")
                if cfg.sentinel.record_logins
                else None
            ),
        )
        pipeline.open(cp)
        if journal:
            feed, first = JournalFeed.open(cfg, pipeline, enricher, cp)
            idle = Follower(cfg.paths.mail_log)
            return Session(
                cfg,
                lock,
                pipeline,
                idle,
                enricher,
                first_start=first,
                commit_lock=feed.lock,
                journal=feed,
            )
        follower = Follower(
            cfg.paths.mail_log, grace=cfg.follow.rotate_grace, rotated_dir=cfg.follow.rotated_dir
        )
        for attempt in range(10):
            try:
                start_at, import_rotated = first_start or (
                    cfg.follow.start_at,
                    cfg.follow.import_rotated,
                )
                how = follower.start(cp, start_at=start_at, import_rotated=import_rotated)
                break
            except FileNotFoundError:
                # A file was renamed or deleted between listing and opening (logrotate is
                # running right now): place the reader again from a fresh look.
                if attempt == 9:
                    raise
                time.sleep(0.1)
        cur = follower.cur
        pinned = cur is not None and bool(cur.head)
        if follower.first is not None:
            # The first-start decision goes to disk before READY=1, with the generation it
            # chose when that has a head to recognise it by (else its time: see FirstStart),
            # so that a restart carries it out instead of deciding again.
            if cur is not None and pinned:
                pipeline.mark(
                    cur.ident(), cur.offset, first_start=follower.first, mtime=cur.stat().st_mtime
                )
            else:
                pipeline.mark(None, 0, first_start=follower.first)
        elif how == "gap" and cur is not None and pinned:
            pipeline.mark(cur.ident(), cur.offset, mtime=cur.stat().st_mtime)
        log.info(
            f"mlsd {__version__} started",
            config=str(cfg.source_file),
            source=str(cfg.paths.mail_log),
            resume=how,
            generation=cur.label() if cur else "none",
            offset=cur.offset if cur else 0,
        )
    except BaseException:
        lock.release()
        raise
    first = how if cp is None or cp.generation is None else None
    return Session(cfg, lock, pipeline, follower, enricher, first_start=first)


def close_session(s: Session) -> None:
    """The shutdown summary line, then close files and drop the lock."""
    c = s.pipeline.counters
    cur = s.follower.cur
    skipped = ",".join(f"{k.name.lower()}:{n}" for k, n in sorted(c.skipped.items(), key=str))
    if s.journal is not None:
        s.journal.say_stopped(skipped or "0")
    else:
        log.info(
            "stopped",
            lines_read=c.lines,
            events_written=c.events,
            skipped=skipped or "0",
            gaps=s.follower.gaps,
            rotations=s.follower.rotations,
            generation=cur.label() if cur else "none",
            position=cur.offset if cur else 0,
        )
    s.follower.close()
    s.pipeline.close()
    s.lock.release()


async def step(s: Session) -> int | None:
    """Read, enrich and commit one batch: its size in bytes, None when nothing was ready.

    The batch's one owner: under `commit_lock` from the read to the checkpoint, so that
    neither a report's catch-up nor a reload (`Session.apply_reload`) lands in its middle.
    """
    async with s.commit_lock:
        batch = s.follower.next_batch()
        if batch is None:
            return None
        events = s.pipeline.parse(batch)
        logins = s.pipeline.parse_logins(batch)
        s.enricher.maybe_reload()
        if s.enricher.needs_lookup and (events or logins):
            # Bounded by [dns] timeout: a dead resolver costs that, once per batch.
            await s.enricher.prefetch([*events, *logins])
        rows = s.pipeline.commit(batch, events, logins)
    log.debug(
        "batch committed",
        rows=rows,
        bytes=len(batch.data),
        inode=batch.position.ino,
        offset=batch.offset,
    )
    return batch.consumed


async def drain(s: Session) -> None:
    """Commit every batch that is ready now (before a report: the day is then complete)."""
    if s.journal is not None:
        async with s.commit_lock:  # the journal's batch in progress is committed
            return
    while await step(s) is not None:
        await asyncio.sleep(0)  # let signals and events in between batches


@dataclass(slots=True)
class Imported:
    """What `mlsd scan` read from one generation."""

    generation: str
    lines: int = 0
    rows: int = 0


class ScanWatcher(Protocol):
    """Told where `scan` stands (a progress display): before the first batch, after each
    batch committed, and done before its summary."""

    def batch(self, follower: Follower) -> None:
        """`follower` says where reading stands."""

    def done(self) -> None:
        """Reading is over (the summary lines follow)."""


async def scan(s: Session, watcher: ScanWatcher | None = None) -> list[Imported]:
    """Catch up to the end of the live file, committing as we go (`mlsd scan`); says what it
    read from each generation, oldest first, and in all."""
    read: dict[str, Imported] = {}
    c = s.pipeline.counters
    if s.journal is not None:
        await s.journal.scan()
        log.info("scan done", source=str(s.pipeline.source), lines=c.lines, rows=c.events)
        return [Imported(s.pipeline.source, c.lines, c.events)]
    if watcher is not None:
        watcher.batch(s.follower)
    while True:
        while True:
            lines, events = c.lines, c.events
            if await step(s) is None:
                break
            # A batch comes from one generation, the follower's current one once it returns.
            cur = s.follower.cur
            label = cur.label() if cur is not None else "none"
            got = read.setdefault(label, Imported(label))
            got.lines += c.lines - lines
            got.rows += c.events - events
            if watcher is not None:
                watcher.batch(s.follower)
            await asyncio.sleep(0)  # let signals in between batches
        wake_at = s.follower.wake_at
        if wake_at is None:
            if s.follower.problem is not None:
                # Nothing was read: a scan that exits 0 would look like an empty log.
                raise InputError(
                    f"{s.follower.problem}: mlsd reads a regular log file "
                    "([paths] mail_log); nothing was read"
                )
            break
        # A renamed file may still be written to: wait out its grace period, then seal it.
        await asyncio.sleep(max(0.0, wake_at - time.time()))
    if watcher is not None:
        watcher.done()
    out = list(read.values())
    for got in out:
        log.info("scan read", generation=got.generation, lines=got.lines, rows=got.rows)
    log.info(
        "scan done",
        files=len(out),
        lines=sum(g.lines for g in out),
        rows=sum(g.rows for g in out),
    )
    return out


async def follow_forever(s: Session, stop: asyncio.Event) -> None:
    """Follow until `stop` is set; every batch is committed before the next is read."""
    if s.journal is not None:
        await s.journal.follow(stop)
        return
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    wm = pyinotify.WatchManager()
    watches = Watches(wm, s.cfg.paths.mail_log)
    s.inotify = inotify = InotifyWake(loop, wm.get_fd(), wake)
    committed_at = -COMMIT_GAP
    woke_at = -COMMIT_GAP
    try:
        while not stop.is_set():
            wake.clear()
            # Taken before reading: a change during the drain is then seen at the next tick.
            seen = _snapshot(s)
            while not stop.is_set():
                # A log written line by line wakes us once per line, and every commit
                # costs an fdatasync and a checkpoint fsync: wait out the rest of
                # COMMIT_GAP since the last small commit, so that the lines of a busy
                # moment share one. Full batches (catching up) go on at once.
                rest = committed_at + COMMIT_GAP - time.monotonic()
                if rest > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), rest)
                    if stop.is_set():
                        break
                size = await step(s)
                if size is None:
                    break
                committed_at = time.monotonic() if size < FULL_BATCH else -COMMIT_GAP
                await asyncio.sleep(0)  # let signals and events in between batches
            watches.follow(s.follower)
            # Coalesce wake-ups: at most one round per COMMIT_GAP however many events come
            # (a flood of them waits in the kernel's queue meanwhile, and is one read).
            rest = woke_at + COMMIT_GAP - time.monotonic()
            if rest > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), rest)
            inotify.arm()
            # Sleep until an event, the end of a grace period, or the reconcile tick; a
            # tick with nothing changed (one stat) goes straight back to sleep.
            while not stop.is_set():
                timeout = s.cfg.follow.reconcile_interval  # read each time: SIGHUP may change it
                if s.follower.wake_at is not None:
                    timeout = min(timeout, max(0.0, s.follower.wake_at - time.time()) + 0.01)
                try:
                    await asyncio.wait_for(_first(wake, stop), timeout)
                    woke_at = time.monotonic()
                    break
                except TimeoutError:
                    if s.follower.wake_at is not None or _snapshot(s) != seen:
                        break
    finally:
        inotify.disarm()
        wm.close()


def _snapshot(s: Session) -> tuple[object, ...]:
    # s.cfg, not a copy taken at the start: a reload replaces it.
    return snapshot(s.cfg.paths.mail_log, s.follower)


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
