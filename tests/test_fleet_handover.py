"""The fleet goes on after `mlsd reset`, exactly once (mlsd.store.handover), on a real
PostgreSQL.

A node's CSV is shipped in part (the fleet was down for the rest), then reset moves it
into an archive and a new CSV begins. The node's stored position names the moved file:
the shipper ships that file's committed rest from the archive, then moves on to the new
CSV in the same transaction as its first rows. The fleet's table must equal the union of
every CSV's committed rows, as a multiset; a position the record cannot explain stays a
conflict.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from mlsd.store import handover
from mlsd.store.contract import Position, StoreConflict
from mlsd.store.ship import Shipper
from tests.fleetkit import (
    Fleet,
    migrated_fleet,  # noqa: F401 - the `fleet` fixture
)
from tests.storekit import append_csv, csv_rows, events, position, write_csv

pytestmark = pytest.mark.timeout(240)


def rows_of(*paths: Path, upto: dict[Path, int] | None = None) -> Counter[tuple[object, ...]]:
    out: Counter[tuple[object, ...]] = Counter()
    for p in paths:
        out.update(("mx1", *r) for r in csv_rows(p, upto=(upto or {}).get(p)))
    return out


def reset(state: Path, csv: Path, archive: Path, length: int) -> Path:
    """What `mlsd reset` does to the CSV (mlsd.app.archive): record, then rename."""
    st = os.stat(csv)
    moved = archive / csv.name
    handover.record(state, "events", handover.Moved(st.st_dev, st.st_ino, length, moved))
    archive.mkdir(exist_ok=True)
    os.rename(csv, moved)
    return moved


def shipper(fleet: Fleet, csv: Path, state: Path | None, committed: list[Position]) -> Shipper:
    sink = fleet.sink(fleet.owner)
    moved = None if state is None else (lambda: handover.load(state, "events"))
    return Shipper(csv, lambda: committed[0], sink, "mx1", batch_rows=7, moved=moved)


async def ship_all(s: Shipper) -> None:
    try:
        await s.ship_committed()
    finally:
        await s.sink.close()


def shipped(fleet: Fleet, tmp_path: Path, rows: int) -> tuple[Path, Path]:
    """A node's state directory and CSV of `rows` rows, all shipped to the fleet."""
    state = tmp_path / "state"
    state.mkdir()
    csv = tmp_path / "mlsd.csv"
    write_csv(csv, events(rows, seed=1))
    asyncio.run(ship_all(shipper(fleet, csv, state, [position(csv)])))
    return state, csv


def copied(path: Path) -> None:
    """`path` replaced by a copy of itself: the same bytes under another inode (an
    archive moved to another file system)."""
    shutil.copy(path, path.with_suffix(".copy"))
    os.replace(path.with_suffix(".copy"), path)


def test_after_two_resets_the_fleet_gets_every_committed_row_once(
    fleet: Fleet, tmp_path: Path
) -> None:
    """CSV A shipped in part; more of A committed (not shipped), rows past the committed
    end (never shipped); reset. CSV B committed, never shipped; reset again. CSV C live.
    The fleet ends with A's and B's committed rows and C's, once each."""
    state = tmp_path / "state"
    state.mkdir()
    csv = tmp_path / "mlsd.csv"
    write_csv(csv, events(20, seed=1))
    committed = [position(csv)]
    asyncio.run(ship_all(shipper(fleet, csv, state, committed)))  # A's first 20 rows
    append_csv(csv, events(25, seed=2))
    a_committed = csv.stat().st_size
    append_csv(csv, events(3, seed=3))  # uncommitted: recovery would cut these
    a = reset(state, csv, tmp_path / "archive-1", a_committed)
    write_csv(csv, events(0, seed=4))  # B: an empty CSV at first (a header)
    append_csv(csv, events(18, seed=5))
    b = reset(state, csv, tmp_path / "archive-2", csv.stat().st_size)
    write_csv(csv, events(11, seed=6))  # C: the live CSV
    committed = [position(csv)]
    asyncio.run(ship_all(shipper(fleet, csv, state, committed)))
    assert fleet.events() == rows_of(a, b, csv, upto={a: a_committed})
    assert sum(fleet.events().values()) == 20 + 25 + 18 + 11

    # And on: the live CSV grows, the position is on it now.
    append_csv(csv, events(5, seed=7))
    committed[0] = position(csv)
    asyncio.run(ship_all(shipper(fleet, csv, state, committed)))
    assert fleet.events() == rows_of(a, b, csv, upto={a: a_committed})


def test_a_reset_with_everything_shipped_moves_on_even_if_the_archive_is_a_copy(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The archive on another file system is a copy (another inode): nothing of it is
    read when the fleet had all of it, so the node moves on to its new CSV."""
    state, csv = shipped(fleet, tmp_path, 12)
    old = rows_of(csv)
    a = reset(state, csv, tmp_path / "archive-1", csv.stat().st_size)
    copied(a)
    write_csv(csv, events(9, seed=2))
    committed = [position(csv)]
    asyncio.run(ship_all(shipper(fleet, csv, state, committed)))
    assert fleet.events() == old + rows_of(csv)


def test_a_rest_left_in_a_copied_archive_is_a_conflict_naming_it(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Rows the fleet lacks are in an archive that is no longer the same file: nothing is
    shipped (not the new CSV either, which would skip them), and the error names it."""
    state, csv = shipped(fleet, tmp_path, 12)
    append_csv(csv, events(6, seed=2))
    a = reset(state, csv, tmp_path / "archive-1", csv.stat().st_size)
    copied(a)
    write_csv(csv, events(9, seed=3))
    committed = [position(csv)]
    with pytest.raises(StoreConflict, match=str(a)):
        asyncio.run(ship_all(shipper(fleet, csv, state, committed)))
    assert sum(fleet.events().values()) == 12


def test_without_the_record_a_moved_csv_is_still_a_conflict(fleet: Fleet, tmp_path: Path) -> None:
    """No handover record (or a shipper that does not read it): the position on another
    CSV stops shipping, as before; nothing of the new CSV goes in."""
    state, csv = shipped(fleet, tmp_path, 12)
    (tmp_path / "archive").mkdir()
    os.rename(csv, tmp_path / "archive" / "mlsd.csv")  # moved by hand: no record
    write_csv(csv, events(9, seed=3))
    committed = [position(csv)]
    with pytest.raises(StoreConflict, match="another CSV file"):
        asyncio.run(ship_all(shipper(fleet, csv, state, committed)))
    assert sum(fleet.events().values()) == 12
