"""The daemon's shipping jobs in-process: a stand-in session and a bounded run."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Coroutine
from datetime import UTC
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from mlsd.app.storejob import LoginsCommitted
from mlsd.config import Config
from mlsd.config.schema import FleetConfig, PathsConfig, SentinelConfig
from mlsd.ingest import session
from mlsd.store.ship import Shipper
from tests.storekit import position

Job = Callable[
    [session.Session, asyncio.Event, dict[str, Shipper], LoginsCommitted | None],
    Coroutine[Any, Any, None],
]


def fake_session(
    tmp_path: Path, sentinel: SentinelConfig, fleet: FleetConfig | None = None
) -> session.Session:
    """What follow_and_ship reads of a session: the configuration and the pipeline (the
    failures CSV, mlsd.csv in `tmp_path`, committed whole as it is now)."""
    cfg = Config(
        paths=PathsConfig(csv=tmp_path / "mlsd.csv", state_dir=tmp_path / "state",
                          mail_log=tmp_path / "mail.log"),
        sentinel=sentinel,
        fleet=fleet or FleetConfig(),
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
    job: Job, s: session.Session, logins: LoginsCommitted | None, until: Callable[[], bool]
) -> dict[str, Shipper]:
    """`job` (storejob's or fleetjob's follow_and_ship) with following replaced by waiting
    for `stop`, stopped once `until()` holds (or after 20 s); the shippers seen running."""
    seen: dict[str, Shipper] = {}

    async def follow(_s: session.Session, stop: asyncio.Event) -> None:
        await stop.wait()

    async def go() -> None:
        stop = asyncio.Event()
        shippers: dict[str, Shipper] = {}
        task = asyncio.create_task(job(s, stop, shippers, logins))
        deadline = time.monotonic() + 20
        # In a thread: a blocking query in the loop would hold up the sinks it waits for.
        while not await asyncio.to_thread(until) and time.monotonic() < deadline:
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
