"""Reading the systemd journal into the CSV, exactly once: what `mlsd run` and `mlsd scan` do
with `[source] type = journal`.

Each batch of entries journalctl wrote is parsed (the file source's grammar: the program,
host and time come from the entry's fields), its rows appended and `fdatasync`ed, then the
checkpoint replaced with the cursor of the batch's last entry: a file offset's guarantee,
with a cursor. journalctl is started from that cursor with `--cursor`, which shows the
cursor's entry itself first, and that entry is dropped here. `--after-cursor` would drop
it inside journalctl, whatever entry it is: when the checkpointed entry is gone (vacuumed,
its files deleted), journalctl starts at the next closest one instead, and `--after-cursor`
would skip that one unsaid. Here a first entry that is not the checkpointed one is read,
and said to be a gap: the entries logged between the two may be gone with their files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, Final

from mlsd import __version__, logs
from mlsd.config import Config
from mlsd.enrich.enricher import Enricher
from mlsd.errors import InputError
from mlsd.ingest.checkpoint import Checkpoint, FirstStart
from mlsd.ingest.grammar import Skip
from mlsd.ingest.pipeline import Pipeline
from mlsd.ingest.sources.journal import (
    CHUNK,
    MACHINE_ID,
    JournalCtl,
    argv,
    cursor_time,
    entry_of,
    entry_time,
    last_cursor,
    last_entry,
    machine_of,
    same_entry,
)
from mlsd.ingest.sources.journalevents import events_of, logins_of
from mlsd.journalmatch import Matcher
from mlsd.rows import AuthFailure

log = logs.get("mlsd.journal")

COMMIT_GAP: Final = 0.02
"""Seconds between two commits while following, at least (as for files: at most 50 fsync
rounds a second, for at most 20 ms more delay to a row)."""
BACKOFF_MIN: Final = 0.5
BACKOFF_MAX: Final = 30.0
"""Seconds before journalctl is started again after it exited: doubled at each exit that
read nothing, back to the minimum after one that did."""


class JournalFeed:
    """The journal's reader: journalctl children, batches committed, gaps and problems said."""

    def __init__(
        self, cfg: Config, pipeline: Pipeline, enricher: Enricher, lock: asyncio.Lock
    ) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        self.enricher = enricher
        self.lock = lock
        self.matcher = Matcher(cfg.source.journal_match)
        self.directory = cfg.source.journal_directory
        self.machine_id = machine_of(self.directory)
        """This machine's id, for the system journal (see `argv`)."""
        if self.directory is None and self.machine_id is None:
            log.warning(
                "journal: the machine id cannot be read",
                path=str(MACHINE_ID),
                consequence="journalctl follows only the current boot, so after a reboot "
                "entries of the boot before that were not read yet are missed",
            )
        self.gaps = 0
        self.restarts = 0
        self.problem: str | None = None
        """Why the journal cannot be read right now (cause and fix), for STATUS=."""
        self.decide_end = False
        """A first start at the journal's end not taken yet (see `place`)."""
        self._expect: str | None = None
        """The cursor the running journalctl must show first (see the module's docstring)."""
        self._committed_at = -COMMIT_GAP

    # ---- start

    @classmethod
    def open(
        cls, cfg: Config, pipeline: Pipeline, enricher: Enricher, cp: Checkpoint | None
    ) -> tuple[JournalFeed, str | None]:
        """The reader, placed; and how a first start placed it (None: from a checkpoint)."""
        feed = cls(cfg, pipeline, enricher, asyncio.Lock())
        how = feed.place(cp, cfg.follow.start_at)
        log.info(
            f"mlsd {__version__} started",
            config=str(cfg.source_file),
            source=str(pipeline.source),
            resume=how,
            cursor=pipeline.cursor or "none",
        )
        return feed, (how if cp is None or cp.cursor is None else None)

    def place(self, cp: Checkpoint | None, start_at: str) -> str:
        """Where reading starts: after the checkpointed cursor, or by the first-start policy
        (`start_at`: the journal's beginning or end). Returns how, for the start-up line."""
        if cp is not None and (cp.cursor is not None or cp.first_start is not None):
            # Before READY=1: STATUS= then says at once if the journal cannot be read.
            self.probe()
            if cp.cursor is not None:
                return "checkpoint"
            # No cursor was committed, so nothing was read: an `end` decision would have
            # checkpointed the cursor it found, so the journal had no entry then, and all
            # it holds now came after the decision.
            return f"first start of {cp.first_start.policy if cp.first_start else ''} resumed"
        if start_at != "end":
            self.probe()
            self.pipeline.mark(
                None, 0, first_start=FirstStart(policy="beginning", decided_at=time.time())
            )
            return "beginning"
        self.decide_end = True
        if not self.take_end():
            return "end (not decided yet: the journal cannot be read)"
        return "end"

    def take_end(self) -> bool:
        """The first start at the end: checkpoint the cursor of the journal's last entry
        (a restart then goes on from it, and decides nothing again). False when journalctl
        could not say; the decision is then taken at the next try."""
        last = self.probe()
        if last is None:
            return False
        for line in last.splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                self.pipeline.cursor = json.loads(line)["__CURSOR"]
        self.pipeline.mark(None, 0, first_start=FirstStart(policy="end", decided_at=time.time()))
        self.decide_end = False
        log.info("journal first start at its end cursor=%s", self.pipeline.cursor or "none")
        return True

    def probe(self) -> bytes | None:
        """Ask journalctl for the journal's last entry: what it wrote, or None when it cannot
        read the journal (said as an error, and kept for STATUS= until it can)."""
        out, problem = last_entry(self.matcher, self.directory)
        if problem is not None:
            self._say_problem(problem)
            return None
        return out

    async def _start(self, *, follow: bool = False, last: bool = False) -> JournalCtl:
        cursor = None if last else self.pipeline.cursor
        args = argv(
            self.matcher,
            self.directory,
            follow=follow,
            cursor=cursor,
            last=last,
            machine_id=self.machine_id,
        )
        try:
            proc = await JournalCtl.start(args, self.directory, self._say_problem)
        except OSError as exc:
            raise InputError(
                f"cannot run {args[0]}: {exc.strerror or exc} (install systemd's journalctl, "
                "or set [source] type = file)"
            ) from None
        self._expect = cursor
        return proc

    # ---- reading

    async def scan(self) -> None:
        """Read from the checkpoint to the journal's current end, committing as we go."""
        if self.decide_end and not self.take_end():
            raise InputError(f"{self.problem}; nothing was read")
        proc = await self._start()
        try:
            await self._read(proc, asyncio.Event(), follow=False)
        finally:
            how = await proc.finish(kill=True)
        if proc.problem is not None:
            raise InputError(f"{proc.problem}; nothing more was read")
        if proc.proc.returncode:
            raise InputError(f"journalctl ended with {how}; reading stopped there")

    async def follow(self, stop: asyncio.Event) -> None:
        """Follow the journal until `stop` is set; journalctl is started again when it exits."""
        backoff = BACKOFF_MIN
        while not stop.is_set():
            if self.decide_end and not await asyncio.to_thread(self.take_end):
                await _wait(stop, backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            proc = await self._start(follow=True)
            log.info("journalctl started", pid=proc.proc.pid, cursor=self.pipeline.cursor or "none")
            try:
                got = await self._read(proc, stop, follow=True)
            finally:
                how = await proc.finish(kill=True)
            if stop.is_set():
                break
            self.restarts += 1
            if got:
                backoff = BACKOFF_MIN
            if proc.problem is None:
                # Started again from the last committed entry.
                log.warning("journalctl exited", how=how, restart_in_s=round(backoff, 1))
            await _wait(stop, backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _read(self, proc: JournalCtl, stop: asyncio.Event, *, follow: bool) -> int:
        """Commit what `proc` writes until its end or `stop`; how many entries were read."""
        got = 0
        buf = b""
        while not stop.is_set():
            if follow:
                # Lines written one by one share a commit (see COMMIT_GAP).
                rest = self._committed_at + COMMIT_GAP - time.monotonic()
                if rest > 0:
                    await _wait(stop, rest)
            chunk = await _first(proc.read(), stop)
            if chunk is None:
                break
            if not chunk:
                break  # journalctl ended: its last, unterminated line is read again
            buf += chunk
            end = buf.rfind(b"\n") + 1
            if end:
                if proc.problem is None and self.problem is not None:
                    log.info("journal readable again")
                    self.problem = None
                got += await self._commit(buf[:end])
                buf = buf[end:]
                self._committed_at = time.monotonic() if len(chunk) < CHUNK else -1.0
        return got

    async def _commit(self, block: bytes) -> int:
        """Parse and commit complete lines of journalctl's output; returns entries read."""
        start = 0
        if self._expect is not None:
            start = self._check_first(block)
        entries = block.count(b"\n", start)
        cursor = last_cursor(block, start)
        if cursor is None:
            return 0
        async with self.lock:
            events = self._parse(block, start)
            p = self.pipeline
            wanted = p.logins is not None or p.observe is not None
            logins = logins_of(block, start, self.matcher, p.join) if wanted else []
            self.enricher.maybe_reload()
            if self.enricher.needs_lookup and (events or logins):
                await self.enricher.prefetch([*events, *logins])
            rows = p.commit_entries(events, cursor, entries, logins)
        log.debug("batch committed", rows=rows, entries=entries, cursor=cursor)
        return entries

    def _check_first(self, block: bytes) -> int:
        """The first entry after a (re)start: the checkpointed one is dropped; another one
        means the checkpointed one is gone, and what came between may be too (a gap)."""
        expect, self._expect = self._expect, None
        assert expect is not None  # noqa: S101 - checked by the caller
        end = block.find(b"\n") + 1
        first = entry_of(block[:end])
        if first is not None and same_entry(first["__CURSOR"], expect):
            return end
        self.gaps += 1
        since = cursor_time(expect)
        until = None if first is None else entry_time(first)
        log.warning(
            "gap journal",
            unread_from=_iso(since),
            unread_until=_iso(until),
            reason="the checkpointed entry is no longer in the journal (vacuumed, its files "
            "deleted, or another machine id): entries logged between these times may be missing",
        )
        return 0

    def _parse(self, block: bytes, start: int) -> list[AuthFailure]:
        """The events among the entries of `block` from `start`; skips counted."""
        debug = log.isEnabledFor(logging.DEBUG)
        rejected: list[tuple[Skip, bytes]] | None = [] if debug else None
        skipped = self.pipeline.counters.skipped
        events = events_of(block, start, self.matcher, skipped, rejected)
        if rejected:
            self.pipeline.skiplog.emit(rejected)
        return events

    # ---- what is said

    def _say_problem(self, problem: str) -> None:
        """An error, once per change: why the journal cannot be read, cause and fix."""
        if problem != self.problem:
            log.error("cannot read the journal", problem=problem)
        self.problem = problem

    def status(self) -> str:
        """The start of STATUS=: what is being read, or why nothing is."""
        if self.problem is not None:
            return self.problem
        return (
            f"following the journal in {self.directory}"
            if self.directory
            else ("following the journal")
        )

    def say_stopped(self, skipped: str) -> None:
        """The shutdown summary line."""
        c = self.pipeline.counters
        log.info(
            "stopped",
            lines_read=c.lines,
            events_written=c.events,
            skipped=skipped,
            gaps=self.gaps,
            restarts=self.restarts,
            cursor=self.pipeline.cursor or "none",
        )


def _iso(when: datetime | None) -> str:
    return "unknown" if when is None else when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _first(read: Coroutine[Any, Any, bytes], stop: asyncio.Event) -> bytes | None:
    """The result of `read` (a coroutine), or None when `stop` is set first."""
    if stop.is_set():
        read.close()
        return None
    reader = asyncio.ensure_future(read)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if reader.done():
        return reader.result()
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    return None
