"""The event store with the daemon as a real process: kill -9 while shipping, damage, the CLI.

The store must hold exactly the CSV's rows, compared as multisets of whole rows: a row lost
and a row stored twice both show. The CSV's own exactly-once contract is the follower's
tests' business; here the CSV is the truth the store is held to.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsd.app.storejob import node_name
from mlsd.store.contract import Row
from mlsd.store.journals import LOGINS
from mlsd.store.ship import Shipper
from mlsd.store.sqlsink import SqliteSink
from tests.followkit import ENV, Env, Writer, kill9, lines, wait_for
from tests.storekit import (
    connected,
    csv_rows,
    login_cells,
    login_rows,
    multiset,
    position,
    write_logins,
    writers,
)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    e.extra = "[report]\ntimezone = UTC\n"
    e.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
    yield e
    e.cleanup()


def db_path(env: Env) -> Path:
    return env.state / "events.sqlite3"


def store_rows(env: Env) -> list[Row]:
    """What the store holds, read as an admin's `sqlite3` would (a plain connection)."""
    with connected(db_path(env)) as store:
        return store.rows()


def committed_length(env: Env) -> int:
    return int(json.loads((env.state / "checkpoint.json").read_text())["csv_length"])


def caught_up(env: Env) -> bool:
    """The store's position is the checkpoint's committed CSV length."""
    try:
        with sqlite3.connect(db_path(env)) as con:
            row = con.execute("SELECT csv_offset FROM mlsd_positions").fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == committed_length(env) == env.csv.stat().st_size


def mlsd(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        env.cmd(*args), capture_output=True, text=True, timeout=120, env=ENV, check=False
    )


def assert_store_is_the_csv(env: Env) -> None:
    want, got = multiset(csv_rows(env.csv)), multiset(store_rows(env))
    assert want == got, (
        f"missing={list((want - got).elements())[:5]} extra={list((got - want).elements())[:5]}"
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_kill9_while_shipping_stores_every_row_exactly_once(env: Env, seed: int) -> None:
    """Lines written in bursts while mlsd is killed at random instants and restarted: in
    the end the store holds the CSV's rows, each once."""
    rng = random.Random(seed)
    w = Writer(env.log)
    seq = 0
    for _ in range(5):
        proc = env.start()
        for _ in range(rng.randint(1, 4)):
            n = rng.randint(1, 400)
            w.write(lines(range(seq, seq + n)))
            seq += n
            time.sleep(rng.uniform(0, 0.15))
        time.sleep(rng.uniform(0, 0.3))
        kill9(proc)
        # Its store writer leaves with it (at once, or after the transaction under way).
        wait_for(lambda: not writers(db_path(env)), timeout=30)
    proc = env.start()
    w.write(lines(range(seq, seq + 50)))
    seq += 50
    wait_for(lambda: len(csv_rows(env.csv)) == seq and caught_up(env), timeout=60)
    assert len(writers(db_path(env))) == 1
    assert env.stop(proc) == 0
    assert not writers(db_path(env))
    assert_store_is_the_csv(env)
    assert "store moved aside" not in env.all_stderr()


def test_a_damaged_store_is_rebuilt_at_start_and_check_agrees(env: Env) -> None:
    """Garbage in the file: moved aside at the next start, rebuilt, `store check` exit 0."""
    w = Writer(env.log)
    w.write(lines(range(300)))
    proc = env.start()
    wait_for(lambda: len(csv_rows(env.csv)) == 300 and caught_up(env))
    assert env.stop(proc) == 0
    db_path(env).write_bytes(b"\x00garbage" * 4096)
    for extra in ("-wal", "-shm"):
        Path(f"{db_path(env)}{extra}").unlink(missing_ok=True)
    proc = env.start()
    wait_for(lambda: caught_up(env))
    assert env.stop(proc) == 0
    err = env.all_stderr()
    assert "store moved aside" in err and "store rebuilt" in err, err[-3000:]
    assert list(env.state.glob("events.sqlite3.aside-*"))
    assert_store_is_the_csv(env)
    res = mlsd(env, "store", "check")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "days agree" in res.stdout
    status = mlsd(env, "status").stdout
    assert f"  store         {db_path(env)}: 300 rows, up to date\n" in status, status


LOGIN = (
    b"Nov 25 05:59:00 srv dovecot: imap-login: Login: user=<alice>, method=PLAIN, "
    b"rip=192.0.2.5, lip=192.0.2.1, mpid=7, TLS, session=<abc>\n"
)
"""A successful login (the logins CSV)."""


def test_store_check_names_the_day_that_differs_and_rebuild_fixes_it(env: Env) -> None:
    """A row deleted behind mlsd's back: check exits 1 naming its day; rebuild (refused
    while the daemon runs) makes them agree again."""
    w = Writer(env.log)
    w.write(lines(range(40)) + LOGIN)
    proc = env.start()
    wait_for(lambda: len(csv_rows(env.csv)) == 40 and caught_up(env))
    res = mlsd(env, "store", "rebuild")
    assert res.returncode == 1 and "refused" in res.stderr, res.stderr
    assert env.stop(proc) == 0
    with sqlite3.connect(db_path(env)) as con:
        con.execute("DELETE FROM mlsd_events WHERE id = (SELECT max(id) FROM mlsd_events)")
    day = csv_rows(env.csv)[-1].time.date().isoformat()  # [report] timezone: UTC here
    res = mlsd(env, "store", "check")
    assert res.returncode == 1, res.stdout
    assert f"  {day}  40  39" in res.stdout
    res = mlsd(env, "store", "rebuild")
    assert res.returncode == 0, res.stderr
    # The logins CSV's committed row is rebuilt too, into its own table.
    assert "store rebuilt: 40 rows and 1 logins" in res.stdout
    with sqlite3.connect(db_path(env)) as con:
        assert [("alice", "192.0.2.5")] == con.execute(
            "SELECT user, ip FROM mlsd_logins"
        ).fetchall()
    assert mlsd(env, "store", "check").returncode == 0
    assert_store_is_the_csv(env)


def test_kill9_during_a_rebuild_resumes_where_it_stopped(env: Env) -> None:
    """A CSV written by `mlsd scan` (which does not ship) is stored at the next start, in
    transactions of 5000 rows: killed several times on the way, it ends with each row once."""
    Writer(env.log).write(lines(range(20000), noise=False))
    env.scan()
    rng = random.Random(7)
    for _ in range(4):
        proc = env.start()
        time.sleep(rng.uniform(0.05, 0.6))
        kill9(proc)
        wait_for(lambda: not writers(db_path(env)), timeout=30)
    proc = env.start()
    wait_for(lambda: caught_up(env), timeout=60)
    assert env.stop(proc) == 0
    assert 20000 == len(store_rows(env))
    assert_store_is_the_csv(env)


def test_a_store_locked_by_someone_else_never_holds_following_up(env: Env) -> None:
    """An admin's write transaction holds the store's lock past the busy timeout: the rows
    still reach the CSV at once, mlsd says once that the store is unavailable, and stores
    them when the lock is gone (`store resumed`)."""
    w = Writer(env.log)
    w.write(lines(range(10)))
    proc = env.start()
    wait_for(lambda: len(csv_rows(env.csv)) == 10 and caught_up(env))
    admin = sqlite3.connect(db_path(env), isolation_level=None)
    admin.execute("BEGIN IMMEDIATE")
    try:
        w.write(lines(range(10, 30)))
        wait_for(lambda: len(csv_rows(env.csv)) == 30, timeout=10)
        wait_for(lambda: "store unavailable" in env.stderr(proc), timeout=20)
    finally:
        admin.execute("ROLLBACK")
        admin.close()
    wait_for(lambda: caught_up(env), timeout=30)
    assert env.stop(proc) == 0
    err = env.stderr(proc)
    assert 1 == err.count("store unavailable") and "store resumed" in err, err[-3000:]
    assert_store_is_the_csv(env)


def test_store_check_compares_the_logins_too(env: Env) -> None:
    """A logins CSV shipped into the daemon's store: `store check` says its days agree; a
    login deleted behind mlsd's back is named by its day (exit 1)."""
    w = Writer(env.log)
    w.write(lines(range(20)))
    proc = env.start()
    wait_for(lambda: len(csv_rows(env.csv)) == 20 and caught_up(env))
    assert env.stop(proc) == 0
    logins = env.csv.with_name("logins.csv")
    write_logins(logins, login_cells(50))

    async def ship() -> None:
        sink = SqliteSink(db_path(env))
        await sink.open(node_name())
        lsink = sink.sibling(LOGINS)
        try:
            await Shipper(logins, lambda: position(logins), lsink, node_name(),
                          journal=LOGINS).ship_committed()  # fmt: skip
        finally:
            await sink.close()

    asyncio.run(ship())
    res = mlsd(env, "store", "check")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "logins: store " in res.stdout and "logins: " in res.stdout.split("days agree")[-2]
    with sqlite3.connect(db_path(env)) as con:
        con.execute("DELETE FROM mlsd_logins WHERE id = (SELECT max(id) FROM mlsd_logins)")
    day = login_rows(logins)[-1].time.date().isoformat()  # [report] timezone: UTC here
    res = mlsd(env, "store", "check")
    assert res.returncode == 1, res.stdout
    assert "logins: days that differ" in res.stdout
    assert f"  {day}  " in res.stdout.split("logins: days that differ")[1]
