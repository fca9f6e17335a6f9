"""The SQLite store on every node: `events.sqlite3` in the state directory, a public schema.

One file, WAL mode, so readers (`mlsd report`, `status`, an admin's `sqlite3`) never block
the writer nor it them. A batch's rows and the node's new position go in one transaction
(`BEGIN IMMEDIATE` … `COMMIT`), so a crash at any instant leaves both or neither: the
rows are stored exactly once by construction. `synchronous = FULL`: the WAL is synced at
each commit, so the stored position never goes back after a power loss (with NORMAL a
commit could be lost with its rows, which would still be exactly once, but `status` and
`store check` would have said more was stored than is). Shipping is batched and off the
follower's path, so the one fsync per batch costs little.

A file SQLite cannot read, one that fails `quick_check`, or one whose tables are not
mlsd's is damaged: it is moved aside (never deleted) and a new one is built from the CSV.
A schema newer than this mlsd knows is an error naming both versions (a newer mlsd wrote
it; moving it aside would throw away what that one built).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Final, TypeVar

from mlsd import logs
from mlsd.errors import StateError
from mlsd.safefs import SHARED_DIR, make_dir, open_regular
from mlsd.store.contract import Batch, Position, StoreConflict, StoredRow
from mlsd.untrusted import terminal

log = logs.get("mlsd.store")

SCHEMA_VERSION: Final = 1
FILE_MODE: Final = 0o640
NAME: Final = "events.sqlite3"
"""The default file name, in the state directory."""
BUSY_MS: Final = 5000
"""How long a write waits for a lock another process holds (an admin's write, a vacuum)."""
QUARTER: Final = 900
"""Every UTC offset in use is a multiple of 15 minutes: counts per local day can be made
from counts per quarter hour without a zone database in SQL."""

SCHEMA: Final = """
CREATE TABLE mlsd_schema (version INTEGER NOT NULL);
CREATE TABLE mlsd_events (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    server TEXT NOT NULL,
    time INTEGER NOT NULL,
    utc_offset INTEGER NOT NULL,
    ip TEXT NOT NULL,
    user TEXT NOT NULL,
    hostname TEXT NOT NULL,
    reverse_dns_status TEXT NOT NULL,
    country_code TEXT NOT NULL,
    asn INTEGER,
    aso TEXT NOT NULL,
    service TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    attempts INTEGER NOT NULL
);
CREATE INDEX mlsd_events_time ON mlsd_events (time);
CREATE TABLE mlsd_positions (
    node TEXT PRIMARY KEY,
    csv_dev INTEGER NOT NULL,
    csv_ino INTEGER NOT NULL,
    csv_offset INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
"""
# Constant text only (the version is ours): nothing from outside reaches this script.
_CREATE: Final = (
    f"BEGIN IMMEDIATE;{SCHEMA}INSERT INTO mlsd_schema VALUES ({SCHEMA_VERSION});COMMIT;"  # noqa: S608
)
TABLES: Final = frozenset({"mlsd_schema", "mlsd_events", "mlsd_positions"})
_INSERT: Final = (
    "INSERT INTO mlsd_events (node, server, time, utc_offset, ip, user, hostname, "
    "reverse_dns_status, country_code, asn, aso, service, mechanism, attempts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT: Final = (
    "SELECT time, utc_offset, server, ip, user, hostname, reverse_dns_status, country_code, "
    "asn, aso, service, mechanism, attempts FROM mlsd_events"
)


class Damaged(Exception):
    """The file is not a store this mlsd can use as it is (the reason is the message)."""


def default_path(state_dir: Path) -> Path:
    """`[store] path` when it is not set."""
    return state_dir / NAME


class SqliteStore:
    """The store's file and its one connection (blocking: `SqliteSink` runs it in a thread)."""

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
            self._schema(db)
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

    def _schema(self, db: sqlite3.Connection) -> None:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        ours = names & TABLES
        if not ours:
            if names:
                raise Damaged("its tables are not mlsd's")
            # One transaction in the script itself (executescript commits any pending one).
            try:
                db.executescript(_CREATE)
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
            return
        if "mlsd_schema" not in ours:
            raise Damaged("its mlsd_schema table is missing")
        row = db.execute("SELECT max(version) FROM mlsd_schema").fetchone()
        version = row[0] if row else None
        if not isinstance(version, int):
            raise Damaged("its mlsd_schema table holds no version")
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path}: the store's schema is version {version}, newer than version "
                f"{SCHEMA_VERSION} that this mlsd knows: a newer mlsd wrote it; run that one, "
                "or move the file aside to rebuild it from the CSV"
            )
        if ours != TABLES:
            raise Damaged(f"its table {sorted(TABLES - ours)[0]} is missing")

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

    def position(self, node: str) -> Position | None:
        """`node`'s stored position."""
        row = self.db.execute(
            "SELECT csv_dev, csv_ino, csv_offset FROM mlsd_positions WHERE node = ?", (node,)
        ).fetchone()
        return None if row is None else Position(*row)

    def append(self, node: str, batch: Batch) -> None:
        """The batch's rows and end position, in one transaction (StoreConflict: neither)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            stored = self.position(node)
            if stored is not None and stored != batch.start:
                raise StoreConflict(
                    f"{self.path}: {node} is stored up to {stored}, the batch starts at "
                    f"{batch.start}: another writer?"
                )
            db.executemany(_INSERT, (_params(node, r) for r in batch.rows))
            end = batch.end
            db.execute(
                "INSERT INTO mlsd_positions (node, csv_dev, csv_ino, csv_offset, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (node) DO UPDATE SET csv_dev = "
                "excluded.csv_dev, csv_ino = excluded.csv_ino, csv_offset = "
                "excluded.csv_offset, updated_at = excluded.updated_at",
                (node, end.csv_dev, end.csv_ino, end.csv_offset, int(time.time())),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    # ---- reading (tests, `store check`)

    def rows(self) -> list[StoredRow]:
        """Every stored row, in the order stored."""
        return [_row(r) for r in self.db.execute(_SELECT + " ORDER BY id")]

    def count(self) -> int:
        """Rows stored."""
        return int(self.db.execute("SELECT count(*) FROM mlsd_events").fetchone()[0])

    def counts_by_day(self, tz: tzinfo) -> dict[date, int]:
        """Rows per day in `tz` (every node's)."""
        out: dict[date, int] = {}
        query = f"SELECT time / {QUARTER}, count(*) FROM mlsd_events GROUP BY 1"  # noqa: S608
        for quarter, n in self.db.execute(query):
            day = datetime.fromtimestamp(quarter * QUARTER, UTC).astimezone(tz).date()
            out[day] = out.get(day, 0) + n
        return out

    def integrity(self) -> str:
        """`PRAGMA integrity_check`'s first line: `ok`, or the first problem."""
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])


def _params(node: str, r: StoredRow) -> tuple[Any, ...]:
    when = r.time
    offset = when.utcoffset()
    return (
        node,
        r.server,
        int(when.timestamp()),
        0 if offset is None else int(offset.total_seconds()),
        r.ip,
        r.user,
        r.hostname,
        r.reverse_dns_status,
        r.country_code,
        r.asn,
        r.aso,
        r.service,
        r.mechanism,
        r.attempts,
    )


def _row(r: tuple[Any, ...]) -> StoredRow:
    epoch, offset, *cells = r
    when = datetime.fromtimestamp(epoch, timezone(timedelta(seconds=offset)))
    return StoredRow(when, *cells)


T = TypeVar("T")


class SqliteSink:
    """The `Sink` on a `SqliteStore`, whose blocking calls run in one worker thread."""

    name = "store"

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlsd-store")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self, node: str) -> str | None:
        """Open and check the file (see `SqliteStore.open`): why it was moved aside, if it was."""
        return await self._call(self.store.open, node)

    async def position(self, node: str) -> Position | None:
        """The node's stored position."""
        return await self._call(self.store.position, node)

    async def append(self, node: str, batch: Batch) -> None:
        """Rows and end position in one transaction."""
        await self._call(self.store.append, node, batch)

    async def rebuild(self, stored: Position, committed: Position, why: str) -> None:
        """The shipper's `on_mismatch`: move the file aside and start a new one."""
        await self._call(self.store.move_aside, f"its position is not on this CSV: {why}")

    async def close(self) -> None:
        """Close the connection once the worker is done with what it was given."""
        await self._call(self.store.close)
        self._pool.shutdown(wait=True)
