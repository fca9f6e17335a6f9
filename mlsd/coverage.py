"""What the daemon saw each day and a CSV cannot tell: lines read, server-side errors, gaps.

The report's header needs them ("lines read", "server-side auth errors", "gaps in
coverage"); the CSV holds only the events. The daemon adds its counters to the current
day (in the report's zone) whenever it updates its status and at shutdown, and keeps
the last 60 days in `state_dir/coverage.json`. Counts are by the day mlsd read the lines,
which is the day they were logged except while catching up after downtime; the report
says so.

Losing this file loses only these three figures (the report then says "not known"),
never a row, so it is written atomically but without the checkpoint's ceremony.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

from mlsd.durable import replace_atomically
from mlsd.safefs import read_file

NAME: Final = "coverage.json"
KEEP_DAYS: Final = 60

log = logging.getLogger("mlsd.coverage")


@dataclass(frozen=True, slots=True)
class DayCounts:
    """One day's counters."""

    lines: int = 0
    events: int = 0
    server_errors: int = 0
    gaps: int = 0

    def __add__(self, other: DayCounts) -> DayCounts:
        return DayCounts(
            self.lines + other.lines,
            self.events + other.events,
            self.server_errors + other.server_errors,
            self.gaps + other.gaps,
        )

    def __sub__(self, other: DayCounts) -> DayCounts:
        return DayCounts(
            self.lines - other.lines,
            self.events - other.events,
            self.server_errors - other.server_errors,
            self.gaps - other.gaps,
        )


class Ledger:
    """Per-day counters, fed with the daemon's running totals (`record`)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / NAME
        self.days: dict[date, DayCounts] = self._load()
        self._seen = DayCounts()
        """The running totals at the last `record`: only what came after is added."""

    def _load(self) -> dict[date, DayCounts]:
        try:
            raw = json.loads(read_file(self.path))
            return {date.fromisoformat(k): DayCounts(**v) for k, v in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:
            # Never the exception's text for a parse error: it could quote the file.
            error = exc.strerror if isinstance(exc, OSError) else "not mlsd's coverage data"
            log.warning(
                "coverage file unreadable path=%s error=%s: the report will say "
                "'not known' for lines read, server errors and gaps until it is rebuilt",
                self.path,
                error,
            )
            return {}

    def record(self, today: date, totals: DayCounts) -> None:
        """Add to `today` what the running totals grew by since the last call."""
        delta = totals - self._seen
        self._seen = totals
        if delta != DayCounts():
            self.days[today] = self.days.get(today, DayCounts()) + delta

    def get(self, day: date) -> DayCounts | None:
        """The day's counters, or None when mlsd did not run that day (or lost the file)."""
        return self.days.get(day)

    def save(self) -> None:
        """Write the last KEEP_DAYS days; a failure is logged, never fatal."""
        keep = sorted(self.days)[-KEEP_DAYS:]
        self.days = {d: self.days[d] for d in keep}
        data = {
            d.isoformat(): {
                "lines": c.lines,
                "events": c.events,
                "server_errors": c.server_errors,
                "gaps": c.gaps,
            }
            for d, c in self.days.items()
        }
        try:
            replace_atomically(self.path, json.dumps(data, indent=1).encode(), mode=0o600)
        except OSError as exc:
            log.warning("coverage file not written path=%s error=%s", self.path, exc)
