"""The daemon's store job with the logins: given the committed-length callable, a second
shipper follows the logins CSV into the store beside the failures', is entered in the
shippers as "store-logins", and the retention deletes the logins past keep_days."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from mlsd.app import storejob
from mlsd.config import Config
from mlsd.config.schema import PathsConfig, SentinelConfig
from mlsd.ingest import session
from mlsd.ingest.pipeline import Pipeline
from mlsd.store.contract import Position
from mlsd.store.journals import LOGINS
from mlsd.store.ship import Shipper
from mlsd.store.sqlite import SqliteStore
from tests.storekit import csv_rows, events, login_cells, login_rows, position, write_csv
from tests.storekit import write_logins as write_logins_csv


def fake_session(tmp_path: Path, sentinel: SentinelConfig) -> session.Session:
    """What follow_and_ship reads of a session: the configuration and the pipeline."""
    cfg = Config(
        paths=PathsConfig(csv=tmp_path / "mlsd.csv", state_dir=tmp_path / "state",
                          mail_log=tmp_path / "mail.log"),
        sentinel=sentinel,
    )  # fmt: skip
    pos = position(cfg.paths.csv)
    pipeline = SimpleNamespace(
        tz=UTC,
        on_commit=[],
        committed=SimpleNamespace(csv_dev=pos.csv_dev, csv_ino=pos.csv_ino,
                                  csv_length=pos.csv_offset),
    )  # fmt: skip
    return cast(session.Session, SimpleNamespace(cfg=cfg, pipeline=pipeline))


def read(db: Path, query: str) -> tuple[int | None, ...] | None:
    """One row read-only, as an admin's `sqlite3` would (None while there is no store)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            row = con.execute(query).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else tuple(row)


def run_job(
    s: session.Session, logins: storejob.LoginsCommitted | None, until: object
) -> dict[str, Shipper]:
    """follow_and_ship with following replaced by waiting for `stop`, stopped once
    `until()` holds; the shippers seen while it ran."""
    seen: dict[str, Shipper] = {}

    async def follow(_s: session.Session, stop: asyncio.Event) -> None:
        await stop.wait()

    async def go() -> None:
        stop = asyncio.Event()
        shippers: dict[str, Shipper] = {}
        task = asyncio.create_task(storejob.follow_and_ship(s, stop, shippers, logins))
        deadline = time.monotonic() + 20
        while not until() and time.monotonic() < deadline:  # type: ignore[operator]
            seen.update(shippers)
            await asyncio.sleep(0.02)
        seen.update(shippers)
        stop.set()
        await task

    mp = pytest.MonkeyPatch()
    mp.setattr(session, "follow_forever", follow)
    try:
        asyncio.run(go())
    finally:
        mp.undo()
    return seen


def test_the_job_ships_the_logins_and_expires_the_old_ones(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    write_csv(tmp_path / "mlsd.csv", events(30))
    old = login_cells(20, seed=1, start=now - timedelta(days=200))
    new = login_cells(20, seed=2, start=now - timedelta(days=3))
    lpath = tmp_path / "logins.csv"
    write_logins_csv(lpath, old + new)
    s = fake_session(tmp_path, SentinelConfig(keep_days=90))
    committed = position(lpath)

    def logins(p: Pipeline) -> Position | None:
        assert p is s.pipeline
        return committed

    db = storejob.store_path(s.cfg)

    def done() -> bool:
        got = read(db, "SELECT (SELECT count(*) FROM mlsd_logins), "
                       "(SELECT max(kept_from) FROM mlsd_login_positions)")  # fmt: skip
        return got is not None and got[0] == 20 and (got[1] or 0) > 0

    seen = run_job(s, logins, done)
    assert {"store", "store-logins"} == set(seen)
    store = SqliteStore(db)
    store.connect()
    node = storejob.node_name()
    try:
        assert csv_rows(tmp_path / "mlsd.csv") == store.rows()
        keep = now.timestamp() - 90 * 86400
        assert [r for r in login_rows(lpath) if r.time.timestamp() >= keep] == store.rows(LOGINS)
        assert committed == store.position(node, LOGINS)
        assert abs(store.kept_from(node) - keep) < 60
    finally:
        store.close()


def test_without_the_callable_no_logins_shipper_runs(tmp_path: Path) -> None:
    """Until the integrator passes it, the store job is the failures' alone."""
    write_csv(tmp_path / "mlsd.csv", events(5))
    write_logins_csv(tmp_path / "logins.csv", login_cells(5))
    s = fake_session(tmp_path, SentinelConfig())
    db = storejob.store_path(s.cfg)

    def done() -> bool:
        got = read(db, "SELECT count(*) FROM mlsd_events")
        return got is not None and got[0] == 5

    assert {"store"} == set(run_job(s, None, done))
    store = SqliteStore(db)
    store.connect()
    try:
        assert 0 == store.count(LOGINS)
    finally:
        store.close()


def test_record_logins_no_keeps_none_in_the_store() -> None:
    """Personal data: with record_logins = no the cut-off is now (every stored login goes)."""
    cfg = Config(sentinel=SentinelConfig(record_logins=False))
    assert storejob.keep_from(cfg, 1000.0) == 1001
    assert storejob.keep_from(Config(), 10_000_000.0) == 10_000_000 - 90 * 86400
