"""Shipping into the fleet's PostgreSQL (issue 19): committed CSV rows per second on loopback.

A CSV of ROWS rows as csvlog writes them, shipped from its first row by the real `Shipper`
into a `PgSink` on a throw-away cluster (initdb + pg_ctl, as the tests start it; fsync off,
so the figure is mlsd's and psycopg's cost, not the disk's). The goal is 50 k rows/s.
Needs PostgreSQL's binaries (Debian: postgresql); without them the benchmark says so.
Alone: `python bench/bench_fleet.py --rows 200000`; `fleet-report` (the fleet report of one day
of 10 nodes x 1 M rows, made by PostgreSQL off the clock; goal < 3 s; timed from the day
totals, and from the rows for comparison) alone:
`python bench/bench_fleet.py --report 1000000`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
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


NODES: Final = 10
NODE_ROWS: Final = 1_000_000
REPORT_GOAL: Final = 3.0
"""Seconds for the fleet report of a day of NODES x NODE_ROWS rows."""
IPS: Final = 350_003
USERS: Final = 50_021
"""Pools prime to the number of nodes, so an address or a name comes to several nodes."""


def fleet_report(nodes: int, node_rows: int) -> Metrics:
    """Start a cluster, fill one day with `nodes` x `node_rows` rows (made by PostgreSQL
    itself, off the clock), time `mlsd.fleet.report.build` for that day."""
    try:
        cluster = start_cluster()
    except FileNotFoundError as exc:
        return {"summary": f"skipped: {exc} (apt-get install postgresql)"}
    try:
        return _fleet_report(cluster, nodes, node_rows)
    finally:
        cluster.ctl("stop", "-m", "immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)


def _fleet_report(cluster: Cluster, nodes: int, node_rows: int) -> Metrics:
    import psycopg  # noqa: PLC0415 - beside its one use

    from mlsd.config.schema import Secret  # noqa: PLC0415
    from mlsd.fleet import report  # noqa: PLC0415

    cluster.execute("CREATE ROLE bench LOGIN PASSWORD 'bench'")
    cluster.execute("CREATE DATABASE bench OWNER bench")
    url = cluster.url("bench", "bench")
    sink = PgSink(url, password=Secret("bench"))

    async def schema() -> None:
        await sink.position("bench")  # creates the schema
        await sink.close()

    asyncio.run(schema())
    day = date(2026, 11, 25)
    start = datetime(2026, 11, 25, tzinfo=UTC)
    rows = nodes * node_rows
    t0 = time.perf_counter()
    # Attackers from a pool of IPS addresses and USERS names shared by the nodes (so some
    # are seen by several), spread evenly over the day; a tenth of the rows 3 attempts.
    cluster.execute(
        "SELECT mlsd_ensure_partitions('mlsd_events', '2026-11-01', '2026-12-01');"  # noqa: S608
        'INSERT INTO mlsd_events (node, time, server, ip, "user", hostname, '
        "reverse_dns_status, country_code, asn, aso, service, mechanism, attempts) "
        f"SELECT 'mx' || (i % {nodes}), "
        f"timestamptz '{start.isoformat()}' + (i * 86400.0 / {rows}) * interval '1 second', "
        f"'mx' || (i % {nodes}), "
        f"'10.' || (h >> 16 & 255) || '.' || (h >> 8 & 255) || '.' || (h & 255), "
        f"'u' || ((i * 31) % {USERS}), '', 'unknown', "
        "(ARRAY['NL','CN','US','BR','RU'])[1 + h % 5], 64500 + h % 50, 'Example', 'smtp', "
        "'LOGIN', CASE WHEN i % 10 = 0 THEN 3 ELSE 1 END "
        f"FROM generate_series(0::bigint, {rows - 1}) AS i, "
        f"LATERAL (SELECT (i * 7919) % {IPS} AS h) AS k;"
        "INSERT INTO mlsd_positions (node, csv_dev, csv_ino, csv_offset) "
        f"SELECT 'mx' || n, 1, n, 1 FROM generate_series(0, {nodes - 1}) AS n;"
        "ANALYZE mlsd_events;",
        "bench",
    )
    filled = time.perf_counter() - t0
    with psycopg.connect(
        cluster.su_conninfo("bench"), autocommit=True, prepare_threshold=None
    ) as conn:
        end = start + timedelta(days=1)
        now = start + timedelta(days=2)
        t0 = time.perf_counter()
        got = report.build(conn, day, start, end, now=now)
        took = time.perf_counter() - t0
        # The same report from the rows (what it was before the day totals, and what a
        # report in another zone than the totals' costs), as the check's oracle.
        t0 = time.perf_counter()
        from_rows = report.build(conn, day, start, end, now=now, totals=False)
        rows_took = time.perf_counter() - t0
    ok = got.rows == rows and got.nodes_seen == nodes and got.ips == min(IPS, rows)
    verdict = "met" if took < REPORT_GOAL else "NOT MET"
    return {
        "seconds": took,
        "rows_seconds": rows_took,
        "events": got.rows,
        "fill_s": filled,
        "check": "ok"
        if ok and got == from_rows
        else f"MISMATCH: rows {got.rows}, nodes "
        f"{got.nodes_seen}, equal to the rows' report: {got == from_rows}",
        "summary": f"{nodes} x {node_rows:,} rows ({got.ips:,} IPs, {got.users:,} users): "
        f"{took:.2f} s from the day totals (goal < {REPORT_GOAL:.0f} s: {verdict}), "
        f"{rows_took:.1f} s from the rows; filled (rows and totals) in {filled:.0f} s",
    }


@benchmark("fleet-report", f"the fleet report of a day of {NODES} x {NODE_ROWS:,} rows")
def fleet_report_10x1m(ctx: Context) -> Metrics:
    """Independent of the bench log: its own cluster and rows."""
    return fleet_report(NODES, NODE_ROWS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument(
        "--report", type=int, metavar="NODE_ROWS", help="time the fleet report instead"
    )
    args = parser.parse_args()
    print(ship_rows(args.rows) if args.report is None else fleet_report(NODES, args.report))


if __name__ == "__main__":
    main()
