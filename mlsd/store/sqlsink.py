"""`SqliteSink`: the SQLite store as a `Sink`, one per journal, all on one connection.

The store's blocking calls run in one worker thread, shared by the sinks of both journals
(`SqliteSink.sibling`): their transactions never overlap, and a file moved aside by one
is the file the other goes on with (one connection, reopened by the move). The first sink
(the failures') owns the thread and the connection and closes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from mlsd.store.contract import Batch, Position
from mlsd.store.journals import EVENTS, Journal
from mlsd.store.sqlite import EXPIRE_ROWS, SqliteStore

T = TypeVar("T")


class SqliteSink:
    """The `Sink` for one journal on a `SqliteStore`."""

    def __init__(
        self,
        path: Path,
        journal: Journal = EVENTS,
        *,
        _shared: tuple[SqliteStore, ThreadPoolExecutor] | None = None,
    ) -> None:
        self.journal = journal
        self.name = "store" if journal is EVENTS else f"store-{journal.name}"
        """"store" (the failures), "store-logins": in logs, STATUS= and the metrics."""
        self._owner = _shared is None
        if _shared is None:
            self.store = SqliteStore(path)
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlsd-store")
        else:
            self.store, self._pool = _shared

    def sibling(self, journal: Journal) -> SqliteSink:
        """A sink for another journal on the same file, connection and thread (closed by
        this one's `close`)."""
        return SqliteSink(self.store.path, journal, _shared=(self.store, self._pool))

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the store's worker thread (mlsd.store.contract.InThread)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    _call = in_thread

    def append_blocking(self, node: str, batch: Batch) -> None:
        """`append`, in the store's worker thread."""
        self.store.append(node, batch, self.journal)

    async def open(self, node: str) -> str | None:
        """Open and check the file (see `SqliteStore.open`): why it was moved aside, if it was."""
        return await self._call(self.store.open, node)

    async def position(self, node: str) -> Position | None:
        """The node's stored position in this journal."""
        return await self._call(self.store.position, node, self.journal)

    async def append(self, node: str, batch: Batch) -> None:
        """Rows and end position in one transaction."""
        await self._call(self.store.append, node, batch, self.journal)

    async def rebuild(self, stored: Position, committed: Position, why: str) -> None:
        """The shipper's `on_mismatch`. The failures' store is moved aside and a new one
        started (the logins are shipped again into it from their first row); the logins
        alone are deleted, EXPIRE_ROWS per transaction, then their position (the store
        holds one node's rows: `SqliteStore.open`)."""
        if self.journal is EVENTS:
            await self._call(self.store.move_aside, f"its position is not on this CSV: {why}")
            return
        while await self._call(self.store.forget, self.journal) >= EXPIRE_ROWS:
            pass

    async def expire(self, before: int, rows: int = EXPIRE_ROWS) -> int:
        """Delete the logins with `time` < `before`, `rows` per transaction, each its own
        call to the worker (the shippers' batches go between); the rows deleted."""
        total = 0
        while True:
            n = await self._call(self.store.expire, before, rows)
            total += n
            if n < rows:
                return total

    async def close(self) -> None:
        """Close the connection once the worker is done with what it was given (the owner
        only; a sibling's close does nothing)."""
        if not self._owner:
            return
        await self._call(self.store.close)
        self._pool.shutdown(wait=True)
