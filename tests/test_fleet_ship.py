"""Shippers into the real PostgreSQL through outages: exactly once, compared as multisets.

The CSV grows while a `Shipper` follows it into a `PgSink`; at seeded random instants the
sink's connection is killed (`pg_terminate_backend`) or PostgreSQL is restarted
(`pg_ctl restart`). Whatever instant a transaction was cut at, the table ends equal to the
CSV's rows, row for row: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from mlsd.store import ship
from mlsd.store.contract import Position, StoreConflict
from mlsd.store.ship import Shipper
from tests.fleetkit import (
    Fleet,
    migrated_fleet,  # noqa: F401 - the `fleet` fixture
    recounted,
    totals,
)
from tests.storekit import append_csv, csv_rows, edit_row, events, position, write_csv

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries after 50 ms, not 500: the outages here last a second at most."""
    monkeypatch.setattr(ship, "FIRST_DELAY", 0.05)


class Node:
    """One node: its CSV, growing in chunks, and its shipper into the fleet."""

    def __init__(self, fleet: Fleet, csv: Path, name: str, user: str, seed: int) -> None:
        self.csv = csv
        self.name = name
        self.rnd = random.Random(seed)
        self.seed = seed
        write_csv(csv, events(self.rnd.randint(0, 40), seed=seed))
        self.committed = position(csv)
        self.sink = fleet.sink(user)
        self.shipper = Shipper(
            csv, lambda: self.committed, self.sink, name, batch_rows=17, max_delay=0.3
        )

    async def write(self, chunks: int) -> None:
        """Append `chunks` chunks of rows, committing each, a few ms apart."""
        for i in range(chunks):
            append_csv(self.csv, events(self.rnd.randint(1, 60), seed=self.seed * 1000 + i))
            self.committed = position(self.csv)
            self.shipper.wake.set()
            await asyncio.sleep(self.rnd.uniform(0, 0.05))

    async def drained(self, within: float = 60.0) -> None:
        """Wait until the shipper has stored everything committed."""
        deadline = time.monotonic() + within
        while self.shipper.stored != self.committed or self.shipper.error is not None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: not drained: stored {self.shipper.stored}, "
                    f"committed {self.committed}, error {self.shipper.error}"
                )
            self.shipper.wake.set()
            await asyncio.sleep(0.05)

    def expected(self) -> Counter[tuple[object, ...]]:
        return Counter((self.name, *r) for r in csv_rows(self.csv))


async def chaos(fleet: Fleet, rnd: random.Random, rounds: int, restarts: bool) -> list[str]:
    """Kill the mlsd connections or restart PostgreSQL at random instants; what was done."""
    done = []
    for _ in range(rounds):
        await asyncio.sleep(rnd.uniform(0.01, 0.25))
        if restarts and rnd.random() < 0.3:
            await asyncio.to_thread(fleet.db.cluster.restart)
            done.append("restart")
        else:
            killed = await asyncio.to_thread(
                fleet.db.execute,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'mlsd'",
            )
            done.append(f"kill{len(killed)}")
    return done


async def run_nodes(fleet: Fleet, nodes: list[Node], seed: int, restarts: bool) -> list[str]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(n.shipper.run(stop)) for n in nodes]
    try:
        writers = [n.write(40) for n in nodes]
        chaos_task = asyncio.create_task(chaos(fleet, random.Random(seed), 8, restarts))
        await asyncio.gather(*writers)
        done = await chaos_task
        for n in nodes:
            await n.drained()
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for n in nodes:
            await n.sink.close()
    return done


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_node_ships_exactly_once_through_kills_and_restarts(
    fleet: Fleet, tmp_path: Path, seed: int
) -> None:
    """The fleet table equals the CSV as a multiset after connection kills and restarts."""
    node = Node(fleet, tmp_path / "mlsd.csv", "mx1", fleet.owner, seed)
    done = asyncio.run(run_nodes(fleet, [node], seed, restarts=True))
    assert any(d != "kill0" for d in done), done  # the chaos reached the shipper
    assert node.expected() == fleet.events("mx1"), f"seed {seed}: {done}"
    assert recounted(fleet.db) == totals(fleet.db), f"seed {seed}: {done}"  # the day totals too
    stored = fleet.db.execute("SELECT csv_offset FROM mlsd_positions WHERE node = 'mx1'")
    assert [(node.committed.csv_offset,)] == stored


def test_three_nodes_with_their_own_roles_fill_one_table(fleet: Fleet, tmp_path: Path) -> None:
    """Three CSVs, three node roles (row-level security), connections killed meanwhile:
    the fleet table is the union of the three CSVs, row for row."""
    names = ["mx1.example.org", "mx2.example.org", "imap.example.org"]
    for name in names:
        fleet.add_node(name)
    nodes = [
        Node(fleet, tmp_path / f"{i}.csv", name, name, seed=10 + i) for i, name in enumerate(names)
    ]
    asyncio.run(run_nodes(fleet, nodes, 7, restarts=False))
    union: Counter[tuple[object, ...]] = Counter()
    for n in nodes:
        union += n.expected()
    assert union == fleet.events()
    assert sum(union.values()) > 100
    assert recounted(fleet.db) == totals(fleet.db)  # three nodes' bits, added concurrently


def test_postgresql_down_at_start_then_up(fleet: Fleet, tmp_path: Path) -> None:
    """A sink that cannot connect is retried; once PostgreSQL answers, the rows go in."""
    csv = tmp_path / "mlsd.csv"
    write_csv(csv, events(25, seed=4))
    committed = position(csv)
    good = fleet.sink(fleet.owner)
    port = fleet.db.cluster.port
    # A port nothing listens on: connection refused until the sink is pointed back.
    bad = fleet.sink(fleet.owner)
    bad._url = bad._url.replace(f":{port}/", ":1/")

    async def go() -> None:
        stop = asyncio.Event()
        shipper = Shipper(csv, lambda: committed, bad, "mx1", max_delay=0.2)
        task = asyncio.create_task(shipper.run(stop))
        await asyncio.sleep(0.5)
        assert shipper.error is not None
        assert shipper.lag().bytes is None  # unknown while the sink is unreachable
        bad._url = good._url
        deadline = time.monotonic() + 30
        while shipper.stored != committed:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        stop.set()
        await task
        await bad.close()
        await good.close()

    asyncio.run(go())
    assert Counter(("mx1", *r) for r in csv_rows(csv)) == fleet.events()


def test_positions_are_per_csv(fleet: Fleet, tmp_path: Path) -> None:
    """A stored position on another CSV (inode) is a conflict, not a silent restart."""
    csv = tmp_path / "mlsd.csv"
    write_csv(csv, events(5, seed=5))
    committed = position(csv)

    async def go() -> None:
        sink = fleet.sink(fleet.owner)
        try:
            shipper = Shipper(csv, lambda: committed, sink, "mx1")
            await shipper.ship_committed()
            other = Position(committed.csv_dev, committed.csv_ino + 1, committed.csv_offset)
            moved = Shipper(csv, lambda: other, sink, "mx1")
            with pytest.raises(StoreConflict):
                await moved.ship_committed()
        finally:
            await sink.close()

    asyncio.run(go())
    assert 5 == sum(fleet.events().values())


def test_an_edited_row_cannot_stop_the_fleet(fleet: Fleet, tmp_path: Path) -> None:
    """Both rows are shipped with the cell read as mlsd reads it (NUL shown as U+FFFD, the
    ASN as none), and every row after them too: no batch is refused at every try."""
    csv = tmp_path / "mlsd.csv"
    write_csv(csv, events(30, seed=8))
    # A NUL (PostgreSQL refuses it in text) and an ASN no AS has (over its bigint, too).
    edit_row(csv, 0, user="ro\x00ot")
    edit_row(csv, 1, asn="AS99999999999999999999")
    committed = position(csv)

    async def go() -> None:
        sink = fleet.sink(fleet.owner)
        try:
            await Shipper(csv, lambda: committed, sink, "mx1", batch_rows=7).ship_committed()
        finally:
            await sink.close()

    asyncio.run(go())
    got = fleet.events()
    assert 30 == sum(got.values())
    users = {row[4] for row in got}
    assert "ro\ufffdot" in users
    assert not any("\x00" in str(u) for u in users)
