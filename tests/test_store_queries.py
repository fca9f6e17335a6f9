"""The store's range counts equal the ones the CSV-based report computes.

The oracle is the report's own code: `mlsd.report.window` reads the day's rows from the
CSV and `mlsd.report.tally.Tally` counts them. Each corpus day (and synthetic days: rows
out of order, a DST day, a far-future stamp) is written as csvlog writes it, stored with
the store's own append, and the counts are compared: totals, per hour, per-day totals.
Every other figure of the report: tests/test_store_dayquery.py.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mlsd.dayfigures import PastDay
from mlsd.report import window
from mlsd.report.schedule import report_window
from mlsd.report.tally import Tally
from mlsd.rows import AuthFailure
from mlsd.store import queries
from mlsd.store.dayquery import StoreDays
from tests.storekit import events, sqlite_of, write_csv

CORPUS = Path(__file__).parent / "corpus"
PARIS = ZoneInfo("Europe/Paris")
TOP = 5


def corpus_events(path: Path) -> list[AuthFailure]:
    """The rows an expected.jsonl file says its log makes."""
    out = []
    for line in path.read_text().splitlines():
        case = json.loads(line)
        if case.get("expect") != "row":
            continue
        out.append(
            AuthFailure(
                time=datetime.fromisoformat(case["time"]),
                server=case["server"],
                service=case["service"],
                mechanism=case["mechanism"],
                hostname=case["hostname"],
                ip=case["ip"],
                user=case["user"],
                reason="x",
                attempts=case["attempts"],
            )
        )
    return out


CORPUS_FILES = sorted(p for p in CORPUS.rglob("*.expected.jsonl") if corpus_events(p))


def store(tmp_path: Path, evs: list[AuthFailure]) -> tuple[Path, sqlite3.Connection]:
    """The CSV of `evs` (in that order) and a read-only connection to a store of it."""
    csv = tmp_path / "events.csv"
    write_csv(csv, evs)
    return csv, queries.connect(sqlite_of(csv, tmp_path / "events.sqlite3"))


def all_rows(csv: Path) -> Iterator[tuple[int, list[str]]]:
    """Every row of the CSV, in file order (no window, no early stop)."""
    fd = os.open(csv, os.O_RDONLY)
    try:
        for t, fields, _ in window.Rows(fd, 0, window.Stamps(UTC)):
            yield t, fields
    finally:
        os.close(fd)


def tally_of(rows: Iterator[tuple[int, list[str]]], start: int, end: int) -> Tally:
    tally = Tally(start, -(-(end - start) // 3600))
    tally.add_all((t, f) for t, f in rows if start <= t < end)
    tally.derive()
    return tally


def assert_same(db: sqlite3.Connection, tally: Tally, start: int, end: int) -> None:
    """The range's counts (the report's every figure: tests/test_store_dayquery.py)."""
    assert queries.totals(db, start, end) == queries.Totals(tally.events, tally.failures)
    assert queries.per_hour(db, start, end) == tally.histogram


def day_range(day: date, tz: tzinfo) -> tuple[int, int]:
    start, end = report_window(day, tz)
    return int(start.timestamp()), int(end.timestamp())


def past_days(tmp_path: Path, days: list[date], tz: tzinfo) -> dict[date, PastDay | None]:
    """The days' totals as the report asks the store for the days before its own."""
    windows = [(d, *report_window(d, tz)) for d in days]
    return StoreDays(tmp_path / "events.sqlite3").past(windows, tz)


def window_tally(csv: Path, day: date, tz: tzinfo) -> tuple[Tally, int, int]:
    """The report's path: the day's window read from the CSV, tallied."""
    start, end = report_window(day, tz)
    s, e = int(start.timestamp()), int(end.timestamp())
    return tally_of(window.window(csv, start, end, UTC), s, e), s, e


@pytest.mark.parametrize("jsonl", CORPUS_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("tz", [UTC, PARIS], ids=["UTC", "Paris"])
def test_corpus_day_figures_equal_the_csv_reports(tmp_path: Path, jsonl: Path, tz: tzinfo) -> None:
    # In time order, as mlsd writes a log read in order (the samples span years: the
    # CSV reader's window assumes order within its slack; out of order is tested below).
    evs = sorted(corpus_events(jsonl), key=lambda ev: ev.time)
    csv, db = store(tmp_path, evs)
    days = sorted({e.time.astimezone(tz).date() for e in evs})
    for day in days:
        tally, s, e = window_tally(csv, day, tz)
        assert tally.events > 0
        assert_same(db, tally, s, e)
    expect = {}
    for d in days:
        t, *_ = window_tally(csv, d, tz)
        expect[d] = PastDay(t.events, t.failures)
    assert past_days(tmp_path, days, tz) == expect
    db.close()


def test_a_dst_day_out_of_order_has_25_hours_and_the_same_figures(tmp_path: Path) -> None:
    """25 October 2026 in Paris is 25 hours long; rows are shuffled within minutes, as a
    rotated generation caught up late leaves them."""
    evs = events(3000, seed=7, start=datetime(2026, 10, 24, 20, 0, tzinfo=UTC))
    rnd = random.Random(3)
    for k in range(0, len(evs) - 20, 20):  # swap blocks: out of order within the slack
        block = evs[k : k + 20]
        rnd.shuffle(block)
        evs[k : k + 20] = block
    csv, db = store(tmp_path, evs)
    day = date(2026, 10, 25)
    tally, s, e = window_tally(csv, day, PARIS)
    assert len(tally.histogram) == 25 and tally.events > 1000
    assert_same(db, tally, s, e)
    assert past_days(tmp_path, [day], PARIS) == {day: PastDay(tally.events, tally.failures)}
    db.close()


def test_a_far_future_stamp_hides_none_of_the_days_rows(tmp_path: Path) -> None:
    """Issue 17: a row stamped years ahead in the middle of the CSV. SQL reads by time, so
    every row of the day after it still counts (the oracle here reads the whole file)."""
    evs = events(1500, seed=11, start=datetime(2026, 11, 25, 0, 0, tzinfo=UTC))
    future = evs[700]._replace(time=datetime(2031, 1, 1, tzinfo=UTC), ip="203.0.113.9")
    evs.insert(700, future)
    csv, db = store(tmp_path, evs)
    s, e = day_range(date(2026, 11, 25), UTC)
    tally = tally_of(all_rows(csv), s, e)
    after = sum(1 for ev in evs[701:] if s <= ev.time.timestamp() < e)
    assert after > 100  # rows of the day really do follow the future one
    assert_same(db, tally, s, e)
    assert queries.totals(db, s, e).rows == sum(1 for ev in evs if s <= ev.time.timestamp() < e)
    future_day = day_range(date(2031, 1, 1), UTC)
    assert queries.totals(db, *future_day) == queries.Totals(1, future.attempts)
    db.close()


def test_the_connection_is_read_only(tmp_path: Path) -> None:
    _, db = store(tmp_path, events(3))
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.execute("DELETE FROM mlsd_events")
    db.close()
