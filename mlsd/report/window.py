"""Reading the rows of a time window from the CSV without scanning it from the start.

Rows are appended in the order mlsd reads the log, which is time order except where a
rotated generation is caught up late. So: binary-search the byte offset of the first row
at or after `start - SLACK`, read forward, keep the rows inside the window, and stop once
rows are later than `end + SLACK`. Every row is one line (csvlog guarantees it), so any
byte offset can be resynchronised by skipping to the next newline.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Final

from mlsd.rows import COLUMNS, DELIMITER, HEADER, QUOTE, Column, decode_row
from mlsd.safefs import nofollow_opener

# How far out of order rows may be (a rotated file caught up after newer lines).
SLACK: Final = timedelta(hours=6)
_READ: Final = 1 << 16
BLOCK: Final = 1 << 20
_BAD: Final = -(1 << 62)
_NCOLS: Final = len(COLUMNS)
# The seconds a minute's cached instant may be completed with: any other text in their
# place makes the date invalid (or another format), so that date is parsed on its own.
SECONDS: Final = frozenset(f"{n:02d}" for n in range(60))


def parse_date(text: str, tz: tzinfo) -> datetime | None:
    """The `date` column in either format (`iso`, or `maillogsentinel` in `tz`)."""
    try:
        if len(text) == 16 and text[2] == "/":  # dd/mm/YYYY HH:MM
            return datetime.strptime(text, "%d/%m/%Y %H:%M").replace(tzinfo=tz)
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


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
    fields = line.decode("utf-8", "replace").split(DELIMITER, Column.DATE + 1)
    return parse_date(fields[Column.DATE], tz) if len(fields) > Column.DATE else None


def find_offset(path: Path, start: datetime, tz: tzinfo) -> int:
    """Byte offset of a row at or before the first row at or after `start - SLACK`."""
    target = start - SLACK
    size = os.path.getsize(path)
    with open(path, "rb", opener=nofollow_opener) as fh:
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


class Stamps:
    """The `date` column → epoch seconds, parsing each distinct (minute, offset) only once.

    `datetime.fromisoformat` plus `timestamp()` per row would cost more than everything
    else the report does with a row; a day has at most 1,500 distinct minutes.
    """

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.minutes: dict[str, int] = {}

    def epoch(self, stamp: str) -> int | None:
        """Seconds since the epoch, or None for a date neither format can read."""
        if stamp[16:17] == ":" and stamp[17:19] in SECONDS:
            key, seconds = stamp[:16] + stamp[19:], int(stamp[17:19])
        else:  # dd/mm/YYYY HH:MM, or something odd that parse_date will judge alone
            key, seconds = stamp, 0
        minute = self.minutes.get(key)
        if minute is None:
            when = parse_date(stamp, self.tz)
            minute = _BAD if when is None else int(when.timestamp()) // 60 * 60
            self.minutes[key] = minute
        return None if minute == _BAD else minute + seconds


class Rows:
    """The CSV's rows from the first line at or after a byte offset, read in blocks:
    (epoch seconds, fields, the line). Rows that are not whole (too few fields, a
    date it cannot read) are skipped; a last line without its newline is still being
    written and is not a row yet. `pos` is the offset just after the block being read."""

    def __init__(self, fd: int, offset: int, stamps: Stamps) -> None:
        self._fd = fd
        self._stamps = stamps
        self.pos = resync(fd, offset)

    def __iter__(self) -> Iterator[tuple[int, list[str], str]]:
        size = BLOCK
        epoch = self._stamps.epoch
        minutes = self._stamps.minutes
        # Locals, and the column a plain int: read once per row.
        date_at, quote, ncols = int(Column.DATE), QUOTE, _NCOLS
        while block := os.pread(self._fd, size, self.pos):
            end = block.rfind(b"\n") + 1
            if end == 0:
                if len(block) < size:
                    return
                size *= 2  # one line longer than a block: read more at once
                continue
            self.pos += end
            # A block cut after a newline never splits a UTF-8 sequence: decode it whole.
            for line in block[:end].decode("utf-8", "replace").split("\n")[:-1]:
                # rows.decode_row, its plain-line case inlined: this runs once per row.
                if quote in line:
                    decoded = decode_row(line)
                    if decoded is None:
                        continue
                    fields = decoded
                else:
                    fields = line.split(DELIMITER)
                    if len(fields) < ncols:
                        continue
                stamp = fields[date_at]
                # Stamps.epoch, inlined for the common case: this runs once per row.
                if len(stamp) == 25 and stamp[16] == ":":
                    minute = minutes.get(stamp[:16] + stamp[19:])
                    if minute is not None and minute != _BAD and stamp[17:19] in SECONDS:
                        yield minute + int(stamp[17:19]), fields, line
                        continue
                t = epoch(stamp)
                if t is not None:
                    yield t, fields, line


def resync(fd: int, offset: int) -> int:
    """The offset of the first line starting at or after `offset` (the header skipped)."""
    if offset <= len(HEADER):
        return len(HEADER)
    before = os.pread(fd, BLOCK, offset - 1)
    return offset - 1 + before.find(b"\n") + 1 if b"\n" in before else offset


def window(
    path: Path, start: datetime, end: datetime, tz: tzinfo, lines: list[str] | None = None
) -> Iterator[tuple[int, list[str]]]:
    """(epoch seconds, fields) of each row with start <= time < end; each row's line is
    appended to `lines` when given. Starts at `find_offset` and stops at the first row at
    or after end + SLACK; a last line without its newline is still being written and is
    not a row yet."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        first, last = start.timestamp(), end.timestamp()
        stop = last + SLACK.total_seconds()
        for t, fields, line in Rows(fd, find_offset(path, start, tz), Stamps(tz)):
            if t >= stop:
                break
            if first <= t < last:
                if lines is not None:
                    lines.append(line)
                yield t, fields
    finally:
        os.close(fd)


def count_newlines(fd: int, offset: int) -> tuple[int, int]:
    """(offset of the end, newlines from `offset` to it), reading in blocks to the end."""
    newlines = 0
    while block := os.pread(fd, BLOCK, offset):
        newlines += block.count(b"\n")
        offset += len(block)
    return offset, newlines


def last_row_time(path: Path, tz: tzinfo) -> datetime | None:
    """The time of the CSV's last complete row, or None (no rows, or none readable near
    the end). Reads the end of the file only."""
    with open(path, "rb", opener=nofollow_opener) as fh:
        size = os.fstat(fh.fileno()).st_size
        start = max(len(HEADER), size - _READ)
        fh.seek(start)
        tail = fh.read()
    end = tail.rfind(b"\n")
    if end < 0:
        return None
    lines = tail[:end].split(b"\n")
    if start > len(HEADER):
        lines = lines[1:]  # the first may be the end of a line cut by the seek
    for line in reversed(lines):
        when = _time_of(line, tz) if line else None
        if when is not None:
            return when
    return None
