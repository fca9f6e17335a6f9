"""kill -9 while both journals ship into one SQLite store: each table ends with its CSV's
committed rows, each exactly once (compared as multisets: a row lost and a row stored
twice both show)."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlsd.store.journals import EVENTS, LOGINS
from tests.followkit import ENV, kill9, wait_for
from tests.storekit import (
    append_csv,
    append_logins,
    connected,
    csv_rows,
    events,
    login_cells,
    login_rows,
    multiset,
    write_csv,
    write_logins,
)

ROOT = Path(__file__).resolve().parent.parent


def commit(where: Path, name: str, csv: Path) -> None:
    """Mark all of `csv` committed (what the checkpoint does after an append)."""
    st = os.stat(csv)
    tmp = where / f"{name}.tmp"
    tmp.write_text(f"{st.st_dev} {st.st_ino} {st.st_size}")
    os.rename(tmp, where / f"{name}.pos")


def start(csv: Path, logins: Path, db: Path, where: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.shipdriver", str(csv), str(logins), str(db), str(where)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc


def caught_up(db: Path, csv: Path, logins: Path) -> bool:
    try:
        with sqlite3.connect(db) as con:
            ev = con.execute("SELECT csv_offset FROM mlsd_positions").fetchone()
            lo = con.execute("SELECT csv_offset FROM mlsd_login_positions").fetchone()
    except sqlite3.Error:
        return False
    return (ev, lo) == ((csv.stat().st_size,), (logins.stat().st_size,))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill9_while_both_journals_ship_stores_each_row_once(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    csv, logins, db = tmp_path / "mlsd.csv", tmp_path / "logins.csv", tmp_path / "e.sqlite3"
    write_csv(csv, [])
    write_logins(logins, [])
    n = 0
    for _ in range(6):
        proc = start(csv, logins, db, tmp_path)
        for _ in range(rng.randint(1, 5)):
            n += 1
            append_csv(csv, events(rng.randint(1, 150), seed=n))
            append_logins(logins, login_cells(rng.randint(1, 200), seed=n))
            commit(tmp_path, "events", csv)
            if rng.random() < 0.7:
                commit(tmp_path, "logins", logins)
            append_logins(logins, login_cells(rng.randint(0, 20), seed=-n))  # not committed yet
            time.sleep(rng.uniform(0, 0.1))
        time.sleep(rng.uniform(0, 0.2))
        kill9(proc)
    commit(tmp_path, "events", csv)
    commit(tmp_path, "logins", logins)
    proc = start(csv, logins, db, tmp_path)
    try:
        wait_for(lambda: caught_up(db, csv, logins), timeout=60)
    finally:
        kill9(proc)
    with connected(db) as store:
        for journal, want in ((EVENTS, csv_rows(csv)), (LOGINS, login_rows(logins))):
            got = multiset(store.rows(journal))
            assert multiset(want) == got, journal.name
        assert len(login_rows(logins)) == store.count(LOGINS) > 0
