"""Reading the rows of a time window from the CSV without scanning it from the start.

Rows are appended in the order mlsd reads the log, which is time order except where a
rotated generation is caught up late. So: binary-search the byte offset of the first row
at or after `start - SLACK`, read forward, keep the rows inside the window, and stop once
rows are later than `end + SLACK`. Every row is one line (csvlog guarantees it), so any
byte offset can be resynchronised by skipping to the next newline.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Final

from mlsd.csvlog import COLUMNS, DELIMITER, HEADER

# How far out of order rows may be (a rotated file caught up after newer lines).
SLACK: Final = timedelta(hours=6)
_READ: Final = 1 << 16


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One CSV row, as the report needs it."""

    time: datetime
    server: str
    ip: str
    user: str
    hostname: str
    reverse_dns_status: str
    country_code: str
    asn: str
    aso: str
    service: str
    mechanism: str
    attempts: int


def parse_date(text: str, tz: tzinfo) -> datetime | None:
    """The `date` column in either format (`iso`, or `maillogsentinel` in `tz`)."""
    try:
        if len(text) == 16 and text[2] == "/":  # dd/mm/YYYY HH:MM
            return datetime.strptime(text, "%d/%m/%Y %H:%M").replace(tzinfo=tz)
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


def _row(fields: list[str], tz: tzinfo) -> Row | None:
    if len(fields) < len(COLUMNS):
        return None
    when = parse_date(fields[1], tz)
    if when is None:
        return None
    try:
        attempts = int(fields[11])
    except ValueError:
        attempts = 1
    return Row(
        time=when,
        server=fields[0],
        ip=fields[2],
        user=fields[3],
        hostname=fields[4],
        reverse_dns_status=fields[5],
        country_code=fields[6],
        asn=fields[7],
        aso=fields[8],
        service=fields[9],
        mechanism=fields[10],
        attempts=attempts,
    )


def _line_at(fh: io.BufferedReader, offset: int) -> tuple[int, bytes]:
    """The first complete line starting at or after `offset`: (its offset, its bytes)."""
    if offset <= len(HEADER):
        fh.seek(len(HEADER))
        return len(HEADER), fh.readline()
    fh.seek(offset - 1)
    fh.readline()  # finish the line `offset - 1` is in
    pos = fh.tell()
    return pos, fh.readline()


def _time_of(line: bytes, tz: tzinfo) -> datetime | None:
    fields = line.decode("utf-8", "replace").split(DELIMITER, 2)
    return parse_date(fields[1], tz) if len(fields) > 1 else None


def find_offset(path: Path, start: datetime, tz: tzinfo) -> int:
    """Byte offset of a row at or before the first row at or after `start - SLACK`."""
    target = start - SLACK
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        lo, hi = len(HEADER), size
        while hi - lo > _READ:
            mid = (lo + hi) // 2
            pos, line = _line_at(fh, mid)
            when = _time_of(line, tz) if line else None
            if when is not None and when < target:
                lo = pos
            else:
                hi = mid
        return lo


def rows_between(path: Path, start: datetime, end: datetime, tz: tzinfo) -> Iterator[Row]:
    """Rows with start <= time < end, reading only around the window."""
    if not path.exists() or os.path.getsize(path) <= len(HEADER):
        return
    offset = find_offset(path, start, tz)
    stop_after = end + SLACK
    with open(path, "rb") as fh:
        pos, _ = _line_at(fh, offset)
        fh.seek(pos)
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
        for fields in csv.reader(text, delimiter=DELIMITER):
            row = _row(fields, tz)
            if row is None:
                continue
            if row.time >= stop_after:
                break
            if start <= row.time < end:
                yield row


def count_rows(path: Path) -> int:
    """Rows in the CSV (its header excluded), counted in blocks."""
    if not path.exists():
        return 0
    n = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
    return max(n - 1, 0)
