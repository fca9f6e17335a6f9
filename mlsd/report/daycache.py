"""The report's per-day cache: `state_dir/days/`, one summary per closed history day.

Re-reading 30 days of rows for every report would cost more than a second on a busy server
(`mlsd.report.history` explains what the summaries are for), so they are kept:

- `days/YYYY-MM-DD.json` (mode 0600, directory 0700), one per history day, written only
  once the day is *closed*: the CSV already holds a row at or after the day's end +
  `window.SLACK`. The report's reading of a day (`window.window`) never reads past such
  a row, so nothing appended later can change what the day contains — the summary is final.
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
  (`history.csv_rows`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from mlsd.durable import replace_atomically
from mlsd.errors import StateError
from mlsd.safefs import PRIVATE_DIR, make_dir, read_file

CACHE_VERSION: Final = 2  # 2: the IPs as one text, each ended by a newline
CACHE_KEEP_DAYS: Final = 45
_TAIL: Final = 256
ROWS_ENTRY: Final = "rows.json"


@dataclass(frozen=True, slots=True)
class DaySummary:
    """What the history needs of one day."""

    rows: int
    failures: int
    ips: frozenset[str]


def _window_key(start: datetime, end: datetime) -> list[int]:
    return [int(start.timestamp()), int(end.timestamp())]


class DayCache:
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
