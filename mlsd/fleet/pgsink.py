"""`PgSink`: the fleet's PostgreSQL as a `Sink` — a batch's rows and the node's position in
one transaction.

In the transaction: the node's position row is locked (`SELECT … FOR UPDATE`) and compared
with the batch's start (a mismatch is `StoreConflict` and nothing is stored); the rows go in
with `COPY` into a temporary table, then one `INSERT … SELECT` into `mlsd_events` (COPY
cannot write into a table with row-level security, the INSERT is checked by its policy);
the position moves to the batch's end. A crash or a dropped connection at any instant
leaves either all of it or none of it. The first batch of a node inserts its position row:
a second writer racing it fails on the primary key, and stores nothing.

The connection is opened lazily and again after it dropped; psycopg's `OperationalError`
reaches the caller (the shipper backs off and asks `position` again, since a commit whose
answer was lost may have happened). `prepare_threshold=None`: no server-side prepared
statements, so PgBouncer in transaction mode works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final
from urllib.parse import urlsplit

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo

from mlsd import logs
from mlsd.config.schema import Secret
from mlsd.fleet import rollup_sql, schema
from mlsd.fleet.errors import FleetError
from mlsd.store.contract import Batch, Position, StoreConflict
from mlsd.store.journals import EVENTS, Journal

log = logs.get("mlsd.fleet")

_TYPES: Final = {
    "time": "timestamptz", "asn": "int8", "attempts": "int4", "recipients": "int4",
}  # fmt: skip
"""The PostgreSQL type of each column that is not text."""


@dataclass(frozen=True, slots=True)
class _Statements:
    """One journal's SQL: its rows' columns in the row's order (the COPY writes each row as
    the tuple it is), the staging table, the insert, the position's table."""

    table: str
    positions: str
    columns: str
    types: tuple[str, ...]
    stage: str
    insert: str


def _statements(journal: Journal) -> _Statements:
    names = ("time", *journal.fields)
    cols = ", ".join(f'"{n}"' if n == "user" else n for n in names)
    types = tuple(_TYPES.get(n, "text") for n in names)
    typed = ", ".join(f"{c} {t}" for c, t in zip(cols.split(", "), types, strict=True))
    # Constants only, no value is formatted in (the node is a parameter).
    return _Statements(
        table=journal.table,
        positions=journal.positions,
        columns=cols,
        types=types,
        stage=f"CREATE TEMP TABLE mlsd_batch ({typed}) ON COMMIT DROP",
        insert=f"INSERT INTO {journal.table} (node, {cols}) SELECT %s, {cols} FROM mlsd_batch",  # noqa: S608
    )


Conn = AsyncConnection[tuple[object, ...]]


def describe(url: str) -> str:
    """`user@host:port/db` for logs: never a password, never the query string."""
    parts = urlsplit(url)
    host = parts.hostname or "local socket"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{user}{host}{port}{parts.path}"


class PgSink:
    """The fleet database, reached with psycopg 3's asyncio connection, for one journal (the
    failures by default; a second `PgSink` with `LOGINS`, on its own connection, for the
    logins: each journal ships on its own)."""

    def __init__(
        self,
        url: str,
        *,
        password: Secret | Callable[[], Secret | None] | None = None,
        keep_months: int = 0,
        connect_timeout: float = 10.0,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
        journal: Journal = EVENTS,
        zone: str = "UTC",
    ) -> None:
        self.journal = journal
        self._zone = zone
        """The day totals' zone if this node creates them (mlsd.fleet.rollup_sql)."""
        self.name = "fleet" if journal is EVENTS else f"fleet-{journal.name}"
        """"fleet", "fleet-logins": in logs, STATUS= and the metrics."""
        self._sql = _statements(journal)
        self._url = url
        self._password = password
        self._keep_months = keep_months
        self._connect_timeout = connect_timeout
        self._today = today
        self._conn: Conn | None = None
        self._months: set[date] = set()
        """Months whose partition exists (a batch within them needs no call)."""
        self.target = describe(url)

    async def _connection(self) -> Conn:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        await self._drop()
        conninfo = self._url
        # A callable is asked at each connection: a reload's new password file is used
        # from the next one on.
        secret = self._password() if callable(self._password) else self._password
        if secret is not None:
            conninfo = make_conninfo(conninfo, password=secret.reveal())
        conn: Conn = await AsyncConnection.connect(
            conninfo,
            autocommit=True,
            prepare_threshold=None,
            connect_timeout=max(1, round(self._connect_timeout)),
            application_name="mlsd",
            # A server that vanished without closing the connection is noticed in about a
            # minute (client-side: PgBouncer passes no startup options, keepalives are ours).
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
        try:
            was = await schema.ensure(conn, self._zone)
            if was != schema.SCHEMA_VERSION:
                log.info("fleet schema migrated", target=self.target, was=was,
                         now=schema.SCHEMA_VERSION)  # fmt: skip
            await self._retention(conn)
            # This month's and the next month's partitions, ahead of the rows: creating one
            # waits for the inserts in flight, better now than at midnight on the 1st.
            this = schema.month_start(self._today())
            ahead = schema.month_start(self._today(), -1)
            await conn.execute(
                "SELECT mlsd_ensure_partitions(%s, %s, %s)", (self._sql.table, this, ahead)
            )
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._months = {this, ahead}
        log.info("fleet database connected", target=self.target)
        return conn

    async def _retention(self, conn: Conn) -> None:
        if self._keep_months < 1:
            return
        # The failures' day totals go with them (they are counted from those rows).
        parents = (self._sql.table, *(rollup_sql.PARENTS if self.journal is EVENTS else ()))
        try:
            dropped = [
                name
                for parent in parents
                for name in await schema.drop_old_partitions(
                    conn, self._keep_months, self._today(), parent
                )
            ]
        except psycopg.errors.InsufficientPrivilege:
            log.warning("fleet retention needs the owner role", target=self.target,
                        keep_months=self._keep_months)  # fmt: skip
            return
        for name in dropped:
            log.info("fleet partition dropped", partition=name, keep_months=self._keep_months)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def position(self, node: str) -> Position | None:
        """The position up to which `node`'s rows are stored; None before its first batch."""
        conn = await self._connection()
        try:
            cur = await conn.execute(
                f"SELECT csv_dev, csv_ino, csv_offset FROM {self._sql.positions} "  # noqa: S608 - a constant name
                "WHERE node = %s",
                (node,),
            )
            row = await cur.fetchone()
        except psycopg.OperationalError:
            await self._drop()
            raise
        return None if row is None else _position(row)

    async def append(self, node: str, batch: Batch) -> None:
        """Store the rows and move `node`'s position to `batch.end`, in one transaction."""
        conn = await self._connection()
        months: set[date] = set()
        try:
            async with conn.transaction():
                cur = await conn.execute(
                    f"SELECT csv_dev, csv_ino, csv_offset FROM {self._sql.positions} "  # noqa: S608 - a constant name
                    "WHERE node = %s FOR UPDATE",
                    (node,),
                )
                row = await cur.fetchone()
                if row is not None and _position(row) != batch.start:
                    raise StoreConflict(
                        f"fleet: {node}'s stored position {_position(row)} is not the "
                        f"batch's start {batch.start}"
                    )
                if batch.rows:
                    months = await self._insert(conn, node, batch)
                end = batch.end
                if row is None:
                    await conn.execute(
                        f"INSERT INTO {self._sql.positions} (node, csv_dev, csv_ino, "  # noqa: S608 - a constant name
                        "csv_offset) VALUES (%s, %s, %s, %s)",
                        (node, end.csv_dev, end.csv_ino, end.csv_offset),
                    )
                else:
                    await conn.execute(
                        f"UPDATE {self._sql.positions} SET csv_dev = %s, csv_ino = %s, "  # noqa: S608 - a constant name
                        "csv_offset = %s, updated_at = now() WHERE node = %s",
                        (end.csv_dev, end.csv_ino, end.csv_offset, node),
                    )
        except psycopg.errors.UniqueViolation:
            raise StoreConflict(f"fleet: another writer stored {node}'s first batch") from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise FleetError(
                f"the fleet database refuses rows for node {node!r} from this role ({exc}): "
                "a node's role must be named as its [fleet] node (row-level security), "
                "see contrib/postgresql/fleet-roles.sql"
            ) from exc
        except psycopg.OperationalError:
            await self._drop()
            raise
        # Only a committed transaction's partitions are known to exist (a rollback undoes
        # them, and the next batch asks again: the call is cheap).
        self._months |= months

    async def _insert(self, conn: Conn, node: str, batch: Batch) -> set[date]:
        months = {schema.month_start(r.time.astimezone(UTC).date()) for r in batch.rows}
        # Month by month, not min..max: one far-future stamp must not make a century of
        # partitions (the function refuses a span over ten years).
        for month in sorted(months - self._months):
            await conn.execute(
                "SELECT mlsd_ensure_partitions(%s, %s, %s)", (self._sql.table, month, month)
            )
        sql = self._sql
        await conn.execute(sql.stage.encode())
        async with conn.cursor().copy(
            f"COPY mlsd_batch ({sql.columns}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            # Binary: no text to format here nor to parse there (twice the rows per second).
            copy.set_types(sql.types)
            for row in batch.rows:
                await copy.write_row(row)
        await conn.execute(sql.insert.encode(), (node,))
        return months

    async def close(self) -> None:
        """Close the connection; idempotent."""
        await self._drop()


def _position(row: tuple[object, ...]) -> Position:
    return Position(csv_dev=int(str(row[0])), csv_ino=int(str(row[1])), csv_offset=int(str(row[2])))
