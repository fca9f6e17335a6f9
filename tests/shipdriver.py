"""A process that ships two journals into one SQLite store, for kill -9 tests.

`python -m tests.shipdriver CSV LOGINS DB DIR`: the failures CSV and the logins CSV are
followed into DB by two `Shipper`s on one `SqliteSink` (as `mlsd run` does), each up to
the committed position the test writes to DIR/events.pos or DIR/logins.pos ("dev ino
offset", replaced atomically) — standing in for the checkpoint. Small batches, so a kill
lands between and inside transactions. Runs until killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from mlsd.store.contract import Position
from mlsd.store.journals import LOGINS
from mlsd.store.ship import Shipper
from mlsd.store.sqlsink import SqliteSink


def committed(path: Path) -> Position | None:
    """The position the test committed (None before the first)."""
    try:
        dev, ino, offset = path.read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return Position(int(dev), int(ino), int(offset))


async def main(csv: Path, logins: Path, db: Path, where: Path) -> None:
    sink = SqliteSink(db)
    await sink.open("mx1")
    lsink = sink.sibling(LOGINS)
    shippers = [
        Shipper(csv, lambda: committed(where / "events.pos"), sink, "mx1", batch_rows=13,
                on_mismatch=sink.rebuild),
        Shipper(logins, lambda: committed(where / "logins.pos"), lsink, "mx1", batch_rows=11,
                journal=LOGINS, on_mismatch=lsink.rebuild),
    ]  # fmt: skip
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in shippers]
    print("ready", flush=True)
    while True:  # the checkpoint's on_commit, every 5 ms
        await asyncio.sleep(0.005)
        for s in shippers:
            s.wake.set()
        for t in tasks:
            if t.done():
                t.result()


if __name__ == "__main__":
    asyncio.run(main(*(Path(a) for a in sys.argv[1:5])))
