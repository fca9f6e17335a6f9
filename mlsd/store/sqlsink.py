"""`SqliteSink`: the SQLite store as a `Sink`, one per journal, all on one writer.

The store's work is done by its writer process (mlsd.store.writer), which reads the
committed rows from the CSV itself (`ship_span`). Its calls are made from one worker
thread, shared by the sinks of both journals (`SqliteSink.sibling`): their transactions
never overlap, and a file moved aside by one is the file the other goes on with (one
connection, reopened by the move). The first sink (the failures') owns the thread and the
writer and stops them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlsd.store.contract import Batch, Position, Shipped, Span
from mlsd.store.journals import EVENTS, Journal
from mlsd.store.sqlite import EXPIRE_ROWS
from mlsd.store.writer import Writer, sendable


class SqliteSink:
    """The `Sink` (and `ReadsCsv`) for one journal on the SQLite store."""

    def __init__(
        self,
        path: Path,
        journal: Journal = EVENTS,
        *,
        _shared: tuple[Writer, ThreadPoolExecutor] | None = None,
    ) -> None:
        self.path = path
        self.journal = journal
        self.name = "store" if journal is EVENTS else f"store-{journal.name}"
        """"store" (the failures), "store-logins": in logs, STATUS= and the metrics."""
        self._owner = _shared is None
        if _shared is None:
            self.writer = Writer(path)
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlsd-store")
        else:
            self.writer, self._pool = _shared

    def sibling(self, journal: Journal) -> SqliteSink:
        """A sink for another journal on the same file, writer and thread (stopped by
        this one's `close`)."""
        return SqliteSink(self.path, journal, _shared=(self.writer, self._pool))

    async def _call(self, name: str, *args: Any) -> Any:
        """The writer's `name(*args)`, from the store's worker thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self.writer.call, name, *args
        )

    async def open(self, node: str) -> str | None:
        """Open and check the file (see `SqliteStore.open`): why it was moved aside, if it was."""
        why: str | None = await self._call("open", node)
        return why

    async def position(self, node: str) -> Position | None:
        """The node's stored position in this journal."""
        at: Position | None = await self._call("position", node, self.journal.name)
        return at

    async def append(self, node: str, batch: Batch) -> None:
        """Rows and end position in one transaction."""
        await self._call("append", node, batch, self.journal.name)

    async def ship_span(self, node: str, span: Span) -> Shipped:
        """Batches of `span` read and stored by the writer (mlsd.store.contract.ReadsCsv)."""
        span = dataclasses.replace(span, tz=sendable(span.tz))
        done: Shipped = await self._call("ship", node, self.journal.name, span)
        return done

    async def rebuild(self, stored: Position, committed: Position, why: str) -> None:
        """The shipper's `on_mismatch`. The failures' store is moved aside and a new one
        started (the logins are shipped again into it from their first row); the logins
        alone are deleted, EXPIRE_ROWS per transaction, then their position (the store
        holds one node's rows: `SqliteStore.open`)."""
        if self.journal is EVENTS:
            await self._call("move_aside", f"its position is not on this CSV: {why}")
            return
        while await self._call("forget", self.journal.name) >= EXPIRE_ROWS:
            pass

    async def expire(self, before: int, rows: int = EXPIRE_ROWS) -> int:
        """Delete the logins with `time` < `before`, `rows` per transaction, each its own
        call to the writer (the shippers' batches go between); the rows deleted."""
        total = 0
        while True:
            n: int = await self._call("expire", before, rows)
            total += n
            if n < rows:
                return total

    async def close(self) -> None:
        """Stop the writer once it is done with what it was given: it closes the store
        (the owner only; a sibling's close does nothing)."""
        if not self._owner:
            return
        await asyncio.get_running_loop().run_in_executor(self._pool, self.writer.stop)
        self._pool.shutdown(wait=True)
