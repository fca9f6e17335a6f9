"""Shipping into the fleet's PostgreSQL (issue 19): committed CSV rows per second on loopback.

A CSV of ROWS rows as csvlog writes them, shipped from its first row by the real `Shipper`
into a `PgSink` on a throw-away cluster (initdb + pg_ctl, as the tests start it; fsync off,
so the figure is mlsd's and psycopg's cost, not the disk's). The goal is 50 k rows/s.
Needs PostgreSQL's binaries (Debian: postgresql); without them the benchmark says so.
Alone: `python bench/bench_fleet.py --rows 200000`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Final

from registry import Context, Metrics, benchmark

from mlsd.fleet.pgsink import PgSink
from mlsd.store.ship import Shipper
from tests.pgkit import Cluster, start_cluster
from tests.storekit import events, position, write_csv

ROWS: Final = 100_000
GOAL: Final = 50_000
"""Rows per second on loopback."""


def ship_rows(rows: int) -> Metrics:
    """Start a cluster, ship a CSV of `rows` rows into it, stop it; the rate."""
    try:
        cluster = start_cluster()
    except FileNotFoundError as exc:
        return {"summary": f"skipped: {exc} (apt-get install postgresql)"}
    work = Path(tempfile.mkdtemp(prefix="mlsd-bench-fleet-"))
    try:
        return _ship(cluster, work, rows)
    finally:
        cluster.ctl("stop", "-m", "immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _ship(cluster: Cluster, work: Path, rows: int) -> Metrics:
    cluster.execute("CREATE ROLE bench LOGIN PASSWORD 'bench'")
    cluster.execute("CREATE DATABASE bench OWNER bench")
    csv = work / "mlsd.csv"
    write_csv(csv, events(rows, seed=19))
    committed = position(csv)
    from mlsd.config.schema import Secret  # noqa: PLC0415 - beside its one use

    sink = PgSink(cluster.url("bench", "bench"), password=Secret("bench"))

    async def go() -> float:
        shipper = Shipper(csv, lambda: committed, sink, "bench")
        await sink.position("bench")  # connect and create the schema off the clock
        start = time.perf_counter()
        await shipper.ship_committed()
        took = time.perf_counter() - start
        await sink.close()
        return took

    took = asyncio.run(go())
    stored = cluster.execute("SELECT count(*) FROM mlsd_events", "bench")[0][0]
    rate = rows / max(took, 1e-9)
    verdict = "meets" if rate >= GOAL else "below"
    return {
        "seconds": took,
        "rows_per_s": rate,
        "check": "ok" if stored == rows else f"MISMATCH: stored {stored}, shipped {rows}",
        "summary": f"{rate:,.0f} rows/s into PostgreSQL ({verdict} the {GOAL:,} goal)",
    }


@benchmark("fleet-ship", f"{ROWS:,} committed CSV rows shipped into PostgreSQL (loopback)")
def fleet_ship(ctx: Context) -> Metrics:
    """Independent of the bench log: its own CSV, its own cluster."""
    return ship_rows(ROWS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()
    print(ship_rows(args.rows))


if __name__ == "__main__":
    main()
