"""The day report's figures from the SQLite store (issue 19, "Reports from SQL").

A store with one day of ROWS rows, the 30 days before it (ROWS / 20 rows each, from the
same 2 000 IPs) and the day after is built off the clock; then a child process asks it
what a report asks (`mlsd.store.dayquery.StoreDays`: every figure of every section, new
attackers against the 30 days, the days' totals). Timed in the child (queries only, not
the interpreter start) with the child's own peak RSS (`registry.spawn_measured`).

Two shapes: `store-report-500k` (500 k rows from 2 000 IPs and 200 users: the goal is
< 1 s) and `store-report-1m-distinct` (1 M rows, every IP and user different: the goal is
< 10 s and < 150 MB RSS). Alone: `python bench/bench_store_report.py --rows 20000`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from registry import Context, Metrics, benchmark, spawn_measured

from mlsd.report import compose
from mlsd.store.dayquery import StoreDays
from mlsd.store.sqlite import SqliteStore

DAY: Final = date(2026, 11, 25)
TOP: Final = 10
HISTORY: Final = 30
_INSERT: Final = (
    "INSERT INTO mlsd_events (node, server, time, utc_offset, ip, user, hostname, "
    "reverse_dns_status, country_code, asn, aso, service, mechanism, attempts) "
    "VALUES ('bench', 'mx1', ?, 0, ?, ?, '', 'unknown', ?, ?, 'Example', 'smtp', 'LOGIN', ?)"
)


def _rows(n: int, start: int, distinct: bool) -> Iterator[tuple[Any, ...]]:
    step = 86400 / n
    for i in range(n):
        k = i if distinct else (i * 7919) % 2000
        ip = f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}"
        user = f"u{i}" if distinct else f"u{i % 200}"
        cc = ("NL", "CN", "US", "BR", "RU")[k % 5]
        yield (start + int(i * step), ip, user, cc, 64500 + k % 50, 1 if i % 4 else 3)


def build(path: Path, rows: int, distinct: bool) -> None:
    """The store: `rows` rows on DAY, a tenth as many on each day around it."""
    store = SqliteStore(path)
    store.open("bench")
    db = store.db
    start = int(datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC).timestamp())
    db.execute("BEGIN")
    for back in range(HISTORY, 0, -1):  # the 30 days a report compares with
        db.executemany(_INSERT, _rows(rows // 20, start - back * 86400, False))
    db.executemany(_INSERT, _rows(rows, start, distinct))
    db.executemany(_INSERT, _rows(rows // 10, start + 86400, False))
    db.execute("COMMIT")
    store.close()


def figures(path: Path) -> dict[str, Any]:
    """What a report asks of the store for DAY (run in the child): every figure of the day
    and the 30 days before, as `mlsd.report.compose` asks them; seconds and a few results."""
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    t0 = time.perf_counter()
    got, past = compose.figures_from(
        StoreDays(path), DAY, start, start + timedelta(days=1), tz=UTC, top=TOP
    )
    known = sum(1 for v in past.values() if v is not None)
    return {
        "seconds": time.perf_counter() - t0,
        "rows": got.events,
        "hours": len(got.histogram),
        "distinct_ips": got.ips,
        "distinct_users": got.users,
        "known_days": known,
        "new_ips": got.newcomers.new,
    }


def measure(rows: int, distinct: bool) -> Metrics:
    """Build the store, compute the day's figures in a child; time, RSS and a check."""
    work = Path(tempfile.mkdtemp(prefix="mlsd-bench-store-"))
    try:
        path = work / "events.sqlite3"
        build(path, rows, distinct)
        with tempfile.TemporaryFile() as out:
            child = spawn_measured([sys.executable, __file__, "--figures", str(path)], stdout=out)
            if child.code != 0:
                return {"error": f"the child exited with status {child.code}"}
            out.seek(0)
            got = json.loads(out.read())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rss = child.maxrss_kib / 1024  # KiB on Linux
    want_distinct = rows if distinct else min(rows, 2000)
    ok = (
        got["rows"] == rows
        and got["hours"] == 24
        and got["distinct_ips"] == want_distinct
        and got["known_days"] == HISTORY
    )
    goal = "< 10 s, < 150 MB" if distinct else "< 1 s"
    return {
        "seconds": got["seconds"],
        "events": got["rows"],
        "peak_rss_mib": rss,
        "check": "ok" if ok else f"MISMATCH: {got}",
        "summary": f"{rows:,} rows: {got['seconds']:.2f} s, peak RSS {rss:.0f} MiB (goal {goal})",
    }


@benchmark("store-report-500k", "day report figures from SQL on a 500,000-row day")
def store_report_500k(ctx: Context) -> Metrics:
    """Independent of the bench log: its own store."""
    return measure(500_000, distinct=False)


@benchmark("store-report-1m-distinct", "day report figures from SQL, 1 M distinct users/IPs")
def store_report_1m_distinct(ctx: Context) -> Metrics:
    """Independent of the bench log: its own store."""
    return measure(1_000_000, distinct=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--distinct", action="store_true")
    parser.add_argument("--figures", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.figures is not None:
        print(json.dumps(figures(args.figures)))
        return
    print(measure(args.rows, args.distinct))


if __name__ == "__main__":
    main()
