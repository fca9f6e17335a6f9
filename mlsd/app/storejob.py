"""The event store in the daemon: the shipper beside the follower, woken by each commit.

`follow_and_ship` is what `mlsd run` starts in place of the bare follow loop: the SQLite
store is opened (a damaged one moved aside and rebuilt), the shipper follows the CSV's
committed rows into it, and once following stops the shipper stores what was committed
before, within SHIP_BOUND seconds (the rest is stored at the next start). The store never
stops or slows following: a store that cannot be opened or written is retried with
backoff while the rows wait in the CSV.

Given `logins` (what the checkpoint has committed of the logins CSV), a second shipper
follows the logins CSV into `mlsd_logins` on the same file ("store-logins"), and the
logins' retention (`[sentinel] keep_days`) runs at start and every RETENTION_EVERY seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Final

from mlsd import logs
from mlsd.config import Config
from mlsd.ingest import session
from mlsd.ingest.pipeline import Pipeline
from mlsd.store.contract import Position, Sink
from mlsd.store.journals import LOGINS
from mlsd.store.ship import FIRST_DELAY, MAX_DELAY, Committed, Shipper, first_set
from mlsd.store.sqlite import default_path
from mlsd.store.sqlsink import SqliteSink
from mlsd.untrusted import terminal

log = logs.get("mlsd.store")

SHIP_BOUND: Final = 5.0
"""Seconds the shipper may go on storing committed rows once following has stopped."""
RETENTION_EVERY: Final = 3600.0
"""Seconds between two runs of the logins' retention (each deletes what has aged since)."""
DAY: Final = 86_400

LoginsCommitted = Callable[[Pipeline], Position | None]
"""What the checkpoint has committed of the logins CSV, from the running pipeline (as
`committed_of` for the failures CSV); None before the logins CSV is pinned."""


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


def logins_committed_of(pipeline: Pipeline) -> Position | None:
    """The logins CSV position the checkpoint has committed; None before it is pinned
    (or while `[sentinel] record_logins = no` has never let it be written)."""
    cp = pipeline.committed
    if cp is None or cp.logins_dev is None or cp.logins_ino is None or cp.logins_length is None:
        return None
    return Position(cp.logins_dev, cp.logins_ino, cp.logins_length)


async def follow_and_ship(
    s: session.Session,
    stop: asyncio.Event,
    shippers: dict[str, Shipper],
    logins: LoginsCommitted | None = None,
) -> None:
    """`session.follow_forever`, with the store's shipper running beside it (entered in
    `shippers` as "store" while it runs, for STATUS= and the metrics), and with `logins`
    the logins' shipper ("store-logins") and their retention."""
    sink = SqliteSink(store_path(s.cfg))
    node = node_name()
    opened = asyncio.Event()
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
            run=lambda done: _ship(sink, shipper, node, done, opened),
            logger=log,
            left_behind="store left behind at stop, stored at the next start",
        ):
            if logins is None:
                await session.follow_forever(s, stop)
                return
            lsink = sink.sibling(LOGINS)
            lshipper = logins_shipper(s, lsink, node, lambda: logins(s.pipeline))
            lshipper.on_mismatch = lsink.rebuild
            retention = asyncio.create_task(
                _retention(s, lsink, lambda: _settled(opened, lshipper), stop)
            )
            try:
                async with beside(
                    s,
                    shippers,
                    lsink.name,
                    lshipper,
                    run=lambda done: _after(opened, done, lshipper.run),
                    logger=log,
                    left_behind="store-logins left behind at stop, stored at the next start",
                ):
                    await session.follow_forever(s, stop)
            finally:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
    finally:
        await sink.close()


def logins_shipper(s: session.Session, sink: Sink, node: str, committed: Committed) -> Shipper:
    """A shipper of the logins CSV's committed rows into `sink` (the store's or the
    fleet's), read in the zone the failures CSV is."""
    return Shipper(s.cfg.paths.logins(), committed, sink, node, tz=s.pipeline.tz,
                   journal=LOGINS)  # fmt: skip


async def _after(
    opened: asyncio.Event, done: asyncio.Event, run: Callable[[asyncio.Event], Awaitable[None]]
) -> None:
    """`run(done)` once the store is open (never, when following stops first)."""
    await first_set(opened, done)
    if opened.is_set():
        await run(done)


def _settled(opened: asyncio.Event, shipper: Shipper) -> bool:
    """The store is open and the shipper has stored every committed row (or has none)."""
    return opened.is_set() and (shipper.committed() is None or shipper.lag().bytes == 0)


def keep_from(cfg: Config, now: float) -> int:
    """Epoch seconds before which the store's logins are deleted: `[sentinel] keep_days`
    ago, or now with `record_logins = no` (personal data: none are kept)."""
    if not cfg.sentinel.record_logins:
        return int(now) + 1
    return int(now) - cfg.sentinel.keep_days * DAY


async def _retention(
    s: session.Session, sink: SqliteSink, caught_up: Callable[[], bool], stop: asyncio.Event
) -> None:
    """Delete the logins past `[sentinel] keep_days` once the logins shipper has caught up
    (a rebuild stores old rows first), then every RETENTION_EVERY seconds (the
    configuration as reloaded). A failure is logged and tried next time."""
    while not caught_up():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        if stop.is_set():
            return
    while not stop.is_set():
        before = keep_from(s.cfg, time.time())
        try:
            deleted = await sink.expire(before)
        except Exception as exc:  # the store down: the next round deletes what is due
            log.warning("store logins retention failed", error=terminal(str(exc)))
        else:
            if deleted:
                log.info("store logins expired", rows=deleted,
                         keep_days=s.cfg.sentinel.keep_days)  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RETENTION_EVERY)


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


async def _ship(
    sink: SqliteSink, shipper: Shipper, node: str, done: asyncio.Event, opened: asyncio.Event
) -> None:
    delay, said = FIRST_DELAY, False
    while True:
        try:
            await sink.open(node)
            opened.set()
            break
        except Exception as exc:  # a store mlsd cannot open is an outage, never fatal
            if not said:
                log.error(
                    "store cannot be opened, rows wait in the CSV",
                    path=str(sink.path),
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
