"""Reading figures from the SQLite store when it holds every committed row.

The store is only a faithful copy of the CSV once it is caught up: the node's stored
position is on the checkpoint's CSV (same device and inode) and at or past the committed
length. Until then (not built yet, rebuilding, behind, damaged, another CSV) the callers
count from the CSV as before, and say which they used.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
from datetime import datetime
from pathlib import Path

from mlsd.config import Config
from mlsd.errors import MlsdError
from mlsd.ingest.checkpoint import CHECKPOINT_NAME, Checkpoint
from mlsd.safefs import read_file
from mlsd.store import queries
from mlsd.store.dayquery import StoreDays
from mlsd.store.sqlite import default_path


def caught_up(cfg: Config) -> Path | None:
    """The store's path when it holds every row the checkpoint says is committed; None
    otherwise (never writes, never raises for a store it cannot read)."""
    path = cfg.store.path or default_path(cfg.paths.state_dir)
    where = cfg.paths.state_dir / CHECKPOINT_NAME
    try:
        if not path.is_file():
            return None
        cp = Checkpoint.from_json(read_file(where).decode("utf-8", "replace"), where)
    except (OSError, MlsdError):
        return None
    try:
        db = queries.connect(path)
    except MlsdError:
        return None
    try:
        stored = db.execute("SELECT csv_dev, csv_ino, csv_offset FROM mlsd_positions").fetchall()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    if len(stored) != 1:
        return None  # no position yet, or a file with several nodes: not this CSV's copy
    dev, ino, offset = stored[0]
    if (dev, ino) != (cp.csv_dev, cp.csv_ino) or offset < cp.csv_length:
        return None
    return path


def rows_between(cfg: Config, start: datetime, end: datetime) -> int | None:
    """Rows with start <= time < end from the store, or None when the store is not caught
    up (or cannot be read): the caller counts from the CSV."""
    path = caught_up(cfg)
    if path is None:
        return None
    with contextlib.suppress(MlsdError, sqlite3.Error):
        db = queries.connect(path)
        try:
            # Stamps are whole seconds: t in [start, end) is ceil(start) <= t < ceil(end).
            first, last = math.ceil(start.timestamp()), math.ceil(end.timestamp())
            return queries.totals(db, first, last).rows
        finally:
            db.close()
    return None


def report_source(cfg: Config) -> StoreDays | None:
    """What a report reads its figures from: the store when it is caught up, else None
    (the report counts from the CSV and says so)."""
    path = caught_up(cfg)
    return None if path is None else StoreDays(path)


async def caught_up_within(cfg: Config, seconds: float) -> StoreDays | None:
    """`report_source`, waiting up to `seconds` for the store to catch up: the daemon's
    report comes right after the day's last rows were committed, and the store ships
    them a moment later."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        source = await asyncio.to_thread(report_source, cfg)
        if source is not None or asyncio.get_running_loop().time() >= deadline:
            return source
        await asyncio.sleep(0.2)
