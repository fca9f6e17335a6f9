"""The report's figures as SQL aggregations over one time range of the store.

Every query takes a half-open range [start, end) of epoch seconds and reads by the `time`
index: a row stamped far in the future sits outside the range whatever its place in the
table (the CSV readers, which stop at the first row past the window, could miss the rows
after it). Only aggregates cross into Python (a count, a top list of N, at most one bucket
per hour or quarter hour), so memory is bounded by construction; distinct counts are
SQLite's own temporary b-trees, on disk when large.

Counts: "rows" are rows, "failures" the sum of `attempts` (as `mlsd.report.tally` counts
them). Top lists are ordered by failures, most first, then by the key (ties in a defined
order, the same one the oracle test uses on the CSV's tally).

The connection is read-only (`mode=ro`): in WAL mode it never blocks the daemon's writer
nor waits for it.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Final
from urllib.parse import quote

from mlsd.errors import StateError
from mlsd.figures import Key, NewIps, Totals
from mlsd.store.rowmap import asn_text
from mlsd.store.sqlite import BUSY_MS, QUARTER

HOUR: Final = 3600
__all__ = ["Key", "NewIps", "SqlFigures", "Totals", "connect"]


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


def _label(key: Key, value: object) -> str:
    if key is Key.ASN:
        return asn_text(value if isinstance(value, int) else None)
    return str(value)


def top(db: sqlite3.Connection, key: Key, start: int, end: int, n: int) -> list[tuple[str, int]]:
    """The `n` values of `key` with the most failures in the range: (value, failures), most
    first, ties by value. An ASN is its cell text again (`AS64500`, `N/A`)."""
    col = key.value
    if key is Key.ASN:
        # NULL (N/A) sorts first among equals in SQLite, as "N/A" would not: order ties in
        # Python on the text, over the few rows that tie at the cut.
        query = (
            f"SELECT {col}, sum(attempts) AS f FROM mlsd_events "  # noqa: S608 - Key is constant
            f"WHERE time >= ? AND time < ? GROUP BY {col} ORDER BY f DESC"
        )
        out: list[tuple[str, int]] = []
        cur = db.execute(query, (start, end))
        for value, f in cur:
            if len(out) >= n and f < out[-1][1]:
                break
            out.append((_label(key, value), int(f)))
        cur.close()
        out.sort(key=lambda kv: (-kv[1], kv[0]))
        return out[:n]
    query = (
        f"SELECT {col}, sum(attempts) AS f FROM mlsd_events "  # noqa: S608 - Key is constant
        f"WHERE time >= ? AND time < ? GROUP BY {col} ORDER BY f DESC, {col} LIMIT ?"
    )
    return [(str(v), int(f)) for v, f in db.execute(query, (start, end, n))]


def distinct(db: sqlite3.Connection, key: Key, start: int, end: int) -> int:
    """How many different values of `key` the range has (N/A counts as one ASN)."""
    col = "coalesce(asn, -1)" if key is Key.ASN else key.value
    query = f"SELECT count(DISTINCT {col}) FROM mlsd_events WHERE time >= ? AND time < ?"  # noqa: S608
    return int(db.execute(query, (start, end)).fetchone()[0])


def per_day(db: sqlite3.Connection, start: int, end: int, tz: tzinfo) -> dict[date, Totals]:
    """Rows and failures per day in `tz` of the range (days with no row are absent).

    Every UTC offset in use is a multiple of 15 minutes: SQL counts per quarter hour (at
    most 96 a day), Python puts each quarter in its local day, DST included."""
    rows: dict[date, int] = {}
    failures: dict[date, int] = {}
    query = (
        f"SELECT time / {QUARTER}, count(*), sum(attempts) FROM mlsd_events "  # noqa: S608
        "WHERE time >= ? AND time < ? GROUP BY 1"
    )
    for quarter, n, f in db.execute(query, (start, end)):
        day = datetime.fromtimestamp(quarter * QUARTER, UTC).astimezone(tz).date()
        rows[day] = rows.get(day, 0) + int(n)
        failures[day] = failures.get(day, 0) + int(f)
    return {d: Totals(rows[d], failures[d]) for d in sorted(rows)}


_DAY_IPS: Final = (
    "SELECT ip, sum(attempts) AS f, ip IN (SELECT ip FROM mlsd_events "
    "WHERE time >= :since AND time < :start) AS old FROM mlsd_events "
    "WHERE time >= :start AND time < :end GROUP BY ip"
)


def new_ips(db: sqlite3.Connection, start: int, end: int, since: int, n: int) -> NewIps:
    """The report's "new attackers": IPs of [start, end) not seen in [since, start).

    The earlier range's IPs are one uncorrelated subquery, which SQLite builds once into
    a temporary index: no per-IP scan, and no index on `ip` needed."""
    args = {"since": since, "start": start, "end": end, "n": n}
    counts = {0: (0, 0), 1: (0, 0)}
    query = f"SELECT old, count(*), coalesce(sum(f), 0) FROM ({_DAY_IPS}) GROUP BY old"  # noqa: S608
    for old, k, f in db.execute(query, args):
        counts[int(old)] = (int(k), int(f))
    top_query = f"SELECT ip, f FROM ({_DAY_IPS}) WHERE NOT old ORDER BY f DESC, ip LIMIT :n"  # noqa: S608
    top_new = [(str(ip), int(f)) for ip, f in db.execute(top_query, args)]
    return NewIps(*counts[0], *counts[1], top_new)


class SqlFigures:
    """`mlsd.figures.Figures` on a connection from `connect` (the caller closes it)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def totals(self, start: int, end: int) -> Totals:
        """Rows and failures in the range."""
        return totals(self.db, start, end)

    def per_hour(self, start: int, end: int) -> list[int]:
        """Failures per hour since `start`."""
        return per_hour(self.db, start, end)

    def top(self, key: Key, start: int, end: int, n: int) -> list[tuple[str, int]]:
        """The `n` values of `key` with the most failures."""
        return top(self.db, key, start, end, n)

    def distinct(self, key: Key, start: int, end: int) -> int:
        """How many different values of `key`."""
        return distinct(self.db, key, start, end)

    def per_day(self, start: int, end: int, tz: tzinfo) -> dict[date, Totals]:
        """Rows and failures per day in `tz`."""
        return per_day(self.db, start, end, tz)

    def new_ips(self, start: int, end: int, since: int, n: int) -> NewIps:
        """IPs of [start, end) not seen in [since, start)."""
        return new_ips(self.db, start, end, since, n)
