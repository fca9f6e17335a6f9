"""The alerts journal: every raised alert, once, in `state_dir/alerts.jsonl`.

One `Alert.to_json()` per line, appended with `os.write` and fsync (mlsd.durable), in a
file opened without following a link (mlsd.safefs), mode 0640 (an `adm` admin may read
it with `mlsd alerts`), in a directory nobody else can write. The daemon is its only
writer; the daily report, `mlsd alerts` and the alert mail read it.

Exactly once: an alert's id is deterministic (mlsd.alerts.alert_id), so a batch replayed
after a crash raises the same alerts again; `AlertLog.unrecorded` drops those whose id is
already in the file (the ids are read at open: one line per alert, a small file).

Readers are tolerant: a line torn by a crash, or damaged by hand, is skipped and counted,
never raised. The writer ends a torn last line before it appends, so one crash costs at
most the alert being written, never the next one.
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from mlsd.alerts import Alert
from mlsd.durable import write_all
from mlsd.safefs import SHARED_DIR, make_dir, open_nofollow, open_regular
from mlsd.statedir import ALERTS_NAME

MODE = 0o640


def journal_path(state_dir: Path) -> Path:
    """Where the alerts journal of `state_dir` lives."""
    return state_dir / ALERTS_NAME


class AlertLog:
    """The writer's side of the journal (the daemon); `open` first, then `record`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = journal_path(state_dir)
        self._state_dir = state_dir
        self._ids: set[str] = set()
        self.damaged = 0
        """Lines found unreadable at open (torn by a crash, or edited)."""

    def open(self) -> list[Alert]:
        """Check the directory, create the file (0640) if missing, load the recorded ids,
        and end a torn last line; the alerts read (the caller's counts come from them, not
        from a second read). Raises StateError (the directory) or OSError."""
        make_dir(self._state_dir, SHARED_DIR, "state directory", top=True)
        alerts, self.damaged = scan(self.path)
        self._ids = {a.id for a in alerts}
        fd = self._open_append()
        try:
            size = os.fstat(fd).st_size
            if size and _last_byte(self.path) != b"\n":
                # A crash mid-append: end that line so the next record is a line of its own.
                write_all(fd, b"\n")
                os.fsync(fd)
        finally:
            os.close(fd)
        return alerts

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._ids

    def unrecorded(self, alerts: Iterable[Alert]) -> list[Alert]:
        """`alerts` whose id is not in the journal yet (nor twice in `alerts`)."""
        seen = set(self._ids)
        out = []
        for a in alerts:
            if a.id not in seen:
                seen.add(a.id)
                out.append(a)
        return out

    def append(self, alerts: Sequence[Alert]) -> None:
        """Append `alerts` (already filtered by `unrecorded`) and fsync. Raises OSError."""
        if not alerts:
            return
        data = b"".join(_line(a) for a in alerts)
        fd = self._open_append()
        try:
            write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        finally:
            os.close(fd)
        self._ids.update(a.id for a in alerts)

    def record(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Append those of `alerts` not recorded yet; return them (the new ones)."""
        new = self.unrecorded(alerts)
        self.append(new)
        return new

    def _open_append(self) -> int:
        fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, MODE)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(22, "not a regular file", str(self.path))
            if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != MODE:
                os.fchmod(fd, MODE)  # the umask narrowed it, or it was opened to others
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _line(alert: Alert) -> bytes:
    # ensure_ascii: the file holds no control or invisible character, whatever a user is.
    return json.dumps(alert.to_json(), ensure_ascii=True, separators=(",", ":")).encode() + b"\n"


def _last_byte(path: Path) -> bytes:
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        return os.pread(fd, 1, size - 1) if size else b""
    finally:
        os.close(fd)


def scan(
    path: Path, since: datetime | None = None, until: datetime | None = None
) -> tuple[list[Alert], int]:
    """The alerts in the journal at `path` (in file order) whose time is in
    `[since, until)`, and how many lines were damaged (skipped). A missing file is empty.
    Raises OSError only when the file exists and cannot be read (or is a link)."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return [], 0
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    out: list[Alert] = []
    damaged = 0
    for raw in b"".join(chunks).split(b"\n"):
        if not raw.strip():
            continue
        try:
            alert = Alert.from_json(json.loads(raw))
            if alert.time.tzinfo is None:
                raise ValueError("a time without an offset")
        except (ValueError, KeyError, TypeError, AttributeError):
            damaged += 1
            continue
        if (since is None or alert.time >= since) and (until is None or alert.time < until):
            out.append(alert)
    return out, damaged


def read(path: Path, since: datetime | None = None) -> list[Alert]:
    """The alerts at or after `since` (all with None); damaged lines skipped (`scan`
    counts them)."""
    return scan(path, since)[0]


def count_since(path: Path, start: datetime) -> Counter[str]:
    """Alerts from `start` on, by rule (the daemon's "alerts today" after a restart)."""
    return Counter(a.rule.value for a in read(path, start))


@dataclass
class AlertCounts:
    """The daemon's alert counters: what STATUS= and `mlsd_alerts_total` show.

    `by_rule` counts alerts raised since start (a Prometheus counter); `today` counts
    those of `day` (the report zone's current day), seeded from the journal at start so a
    restart does not reset it; `note` rolls it over when the day changes."""

    by_rule: Counter[str] = field(default_factory=Counter)
    day: date | None = None
    today: int = 0

    @classmethod
    def from_journal(cls, path: Path, day: date, start: datetime) -> AlertCounts:
        """Counters at start: `today` from the journal's alerts since `start` (the day's
        beginning); `by_rule` at 0 (a counter since start). An unreadable journal: 0."""
        try:
            return cls.of(read(path, start), day, start)
        except OSError:
            return cls(day=day, today=0)

    @classmethod
    def of(cls, alerts: Sequence[Alert], day: date, start: datetime) -> AlertCounts:
        """Counters at start from alerts already read: `today` those since `start`."""
        return cls(day=day, today=sum(1 for a in alerts if a.time >= start))

    def note(self, alerts: Sequence[Alert], day: date) -> None:
        """Count newly raised `alerts`, on `day`."""
        self.roll(day)
        self.today += len(alerts)
        self.by_rule.update(a.rule.value for a in alerts)

    def roll(self, day: date) -> int:
        """Start a new day's count if `day` is not the counted one; the count of `day`."""
        if day != self.day:
            self.day, self.today = day, 0
        return self.today
