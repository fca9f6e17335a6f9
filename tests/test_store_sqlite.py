"""The SQLite store and the shipper in one process: exactly once, conflicts, damage, backoff."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from mlsd.errors import StateError
from mlsd.rows import HEADER, decode_row
from mlsd.store import csvrows
from mlsd.store.contract import Batch, Position, ReadsCsv, Shipped, Span, StoreConflict
from mlsd.store.rowmap import stored_row
from mlsd.store.ship import Shipper
from mlsd.store.sqlite import SCHEMA_VERSION, SqliteStore
from mlsd.store.sqlsink import SqliteSink
from tests.storekit import append_csv, csv_rows, edit_row, events, multiset, position, write_csv

NODE = "mx1"


def ship(csv: Path, db: Path, committed: Callable[[], Position | None], **kw: object) -> Shipper:
    """Open the store, ship what is committed, close; the shipper for its counters."""

    async def go() -> Shipper:
        sink = SqliteSink(db)
        await sink.open(NODE)
        shipper = Shipper(csv, committed, sink, NODE, on_mismatch=sink.rebuild, **kw)  # type: ignore[arg-type]
        try:
            await shipper.ship_committed()
        finally:
            await sink.close()
        return shipper

    return asyncio.run(go())


def stored(db: Path) -> SqliteStore:
    store = SqliteStore(db)
    store.open()
    return store


def test_committed_rows_are_stored_once_in_batches(tmp_path: Path) -> None:
    """Every committed row, in CSV order, across batches; nothing past the committed end."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(120))
    committed = position(csv)
    append_csv(csv, events(5, seed=2))  # written, not yet committed
    with open(csv, "ab") as fh:
        fh.write(b"torn;line")  # and a torn last line
    shipper = ship(csv, db, lambda: committed, batch_rows=7)
    store = stored(db)
    assert csv_rows(csv, upto=committed.csv_offset) == store.rows()
    assert committed == store.position(NODE)
    assert 120 == shipper.rows_shipped
    # Shipping again stores nothing more; a later commit ships only the new rows.
    ship(csv, db, lambda: committed)
    assert 120 == stored(db).count()
    later = position(csv, os.path.getsize(csv) - len(b"torn;line"))
    ship(csv, db, lambda: later)
    assert multiset(csv_rows(csv, upto=later.csv_offset)) == multiset(stored(db).rows())


def test_iso_and_maillogsentinel_dates_keep_their_instant(tmp_path: Path) -> None:
    """An ISO date keeps its offset; a MailLogSentinel date is read in the zone it was
    written in."""
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    for fmt in ("iso", "maillogsentinel"):
        csv, db = tmp_path / f"{fmt}.csv", tmp_path / f"{fmt}.sqlite3"
        write_csv(csv, events(30), tz=paris, date_format=fmt)
        ship(csv, db, lambda c=csv: position(c), tz=paris)  # type: ignore[misc]
        assert csv_rows(csv, tz=paris) == stored(db).rows()


def test_a_batch_not_at_the_stored_position_is_refused_whole(tmp_path: Path) -> None:
    """StoreConflict, and neither its rows nor its position are stored."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(10))
    rows = csv_rows(csv)
    store = stored(db)
    first = Position(1, 2, len(HEADER))
    store.append(NODE, Batch(rows[:5], first, Position(1, 2, 500)))
    with pytest.raises(StoreConflict):
        store.append(NODE, Batch(rows[5:], Position(1, 2, 400), Position(1, 2, 900)))
    assert rows[:5] == store.rows()
    assert Position(1, 2, 500) == store.position(NODE)


def test_a_new_store_is_mode_0640_in_wal_mode(tmp_path: Path) -> None:
    """Attack data is not world-readable; WAL lets readers and the writer go on together."""
    db = tmp_path / "events.sqlite3"
    stored(db).close()
    assert 0o640 == stat.S_IMODE(os.stat(db).st_mode)
    with sqlite3.connect(db) as con:
        assert "wal" == con.execute("PRAGMA journal_mode").fetchone()[0]
        assert [(SCHEMA_VERSION,)] == con.execute("SELECT version FROM mlsd_schema").fetchall()


def test_a_reader_holding_a_snapshot_does_not_block_the_writer(tmp_path: Path) -> None:
    """An admin's `sqlite3` in a read transaction: batches still commit, and the reader
    sees its snapshot until it ends its transaction."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(10))
    ship(csv, db, lambda: position(csv))
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    assert 10 == reader.execute("SELECT count(*) FROM mlsd_events").fetchone()[0]
    append_csv(csv, events(15, seed=3))
    ship(csv, db, lambda: position(csv))  # would raise "database is locked" if blocked
    assert 10 == reader.execute("SELECT count(*) FROM mlsd_events").fetchone()[0]
    reader.execute("COMMIT")
    assert 25 == reader.execute("SELECT count(*) FROM mlsd_events").fetchone()[0]
    reader.close()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(b"not a database at all" * 100), id="garbage"),
        pytest.param(lambda p: os.truncate(p, 5000), id="truncated"),
        pytest.param(
            lambda p: sqlite3.connect(p, isolation_level=None).execute("DROP TABLE mlsd_positions"),
            id="table-dropped",
        ),
    ],
)
def test_a_damaged_store_is_moved_aside_and_rebuilt(
    tmp_path: Path, damage: Callable[[Path], object]
) -> None:
    """Never deleted: the damaged file is kept beside it; the new one holds every row."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(3000))
    ship(csv, db, lambda: position(csv))
    with sqlite3.connect(db) as con:  # everything in the main file, so truncation bites
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage(db)
    with structlog.testing.capture_logs() as logs:
        ship(csv, db, lambda: position(csv))
    aside = sorted(tmp_path.glob("events.sqlite3.aside-*"))
    assert aside and not aside[0].name.endswith(("-wal", "-shm")), aside
    assert ["store moved aside", "store rebuilt"] == [
        e["event"] for e in logs if e["event"].startswith("store ")
    ]
    assert csv_rows(csv) == stored(db).rows()


def test_a_newer_schema_is_an_error_naming_both_versions(tmp_path: Path) -> None:
    """A newer mlsd's store is not moved aside: its owner is told."""
    db = tmp_path / "events.sqlite3"
    stored(db).close()
    with sqlite3.connect(db) as con:
        con.execute("UPDATE mlsd_schema SET version = 7")
    with pytest.raises(StateError, match=f"version 7, newer than version {SCHEMA_VERSION}"):
        stored(db)
    assert not list(tmp_path.glob("*.aside-*"))


def test_another_csv_or_node_means_a_rebuild(tmp_path: Path) -> None:
    """After `mlsd reset` (a new CSV, another inode) the store is rebuilt from the new CSV;
    a store of another node is not appended to either."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(20))
    ship(csv, db, lambda: position(csv))
    os.rename(csv, tmp_path / "old.csv")
    write_csv(csv, events(4, seed=9))
    ship(csv, db, lambda: position(csv))
    assert csv_rows(csv) == stored(db).rows()
    assert 1 == len(list(tmp_path.glob("events.sqlite3.aside-*")))

    async def other_node() -> str | None:
        sink = SqliteSink(db)
        try:
            return await sink.open("mx9")
        finally:
            await sink.close()

    assert "another node" in (asyncio.run(other_node()) or "")
    assert 0 == stored(db).count()


class FlakySink:
    """A sink that fails its first `failures` appends (as a database that is down)."""

    name = "flaky"

    def __init__(self, inner: SqliteSink, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def position(self, node: str) -> Position | None:
        return await self.inner.position(node)

    async def append(self, node: str, batch: Batch) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection refused")
        await self.inner.append(node, batch)

    async def close(self) -> None:
        await self.inner.close()


def test_a_failing_sink_is_retried_logged_once_and_resumes(tmp_path: Path) -> None:
    """Three failures: one warning, then `store resumed` (after the first build, from an
    empty store, is done); every row stored once."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(50))

    async def go() -> None:
        inner = SqliteSink(db)
        await inner.open(NODE)
        sink = FlakySink(inner, 3)
        shipper = Shipper(csv, lambda: position(csv), sink, NODE, batch_rows=20, max_delay=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(shipper.run(stop))
        for _ in range(400):
            await asyncio.sleep(0.01)
            if shipper.lag().bytes == 0 and shipper.error is None:
                break
        assert 0 == shipper.lag().rows
        assert shipper.lag().last_time is not None
        stop.set()
        await task
        await sink.close()

    with structlog.testing.capture_logs() as logs:
        asyncio.run(go())
    said = [e["event"] for e in logs if e["event"].startswith("store ")]
    assert ["store unavailable, rows wait in the CSV", "store rebuilt", "store resumed"] == said
    assert csv_rows(csv) == stored(db).rows()


def test_lag_counts_rows_and_bytes_behind_while_the_sink_is_down(tmp_path: Path) -> None:
    """Nothing can be stored: every committed row is behind, in rows and in bytes."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(12))

    async def go() -> tuple[int | None, int | None, str | None]:
        inner = SqliteSink(db)
        await inner.open(NODE)
        sink = FlakySink(inner, 10**6)
        shipper = Shipper(csv, lambda: position(csv), sink, NODE, batch_rows=5)
        stop = asyncio.Event()
        task = asyncio.create_task(shipper.run(stop))
        while shipper.error is None:
            await asyncio.sleep(0.01)
        stop.set()
        await task
        await sink.close()
        lag = shipper.lag()
        return lag.bytes, lag.rows, lag.error

    assert (os.path.getsize(csv) - len(HEADER), 12, "connection refused") == asyncio.run(go())


def test_a_committed_end_inside_a_line_ships_the_whole_rows_then_stops(tmp_path: Path) -> None:
    """A CSV edited in place so the committed end falls inside a row: the rows before it
    are stored, that one never (half a row is no row), and the shipper says so."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(10))
    cut = position(csv, os.path.getsize(csv) - 7)
    with pytest.raises(StoreConflict, match="no whole row"):
        ship(csv, db, lambda: cut)
    assert csv_rows(csv)[:9] == stored(db).rows()


def test_rows_longer_than_a_read_block_and_bad_utf8_are_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipper reads the CSV a block at a time and decodes a block at once: rows longer
    than the block, a cut at `batch_rows` inside a block and bytes that are not UTF-8 give
    the rows of reading and decoding line by line."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(40))
    data = csv.read_bytes()
    # A cell that is not UTF-8 (a truncated sequence right before the delimiter and
    # before the line end): each line's replacement characters stay on that line.
    lines = data.split(b"\n")
    lines[5] = lines[5].replace(b";", b"\xe2\x82;", 1) + b"\xf0\x9f"
    csv.write_bytes(b"\n".join(lines))
    committed = position(csv)
    oracle = []
    for line in csv.read_bytes()[len(HEADER) :].split(b"\n")[:-1]:
        cells = decode_row(line.decode("utf-8", "replace"))
        assert cells is not None
        oracle.append(stored_row(cells))
    monkeypatch.setattr(csvrows, "READ_BLOCK", 64)  # shorter than every row
    ship(csv, db, lambda: committed, batch_rows=3)
    assert oracle == stored(db).rows()
    assert committed == stored(db).position(NODE)


@pytest.mark.parametrize("variables", [None, 100])
def test_a_batch_is_stored_in_a_few_statements_of_many_rows(
    tmp_path: Path, variables: int | None
) -> None:
    """Not a statement per row: each statement's SQLite work runs without the GIL, which a
    statement per row gives up and takes back once per row (beside the busy follower, a
    switch interval each). With SQLite's limit on bound values as low as an old build's,
    the statements are smaller and the rows the same."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(3000))
    rows = csv_rows(csv)
    store = stored(db)
    if variables is not None:
        store.db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variables)
    inserts: list[str] = []
    store.db.set_trace_callback(
        lambda sql: inserts.append(sql) if sql.startswith("INSERT INTO mlsd_events") else None
    )
    first = Position(1, 2, len(HEADER))
    store.append(NODE, Batch(rows, first, Position(1, 2, 99)))
    store.db.set_trace_callback(None)
    assert rows == store.rows()
    # 3000 = 2 * 1024 + 512 + 256 + 128 + 32 + 16 + 8; with 100 values, 4 rows (15 each).
    assert len(inserts) == (8 if variables is None else 750)


def _index_columns(db: sqlite3.Connection) -> dict[str, list[str]]:
    names = db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    return {
        n: [r[2] for r in db.execute(f"PRAGMA index_info({n})")]
        for (n,) in names.fetchall()
        if n.startswith("mlsd_events")
    }


def test_a_version_2_store_gets_the_report_indexes_in_place(tmp_path: Path) -> None:
    """Version 3 widens the time index to (time, attempts) and adds (ip, time), for the
    report's counts and its "seen before" lookups: a version 2 store keeps its rows and
    position and gets them at the next open, logged once."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(50))
    ship(csv, db, lambda: position(csv))
    with sqlite3.connect(db, isolation_level=None) as con:  # back to what version 2 wrote
        con.executescript(
            "BEGIN; DROP INDEX mlsd_events_ip; DROP INDEX mlsd_events_time;"
            "CREATE INDEX mlsd_events_time ON mlsd_events (time);"
            "UPDATE mlsd_schema SET version = 2; COMMIT;"
        )
        assert {"mlsd_events_time": ["time"]} == _index_columns(con)
    con.close()
    with structlog.testing.capture_logs() as logs:
        store = stored(db)
    upgraded = [e for e in logs if e["event"] == "store schema upgraded"]
    assert [(2, 3)] == [(e["was"], e["now"]) for e in upgraded]
    assert {
        "mlsd_events_time": ["time", "attempts"],
        "mlsd_events_ip": ["ip", "time"],
    } == _index_columns(store.db)
    assert csv_rows(csv) == store.rows()
    assert position(csv) == store.position(NODE)
    assert [(SCHEMA_VERSION,)] == store.db.execute("SELECT version FROM mlsd_schema").fetchall()


class FailsAfter(FlakySink):
    """A sink that stores its first `ok` batches, then fails until `failures` runs out."""

    def __init__(self, inner: SqliteSink, ok: int, failures: int) -> None:
        super().__init__(inner, failures)
        self.ok = ok

    async def append(self, node: str, batch: Batch) -> None:
        if self.ok:
            self.ok -= 1
            await self.inner.append(node, batch)
            return
        await super().append(node, batch)


class FailsAfterSpan(FailsAfter):
    """`FailsAfter` that reads the CSV itself, several batches in one call
    (mlsd.store.contract.ReadsCsv), as the SQLite store's writer does: a failing batch
    ends the call with the batches before it stored."""

    async def ship_span(self, node: str, span: Span) -> Shipped:
        at, rows, skipped, last = span.start, 0, 0, None
        for _ in range(span.batches):
            if at.csv_offset >= span.until.csv_offset:
                break
            if not self.ok and self.failures:
                self.failures -= 1
                return Shipped(at, rows, skipped, last, ConnectionError("connection refused"))
            self.ok = max(0, self.ok - 1)
            one = await self.inner.ship_span(node, dataclasses.replace(span, start=at, batches=1))
            assert one.error is None
            at, rows, skipped = one.end, rows + one.rows, skipped + one.skipped
            last = one.last_time or last
        return Shipped(at, rows, skipped, last)


@pytest.mark.parametrize("sink_type", [FailsAfter, FailsAfterSpan])
def test_rows_behind_stay_right_when_the_sink_fails_after_some_batches(
    tmp_path: Path, sink_type: type[FailsAfter]
) -> None:
    """Rows behind are counted in the worker call that reads a batch, and stored rows
    taken off as batches are stored: when the sink fails after some batches, the rows
    behind are exactly those not stored, and once it is back every row is stored once.
    The same when the sink reads and stores several batches in one call: the error in
    the fourth leaves the position at the third."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(40))
    lines = csv.read_bytes()[len(HEADER) :].split(b"\n")
    after_15 = len(HEADER) + sum(len(line) + 1 for line in lines[:15])
    behind: list[tuple[int | None, int | None]] = []

    async def go() -> None:
        inner = SqliteSink(db)
        await inner.open(NODE)
        sink = sink_type(inner, ok=3, failures=4)
        assert isinstance(sink, ReadsCsv) == (sink_type is FailsAfterSpan)
        shipper = Shipper(csv, lambda: position(csv), sink, NODE, batch_rows=5, max_delay=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(shipper.run(stop))
        while shipper.error is None:
            await asyncio.sleep(0.005)
        behind.append((shipper.lag().bytes, shipper.lag().rows))
        for _ in range(400):
            await asyncio.sleep(0.01)
            if shipper.lag().bytes == 0 and shipper.error is None:
                break
        behind.append((shipper.lag().bytes, shipper.lag().rows))
        stop.set()
        await task
        await sink.close()

    asyncio.run(go())
    assert [(os.path.getsize(csv) - after_15, 25), (0, 0)] == behind
    assert csv_rows(csv) == stored(db).rows()


def test_a_limit_on_bound_values_below_one_row_is_an_error_not_a_row_left_out(
    tmp_path: Path,
) -> None:
    """No statement shape fits: SQLite refuses the first, and the batch is not stored at
    all (rows and position roll back together)."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(3))
    store = stored(db)
    store.db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)  # a row has 15 values
    with pytest.raises(sqlite3.OperationalError, match="too many SQL variables"):
        store.append(NODE, Batch(csv_rows(csv), Position(1, 2, len(HEADER)), Position(1, 2, 9)))
    assert (0, None) == (store.count(), store.position(NODE))


# Cells of hand-edited rows that no store column holds: (column, value, stored as).
EDITED = [
    ("asn", "AS99999999999999999999", None),
    ("asn", "AS4294967296", None),
    ("attempts", "99999999999999999999", 1),
    ("attempts", "2147483648", 1),
    ("attempts", "-2147483649", 1),
    ("attempts", "2147483647", 2147483647),
]


@pytest.mark.parametrize(("column", "value", "want"), EDITED)
def test_an_edited_row_with_a_number_no_store_holds_does_not_stop_the_store(
    tmp_path: Path, column: str, value: str, want: int | None
) -> None:
    """A number too large for the store's column would make every try of its batch fail:
    the row is stored with the cell read as not a number, and the rows after it too."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(6, seed=4))
    at = edit_row(csv, 0, **{column: value})
    ship(csv, db, lambda: position(csv))
    rows = stored(db).rows()
    assert len(rows) == 6
    assert want == getattr(rows[at], column)
