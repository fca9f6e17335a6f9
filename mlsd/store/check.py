"""`mlsd store check`'s comparison: rows per day in the CSV (up to the stored position)
against rows per day in the store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, tzinfo
from pathlib import Path

from mlsd.rows import DELIMITER, HEADER, QUOTE, Column, decode_row
from mlsd.safefs import nofollow_opener
from mlsd.store.rowmap import parse_time


def csv_counts_by_day(
    path: Path, upto: int, *, row_tz: tzinfo, day_tz: tzinfo
) -> tuple[dict[date, int], int]:
    """Rows per day in `day_tz` among the CSV's first `upto` bytes, and the lines that are
    not rows (`row_tz`: the zone of a MailLogSentinel-format date)."""
    counts: dict[date, int] = {}
    days: dict[str, date] = {}
    bad = 0
    for line in _lines(path, upto):
        if QUOTE in line:
            cells = decode_row(line)
            text = cells[Column.DATE] if cells else None
        else:
            parts = line.split(DELIMITER, Column.DATE + 1)
            text = parts[Column.DATE] if len(parts) > Column.DATE else None
        day = days.get(text) if text is not None else None
        if day is None and text is not None:
            try:
                day = parse_time(text, row_tz).astimezone(day_tz).date()
            except ValueError:
                day = None
            else:
                if len(days) > 100_000:
                    days.clear()
                days[text] = day
        if day is None:
            bad += 1
            continue
        counts[day] = counts.get(day, 0) + 1
    return counts, bad


def _lines(path: Path, upto: int) -> Iterator[str]:
    with open(path, "rb", opener=nofollow_opener) as fh:
        fh.seek(len(HEADER))
        at = len(HEADER)
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
