"""Reading a day's rows from a large CSV by binary search, equal to a full scan."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mlsd.enrich.postfix import postfix_reverse
from mlsd.ingest.csvlog import CsvJournal, RowFormat
from mlsd.report.history import csv_rows
from mlsd.report.window import parse_date, window
from mlsd.rows import HEADER, AuthFailure, Column, encode_rows
from tests.test_history import make_cfg

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def write_csv(path: Path, times: list[datetime], date_format: str = "iso") -> None:
    journal = CsvJournal(path)
    journal.open()
    fmt = RowFormat(tz=PARIS, date_format=date_format, cap=256)
    rows = []
    for i, when in enumerate(times):
        ev = AuthFailure(
            time=when, server="mail", service="smtp", mechanism="LOGIN", hostname="unknown",
            ip=f"192.0.2.{i % 250}", user=f"seq{i:06d}", reason="x",
        )  # fmt: skip
        rows.append(fmt.fields(ev, postfix_reverse(ev)))
    journal.append(encode_rows(rows))
    journal.close()


@pytest.mark.parametrize("seed", range(5))
def test_window_equals_full_scan(tmp_path: Path, seed: int) -> None:
    """For random windows over 20k rows spanning 10 days, the rows equal a naive filter."""
    rng = random.Random(seed)
    times = sorted(T0 + timedelta(seconds=rng.uniform(0, 10 * 86400)) for _ in range(20_000))
    times = [t.replace(microsecond=0) for t in times]
    # A few rows out of order, as when a rotated file is caught up late (within SLACK).
    for i in rng.sample(range(100, len(times)), 50):
        times[i] -= timedelta(hours=rng.uniform(0, 5))
    path = tmp_path / "mlsd.csv"
    write_csv(path, times)
    for _ in range(5):
        start = T0 + timedelta(hours=rng.uniform(0, 240))
        end = start + timedelta(hours=rng.choice([1, 23, 24, 25]))
        expected = Counter(f"seq{i:06d}" for i, t in enumerate(times) if start <= t < end)
        actual = Counter(cells[Column.USER] for _, cells in window(path, start, end, PARIS))
        assert expected == actual


def test_maillogsentinel_date_format_is_read_too(tmp_path: Path) -> None:
    """Rows written with date_format = maillogsentinel are found by minute."""
    times = [T0 + timedelta(minutes=i) for i in range(3000)]
    path = tmp_path / "mlsd.csv"
    write_csv(path, times, "maillogsentinel")
    start, end = T0 + timedelta(hours=10), T0 + timedelta(hours=11)
    assert 60 == sum(1 for _ in window(path, start, end, PARIS))


@pytest.mark.parametrize("bad_first", [False, True])
def test_a_date_with_impossible_seconds_is_not_a_row(tmp_path: Path, bad_first: bool) -> None:
    """Dates are parsed once per minute; a date in that minute whose seconds no date has
    (75, x5, a non-ASCII digit) is skipped on its own, before or after a valid one, and
    does not take the valid rows of its minute with it."""
    path = tmp_path / "mlsd.csv"
    times = [T0 + timedelta(hours=10, seconds=s) for s in (5, 6, 7, 8, 9)]
    write_csv(path, times)
    data = path.read_bytes()
    good = times[0].astimezone(PARIS).isoformat(timespec="seconds").encode()
    bad = [good[:17] + s + good[19:] for s in (b"75", b"x5", "\u0663\u0663".encode())]
    lines = data.split(b"\n")
    first_row = 1  # after the header
    for k, stamp in enumerate(bad):
        lines[first_row + k + (0 if bad_first else 2)] = lines[first_row].replace(good, stamp)
    path.write_bytes(b"\n".join(lines))
    # window() is what the report counts from; each date parsed in full finds the same two.
    expected = [int(t.timestamp()) for t in (times[3:] if bad_first else times[:2])]
    assert expected == [t for t, _ in window(path, T0, T0 + timedelta(days=1), PARIS)]
    dates = [line.split(b";")[Column.DATE].decode() for line in lines[first_row:] if line]
    assert 5 == len(dates)
    assert expected == [int(w.timestamp()) for d in dates if (w := parse_date(d, PARIS))]


def test_empty_and_missing_csv(tmp_path: Path) -> None:
    """No CSV or a header-only CSV: no rows, count 0."""
    cfg = make_cfg(tmp_path)
    path = cfg.paths.csv
    assert ([], 0) == (list(window(path, T0, T0 + timedelta(days=1), UTC)), csv_rows(cfg))
    write_csv(path, [])
    assert HEADER == path.read_bytes()
    assert ([], 0) == (list(window(path, T0, T0 + timedelta(days=1), UTC)), csv_rows(cfg))


def test_the_row_count_leaves_out_the_header(tmp_path: Path) -> None:
    """The report's row count counts data rows, not the header."""
    cfg = make_cfg(tmp_path)
    write_csv(cfg.paths.csv, [T0] * 1234)
    assert 1234 == csv_rows(cfg)
