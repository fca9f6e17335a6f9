"""The sentinel's warm-up from the store: the recent logins and failures, row by row.

At start the sentinel's rules need what happened before it: each user's logins of the
last `history_days` (their usual countries and networks) and the failures of the last
`failure_window` minutes. `recent` reads both from the SQLite store, by the `time` index,
as typed rows read by field name (`LoginRow.user`, `StoredRow.ip`), oldest first.

Bounded: at most `login_limit` logins and `failure_limit` failures, the NEWEST ones when
there are more (the rules care most about the last hours), and `Recent.*_cut` says so. A
`LoginRow` costs about 0.5 KB in memory: the default 200,000 logins (a server with 6,600
logins a day for 30 days) are about 100 MB at the most. Rows stamped after `now` are not
read (a far-future stamp would otherwise take a place in every warm-up).

The connection is read-only (`mlsd.store.queries.connect`): it never blocks the writer.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from mlsd.errors import StateError
from mlsd.store import queries
from mlsd.store.contract import LoginRow, StoredRow
from mlsd.store.journals import EVENTS, LOGINS, Journal
from mlsd.store.sqlite import row_time

LOGIN_LIMIT: Final = 200_000
FAILURE_LIMIT: Final = 100_000
DAY: Final = 86_400

R = TypeVar("R", StoredRow, LoginRow)


@dataclass(frozen=True, slots=True)
class Recent:
    """What the warm-up reads: rows oldest first."""

    logins: list[LoginRow]
    failures: list[StoredRow]
    logins_cut: bool
    """More logins were in the range than `login_limit`: the oldest were left out."""
    failures_cut: bool


def recent(
    db: sqlite3.Connection,
    *,
    now: int,
    login_days: int,
    failure_minutes: int,
    login_limit: int = LOGIN_LIMIT,
    failure_limit: int = FAILURE_LIMIT,
) -> Recent:
    """The logins with now - login_days days <= time <= now and the failures with
    now - failure_minutes minutes <= time <= now (epoch seconds), each ordered by time and
    bounded by its limit (the newest kept). Raises StateError for a store without logins
    (a version 1 file no mlsd has opened since: the daemon upgrades it at start)."""
    try:
        logins, lcut = _newest(
            db, LOGINS, LoginRow, start=now - login_days * DAY, end=now, limit=login_limit
        )
        failures, fcut = _newest(
            db, EVENTS, StoredRow, start=now - failure_minutes * 60, end=now, limit=failure_limit
        )
    except sqlite3.Error as exc:
        raise StateError(f"cannot read the recent rows from the store: {exc}") from None
    return Recent(logins, failures, lcut, fcut)


def read_recent(path: Path, **kw: int) -> Recent:
    """`recent` on a read-only connection to the store at `path`, closed after."""
    db = queries.connect(path)
    try:
        return recent(db, **kw)
    finally:
        db.close()


def _newest(
    db: sqlite3.Connection, journal: Journal, make: type[R], *, start: int, end: int, limit: int
) -> tuple[list[R], bool]:
    names = ", ".join(journal.fields)
    # The time index, newest first, LIMIT + 1 to know whether the limit cut; ties by id
    # (the order stored, which is the CSV's) so a repeated read gives the same rows.
    query = (
        f"SELECT time, utc_offset, {names} FROM {journal.table} "  # noqa: S608 - constants
        "WHERE time >= ? AND time <= ? ORDER BY time DESC, id DESC LIMIT ?"
    )
    rows = db.execute(query, (start, end, limit + 1)).fetchall()
    cut = len(rows) > limit
    out = [make(row_time(r[0], r[1]), *r[2:]) for r in reversed(rows[:limit])]
    return out, cut
