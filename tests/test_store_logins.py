"""The logins in the SQLite store: shipped exactly once beside the failures, each journal
with its own position; schema 2 from 1 in place; retention; `store check`'s counts; the
sentinel's warm-up read."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from mlsd.rows import HEADER
from mlsd.store.check import csv_counts_by_day, differences
from mlsd.store.contract import Batch, LoginRow, Position, StoreConflict
from mlsd.store.journals import EVENTS, LOGINS, LOGINS_HEADER
from mlsd.store.ship import Shipper
from mlsd.store.sqlite import SqliteStore
from mlsd.store.sqlschema import SCHEMA_VERSION, V1
from mlsd.store.sqlsink import SqliteSink
from tests.storekit import (
    append_logins,
    csv_rows,
    events,
    login_cells,
    login_rows,
    multiset,
    position,
    write_csv,
    write_logins,
)

NODE = "mx1"
Committed = Callable[[], Position | None]


def ship_both(
    csv: Path, logins: Path, db: Path, c_events: Committed, c_logins: Committed, **kw: int
) -> tuple[Shipper, Shipper]:
    """Open the store, ship both journals' committed rows concurrently, close."""

    async def go() -> tuple[Shipper, Shipper]:
        sink = SqliteSink(db)
        await sink.open(NODE)
        lsink = sink.sibling(LOGINS)
        ev = Shipper(csv, c_events, sink, NODE, on_mismatch=sink.rebuild, **kw)  # type: ignore[arg-type]
        lo = Shipper(logins, c_logins, lsink, NODE, journal=LOGINS, on_mismatch=lsink.rebuild,
                     **kw)  # type: ignore[arg-type]  # fmt: skip
        try:
            await asyncio.gather(ev.ship_committed(), lo.ship_committed())
        finally:
            await lsink.close()  # a sibling's close leaves the store open
            await sink.close()
        return ev, lo

    return asyncio.run(go())


def opened(db: Path) -> SqliteStore:
    store = SqliteStore(db)
    store.open()
    return store


def test_logins_and_failures_ship_once_each_with_their_own_positions(tmp_path: Path) -> None:
    """Both journals in small batches at once: each table is its CSV's committed rows, in
    order, once; each position its own CSV's committed end; nothing past it."""
    csv, logins, db = tmp_path / "mlsd.csv", tmp_path / "logins.csv", tmp_path / "e.sqlite3"
    write_csv(csv, events(60))
    write_logins(logins, login_cells(90))
    c_ev, c_lo = position(csv), position(logins)
    append_logins(logins, login_cells(5, seed=2))  # written, not committed
    ev, lo = ship_both(csv, logins, db, lambda: c_ev, lambda: c_lo, batch_rows=7)
    store = opened(db)
    assert csv_rows(csv) == store.rows(EVENTS)
    assert login_rows(logins, upto=c_lo.csv_offset) == store.rows(LOGINS)
    assert (c_ev, c_lo) == (store.position(NODE), store.position(NODE, LOGINS))
    assert (60, 90) == (ev.rows_shipped, lo.rows_shipped)
    # Again: nothing more; then only the logins move on.
    later = position(logins)
    ship_both(csv, logins, db, lambda: c_ev, lambda: later)
    assert multiset(login_rows(logins)) == multiset(opened(db).rows(LOGINS))
    assert 60 == opened(db).count(EVENTS)


def test_hostile_cells_come_back_as_written(tmp_path: Path) -> None:
    """Delimiters, quotes, a tab, a leading `=` in the user: the stored row is the cell."""
    logins, db = tmp_path / "logins.csv", tmp_path / "e.sqlite3"
    cells = login_cells(200, seed=5)
    write_logins(logins, cells)
    csv = tmp_path / "mlsd.csv"
    write_csv(csv, [])
    ship_both(csv, logins, db, lambda: position(csv), lambda: position(logins))
    stored = [r for r in opened(db).rows(LOGINS) if isinstance(r, LoginRow)]
    assert [c[3] for c in cells] == [r.user for r in stored]
    assert {'x";y', "a;b", "ü\tber", "=cmd"} <= {r.user for r in stored}
    first = stored[0]
    assert first.time == datetime.fromisoformat(cells[0][1])
    assert (first.asn, first.recipients) == (
        None if cells[0][6] == "N/A" else int(cells[0][6][2:]),
        int(cells[0][11]),
    )


def test_a_logins_batch_off_its_position_is_refused_whole(tmp_path: Path) -> None:
    """The logins' position is not the failures': a batch must start at its own."""
    store = opened(tmp_path / "e.sqlite3")
    rows = [LoginRow(datetime(2026, 12, 1, tzinfo=UTC), "mx1", "192.0.2.1", "u", "", "N/A",
                     None, "N/A", "imap", "PLAIN", "login", 0)]  # fmt: skip
    first = len(LOGINS_HEADER)
    store.append(NODE, Batch(rows, Position(1, 2, first), Position(1, 2, 300)), LOGINS)
    store.append(NODE, Batch([], Position(5, 6, len(HEADER)), Position(5, 6, 400)), EVENTS)
    with pytest.raises(StoreConflict):
        store.append(NODE, Batch(rows, Position(5, 6, 400), Position(5, 6, 500)), LOGINS)
    # With none stored, only a batch from the first row (a shipper that believes in a
    # position of a file since moved aside is refused, and starts over).
    store.forget(LOGINS)
    with pytest.raises(StoreConflict, match="not at the first row"):
        store.append(NODE, Batch(rows, Position(1, 2, 300), Position(1, 2, 400)), LOGINS)
    assert (0, None) == (store.count(LOGINS), store.position(NODE, LOGINS))
    assert Position(5, 6, 400) == store.position(NODE)


def test_a_new_logins_csv_reships_the_logins_only(tmp_path: Path) -> None:
    """The logins CSV replaced (another inode): its rows are deleted in batches and shipped
    again from the new file; the failures and their position stay."""
    csv, logins, db = tmp_path / "mlsd.csv", tmp_path / "logins.csv", tmp_path / "e.sqlite3"
    write_csv(csv, events(30))
    write_logins(logins, login_cells(50))
    ship_both(csv, logins, db, lambda: position(csv), lambda: position(logins))
    os.rename(logins, tmp_path / "logins.old")
    write_logins(logins, login_cells(7, seed=3))
    ship_both(csv, logins, db, lambda: position(csv), lambda: position(logins))
    store = opened(db)
    assert login_rows(logins) == store.rows(LOGINS)
    assert csv_rows(csv) == store.rows(EVENTS)
    assert not list(tmp_path.glob("*.aside-*"))


def test_a_version_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    """A store written by mlsd before the logins: its failures and position stay, the
    logins tables and the version 3 indexes appear, and the logins ship from the first row."""
    csv, logins, db = tmp_path / "mlsd.csv", tmp_path / "logins.csv", tmp_path / "e.sqlite3"
    write_csv(csv, events(40))
    con = sqlite3.connect(db, isolation_level=None)
    con.executescript("BEGIN;" + V1 + "INSERT INTO mlsd_schema VALUES (1);COMMIT;")  # noqa: S608
    con.close()
    c_ev = position(csv)
    # Ship the failures into the version 1 file by hand, as the previous mlsd did.
    rows = csv_rows(csv)
    con = sqlite3.connect(db, isolation_level=None)
    con.executemany(
        "INSERT INTO mlsd_events (node, server, time, utc_offset, ip, user, hostname, "
        "reverse_dns_status, country_code, asn, aso, service, mechanism, attempts) "
        "VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(NODE, r.server, int(r.time.timestamp()), *r[2:]) for r in rows],
    )
    con.execute(
        "INSERT INTO mlsd_positions VALUES (?, ?, ?, ?, 0)",
        (NODE, c_ev.csv_dev, c_ev.csv_ino, c_ev.csv_offset),
    )
    con.close()
    write_logins(logins, login_cells(25))
    with structlog.testing.capture_logs() as logs:
        ev, lo = ship_both(csv, logins, db, lambda: c_ev, lambda: position(logins))
    assert ["store schema upgraded"] == [e["event"] for e in logs if "schema" in e["event"]]
    assert (0, 25) == (ev.rows_shipped, lo.rows_shipped)
    store = opened(db)
    assert csv_rows(csv) == store.rows(EVENTS)  # kept, not rebuilt
    assert login_rows(logins) == store.rows(LOGINS)
    assert [(SCHEMA_VERSION,)] == store.db.execute("SELECT version FROM mlsd_schema").fetchall()
    indexes = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"mlsd_logins_time", "mlsd_logins_user_time", "mlsd_events_ip"} <= indexes
    assert not list(tmp_path.glob("e.sqlite3.aside-*"))


def test_a_version_2_store_missing_its_logins_table_is_damaged(tmp_path: Path) -> None:
    """Version 2 says the logins tables are there: without one the file is moved aside."""
    db = tmp_path / "e.sqlite3"
    opened(db).close()
    with sqlite3.connect(db) as con:
        con.execute("DROP TABLE mlsd_login_positions")
    store = SqliteStore(db)
    assert "mlsd_login_positions" in (store.open(NODE) or "")
    assert ["e.sqlite3.aside-"] == [
        p.name[:16] for p in tmp_path.glob("e.sqlite3.aside-*") if p.name[-4:-3] != "-"
    ]


def day_logins(start: datetime, days: int) -> list[list[str]]:
    """Three logins a day, at 01:00, 12:00 and 23:00 UTC, for `days` days."""
    out = []
    for d in range(days):
        for h in (1, 12, 23):
            c = login_cells(1, seed=d * 24 + h, start=start)[0]
            c[1] = (start + timedelta(days=d, hours=h)).isoformat()
            out.append(c)
    return out


def test_retention_deletes_only_the_old_logins_in_batches(tmp_path: Path) -> None:
    """Ten days of logins, a cut-off inside the fifth: every row before it goes (in batches
    of 4), every row from it on stays, the failures are untouched, and `store check`'s
    comparison agrees from `kept_from` on."""
    csv, logins, db = tmp_path / "mlsd.csv", tmp_path / "logins.csv", tmp_path / "e.sqlite3"
    start = datetime(2026, 11, 1, tzinfo=UTC)
    write_csv(csv, events(20, start=start))
    write_logins(logins, day_logins(start, 10))
    ship_both(csv, logins, db, lambda: position(csv), lambda: position(logins))
    cutoff = int((start + timedelta(days=4, hours=12)).timestamp())

    async def expire() -> int:
        sink = SqliteSink(db)
        await sink.open(NODE)
        try:
            return await sink.sibling(LOGINS).expire(cutoff, rows=4)
        finally:
            await sink.close()

    assert 13 == asyncio.run(expire())  # 3 a day for 4 days, and 01:00 of the fifth
    store = opened(db)
    want = [r for r in login_rows(logins) if r.time.timestamp() >= cutoff]
    assert want == store.rows(LOGINS)
    assert 20 == store.count(EVENTS)
    assert cutoff == store.kept_from(NODE)
    csv_days, bad = csv_counts_by_day(
        logins, position(logins).csv_offset, row_tz=UTC, day_tz=UTC, journal=LOGINS,
        since=cutoff,
    )  # fmt: skip
    assert (0, []) == (bad, differences(csv_days, store.counts_by_day(UTC, LOGINS, cutoff)))
    everything, _ = csv_counts_by_day(logins, position(logins).csv_offset, row_tz=UTC,
                                      day_tz=UTC, journal=LOGINS)  # fmt: skip
    assert 5 == len(differences(everything, store.counts_by_day(UTC, LOGINS)))
