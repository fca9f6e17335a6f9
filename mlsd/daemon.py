"""Wiring for `mlsd run` and `mlsd scan`: lock, recovery, the follow loop, inotify.

The service lifecycle around it (signals, sd_notify, watchdog, reload, report) lives in
mlsd.service. The loop here stops when its `stop` event is set, between batches, so a stop
never leaves half a batch behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyinotify

from mlsd import __version__
from mlsd.checkpoint import CheckpointStore, StateLock
from mlsd.config import Config
from mlsd.csvlog import CsvJournal
from mlsd.enrich import Enricher
from mlsd.errors import InputError
from mlsd.follow import Follower
from mlsd.pipeline import Pipeline

log = logging.getLogger("mlsd.daemon")

COMMIT_GAP: Final = 0.02
"""Seconds between two commits of the live loop, at least: at most 50 fsync rounds a
second whatever the write pattern, for at most 20 ms more delay to a row."""
FULL_BATCH: Final = 1 << 20
"""A batch this big means reading is behind: no gap before the next one."""

_DIR_MASK: Final = (
    pyinotify.IN_CREATE | pyinotify.IN_MOVED_TO | pyinotify.IN_MOVED_FROM | pyinotify.IN_DELETE
)
_FILE_MASK: Final = (
    pyinotify.IN_MODIFY | pyinotify.IN_ATTRIB | pyinotify.IN_MOVE_SELF | pyinotify.IN_DELETE_SELF
)


@dataclass
class Session:
    """Everything `run` and `scan` share: the lock, the pipeline and the follower."""

    cfg: Config
    lock: StateLock
    pipeline: Pipeline
    follower: Follower
    enricher: Enricher
    overflows: int = 0
    commit_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held from reading a batch to its checkpoint: the follow loop and a report's
    catch-up (`drain`) must not interleave their batches."""


def open_session(cfg: Config, enricher: Enricher) -> Session:
    """Lock the state directory, reconcile CSV and checkpoint, place the reader."""
    lock = StateLock(cfg.paths.state_dir)
    lock.acquire()
    try:
        store = CheckpointStore(cfg.paths.state_dir)
        cp = store.load()
        pipeline = Pipeline(
            source=str(cfg.paths.mail_log),
            journal=CsvJournal(cfg.paths.csv),
            store=store,
            enrich=enricher,
            tz=cfg.log_tz(),
            date_format=cfg.csv.date_format,
            cap=cfg.csv.max_field_length,
        )
        pipeline.open(cp)
        follower = Follower(
            cfg.paths.mail_log, grace=cfg.follow.rotate_grace, rotated_dir=cfg.follow.rotated_dir
        )
        for attempt in range(10):
            try:
                how = follower.start(
                    cp, start_at=cfg.follow.start_at, import_rotated=cfg.follow.import_rotated
                )
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
            "mlsd %s started config=%s source=%s resume=%s generation=%s offset=%s",
            __version__,
            cfg.source_file,
            cfg.paths.mail_log,
            how,
            cur.label() if cur else "none",
            cur.offset if cur else 0,
        )
    except BaseException:
        lock.release()
        raise
    return Session(cfg, lock, pipeline, follower, enricher)


def close_session(s: Session) -> None:
    """The shutdown summary line, then close files and drop the lock."""
    c = s.pipeline.counters
    cur = s.follower.cur
    skipped = ",".join(f"{k.name.lower()}:{n}" for k, n in sorted(c.skipped.items(), key=str))
    log.info(
        "stopped lines_read=%d events_written=%d skipped=%s gaps=%d rotations=%d "
        "generation=%s position=%d",
        c.lines,
        c.events,
        skipped or "0",
        s.follower.gaps,
        s.follower.rotations,
        cur.label() if cur else "none",
        cur.offset if cur else 0,
    )
    s.follower.close()
    s.pipeline.close()
    s.lock.release()


async def step(s: Session) -> int | None:
    """Read, enrich and commit one batch: its size in bytes, None when nothing was ready."""
    async with s.commit_lock:
        batch = s.follower.next_batch()
        if batch is None:
            return None
        events = s.pipeline.parse(batch)
        s.enricher.maybe_reload()
        if s.enricher.needs_lookup and events:
            # Bounded by [dns] timeout: a dead resolver costs that, once per batch.
            await s.enricher.prefetch(events)
        rows = s.pipeline.commit(batch, events)
    log.debug(
        "batch committed rows=%d bytes=%d inode=%d offset=%d",
        rows,
        len(batch.data),
        batch.position.ino,
        batch.offset,
    )
    return batch.consumed


async def drain(s: Session) -> None:
    """Commit every batch that is ready now (before a report: the day is then complete)."""
    while await step(s) is not None:
        await asyncio.sleep(0)  # let signals and events in between batches


async def scan(s: Session) -> None:
    """Catch up to the end of the live file, committing as we go (`mlsd scan`)."""
    while True:
        await drain(s)
        wake_at = s.follower.wake_at
        if wake_at is None:
            if s.follower.problem is not None:
                # Nothing was read: a scan that exits 0 would look like an empty log.
                raise InputError(
                    f"{s.follower.problem}: mlsd reads a regular log file "
                    "([paths] mail_log); nothing was read"
                )
            return
        # A renamed file may still be written to: wait out its grace period, then seal it.
        await asyncio.sleep(max(0.0, wake_at - time.time()))


class _Wake(pyinotify.ProcessEvent):  # type: ignore[misc]
    """Every event only wakes the loop; IN_Q_OVERFLOW additionally forces a full rescan."""

    def my_init(self, *, session: Session, wake: asyncio.Event) -> None:
        self._session = session
        self._wake = wake

    def process_IN_Q_OVERFLOW(self, event: Any) -> None:  # pyinotify dispatches by this name
        del event
        self._session.overflows += 1
        log.warning("inotify queue overflow: events were lost, rescanning the files")
        self._wake.set()

    def process_default(self, event: Any) -> None:
        del event
        self._wake.set()


class _Watches:
    """The directory watch(es), and file watches on the open generation and the live file.

    The live file is watched even while an older generation is being finished, so that
    its first writes wake us when the old one may be sealed.
    """

    def __init__(self, wm: Any, logpath: Path) -> None:
        self.wm = wm
        self.logpath = logpath
        dirs = {logpath.parent, Path(os.path.realpath(logpath)).parent}
        for d in dirs:
            wm.add_watch(str(d), _DIR_MASK, quiet=True)
        self._files: dict[tuple[int, int], int] = {}

    def follow(self, follower: Follower) -> None:
        """Point the file watches at the current generation and the live file."""
        want: dict[tuple[int, int], Path] = {}
        cur = follower.cur
        if cur is not None:
            want[(cur.dev, cur.ino)] = cur.path
        try:
            st = os.stat(self.logpath)
            want.setdefault((st.st_dev, st.st_ino), self.logpath)
        except OSError:
            pass
        for ident in list(self._files):
            if ident not in want:
                wd = self._files.pop(ident)
                if self.wm.get_path(wd) is not None:  # else the kernel already dropped it
                    self.wm.rm_watch(wd, quiet=True)
        for ident, path in want.items():
            if ident not in self._files:
                got = self.wm.add_watch(str(path), _FILE_MASK, quiet=True)
                wd = next(iter(got.values()), -1) if got else -1
                if wd >= 0:
                    self._files[ident] = wd


def _snapshot(s: Session) -> tuple[object, ...]:
    """What the reconcile timer compares: a `stat` of the path and of the open file."""
    try:
        st = os.stat(s.cfg.paths.mail_log)
        live: tuple[object, ...] = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        live = ()
    cur = s.follower.cur
    mine: tuple[object, ...] = ()
    if cur is not None:
        fst = cur.stat()
        mine = (fst.st_size, fst.st_mtime_ns, cur.offset)
    return (live, mine)


async def follow_forever(s: Session, stop: asyncio.Event) -> None:
    """Follow until `stop` is set; every batch is committed before the next is read."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    wm = pyinotify.WatchManager()
    notifier = pyinotify.Notifier(wm, default_proc_fun=_Wake(session=s, wake=wake))
    watches = _Watches(wm, s.cfg.paths.mail_log)

    def readable() -> None:
        notifier.read_events()
        notifier.process_events()

    loop.add_reader(wm.get_fd(), readable)
    committed_at = -COMMIT_GAP
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
            # Sleep until an event, the end of a grace period, or the reconcile tick; a
            # tick with nothing changed (one stat) goes straight back to sleep.
            while not stop.is_set():
                timeout = s.cfg.follow.reconcile_interval  # read each time: SIGHUP may change it
                if s.follower.wake_at is not None:
                    timeout = min(timeout, max(0.0, s.follower.wake_at - time.time()) + 0.01)
                try:
                    await asyncio.wait_for(_first(wake, stop), timeout)
                    break
                except TimeoutError:
                    if s.follower.wake_at is not None or _snapshot(s) != seen:
                        break
    finally:
        loop.remove_reader(wm.get_fd())
        notifier.stop()


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
