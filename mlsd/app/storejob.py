"""The event store in the daemon: the shipper beside the follower, woken by each commit.

`follow_and_ship` is what `mlsd run` starts in place of the bare follow loop: the SQLite
store is opened (a damaged one moved aside and rebuilt), the shipper follows the CSV's
committed rows into it, and once following stops the shipper stores what was committed
before, within SHIP_BOUND seconds (the rest is stored at the next start). The store never
stops or slows following: a store that cannot be opened or written is retried with
backoff while the rows wait in the CSV.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Final

from mlsd import logs
from mlsd.config import Config
from mlsd.ingest import session
from mlsd.ingest.pipeline import Pipeline
from mlsd.store.contract import Position
from mlsd.store.ship import FIRST_DELAY, MAX_DELAY, Shipper
from mlsd.store.sqlite import default_path
from mlsd.store.sqlsink import SqliteSink
from mlsd.untrusted import terminal

log = logs.get("mlsd.store")

SHIP_BOUND: Final = 5.0
"""Seconds the shipper may go on storing committed rows once following has stopped."""


def store_path(cfg: Config) -> Path:
    """`[store] path`, or its default in the state directory."""
    return cfg.store.path or default_path(cfg.paths.state_dir)


def node_name() -> str:
    """What `node` says in the store: this host's name (one mlsd per host)."""
    return socket.gethostname() or "localhost"


def committed_of(pipeline: Pipeline) -> Position | None:
    """The CSV position the checkpoint has committed (what may be shipped)."""
    cp = pipeline.committed
    return None if cp is None else Position(cp.csv_dev, cp.csv_ino, cp.csv_length)


async def follow_and_ship(
    s: session.Session, stop: asyncio.Event, shippers: dict[str, Shipper]
) -> None:
    """`session.follow_forever`, with the store's shipper running beside it (entered in
    `shippers` as "store" while it runs, for STATUS= and the metrics)."""
    sink = SqliteSink(store_path(s.cfg))
    node = node_name()
    shipper = Shipper(
        s.cfg.paths.csv,
        lambda: committed_of(s.pipeline),
        sink,
        node,
        tz=s.pipeline.tz,
        on_mismatch=sink.rebuild,
    )
    try:
        async with beside(
            s,
            shippers,
            "store",
            shipper,
            run=lambda done: _ship(sink, shipper, node, done),
            logger=log,
            left_behind="store left behind at stop, stored at the next start",
        ):
            await session.follow_forever(s, stop)
    finally:
        await sink.close()


@contextlib.asynccontextmanager
async def beside(
    s: session.Session,
    shippers: dict[str, Shipper],
    name: str,
    shipper: Shipper,
    *,
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    logger: Any,
    left_behind: str,
) -> AsyncIterator[None]:
    """Run `run(done)` beside the body, woken by each commit and entered in `shippers` as
    `name`; at the end, SHIP_BOUND seconds to store what was committed (the rest is said
    with `left_behind` and goes at the next start). One shape for the store and the fleet."""
    s.pipeline.on_commit.append(shipper.wake.set)
    shippers[name] = shipper
    done = asyncio.Event()
    task = asyncio.create_task(run(done))
    try:
        yield
    finally:
        s.pipeline.on_commit.remove(shipper.wake.set)
        shippers.pop(name, None)
        done.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), SHIP_BOUND)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            logger.info(left_behind, **_lag(shipper))


async def _ship(sink: SqliteSink, shipper: Shipper, node: str, done: asyncio.Event) -> None:
    delay, said = FIRST_DELAY, False
    while True:
        try:
            await sink.open(node)
            break
        except Exception as exc:  # a store mlsd cannot open is an outage, never fatal
            if not said:
                log.error(
                    "store cannot be opened, rows wait in the CSV",
                    path=str(sink.store.path),
                    error=terminal(str(exc)),
                )
                said = True
            shipper.error = terminal(str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), delay)
            if done.is_set():
                return
            delay = min(delay * 2, MAX_DELAY)
    await shipper.run(done)


def _lag(shipper: Shipper) -> dict[str, object]:
    lag = shipper.lag()
    return {"bytes_behind": lag.bytes, "rows_behind": lag.rows}
