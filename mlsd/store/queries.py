"""Counts over one time range of the store, and its read-only connection: what `status`
and the report's day and history (`mlsd.store.dayquery`) read.

Every query takes a half-open range [start, end) of epoch seconds and reads by the `time`
index: a row stamped far in the future sits outside the range whatever its place in the
table (the CSV readers, which stop at the first row past the window, could miss the rows
after it). Only aggregates cross into Python (a count, at most one bucket per hour), so
memory is bounded by construction.

Counts: "rows" are rows, "failures" the sum of `attempts` (as `mlsd.report.tally` counts
them).

The connection is read-only (`mode=ro`): in WAL mode it never blocks the daemon's writer
nor waits for it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

from mlsd.errors import StateError
from mlsd.store.sqlite import BUSY_MS

HOUR: Final = 3600


@dataclass(frozen=True, slots=True)
class Totals:
    """Rows and failed attempts in a range."""

    rows: int
    failures: int


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to the store at `path` (raises StateError when it cannot be
    opened or is not a store)."""
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=BUSY_MS / 1000, check_same_thread=False)
        db.execute("SELECT 1 FROM mlsd_events LIMIT 0")
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot read the store: {exc}") from None
    return db


def totals(db: sqlite3.Connection, start: int, end: int) -> Totals:
    """Rows and failures with start <= time < end."""
    rows, failures = db.execute(
        "SELECT count(*), coalesce(sum(attempts), 0) FROM mlsd_events WHERE time >= ? AND time < ?",
        (start, end),
    ).fetchone()
    return Totals(int(rows), int(failures))


def per_hour(db: sqlite3.Connection, start: int, end: int) -> list[int]:
    """Failures per hour since `start`: index k counts [start + k h, start + (k+1) h).

    Hours are counted from the range's start, not by the clock, so a local day of 23 or 25
    hours (a DST change) has 23 or 25 buckets and a zone a half hour off UTC is exact: the
    caller labels bucket k with the local time of start + k h. The last bucket may be
    partial (end is not on an hour)."""
    hours = max(0, -(-(end - start) // HOUR))
    out = [0] * hours
    # time >= start, so the integer division truncates the way floor does.
    for k, n in db.execute(
        "SELECT (time - ?) / 3600, sum(attempts) FROM mlsd_events "
        "WHERE time >= ? AND time < ? GROUP BY 1",
        (start, start, end),
    ):
        out[k] = int(n)
    return out
