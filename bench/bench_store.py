"""The SQLite event store's append cost (issue 19): a scan with and without the store beside it.

Like with like: both arms are `mlsd scan`'s own work in-process (`session.open_session` +
`session.scan`, the bench log from its first line, fresh state, enrichment off), one of
them with the store's `Shipper` into a `SqliteSink` wired as `mlsd run` wires it
(mlsd.app.storejob: woken by each commit, reading only committed rows, its writer process
started on the clock).
`mlsd scan` itself has no store and `mlsd run` cannot be run without one, so in-process
is the only place both arms run the same code but for the store. The clock of the store
arm stops once the store holds every row (the shipper's final round), so the store's
whole cost is on it; `follow_s` is when the CSV was complete, i.e. how much the store
slowed following. Runs alternate between the arms so that load hits both alike. The goal
is the store arm within 20 % of the plain one (the floor). The store's own rate is a
rebuild: the finished CSV shipped from its first row into a fresh store.
Alone: `python bench/bench_store.py --lines N` (a log of N lines made with gen_log).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench_follow import count_rows, write_config
from registry import Context, Metrics, benchmark, check

GOAL: Final = 1.2
"""The scan with the store within this factor of the scan without it."""
NODE: Final = "bench"


@dataclass(frozen=True)
class ScanRun:
    seconds: float
    """Until the CSV is complete and, with the store, the store too."""
    follow_s: float
    """Until the CSV is complete."""
    rows: int
    """Rows in the CSV."""
    stored: int
    """Rows in the store (-1 without one)."""
    logins: int
    """Rows in the logins CSV."""
    logins_stored: int
    """Logins in the store (-1 without one)."""


def run_scan(log: Path, work: Path, *, store: bool) -> ScanRun:
    """`mlsd scan`'s work on `log` in `work` (fresh), with the store shipping beside it or not."""
    from mlsd import logs  # noqa: PLC0415 - a broken mlsd is an error row, not an import crash
    from mlsd.app.storejob import (  # noqa: PLC0415
        committed_of,
        logins_committed_of,
        logins_shipper,
    )
    from mlsd.config import load  # noqa: PLC0415
    from mlsd.enrich.enricher import Enricher  # noqa: PLC0415
    from mlsd.enrich.geo import Geo  # noqa: PLC0415
    from mlsd.ingest import session  # noqa: PLC0415
    from mlsd.store.journals import LOGINS  # noqa: PLC0415
    from mlsd.store.ship import Shipper  # noqa: PLC0415
    from mlsd.store.sqlite import SqliteStore  # noqa: PLC0415
    from mlsd.store.sqlsink import SqliteSink  # noqa: PLC0415

    logs.configure("ERROR", "console", sys.stderr)  # not the absent GeoIP DBs
    work.mkdir(parents=True)
    cfg = load(
        write_config(work / "mlsd.conf", log=log, csv=work / "out.csv", state=work / "state")
    )
    db = work / "events.sqlite3"

    async def go() -> tuple[float, float]:
        enricher = Enricher(cfg, Geo(cfg.geoip))
        t0 = time.perf_counter()
        try:
            s = session.open_session(cfg, enricher, first_start=session.BACKLOG)
            try:
                if not store:
                    await session.scan(s)
                    took = time.perf_counter() - t0
                    return took, took
                sink = SqliteSink(db)
                shipper = Shipper(
                    cfg.paths.csv,
                    lambda: committed_of(s.pipeline),
                    sink,
                    NODE,
                    tz=s.pipeline.tz,
                    on_mismatch=sink.rebuild,
                )
                # The logins (`[sentinel] record_logins`, on by default) go into the
                # same store through their own shipper, as `mlsd run` wires them.
                lsink = sink.sibling(LOGINS)
                lshipper = logins_shipper(s, lsink, NODE, lambda: logins_committed_of(s.pipeline))
                lshipper.on_mismatch = lsink.rebuild
                s.pipeline.on_commit.append(shipper.wake.set)
                s.pipeline.on_commit.append(lshipper.wake.set)
                done = asyncio.Event()

                async def ship() -> None:
                    await sink.open(NODE)
                    await asyncio.gather(shipper.run(done), lshipper.run(done))

                task = asyncio.create_task(ship())
                try:
                    await session.scan(s)
                    follow = time.perf_counter() - t0
                    done.set()
                    await task
                    for one in (shipper, lshipper):
                        if one.error is not None:
                            raise RuntimeError(f"the {one.sink.name} failed: {one.error}")
                    return time.perf_counter() - t0, follow
                finally:
                    await sink.close()
            finally:
                session.close_session(s)
        finally:
            await enricher.close()

    seconds, follow = asyncio.run(go())
    stored = logins_stored = -1
    if store:
        st = SqliteStore(db)
        try:
            stored, logins_stored = st.count(), st.count(LOGINS)
        finally:
            st.close()
    logins = count_rows(cfg.paths.logins()) if cfg.paths.logins().exists() else 0
    return ScanRun(seconds, follow, count_rows(cfg.paths.csv), stored, logins, logins_stored)


def rebuild_rate(csv: Path, db: Path) -> tuple[float, int]:
    """Ship `csv` from its first row into a fresh store at `db`: (seconds, rows)."""
    from mlsd.store.contract import Position  # noqa: PLC0415
    from mlsd.store.ship import Shipper  # noqa: PLC0415
    from mlsd.store.sqlsink import SqliteSink  # noqa: PLC0415

    st = csv.stat()
    end = Position(st.st_dev, st.st_ino, st.st_size)

    async def go() -> tuple[float, int]:
        sink = SqliteSink(db)
        try:
            await sink.open(NODE)  # the file made off the clock
            shipper = Shipper(csv, lambda: end, sink, NODE)
            t0 = time.perf_counter()
            rows = await shipper.ship_committed()
            return time.perf_counter() - t0, rows
        finally:
            await sink.close()

    return asyncio.run(go())


def measure(log: Path, lines: int, failures: int, repeat: int, out: Path) -> Metrics:
    """Alternate plain and store runs `repeat` times; the ratio of the best of each."""
    plain: list[ScanRun] = []
    with_store: list[ScanRun] = []
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix="store-append-") as tmp:
        for n in range(max(1, repeat)):
            # Alternate which arm goes first: a slow spell then hits each side in turn.
            arms = (False, True) if n % 2 == 0 else (True, False)
            for store in arms:
                run = run_scan(log, Path(tmp) / f"{n}-{'store' if store else 'plain'}", store=store)
                (with_store if store else plain).append(run)
        last = Path(tmp) / "0-store"
        rebuild_s, rebuilt = rebuild_rate(last / "out.csv", Path(tmp) / "rebuild.sqlite3")
    floor = min(r.seconds for r in plain)
    best = min(r.seconds for r in with_store)
    follow = min(r.follow_s for r in with_store)
    ratio = best / max(floor, 1e-9)
    rows = with_store[-1].rows
    bad = [r for r in (*plain, *with_store) if r.rows != failures] + [
        r for r in with_store if r.stored != r.rows or r.logins_stored != r.logins
    ]
    store_rate = rebuilt / max(rebuild_s, 1e-9)
    return {
        "lines_per_s": lines / max(best, 1e-9),
        "seconds": best,
        "runs": [round(r.seconds, 4) for r in with_store],
        "floor_s": floor,
        "floor_runs": [round(r.seconds, 4) for r in plain],
        "follow_s": follow,
        "vs_floor": ratio,
        "events": rows,
        "stored": with_store[-1].stored,
        "logins": with_store[-1].logins,
        "logins_stored": with_store[-1].logins_stored,
        "store_rows_per_s": store_rate,
        "rebuild_s": rebuild_s,
        "check": check(rows, failures)
        if not bad
        else f"MISMATCH: {len(bad)} runs with rows != {failures} or store != CSV",
        "summary": f"{ratio:.2f}x the scan without the store ({floor:.3f} s; CSV complete "
        f"at {follow / max(floor, 1e-9):.2f}x); goal <= {GOAL}x"
        + ("" if ratio <= GOAL else " — NOT MET")
        + f"; store alone {store_rate:,.0f} rows/s ({rebuilt:,} rows rebuilt)",
    }


@benchmark("store-append", "`mlsd scan`'s work in-process with vs without the SQLite store")
def store_append(ctx: Context) -> Metrics:
    """The store's whole cost on a backlog scan, and its own rows/s."""
    return measure(ctx.log, ctx.lines, ctx.counts["auth_failures"], ctx.repeat, ctx.out)


def main() -> None:
    import gen_log  # noqa: PLC0415 - only when run alone

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / f"store-{args.lines}.log"
    counts = gen_log.generate(log, lines=args.lines, seed=42)
    print(measure(log, counts["lines"], counts["auth_failures"], args.repeat, args.out))


if __name__ == "__main__":
    main()
