"""Summaries of the 30 days before a report's day: rows, failed attempts, the set of IPs.

The report needs them for "new attackers", "yesterday" and the 7-day median. Re-reading
30 days of rows for every report would cost more than a second on a busy server, so
those summaries are cached:

- `state_dir/days/YYYY-MM-DD.json` (mode 0600, directory 0700), one per history day, written
  only once the day is *closed*: the CSV already holds a row at or after the day's end +
  `csvwindow.SLACK`. `rows_between` never reads past such a row, so nothing appended later
  can change what the day contains — the summary is final.
- An entry records what it was computed from: the day's window as UTC instants (a change of
  `[report] timezone` or of the zone's rules changes them), the zone the CSV's offset-less
  dates are read in, the CSV's identity (st_dev, st_ino), the byte offset just after the
  closing row, and a SHA-256 of the 256 bytes before that offset. If any of them differs —
  another CSV, a CSV cut back by recovery and regrown, a zone change — the entry is stale and
  the day is scanned again. A missing, unreadable or malformed entry is simply a miss.
  Writing is best effort: `mlsd report` run by a user who cannot write the state directory
  builds the same report, only slower. Entries older than `CACHE_KEEP_DAYS` are removed.
  Entries are written atomically but without fsync: one a crash damages is a miss.
- `days/rows.json`, validated the same way, holds the CSV's newlines before an offset, so
  that the report's "CSV size and row count" reads only what was appended since
  (`csv_rows`).
- Missing days are scanned in runs of consecutive days with one forward pass. Chunks of
  64 KiB whose rows are plainly all one day's are read in bulk with a few C-level passes
  (`_Bulk`); the others line by line, on bytes, with the csv module only for lines that
  hold a quote. Both read exactly the rows `rows_between` reads (tested on damaged CSVs).

Measured: see `bench/bench_report.py` and the README (the cold build is the first report
after installing or losing the state directory; `history()` can be called ahead of time
to warm the cache, as the daemon does at start).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final, NamedTuple

from mlsd.config import Config
from mlsd.durable import replace_atomically
from mlsd.errors import StateError
from mlsd.report.schedule import report_window
from mlsd.report.window import (
    SECONDS,
    SLACK,
    count_newlines,
    find_offset,
    parse_date,
    resync,
)
from mlsd.rows import COLUMNS, DELIMITER, HEADER
from mlsd.safefs import PRIVATE_DIR, make_dir, nofollow_opener, read_file

HISTORY_DAYS: Final = 30
CACHE_VERSION: Final = 2  # 2: the IPs as one text, each ended by a newline
CACHE_KEEP_DAYS: Final = 45
_TAIL: Final = 256
ROWS_ENTRY: Final = "rows.json"
_BAD: Final = -(1 << 62)
_NCOLS: Final = len(COLUMNS)


@dataclass(frozen=True, slots=True)
class DaySummary:
    """What the history needs of one day."""

    rows: int
    failures: int
    ips: frozenset[str]


def _window_key(start: datetime, end: datetime) -> list[int]:
    return [int(start.timestamp()), int(end.timestamp())]


class _DayCache:
    """`state_dir/days/`: one JSON summary per closed day (see the module docstring)."""

    def __init__(self, directory: Path, fd: int, st: os.stat_result, log_zone: str) -> None:
        self.directory = directory
        self._fd = fd
        self._st = st
        self._log_zone = log_zone

    def _tail(self, end_offset: int) -> str:
        start = max(0, end_offset - _TAIL)
        return hashlib.sha256(os.pread(self._fd, end_offset - start, start)).hexdigest()

    def _anchor(self, offset: int) -> dict[str, object]:
        """What ties an entry to this CSV's bytes before `offset` (see `_read`)."""
        return {
            "v": CACHE_VERSION,
            "csv": [self._st.st_dev, self._st.st_ino],
            "tail": self._tail(offset),
        }

    def _read(self, name: str, offset_key: str) -> dict[str, Any] | None:
        """Entry `name` if it is still tied to this CSV: same version, same file, its offset
        (under `offset_key`) within it and the same bytes before that offset. Else None:
        a missing, unreadable or malformed entry is a miss."""
        try:
            data: dict[str, Any] = json.loads(read_file(self.directory / name))
            offset = data[offset_key]
            if (
                data["v"] == CACHE_VERSION
                and data["csv"] == [self._st.st_dev, self._st.st_ino]
                and isinstance(offset, int)
                and 0 <= offset <= self._st.st_size
                and data["tail"] == self._tail(offset)
            ):
                return data
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def load(self, day: date, start: datetime, end: datetime) -> DaySummary | None:
        """The day's summary if a valid entry exists, else None."""
        data = self._read(f"{day.isoformat()}.json", "end_offset")
        try:
            if (
                data is None
                or data["window"] != _window_key(start, end)
                or data["log_zone"] != self._log_zone
                or not isinstance(data["ips"], str)
            ):
                return None
            # One text rather than a JSON list: a day has tens of thousands of IPs, and one
            # string is read and written several times faster.
            ips = frozenset(data["ips"].split("\n")[:-1])
            return DaySummary(int(data["rows"]), int(data["failures"]), ips)
        except (ValueError, KeyError, TypeError):
            return None

    def store(
        self, day: date, start: datetime, end: datetime, summary: DaySummary, end_offset: int
    ) -> None:
        """Write a closed day's summary (best effort)."""
        data = self._anchor(end_offset) | {
            "day": day.isoformat(),
            "window": _window_key(start, end),
            "log_zone": self._log_zone,
            "end_offset": end_offset,
            "rows": summary.rows,
            "failures": summary.failures,
            "ips": "\n".join(summary.ips) + "\n" if summary.ips else "",
        }
        self._write(f"{day.isoformat()}.json", data)

    def load_count(self) -> tuple[int, int]:
        """(offset, newlines before it) from `rows.json` if valid, else (0, 0)."""
        data = self._read(ROWS_ENTRY, "offset")
        try:
            if data is not None:
                return int(data["offset"]), int(data["newlines"])
        except (ValueError, KeyError, TypeError):
            pass
        return 0, 0

    def store_count(self, offset: int, newlines: int) -> None:
        """Record that the CSV holds `newlines` newlines before `offset` (best effort)."""
        self._write(ROWS_ENTRY, self._anchor(offset) | {"offset": offset, "newlines": newlines})

    def _write(self, name: str, data: dict[str, object]) -> None:
        """Write an entry; failures only cost speed, so they are ignored."""
        try:
            # Never create the state directory itself: that is the daemon's (or systemd's).
            # Nor write through a link planted in place of this one (make_dir refuses it).
            make_dir(self.directory, PRIVATE_DIR, "report cache directory")
            replace_atomically(
                self.directory / name,
                json.dumps(data, separators=(",", ":")).encode(),
                mode=0o600,
                fsync=False,  # a cache: an entry a crash damages is a miss, recomputed
            )
        except (OSError, StateError):
            pass

    def prune(self, oldest: date) -> None:
        """Remove entries of days before `oldest` (best effort)."""
        try:
            for path in self.directory.glob("????-??-??.json"):
                if path.stem < oldest.isoformat():
                    path.unlink(missing_ok=True)
        except OSError:
            pass


def _first_row_time(path: Path, log_tz: tzinfo) -> datetime | None:
    with open(path, "rb", opener=nofollow_opener) as fh:
        fh.seek(len(HEADER))
        for raw in fh:
            fields = next(csv.reader([raw.decode("utf-8", "replace")], delimiter=DELIMITER), [])
            when = parse_date(fields[1], log_tz) if len(fields) > 1 else None
            if when is not None:
                return when
    return None


class _Bulk:
    """Reads a chunk of whole rows in a few C-level passes when every row in it is plainly
    one history day's — the common case — and leaves anything else to the line-by-line
    reading, which is the reference: both must count exactly the same rows.

    "Plainly" is checked, never assumed, because a CSV may be out of order, hand-edited,
    or written in another zone or date format. Every line of the chunk must:
    - have exactly 12 fields and no quote (one `translate` pass against the skeleton
      `;;;;;;;;;;;` per line), so the split on `;` is the csv module's;
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
        # those that are not "1" count as csvwindow reads them (1 if not a number).
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


_NOT_STRUCTURE: Final = bytes(b for b in range(256) if b not in b'\n;"')
_SKELETON: Final = DELIMITER.encode() * (len(COLUMNS) - 1) + b"\n"
_NOT_ONE: Final = re.compile(rb"\n(?!1;)([^;\n]*+);")
_SLACK: Final = int(SLACK.total_seconds())
_SECONDS: Final = frozenset(s.encode() for s in SECONDS)
CHUNK: Final = 1 << 16


def _scan_days(
    path: Path, fd: int, windows: Sequence[tuple[datetime, datetime]], log_tz: tzinfo
) -> list[tuple[DaySummary, int | None]]:
    """Summaries of consecutive day windows in one forward pass, with for each day the
    offset just after the first row at or after its end + SLACK (None: not closed yet).

    The same rows as `rows_between` for each day. This runs over every row of up to 30
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
    """The state of `_scan_days`: per day, rows, failures, IPs and where it closed."""

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
                if b'"' in line:
                    raise ValueError("a quoted field")
                _, stamp, ip, rest = line.split(b";", 3)
                if rest.count(b";") != 8:
                    raise ValueError("not 12 fields")
                attempts = rest[rest.rfind(b";") + 1 :]
                if attempts != b"1" and not attempts.isdigit():
                    raise ValueError("not a whole row")
            except ValueError:
                # A quoted field, or a damaged line: the csv module decides, as in csvwindow.
                cells = next(csv.reader([line.decode("utf-8", "replace")], delimiter=DELIMITER), [])
                if len(cells) < _NCOLS:
                    continue
                stamp, ip, attempts = cells[1].encode(), cells[2].encode(), cells[11].encode()
            # As csvwindow.Stamps: a minute's instant is shared only by valid seconds.
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


def attempts_of(text: str) -> int:
    """The `attempts` cell as a number (1 when unreadable, as csvwindow reads it)."""
    if text == "1":
        return 1
    try:
        return int(text)
    except ValueError:
        return 1  # what csvwindow reads for an unreadable count


def warm(cfg: Config, day: date) -> int:
    """`history` for its cache only (run in a child by the daemon): the days summarised.
    The zone is looked up here: the system zone read from a file cannot be pickled."""
    return sum(1 for v in history(cfg, day, cfg.report_tz()).values() if v is not None)


def history(cfg: Config, day: date, tz: tzinfo) -> dict[date, DaySummary | None]:
    """Summaries of the HISTORY_DAYS days before `day`; None for days before the CSV began."""
    days = [day - timedelta(days=k) for k in range(HISTORY_DAYS, 0, -1)]
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
        cache = _DayCache(cfg.paths.state_dir / "days", fd, st, str(log_tz))
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
            results = _scan_days(path, fd, [windows[d] for d in run], log_tz)
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
    """Rows in the CSV, its header excluded (its newlines, as csvwindow.count_rows counts).

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
        cache = _DayCache(cfg.paths.state_dir / "days", fd, os.fstat(fd), "")
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


# ---- the day's aggregates
