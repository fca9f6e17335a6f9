"""`status`'s "events today" comes from the store when it is caught up, else from the CSV,
and `status --json` says which (`counted_from`)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mlsd import config
from mlsd.app import status, status_render, storeread
from mlsd.config import Config
from mlsd.ingest.checkpoint import CHECKPOINT_NAME, Checkpoint
from mlsd.rows import HEADER, AuthFailure
from mlsd.store.contract import Batch, Position
from mlsd.store.sqlite import NAME, SqliteStore
from tests.storekit import append_csv, csv_rows, events, position, write_csv

NOW = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)


def setup(tmp_path: Path) -> tuple[Config, Path, list[AuthFailure]]:
    """A CSV of today's rows with one stamped years ahead in the middle, its checkpoint."""
    state = tmp_path / "state"
    state.mkdir()
    csv = tmp_path / "mlsd.csv"
    evs = events(400, seed=5, start=datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    evs.insert(200, evs[200]._replace(time=datetime(2031, 1, 1, tzinfo=UTC)))
    write_csv(csv, evs)
    commit(state, csv)
    cfg = config.loads(
        f"[paths]\nstate_dir = {state}\ncsv = {csv}\nmail_log = {tmp_path / 'mail.log'}\n"
        "[report]\ntimezone = UTC\n",
        tmp_path / "mlsd.conf",
    )
    return cfg, csv, evs


def commit(state: Path, csv: Path) -> None:
    """A checkpoint saying the whole CSV is committed."""
    st = os.stat(csv)
    cp = Checkpoint(
        source=str(state / "mail.log"),
        generation=None,
        offset=0,
        csv_dev=st.st_dev,
        csv_ino=st.st_ino,
        csv_length=st.st_size,
        committed_at=0.0,
    )
    (state / CHECKPOINT_NAME).write_text(cp.to_json())


def ship(cfg: Config, csv: Path, upto: int | None = None) -> None:
    st = os.stat(csv)
    store = SqliteStore(cfg.paths.state_dir / NAME)
    store.open("mx1")
    end = position(csv, upto)
    rows = csv_rows(csv, upto=end.csv_offset)
    store.append("mx1", Batch(rows, Position(st.st_dev, st.st_ino, len(HEADER)), end))
    store.close()


def today(evs: list[AuthFailure]) -> int:
    return sum(1 for ev in evs if ev.time.date() == NOW.date() and ev.time < NOW)


def test_a_caught_up_store_counts_today_and_a_future_stamp_hides_nothing(tmp_path: Path) -> None:
    cfg, csv, evs = setup(tmp_path)
    csv_count = status.gather(cfg, NOW)
    assert csv_count.counted_from == "csv"  # no store yet
    ship(cfg, csv)
    assert storeread.caught_up(cfg) == cfg.paths.state_dir / NAME
    st = status.gather(cfg, NOW)
    assert st.counted_from == "store"
    assert st.events_today == today(evs) == 400  # the 2031 row is not today
    assert '"counted_from": "store"' in st.to_json()
    assert "events today  400 (counted in the store)\n" in status_render.render(st)
    assert "events today  " + f"{csv_count.events_today}\n" in status_render.render(csv_count)
    # The CSV reader stops at the far-future row: what the store's query by time fixes.
    assert csv_count.events_today is not None and csv_count.events_today < today(evs)


def test_a_store_behind_the_committed_csv_is_not_used(tmp_path: Path) -> None:
    cfg, csv, evs = setup(tmp_path)
    ship(cfg, csv)
    more = events(50, seed=6, start=datetime(2026, 11, 25, 20, 0, tzinfo=UTC))
    append_csv(csv, more)
    commit(cfg.paths.state_dir, csv)  # committed, not shipped yet
    assert storeread.caught_up(cfg) is None
    st = status.gather(cfg, NOW)
    assert st.counted_from == "csv"
    ship_rest(cfg, csv)
    st = status.gather(cfg, NOW)
    assert st.counted_from == "store"
    assert st.events_today == today(evs + more)


def ship_rest(cfg: Config, csv: Path) -> None:
    store = SqliteStore(cfg.paths.state_dir / NAME)
    store.open("mx1")
    start = store.position("mx1")
    assert start is not None
    end = position(csv)
    data = csv.read_bytes()[start.csv_offset :]
    part = csv.with_suffix(".part")
    part.write_bytes(HEADER + data)
    store.append("mx1", Batch(csv_rows(part), start, end))
    store.close()


def test_a_store_of_another_csv_is_not_used(tmp_path: Path) -> None:
    cfg, csv, _ = setup(tmp_path)
    ship(cfg, csv)
    moved = csv.with_name("new.csv")
    os.rename(csv, moved)
    write_csv(csv, events(3, seed=9, start=NOW - timedelta(hours=1)))
    commit(cfg.paths.state_dir, csv)
    assert storeread.caught_up(cfg) is None
    st = status.gather(cfg, NOW)
    assert (st.counted_from, st.events_today) == ("csv", 3)
