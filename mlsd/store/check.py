"""`mlsd store check`'s comparison: rows per day in a journal's CSV (up to the stored
position) against rows per day in its table (the failures and the logins alike)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, tzinfo
from pathlib import Path

from mlsd.rows import DELIMITER, QUOTE
from mlsd.safefs import nofollow_opener
from mlsd.store.journals import EVENTS, Journal
from mlsd.store.rowmap import parse_time


def csv_counts_by_day(
    path: Path,
    upto: int,
    *,
    row_tz: tzinfo,
    day_tz: tzinfo,
    journal: Journal = EVENTS,
    since: int | None = None,
) -> tuple[dict[date, int], int]:
    """Rows per day in `day_tz` among the CSV's first `upto` bytes, and the lines that are
    not rows (`row_tz`: the zone of a MailLogSentinel-format date). With `since` (epoch
    seconds), only rows from then on are counted (the logins' retention)."""
    counts: dict[date, int] = {}
    days: dict[str, date | None] = {}
    bad = 0
    at = journal.date_cell
    for line in _lines(path, upto, len(journal.header)):
        if QUOTE in line:
            cells = journal.cells(line)
            text = cells[at] if cells else None
        else:
            parts = line.split(DELIMITER, at + 1)
            text = parts[at] if len(parts) > at else None
        if text is None:
            bad += 1
            continue
        if text in days:
            day = days[text]
        else:
            try:
                when = parse_time(text, row_tz)
            except ValueError:
                bad += 1
                continue
            old = since is not None and when.timestamp() < since
            day = None if old else when.astimezone(day_tz).date()
            if len(days) > 100_000:
                days.clear()
            days[text] = day
        if day is not None:
            counts[day] = counts.get(day, 0) + 1
    return counts, bad


def _lines(path: Path, upto: int, first: int) -> Iterator[str]:
    with open(path, "rb", opener=nofollow_opener) as fh:
        fh.seek(first)
        at = first
        while at < upto:
            raw = fh.readline(upto - at)
            if not raw.endswith(b"\n"):
                return
            at += len(raw)
            yield raw[:-1].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class DayDiff:
    """One day whose counts differ."""

    day: date
    csv: int
    store: int


def differences(csv: dict[date, int], store: dict[date, int]) -> list[DayDiff]:
    """The days whose counts differ, in order."""
    return [
        DayDiff(d, csv.get(d, 0), store.get(d, 0))
        for d in sorted(csv.keys() | store.keys())
        if csv.get(d, 0) != store.get(d, 0)
    ]
