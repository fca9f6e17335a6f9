"""Summaries of the 30 days before a report's day: rows, failed attempts, the set of IPs.

The report needs them for "new attackers", "yesterday" and the 7-day median. Each day's
summary comes from the per-day cache (`mlsd.report.daycache`) when it holds a valid entry;
the missing days are scanned in runs of consecutive days with one forward pass each
(`mlsd.report.dayscan`), and those already closed are cached.

Measured: see `bench/bench_report.py` and the README (the cold build is the first report
after installing or losing the state directory; `history()` can be called ahead of time
to warm the cache, as the daemon does at start).
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Final

from mlsd.config import Config
from mlsd.report.daycache import CACHE_KEEP_DAYS, DayCache, DaySummary
from mlsd.report.dayscan import scan_days
from mlsd.report.schedule import report_window
from mlsd.report.window import count_newlines, parse_date
from mlsd.rows import HEADER, Column, split_cells
from mlsd.safefs import nofollow_opener

HISTORY_DAYS: Final = 30


def _first_row_time(path: Path, log_tz: tzinfo) -> datetime | None:
    """The date of the CSV's first line that has a readable one."""
    with open(path, "rb", opener=nofollow_opener) as fh:
        fh.seek(len(HEADER))
        for raw in fh:
            cells = split_cells(raw.decode("utf-8", "replace"))
            when = parse_date(cells[Column.DATE], log_tz) if len(cells) > Column.DATE else None
            if when is not None:
                return when
    return None


def warm(cfg: Config, day: date) -> int:
    """`history` for its cache only (run in a child by the daemon): the days summarised.
    The zone is looked up here: the system zone read from a file cannot be pickled."""
    return sum(1 for v in history(cfg, day, cfg.report_tz()).values() if v is not None)


def days_before(day: date) -> list[date]:
    """The HISTORY_DAYS days a report of `day` compares it with, oldest first."""
    return [day - timedelta(days=k) for k in range(HISTORY_DAYS, 0, -1)]


def history(cfg: Config, day: date, tz: tzinfo) -> dict[date, DaySummary | None]:
    """Summaries of the HISTORY_DAYS days before `day`; None for days before the CSV began."""
    days = days_before(day)
    out: dict[date, DaySummary | None] = dict.fromkeys(days)
    path = cfg.paths.csv
    log_tz = cfg.log_tz()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return out
    try:
        st = os.fstat(fd)
        first = _first_row_time(path, log_tz) if st.st_size > len(HEADER) else None
        if first is None:
            return out
        cache = DayCache(cfg.paths.state_dir / "days", fd, st, str(log_tz))
        windows = {d: report_window(d, tz) for d in days}
        missing: list[date] = []
        for d in days:
            start, end = windows[d]
            if end <= first:
                continue  # before the CSV's first row: not known, not zero
            summary = cache.load(d, start, end)
            if summary is None:
                missing.append(d)
            out[d] = summary
        for run in _runs(missing):
            results = scan_days(path, fd, [windows[d] for d in run], log_tz)
            for d, (summary, closed_at) in zip(run, results, strict=True):
                out[d] = summary
                if closed_at is not None:
                    cache.store(d, *windows[d], summary, closed_at)
        if missing:
            cache.prune(day - timedelta(days=CACHE_KEEP_DAYS))
        return out
    finally:
        os.close(fd)


def csv_rows(cfg: Config) -> int:
    """Rows in the CSV, its header excluded: its newlines, less the header's.

    Only what was appended since the last count is read: `days/rows.json` records an
    offset and the newlines before it, and is trusted as a day entry is (same CSV, same
    256 bytes before the offset). Without it — the first report, another CSV, one cut back
    and regrown — the whole CSV is counted once.
    """
    try:
        fd = os.open(cfg.paths.csv, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return 0
    try:
        cache = DayCache(cfg.paths.state_dir / "days", fd, os.fstat(fd), "")
        start, before = cache.load_count()
        end, after = count_newlines(fd, start)
        if end != start:
            cache.store_count(end, before + after)
        return max(before + after - 1, 0)
    finally:
        os.close(fd)


def _runs(days: list[date]) -> list[list[date]]:
    """Sorted days grouped into runs of consecutive days."""
    runs: list[list[date]] = []
    for d in days:
        if runs and runs[-1][-1] + timedelta(days=1) == d:
            runs[-1].append(d)
        else:
            runs.append([d])
    return runs
