"""What the daemon saw each day and a CSV cannot tell: lines read, server-side errors, gaps.

The report's header needs them ("lines read", "server-side auth errors", "gaps in
coverage"); the CSV holds only the events. The daemon adds its counters to the current
day (in the report's zone) whenever it updates its status and at shutdown, and keeps
the last 60 days in `state_dir/coverage.json`, written at its first status refresh, then
at most once a minute while they change, and at shutdown: `mlsd status` reads them while
it runs. A day the daemon ran has an entry even when it read nothing (zero is known).
Counts are by the day mlsd read the lines, which is the day they were logged except while
catching up after downtime; the report says so.

It also keeps the instant of each first start (no checkpointed generation: a fresh
install, or a lost checkpoint) under that day: mlsd watched that day only from then, so
the report of that day says "partial: mlsd started at HH:MM", and no daily report is sent
for a day before the first one mlsd watched (`first_day`).

Losing this file loses only these figures (the report then says "not known"), never a
row, so it is written atomically but without the checkpoint's ceremony.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

from mlsd import logs
from mlsd.durable import replace_atomically
from mlsd.safefs import read_file

NAME: Final = "coverage.json"
KEEP_DAYS: Final = 60

log = logs.get("mlsd.coverage")


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


@dataclass(frozen=True, slots=True)
class FirstStart:
    """A first start: when, and how the reader was placed (the daemon's `resume=`)."""

    at: datetime
    """Aware, UTC."""
    how: str


class Ledger:
    """Per-day counters, fed with the daemon's running totals (`record`)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / NAME
        self.starts: dict[date, FirstStart] = {}
        self.days: dict[date, DayCounts] = self._load()
        self._seen = DayCounts()
        """The running totals at the last `record`: only what came after is added."""
        self.changed = False
        """Something not yet written by `save`."""

    def _load(self) -> dict[date, DayCounts]:
        try:
            raw = json.loads(read_file(self.path))
            days: dict[date, DayCounts] = {}
            for k, v in raw.items():
                day = date.fromisoformat(k)
                start = v.pop("first_start", None)
                if start is not None:
                    at = datetime.fromisoformat(start["at"]).astimezone(UTC)
                    self.starts[day] = FirstStart(at, str(start["how"]))
                if v:
                    days[day] = DayCounts(**v)
            return days
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            self.starts = {}
            # Never the exception's text for a parse error: it could quote the file.
            error = exc.strerror if isinstance(exc, OSError) else "not mlsd's coverage data"
            log.warning(
                "coverage file unreadable",
                path=str(self.path),
                error=error,
                effect="the report will say 'not known' for lines read, server errors and "
                "gaps until it is rebuilt",
            )
            return {}

    def record(self, today: date, totals: DayCounts) -> None:
        """Add to `today` what the running totals grew by since the last call."""
        delta = totals - self._seen
        self._seen = totals
        if delta != DayCounts() or today not in self.days:
            self.days[today] = self.days.get(today, DayCounts()) + delta
            self.changed = True

    def get(self, day: date) -> DayCounts | None:
        """The day's counters, or None when mlsd did not run that day (or lost the file)."""
        return self.days.get(day)

    def note_first_start(self, day: date, at: datetime, how: str) -> None:
        """Record a first start on `day` (the report's zone) and write the file at once: a
        kill -9 before the next save must not lose it (the restart is no first start)."""
        if day not in self.starts:
            self.starts[day] = FirstStart(at.astimezone(UTC), how)
            self.changed = True
            self.save()

    def first_start(self, day: date) -> FirstStart | None:
        """The first start on `day`, if mlsd had one that day."""
        return self.starts.get(day)

    def first_day(self) -> date | None:
        """The first day mlsd watched, as far as this file knows (None: nothing recorded)."""
        return min([*self.days, *self.starts], default=None)

    def save(self) -> None:
        """Write the last KEEP_DAYS days; a failure is logged, never fatal."""
        keep = sorted({*self.days, *self.starts})[-KEEP_DAYS:]
        self.days = {d: self.days[d] for d in keep if d in self.days}
        self.starts = {d: self.starts[d] for d in keep if d in self.starts}
        data: dict[str, dict[str, object]] = {}
        for d in keep:
            entry: dict[str, object] = {}
            c = self.days.get(d)
            if c is not None:
                entry.update(
                    lines=c.lines, events=c.events, server_errors=c.server_errors, gaps=c.gaps
                )
            start = self.starts.get(d)
            if start is not None:
                entry["first_start"] = {"at": start.at.isoformat(), "how": start.how}
            data[d.isoformat()] = entry
        try:
            # 0640 like the checkpoint: counts, nothing secret, for the group that may run
            # `mlsd status` (an operator in mlsd's group sees the gaps too).
            replace_atomically(self.path, json.dumps(data, indent=1).encode(), mode=0o640)
            self.changed = False
        except OSError as exc:
            log.warning("coverage file not written", path=str(self.path), error=str(exc))
