"""The store's writer process (mlsd.store.writer): killed at random instants it loses and
doubles nothing, it outlives no daemon, and the daemon's signals are not its own."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import structlog

from mlsd.rows import HEADER
from mlsd.store.contract import Shipped, Span
from mlsd.store.journals import LOGINS
from mlsd.store.ship import Shipper
from mlsd.store.sqlsink import SqliteSink
from mlsd.store.writer import IGNORED, Writer, WriterGone, sendable
from tests.followkit import wait_for
from tests.storekit import (
    connected,
    csv_rows,
    events,
    login_cells,
    login_rows,
    multiset,
    position,
    write_csv,
    write_logins,
    writers,
)

NODE = "mx1"


def gone(pid: int) -> bool:
    """The process has exited and been reaped (or is a zombie nobody reaps yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_writer_killed_at_random_instants_stores_each_row_once(tmp_path: Path, seed: int) -> None:
    """Both journals catch up in small batches while their writer is SIGKILLed at seeded
    random instants: each kill is an outage (a new writer asks the position again), and
    in the end each table holds its CSV's rows, each once."""
    rng = random.Random(seed)
    csv, logins, db = tmp_path / "mlsd.csv", tmp_path / "logins.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(6000, seed=seed))
    write_logins(logins, login_cells(4000, seed=seed))
    kills: list[int] = []

    async def go() -> tuple[Shipper, Shipper]:
        sink = SqliteSink(db)
        await sink.open(NODE)
        lsink = sink.sibling(LOGINS)
        ev = Shipper(csv, lambda: position(csv), sink, NODE, batch_rows=97, max_delay=0.05)
        lo = Shipper(logins, lambda: position(logins), lsink, NODE, journal=LOGINS,
                     batch_rows=89, max_delay=0.05)  # fmt: skip
        stop = asyncio.Event()
        tasks = [asyncio.create_task(s.run(stop)) for s in (ev, lo)]
        try:
            for _ in range(6):
                await asyncio.sleep(rng.uniform(0.0, 0.08))
                pid = sink.writer.pid
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    kills.append(pid)
            while ev.lag().bytes or lo.lag().bytes or ev.error or lo.error:
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await sink.close()
        return ev, lo

    with structlog.testing.capture_logs() as said:
        ev, lo = asyncio.run(asyncio.wait_for(go(), 120))
    assert kills, "no writer was running to be killed"
    outages = [e for e in said if e["event"] == "store unavailable, rows wait in the CSV"]
    assert outages and "writer process exited (signal 9)" in outages[0]["error"]
    with connected(db) as store:
        assert multiset(csv_rows(csv)) == multiset(store.rows())
        assert multiset(login_rows(logins)) == multiset(store.rows(LOGINS))
        assert (position(csv), position(logins)) == (
            store.position(NODE),
            store.position(NODE, LOGINS),
        )
    assert (ev.error, lo.error) == (None, None)
    assert not writers(db), "a writer outlived its sink's close"


def test_the_daemons_signals_are_not_the_writers(tmp_path: Path) -> None:
    """Ctrl-C in a terminal and systemd's SIGTERM reach the whole group: the writer goes
    on answering, and leaves only when its socket closes."""
    db = tmp_path / "events.sqlite3"
    w = Writer(db)
    try:
        assert w.call("open", NODE) is None
        pid = w.pid
        assert pid is not None
        for sig in IGNORED:
            os.kill(pid, sig)
        assert w.call("position", NODE, "events") is None
        assert pid == w.pid
    finally:
        w.stop()
    assert gone(pid)
    assert w.pid is None


def test_a_request_it_does_not_know_is_an_error_and_the_writer_stays(tmp_path: Path) -> None:
    w = Writer(tmp_path / "events.sqlite3")
    try:
        with pytest.raises(ValueError, match="no such store request: drop"):
            w.call("drop")
        pid = w.pid
        assert w.call("position", NODE, "events") is None
        assert pid == w.pid
    finally:
        w.stop()


def test_a_dead_writer_is_an_error_then_a_new_one(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite3"
    w = Writer(db)
    try:
        w.call("open", NODE)
        first = w.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with pytest.raises(WriterGone, match=r"exited \(signal 9\) during position"):
            w.call("position", NODE, "events")
        assert w.pid is None
        assert w.call("position", NODE, "events") is None  # a new writer, same file
        assert w.pid not in (None, first)
    finally:
        w.stop()


# The daemon's side in a process of its own, to be killed: it prints its writer's pid,
# then has it store a span big enough to be under way when the kill comes.
PARENT = textwrap.dedent(
    """
    import sys
    from datetime import UTC
    from pathlib import Path
    from mlsd.store.contract import Position, Span
    from mlsd.store.writer import Writer
    csv, db = Path(sys.argv[1]), Path(sys.argv[2])
    w = Writer(db)
    w.call("open", "mx1")
    print(w.pid, flush=True)
    st = csv.stat()
    start = Position(st.st_dev, st.st_ino, int(sys.argv[3]))
    end = Position(st.st_dev, st.st_ino, st.st_size)
    sys.stdin.readline()
    print(w.call("ship", "mx1", "events", Span(csv, start, end, 50, 10**6, UTC)), flush=True)
    """
)


def test_a_writer_outlives_no_daemon_killed_mid_transaction(tmp_path: Path) -> None:
    """The daemon killed (-9) while its writer stores: the writer finishes what it was
    doing (each batch with its position, one transaction) and exits, leaving a store a
    new writer ships on from, each row once."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(20000, seed=5))
    first = len(HEADER)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(csv), str(db), str(first)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdin is not None
        pid = int(parent.stdout.readline())
        assert writers(db) == [pid]
        parent.stdin.write("go\n")
        parent.stdin.flush()
        time.sleep(0.2)
        parent.kill()
        parent.wait(30)
        wait_for(lambda: not writers(db), timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
    rows = csv_rows(csv)

    async def ship_on() -> Shipper:
        sink = SqliteSink(db)
        try:
            await sink.open(NODE)
            shipper = Shipper(csv, lambda: position(csv), sink, NODE)
            await shipper.ship_committed()
            return shipper
        finally:
            await sink.close()

    asyncio.run(ship_on())
    with connected(db) as store:
        assert multiset(rows) == multiset(store.rows())
        assert position(csv) == store.position(NODE)


def test_a_span_stops_at_the_first_error_and_says_how_far_it_got(tmp_path: Path) -> None:
    """Two batches stored, then the CSV is not the one the span names: the answer carries
    the end of the second batch and the error, which the shipper raises after moving its
    position there."""
    csv, db = tmp_path / "mlsd.csv", tmp_path / "events.sqlite3"
    write_csv(csv, events(30))
    end = position(csv)
    start = position(csv, len(HEADER))
    w = Writer(db)
    try:
        w.call("open", NODE)
        done: Shipped = w.call("ship", NODE, "events", Span(csv, start, end, 10, 2, None))
        assert (done.rows, done.error) == (20, None)
        mid = done.end
        wrong = Span(tmp_path / "other.csv", mid, end, 10, 5, None)
        (tmp_path / "other.csv").write_bytes(csv.read_bytes())
        failed: Shipped = w.call("ship", NODE, "events", wrong)
        assert (failed.end, failed.rows) == (mid, 0)
        assert failed.error is not None and "is not the CSV the checkpoint committed" in str(
            failed.error
        )
        rest: Shipped = w.call("ship", NODE, "events", Span(csv, mid, end, 10, 5, None))
        assert (rest.end, rest.rows, rest.error) == (end, 10, None)
    finally:
        w.stop()
    assert sendable(None) is None


def test_the_writer_is_run_from_this_mlsd_whatever_the_daemons_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-m` puts the working directory first on sys.path: a directory holding an `mlsd`
    of someone else's must not be what the writer imports."""
    fake = tmp_path / "mlsd" / "store"
    fake.mkdir(parents=True)
    (tmp_path / "mlsd" / "__init__.py").write_text("raise SystemExit('the wrong mlsd')\n")
    (fake / "__init__.py").write_text("")
    (fake / "writer.py").write_text("raise SystemExit('the wrong mlsd')\n")
    monkeypatch.chdir(tmp_path)
    w = Writer(tmp_path / "events.sqlite3")
    try:
        assert w.call("open", NODE) is None
    finally:
        w.stop()
