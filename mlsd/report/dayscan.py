"""Summaries of consecutive history days in one forward pass over the CSV (a cold cache).

Chunks of 64 KiB whose rows are plainly all one day's are read in bulk with a few C-level
passes (`_Bulk`); the others line by line, on bytes, with the csv module only for lines
that hold a quote. Both read exactly the rows the report's own reading of a day
(`window.window`) reads: tested on damaged CSVs.

Both readers rely on the column order of `mlsd.rows.Column` that a test pins: the server
and the date lead a row, the IP follows the date, and the attempts end it.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Final, NamedTuple

from mlsd.report.daycache import DaySummary
from mlsd.report.window import SECONDS, SLACK, find_offset, parse_date, resync
from mlsd.rows import SKELETON, Column, attempts_of, decode_row

CHUNK: Final = 1 << 16
"""Bytes read at once; a chunk is read in bulk or line by line as a whole."""
_BAD: Final = -(1 << 62)
_NOT_STRUCTURE: Final = bytes(b for b in range(256) if b not in b'\n;"')
"""Every byte but a newline, the delimiter and the quote: what `translate` drops to leave
a line's skeleton."""
_SKELETON: Final = SKELETON + b"\n"
_NOT_ONE: Final = re.compile(rb"\n(?!1;)([^;\n]*+);")
_SLACK: Final = int(SLACK.total_seconds())
_SECONDS: Final = frozenset(s.encode() for s in SECONDS)


class _Bulk:
    """Reads a chunk of whole rows in a few C-level passes when every row in it is plainly
    one history day's — the common case — and leaves anything else to the line-by-line
    reading, which is the reference: both must count exactly the same rows.

    "Plainly" is checked, never assumed, because a CSV may be out of order, hand-edited,
    or written in another zone or date format. Every line of the chunk must:
    - have exactly the columns and no quote (one `translate` pass against
      `rows.SKELETON` per line), so the split on `;` is the csv module's;
    - start with the chunk's first server and date `D`, a valid `Thh:mm:ss` and the offset
      `O` (one regex, anchored at the newline that starts each line, which also yields the
      IPs); a day takes this path only if `D 00:00 O` is its window's start and the window
      lasts at least 24 hours, so every such date is inside it.
    The attempts are then read from the chunk reversed, where each line's last field
    follows a newline. Attacker-chosen cells cannot fake any of this: unquoted, they hold
    no `;`, and no cell holds a newline (csvlog guarantees it).
    """

    def __init__(self, starts: list[int], ends: list[int], log_tz: tzinfo) -> None:
        self._days: dict[bytes, tuple[int, bytes]] = {}  # b"YYYY-MM-DDT" → (day, offset)
        # Per day k: the first local hour whose rows close day k - 1 (24: no row of day
        # k's can; None: not on an hour, so chunks go line by line while k - 1 is open).
        self._closing_hour: list[int | None] = [None] * len(starts)
        for k, start in enumerate(starts):
            local = datetime.fromtimestamp(start, log_tz).isoformat()  # D, T00:00:00, O
            if local[10:19] == "T00:00:00" and len(local) == 25 and ends[k] - start >= 86400:
                self._days[local[:11].encode()] = (k, local[19:].encode())
            after = ends[k - 1] + _SLACK - start if k else 0  # day k - 1 closes then
            if after >= 86400:
                self._closing_hour[k] = 24
            elif after > 0 and after % 3600 == 0:
                self._closing_hour[k] = after // 3600
        self._patterns: dict[bytes, tuple[re.Pattern[bytes], re.Pattern[bytes] | None]] = {}

    def _compile(
        self, head: bytes, offset: bytes, k: int
    ) -> tuple[re.Pattern[bytes], re.Pattern[bytes] | None]:
        """The row pattern of `head` (newline, server, `;`, D) capturing the IP, and the
        pattern of a row whose hour closes day k - 1."""
        row = re.compile(
            re.escape(head)
            + rb"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
            + re.escape(offset)
            + rb";([^;\n]*+);"
        )
        hour = self._closing_hour[k]
        if hour is None or hour == 24:
            return row, None
        hours = b"|".join(b"%02d" % h for h in range(hour, 24))
        return row, re.compile(re.escape(head) + b"(?:" + hours + b"):")

    def parts(self, chunk: bytes) -> list[tuple[int, bytes]]:
        """`chunk` as (offset in it, part) pieces to read one by one: cut before the first
        line with its last line's server and date when the first line's differ (a chunk
        holding midnight), so that each day's part can still be read in bulk."""
        last = chunk.rfind(b"\n", 0, len(chunk) - 1)
        head = chunk[: chunk.find(b";", 1) + 12]
        last_head = chunk[last : chunk.find(b";", last + 1) + 12]
        cut = chunk.find(last_head) if last > 0 and last_head != head else -1
        if cut <= 0:
            return [(0, chunk)]
        return [(0, chunk[: cut + 1]), (cut, chunk[cut:])]

    def read(self, chunk: bytes, nxt: int) -> _Read | None:
        """What `chunk` (a newline, then whole lines) holds, or None unless its rows are
        plainly all one day's; `nxt` is the first day not closed yet."""
        skeleton = chunk.translate(None, _NOT_STRUCTURE)
        lines = skeleton.count(b"\n") - 1  # the same count, over a twelfth of the bytes
        if skeleton != b"\n" + _SKELETON * lines:
            return None
        cut = chunk.find(b";", 1)
        day = self._days.get(chunk[cut + 1 : cut + 12])
        if day is None:
            return None
        k, offset = day
        head = chunk[: cut + 12]
        patterns = self._patterns.get(head)
        if patterns is None:
            if len(self._patterns) >= 64:  # many servers: keep the cache bounded
                self._patterns.clear()
            patterns = self._patterns[head] = self._compile(head, offset, k)
        row, closing = patterns
        ips = row.findall(chunk)
        if len(ips) != lines:
            return None
        closes = None
        if k == nxt + 1 and self._closing_hour[k] != 24:
            # Day k - 1 is still open: it closes just after its first row in `closing`'s
            # hours, if this chunk holds one.
            if closing is None:
                return None
            first = closing.search(chunk)
            if first is not None:
                closes = chunk.index(b"\n", first.start() + 1) + 1
        elif k > nxt + 1:
            return None
        # Each line's last field, read from the chunk reversed, where it follows a newline:
        # those that are not "1" count as window.Rows's readers do (rows.attempts_of).
        others = _NOT_ONE.findall(chunk[::-1])
        failures = lines - len(others)
        for text in others:
            failures += attempts_of(text[::-1].decode("utf-8", "replace"))
        return _Read(k, lines, failures, ips, closes)


class _Read(NamedTuple):
    """A chunk read in bulk."""

    day: int
    rows: int
    failures: int
    ips: list[bytes]
    closes: int | None
    """The offset in the chunk just after the row that closes the day before, if any."""


def scan_days(
    path: Path, fd: int, windows: Sequence[tuple[datetime, datetime]], log_tz: tzinfo
) -> list[tuple[DaySummary, int | None]]:
    """Summaries of consecutive day windows in one forward pass, with for each day the
    offset just after the first row at or after its end + SLACK (None: not closed yet).

    The same rows as `window.window` for each day. This runs over every row of up to 30
    days when the cache is cold: parts of chunks that are plainly one day's rows are read
    in bulk (`_Bulk`); the others line by line (`_Scan.lines`).
    """
    scan = _Scan(windows, log_tz)
    pos = resync(fd, find_offset(path, windows[0][0], log_tz))
    size = CHUNK
    # Read from the newline before `pos` (the header's, at worst): `_Bulk` anchors on it.
    while scan.nxt < scan.n and (block := os.pread(fd, size + 1, pos - 1)):
        end = block.rfind(b"\n") + 1
        if end == 1:
            if len(block) <= size:
                break  # a last line without its newline is being written: not a row yet
            size *= 2  # one line longer than a chunk: read more at once
            continue
        size = CHUNK
        for offset, part in scan.bulk.parts(block[:end]):
            if scan.nxt == scan.n:
                break
            base = pos - 1 + offset  # where the part's leading newline is in the file
            done = scan.bulk.read(part, scan.nxt)
            if done is None:
                scan.lines(part, base)
            else:
                scan.add(done, base)
        pos += end - 1
    return [
        (DaySummary(scan.rows[k], scan.failures[k], _decoded(scan.ips[k])), scan.closed[k])
        for k in range(scan.n)
    ]


class _Scan:
    """The state of `scan_days`: per day, rows, failures, IPs and where it closed."""

    def __init__(self, windows: Sequence[tuple[datetime, datetime]], log_tz: tzinfo) -> None:
        self.log_tz = log_tz
        self.starts = [int(s.timestamp()) for s, _ in windows]
        self.ends = [int(e.timestamp()) for _, e in windows]
        self.close_at = [e + _SLACK for e in self.ends] + [1 << 62]
        self.n = n = len(windows)
        self.rows = [0] * n
        self.failures = [0] * n
        self.ips: list[set[bytes]] = [set() for _ in range(n)]
        self.closed: list[int | None] = [None] * n
        self.nxt = 0  # the first day not closed yet; they close in order
        self.minutes: dict[bytes, tuple[int, int]] = {}  # date w/o seconds → (epoch, day/-1)
        self.bulk = _Bulk(self.starts, self.ends, log_tz)

    def add(self, done: _Read, base: int) -> None:
        """Count a part read in bulk; `base` is the offset of its first byte (a newline)."""
        if done.closes is not None:
            self.closed[self.nxt] = base + done.closes
            self.nxt += 1
        k = done.day
        if k >= self.nxt:  # else day k is closed: its late rows are not counted
            self.rows[k] += done.rows
            self.failures[k] += done.failures
            self.ips[k].update(done.ips)

    def lines(self, part: bytes, base: int) -> None:
        """Count a part line by line; `base` is the offset of its first byte (a newline).

        On bytes, splitting only what is needed: a line without a quote is split on `;`
        as the csv module would. Day windows start and end on whole minutes, so minutes
        are precise enough here.
        """
        starts, ends, close_at, minutes = self.starts, self.ends, self.close_at, self.minutes
        rows, failures, ips, closed, n = self.rows, self.failures, self.ips, self.closed, self.n
        nxt = self.nxt
        at = base + 1  # the first line's offset
        for line in part[1:-1].split(b"\n"):
            at += len(line) + 1  # now just after this line
            try:
                if line.translate(None, _NOT_STRUCTURE) != SKELETON:
                    raise ValueError("a quoted field, or not the columns")
                _, stamp, ip, rest = line.split(b";", 3)  # server, date, IP, the rest
                attempts = rest[rest.rfind(b";") + 1 :]
                if attempts != b"1" and not attempts.isdigit():
                    raise ValueError("not a whole row")
            except ValueError:
                # A quoted field, or a damaged line: decoded as window.Rows decodes it.
                cells = decode_row(line.decode("utf-8", "replace"))
                if cells is None:
                    continue
                stamp = cells[Column.DATE].encode()
                ip = cells[Column.IP].encode()
                attempts = cells[Column.ATTEMPTS].encode()
            # As window.Stamps: a minute's instant is shared only by valid seconds.
            key = (
                stamp[:16] + stamp[19:]
                if stamp[16:17] == b":" and stamp[17:19] in _SECONDS
                else stamp
            )
            known = minutes.get(key)
            if known is None:
                when = parse_date(stamp.decode("utf-8", "replace"), self.log_tz)
                if when is None:
                    known = (_BAD, -1)
                else:
                    t = int(when.timestamp()) // 60 * 60
                    k = bisect_right(starts, t) - 1
                    known = (t, k if k >= 0 and t < ends[k] else -1)
                minutes[key] = known
            t, i = known
            if t == _BAD:
                continue
            if t >= close_at[nxt]:
                while t >= close_at[nxt]:
                    closed[nxt] = at
                    nxt += 1
                if nxt == n:
                    break
            if i < 0 or closed[i] is not None:
                continue
            rows[i] += 1
            failures[i] += (
                1 if attempts == b"1" else attempts_of(attempts.decode("utf-8", "replace"))
            )
            ips[i].add(ip)
        self.nxt = nxt


def _decoded(ips: set[bytes]) -> frozenset[str]:
    # One decode for the whole set instead of one per IP (a day has tens of thousands).
    # No IP holds a newline, and "replace" turns each bad sequence into the same U+FFFD
    # whether a newline or the end of the text follows it.
    return frozenset(b"\n".join(ips).decode("utf-8", "replace").split("\n")) if ips else frozenset()
