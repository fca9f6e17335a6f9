"""The SQLite store on every node: `events.sqlite3` in the state directory, a public schema.

One file, WAL mode, so readers (`mlsd report`, `status`, an admin's `sqlite3`) never block
the writer nor it them. A batch's rows and the node's new position go in one transaction
(`BEGIN IMMEDIATE` … `COMMIT`), so a crash at any instant leaves both or neither: the
rows are stored exactly once by construction. `synchronous = FULL`: the WAL is synced at
each commit, so the stored position never goes back after a power loss (with NORMAL a
commit could be lost with its rows, which would still be exactly once, but `status` and
`store check` would have said more was stored than is). Shipping is batched and off the
follower's path, so the one fsync per batch costs little.

Two journals, each with its table and its own position (`mlsd.store.journals`): the
failures CSV into `mlsd_events`, the logins CSV into `mlsd_logins`; the schema and its
upgrades are `mlsd.store.sqlschema`'s. Logins older than `[sentinel] keep_days` are
deleted by `expire`, a few thousand rows per transaction.

A file SQLite cannot read, one that fails `quick_check`, or one whose tables are not
mlsd's is damaged: it is moved aside (never deleted) and a new one is built from the CSV.
A schema newer than this mlsd knows is an error naming both versions (a newer mlsd wrote
it; moving it aside would throw away what that one built).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import stat
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Final

from mlsd import logs
from mlsd.errors import StateError
from mlsd.safefs import SHARED_DIR, make_dir, open_regular
from mlsd.store.contract import Batch, Position, Row, StoreConflict
from mlsd.store.journals import EVENTS, Journal
from mlsd.store.sqlschema import SCHEMA_VERSION, TABLES, Damaged, ensure
from mlsd.untrusted import terminal

__all__ = ["SCHEMA_VERSION", "TABLES", "Damaged", "SqliteStore", "default_path"]

log = logs.get("mlsd.store")

FILE_MODE: Final = 0o640
NAME: Final = "events.sqlite3"
"""The default file name, in the state directory."""
BUSY_MS: Final = 5000
"""How long a write waits for a lock another process holds (an admin's write, a vacuum)."""
QUARTER: Final = 900
"""Every UTC offset in use is a multiple of 15 minutes: counts per local day can be made
from counts per quarter hour without a zone database in SQL."""
EXPIRE_ROWS: Final = 2000
"""Rows deleted per transaction by retention: the writer waits for one such delete at most."""


def default_path(state_dir: Path) -> Path:
    """`[store] path` when it is not set."""
    return state_dir / NAME


class SqliteStore:
    """The store's file and its one connection (blocking: run by the store's writer process,
    mlsd.store.writer, and in-process by `mlsd store check` and `store rebuild`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    # ---- opening, checking, moving aside

    def open(self, node: str | None = None) -> str | None:
        """Open (creating it, mode 0640) and check. A damaged file, or one holding another
        node's position but not `node`'s, is moved aside and a new one made: returns why
        (None when the file was usable). Raises StateError for a newer schema or a path
        mlsd must not use."""
        make_dir(self.path.parent, SHARED_DIR, "store directory")
        try:
            self._connect()
            if node is not None:
                others = [n for n in self.nodes() if n != node]
                if others and self.position(node) is None:
                    raise Damaged(f"it holds the rows of another node ({terminal(others[0])})")
            return None
        except Damaged as exc:
            self.move_aside(str(exc))
            return str(exc)

    def connect(self) -> None:
        """Open an existing file as it is (raises Damaged, StateError; moves nothing)."""
        if not os.path.lexists(self.path):
            raise StateError(f"{self.path}: there is no store (it is made by `mlsd run`)")
        self._connect()

    def _connect(self) -> None:
        self.close()
        self._create_file()
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot open the store: {exc}") from None
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise Damaged(f"it cannot be put in WAL mode (journal_mode is {mode})")
            db.execute("PRAGMA synchronous = FULL")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise Damaged(f"quick_check: {terminal(str(check))}")
            was = ensure(db, self.path)
            if was is not None:
                log.info("store schema upgraded", path=str(self.path), was=was,
                         now=SCHEMA_VERSION)  # fmt: skip
        except sqlite3.DatabaseError as exc:
            db.close()
            raise Damaged(f"SQLite cannot read it: {exc}") from None
        except BaseException:
            db.close()
            raise
        self._db = db

    def _create_file(self) -> None:
        """The file exists, is a regular file (not a link), mode 0640 when new."""
        try:
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise StateError(
                f"{self.path}: cannot open the store: {exc.strerror or exc} ([store] path)"
            ) from None
        try:
            st = os.fstat(fd)
            if st.st_size == 0 and stat.S_IMODE(st.st_mode) != FILE_MODE:
                os.fchmod(fd, FILE_MODE)  # the umask may have narrowed it
        finally:
            os.close(fd)

    def move_aside(self, why: str) -> Path:
        """Move the file (and its WAL) to `NAME.aside-STAMP`, never deleting; make a new one."""
        self.close()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for n in range(1, 100):
            dest = self.path.with_name(
                f"{self.path.name}.aside-{stamp}" + ("" if n == 1 else f"-{n}")
            )
            if not os.path.lexists(dest):
                break
        for suffix in ("-wal", "-shm", "-journal", ""):  # the main file last
            src = Path(f"{self.path}{suffix}")
            with contextlib.suppress(FileNotFoundError):
                os.rename(src, f"{dest}{suffix}")
        log.warning("store moved aside", path=str(self.path), moved_to=str(dest), reason=why)
        self._connect()
        return dest

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._db is not None:
            # Statistics for the planner (SQLite's advice at close): a time range then
            # picks the time index rather than scanning by address.
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA optimize")
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection."""
        if self._db is None:
            self._connect()
        assert self._db is not None  # noqa: S101 - _connect sets it or raises
        return self._db

    # ---- the sink's work

    def nodes(self) -> list[str]:
        """The nodes with a stored position."""
        return [r[0] for r in self.db.execute("SELECT node FROM mlsd_positions ORDER BY node")]

    def position(self, node: str, journal: Journal = EVENTS) -> Position | None:
        """`node`'s stored position in `journal`."""
        row = self.db.execute(
            f"SELECT csv_dev, csv_ino, csv_offset FROM {journal.positions} WHERE node = ?",  # noqa: S608 - a constant table name
            (node,),
        ).fetchone()
        return None if row is None else Position(*row)

    def append(self, node: str, batch: Batch, journal: Journal = EVENTS) -> None:
        """The batch's rows and end position, in one transaction (StoreConflict: neither).

        With no position stored the batch must start at the CSV's first row: a shipper
        that still believes in a position of a file since moved aside (the other journal's
        rebuild) is refused, asks again, and starts over."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            stored = self.position(node, journal)
            first = len(journal.header)
            if stored is not None and stored != batch.start:
                raise StoreConflict(
                    f"{self.path}: {node}'s {journal.name} are stored up to {stored}, the "
                    f"batch starts at {batch.start}: another writer?"
                )
            if stored is None and batch.start.csv_offset != first:
                raise StoreConflict(
                    f"{self.path}: no position stored for {node}'s {journal.name}, and the "
                    f"batch starts at {batch.start}, not at the first row"
                )
            _insert_rows(db, node, journal, batch.rows)
            end = batch.end
            db.execute(
                f"INSERT INTO {journal.positions} (node, csv_dev, csv_ino, csv_offset, "  # noqa: S608 - constant names
                "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (node) DO UPDATE SET csv_dev = "
                "excluded.csv_dev, csv_ino = excluded.csv_ino, csv_offset = "
                "excluded.csv_offset, updated_at = excluded.updated_at",
                (node, end.csv_dev, end.csv_ino, end.csv_offset, int(time.time())),
            )
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")

    def forget(self, journal: Journal, rows: int = EXPIRE_ROWS) -> int:
        """Delete up to `rows` of `journal`'s rows; with none left, its positions too (it is
        then shipped again from its first row). The rows deleted: call again until a call
        deletes fewer than `rows`. The positions go last: until then nothing is appended."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                f"DELETE FROM {journal.table} WHERE id IN "  # noqa: S608 - constant names
                f"(SELECT id FROM {journal.table} LIMIT ?)",
                (rows,),
            )
            if cur.rowcount < rows:
                db.execute(f"DELETE FROM {journal.positions}")  # noqa: S608
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return int(cur.rowcount)

    # ---- retention (the logins)

    def expire(self, before: int, rows: int = EXPIRE_ROWS) -> int:
        """Delete up to `rows` logins with `time` < `before` (epoch seconds), in one short
        transaction, and record `before` as `kept_from`; the rows deleted (call again while
        it returns `rows`)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("UPDATE mlsd_login_positions SET kept_from = max(kept_from, ?)", (before,))
            cur = db.execute(
                "DELETE FROM mlsd_logins WHERE id IN "
                "(SELECT id FROM mlsd_logins WHERE time < ? LIMIT ?)",
                (before, rows),
            )
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return int(cur.rowcount)

    def kept_from(self, node: str) -> int:
        """Epoch seconds from which every shipped login of `node` is still stored (0: all)."""
        row = self.db.execute(
            "SELECT kept_from FROM mlsd_login_positions WHERE node = ?", (node,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    # ---- reading (tests, `store check`)

    def rows(self, journal: Journal = EVENTS) -> list[Row]:
        """Every stored row of `journal`, in the order stored."""
        make = journal.row_type
        query = f"SELECT time, utc_offset, {_names(journal)} FROM {journal.table} ORDER BY id"  # noqa: S608
        return [make(row_time(r[0], r[1]), *r[2:]) for r in self.db.execute(query)]

    def count(self, journal: Journal = EVENTS) -> int:
        """Rows stored."""
        query = f"SELECT count(*) FROM {journal.table}"  # noqa: S608 - a constant table name
        return int(self.db.execute(query).fetchone()[0])

    def counts_by_day(
        self, tz: tzinfo, journal: Journal = EVENTS, since: int | None = None
    ) -> dict[date, int]:
        """Rows per day in `tz` (every node's), of those with `time` >= `since`."""
        out: dict[date, int] = {}
        query = (
            f"SELECT time / {QUARTER}, count(*) FROM {journal.table} "  # noqa: S608
            "WHERE time >= ? GROUP BY 1"
        )
        for quarter, n in self.db.execute(query, (-(2**62) if since is None else since,)):
            day = datetime.fromtimestamp(quarter * QUARTER, UTC).astimezone(tz).date()
            out[day] = out.get(day, 0) + n
        return out

    def integrity(self) -> str:
        """`PRAGMA integrity_check`'s first line: `ok`, or the first problem."""
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])


def _names(journal: Journal) -> str:
    return ", ".join(journal.fields)


_CHUNKS: Final = tuple(1 << k for k in range(10, -1, -1))
"""Rows per INSERT statement: the largest of these that fits, so a batch is a few
statements of at most 11 shapes per journal (each compiled once, then from sqlite3's cache)."""


def _insert_rows(db: sqlite3.Connection, node: str, journal: Journal, rows: Sequence[Row]) -> None:
    """Insert `rows`, many per statement.

    Not `executemany`: it binds and steps one row at a time, and each step releases the
    GIL and must get it back, which beside a busy thread (the follower catching up) means
    waiting for that thread to let go of it, once per row: measured apart, 29.5 k rows took
    24-34 s instead of 0.09 s. A statement of many rows is one step, its SQLite work done
    without the GIL. (A limit on bound values below one row's is SQLite's error, never a
    row left out.)"""
    width = 3 + len(journal.fields)
    most = max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    at = 0
    for n in _CHUNKS:
        if n > most:
            continue
        while len(rows) - at >= n:
            params: list[Any] = []
            for r in rows[at : at + n]:
                params += _params(node, r)
            db.execute(_insert(journal, n), params)
            at += n


@functools.lru_cache(maxsize=2 * len(_CHUNKS))
def _insert(journal: Journal, rows: int) -> str:
    """INSERT of `rows` rows of `journal` (constant names, `?` for every value)."""
    one = f"(?, ?, ?{', ?' * len(journal.fields)})"
    return (
        f"INSERT INTO {journal.table} (node, time, utc_offset, {_names(journal)}) "  # noqa: S608 - constants
        f"VALUES {', '.join([one] * rows)}"
    )


def _params(node: str, r: Row) -> tuple[Any, ...]:
    when = r.time
    offset = when.utcoffset()
    return (
        node,
        int(when.timestamp()),
        0 if offset is None else int(offset.total_seconds()),
        *r[1:],
    )


def row_time(epoch: int, offset: int) -> datetime:
    """A stored row's `time` and `utc_offset` as the aware datetime the CSV said."""
    return datetime.fromtimestamp(epoch, timezone(timedelta(seconds=offset)))
