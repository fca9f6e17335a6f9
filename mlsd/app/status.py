"""`mlsd status`: the daemon's health, from its state files alone.

Nothing here talks to the daemon or takes its lock: status must answer while the daemon
runs, when it is stopped, and when it is stuck — the case it exists for. Each answer comes
from a file the daemon keeps for its own reasons: the lock (who runs, since when), the
checkpoint (where reading stands, when it last moved), the CSV (last event, rows today),
report.json and the outbox (reports), coverage.json (gaps), the GeoIP files.

A *problem* makes the exit status 1 (something needs the operator now); a *warning* is
worth knowing but does not (a stale GeoIP file, a gap logrotate caused last night).

This module finds and judges; mlsd.app.status_render shows the result on a terminal.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

from mlsd.app import alertstatus, fleetstatus, journalstatus, storeread, storestatus
from mlsd.app.lockholder import lock_holder
from mlsd.config import Config
from mlsd.enrich.geo import Geo
from mlsd.errors import StateError
from mlsd.ingest.checkpoint import CHECKPOINT_NAME, Checkpoint, journal_source
from mlsd.ingest.sources.file.generations import Candidate, candidate, matches, rotated_siblings
from mlsd.report import schedule, window
from mlsd.report.reportstate import STATE_NAME, read_last_queued, tagged_day
from mlsd.report.smtp import Outbox
from mlsd.safefs import read_file
from mlsd.watched import DayCounts, Ledger

STALLED_AFTER: Final = 60.0
"""Seconds the checkpoint may stand still while there is log left to read."""
OVERDUE_AFTER: Final = timedelta(minutes=15)
"""How long after its send time a day's report may still be missing."""
WAITING_TOO_LONG: Final = timedelta(hours=1)
"""A report in the outbox longer than this is a problem, not a retry in progress."""
GEOIP_STALE: Final = timedelta(days=35)
"""MaxMind publishes GeoLite2 twice a week; a month-old file means geoipupdate stopped."""


@dataclass(slots=True)
class Status:
    """Everything `mlsd status` says; `problems` empty means healthy."""

    config: str
    running: bool | None = False
    """None: cannot tell (the state directory cannot be read by this user)."""
    running_unknown: str = ""
    """Why `running` is None: `permission denied on /var/lib/mlsd`."""
    pid: int | None = None
    since: str | None = None
    log: str = ""
    generation: str | None = None
    """The file that holds the checkpointed generation (the live log or a rotated one)."""
    offset: int | None = None
    behind_bytes: int | None = None
    read_until: str | None = None
    """A journal source: the time of the last entry read."""
    behind_seconds: float | None = None
    """A journal source: how much later the journal's last entry is."""
    committed_at: str | None = None
    csv: str = ""
    last_event: str | None = None
    events_today: int | None = 0
    """None: the CSV cannot be read by this user."""
    counted_from: str = "csv"
    """Where events_today was counted: "store" (caught up to the committed CSV) or "csv"."""
    report_last_queued: str | None = None
    report_last_state: str = ""
    """What became of it: delivered, waiting in the outbox, failed, or written to disk."""
    report_next_due: str = ""
    outbox_waiting: int = 0
    outbox_failed: int = 0
    outbox_last_error: str = ""
    gaps_today: int | None = None
    gaps_7_days: int | None = None
    geoip: list[dict[str, str]] = field(default_factory=list)
    store: str = ""
    fleet: str = ""
    alerts: str = ""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cannot_read: list[str] = field(default_factory=list)
    """What this user may not read, its figures "not known": checkpoint, csv, coverage.json."""

    @property
    def healthy(self) -> bool:
        """No problem found."""
        return not self.problems

    def to_json(self) -> str:
        """The `--json` form: every field, plus `healthy`."""
        return json.dumps({**asdict(self), "healthy": self.healthy}, indent=1) + "\n"


def _iso(ts: float | None) -> str | None:
    return (
        None
        if ts is None
        else datetime.fromtimestamp(ts, UTC).astimezone().isoformat(" ", "seconds")
    )


def _ago(ts: float, now: float) -> str:
    s = max(0, int(now - ts))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} days"


def gather(cfg: Config, now: datetime) -> Status:
    """Read every state file and judge: the whole of `mlsd status`."""
    journal = journal_source(cfg.source.journal_directory)
    log = journal if cfg.source.kind == "journal" else str(cfg.paths.mail_log)
    st = Status(config=str(cfg.source_file), log=log, csv=str(cfg.paths.csv))
    state_dir = cfg.paths.state_dir
    st.report_next_due = (
        schedule.next_report_at(now, cfg.report.time, cfg.report_tz())
        .astimezone()
        .isoformat(" ", "minutes")
    )
    try:
        state_dir.stat()
        denied = not os.access(state_dir, os.R_OK | os.X_OK)
    except (FileNotFoundError, NotADirectoryError):
        st.problems.append(
            f"{state_dir} does not exist: mlsd has never run with this configuration"
        )
        return st
    except PermissionError:
        denied = True  # a parent: systemd's /var/lib/private is root's alone
    if denied:
        # Not "not running": the lock (and so who holds it) is out of this user's reach.
        # What is not in the state directory can still be shown.
        st.running = None
        st.running_unknown = f"permission denied on {state_dir}"
        st.cannot_read += ["checkpoint", "coverage.json"]
        st.problems.append(
            f"cannot tell whether mlsd runs: permission denied on {state_dir}: run mlsd "
            "status as root or as mlsd's user"
        )
        _events(st, cfg, now)
        _geoip(st, cfg, now)
        return st
    ts = now.timestamp()
    started = _daemon(st, state_dir)
    _position(st, cfg, ts)
    _events(st, cfg, now)
    _reports(st, cfg, now, started)
    _gaps(st, cfg, now)
    _geoip(st, cfg, now)
    st.store = storestatus.summary(cfg)
    st.fleet = fleetstatus.summary(cfg)
    st.alerts = alertstatus.summary(cfg, now)
    if st.running is False:
        st.problems.insert(0, "mlsd is not running (no process holds the state lock)")
    return st


def _daemon(st: Status, state_dir: Path) -> datetime | None:
    """Fill in who runs; returns since when (None: nobody, or not known)."""
    try:
        holder = lock_holder(state_dir)
    except OSError as exc:  # not "not running": whether the lock is held is not known
        why = (exc.strerror or str(exc)).lower()
        st.running, st.running_unknown = None, f"{why} on {exc.filename}"
        st.problems.append(f"cannot tell whether mlsd runs: {st.running_unknown}")
        return None
    if holder is None:
        return None
    st.running, st.pid, st.since = True, holder[0], _iso(holder[1])
    return datetime.fromtimestamp(holder[1], UTC)


def _position(st: Status, cfg: Config, now: float) -> None:
    path = cfg.paths.state_dir / CHECKPOINT_NAME
    try:
        cp = Checkpoint.from_json(read_file(path).decode("utf-8", "replace"), path)
    except FileNotFoundError:
        st.warnings.append(f"{path}: no checkpoint yet: nothing has been read")
        return
    except OSError as exc:
        st.problems.append(f"{path}: cannot read the checkpoint: {exc.strerror}")
        st.cannot_read.append("checkpoint")
        return
    except StateError as exc:
        st.problems.append(str(exc))
        return
    st.committed_at = _iso(cp.committed_at)
    st.offset = cp.offset
    if cfg.source.kind == "journal":
        _journal(st, cfg, cp, now)
        return
    live = candidate(cfg.paths.mail_log)
    if live is None:
        st.problems.append(f"{cfg.paths.mail_log}: the log does not exist or cannot be read")
        return
    if cp.generation is None:
        st.generation, st.behind_bytes = None, live.size
    else:
        gen = cp.generation
        found: Candidate | None = None
        newer = 0
        for cand in [*rotated_siblings(cfg.paths.mail_log, cfg.follow.rotated_dir), live]:
            if found is not None:
                newer += cand.size
            elif (cand.dev, cand.ino) == (gen.dev, gen.ino) or matches(cand, gen):
                found = cand
        if found is None:
            st.warnings.append(
                "the checkpointed generation is no longer next to the log (rotated away or "
                "deleted): the next start records a gap and reads on from the oldest file"
            )
            st.behind_bytes = live.size
        else:
            st.generation = str(found.path)
            # A .gz's size is compressed; its remainder is not known without reading it.
            rest = 0 if found.gz else _complete(found.path, cp.offset, found.size)
            st.behind_bytes = rest + newer
    if st.running and st.behind_bytes and now - cp.committed_at > STALLED_AFTER:
        st.problems.append(
            f"reading is {st.behind_bytes} bytes behind the end of the log and has not "
            f"moved for {_ago(cp.committed_at, now)}: see journalctl -u mlsd"
        )


def _journal(st: Status, cfg: Config, cp: Checkpoint, now: float) -> None:
    pos = journalstatus.position(cfg, cp.cursor)
    st.offset, st.read_until, st.behind_seconds = None, _iso(pos.read_until), pos.behind_seconds
    if pos.problem is not None:
        st.warnings.append(f"how far behind the journal mlsd is cannot be told: {pos.problem}")
    if st.running and pos.behind_seconds and now - cp.committed_at > STALLED_AFTER:
        st.problems.append(
            f"reading is {pos.behind_seconds:.0f} s of entries behind the journal's end and "
            f"has not moved for {_ago(cp.committed_at, now)}: see journalctl -u mlsd"
        )


def _complete(path: Path, offset: int, size: int) -> int:
    """Bytes of complete lines after `offset`: a last line still being written (no newline
    yet) is not something the daemon could have read, so it is not "behind"."""
    if size <= offset:
        return 0
    start = max(offset, size - 65536)
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            tail = fh.read(size - start)
    except OSError:
        return size - offset
    cut = tail.rfind(b"\n")
    if cut >= 0:
        return start + cut + 1 - offset
    return 0 if start == offset else size - offset


def _events(st: Status, cfg: Config, now: datetime) -> None:
    path = cfg.paths.csv
    try:
        present = path.exists()
    except OSError as exc:  # a directory on the way this user may not search
        st.problems.append(f"{path}: cannot read the CSV: {exc.strerror}")
        st.cannot_read.append("csv")
        st.events_today = None
        return
    if not present:
        st.warnings.append(f"{path}: no CSV yet")
        return
    tz = cfg.report_tz()
    try:
        last = window.last_row_time(path, cfg.log_tz())
        start, _ = schedule.report_window(now.astimezone(tz).date(), tz)
        stored = storeread.rows_between(cfg, start, now)
        if stored is not None:
            st.events_today, st.counted_from = stored, "store"
        else:
            st.events_today = sum(1 for _ in window.window(path, start, now, cfg.log_tz()))
    except OSError as exc:
        st.problems.append(f"{path}: cannot read the CSV: {exc.strerror}")
        st.cannot_read.append("csv")
        st.events_today = None
        return
    st.last_event = None if last is None else last.astimezone().isoformat(" ", "seconds")


def _reports(st: Status, cfg: Config, now: datetime, started: datetime | None) -> None:
    tz = cfg.report_tz()
    at = cfg.report.time
    state = cfg.paths.state_dir / STATE_NAME
    last: date | None = None
    try:
        last = read_last_queued(state)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        st.problems.append(f"{state}: unreadable ({exc})")
    outbox = Outbox(cfg.paths.state_dir / "outbox")
    try:
        waiting = outbox.entries()
        failed = outbox.entries(failed=True)
    except StateError as exc:  # a link or others' directory in place of the outbox
        st.problems.append(str(exc))
        waiting, failed = [], []
    st.outbox_waiting, st.outbox_failed = len(waiting), len(failed)
    # The day the sender itself would resume from (see ReportSender._load_last_queued).
    tagged = [d for d in map(tagged_day, [*waiting, *failed]) if d is not None]
    last = max([*tagged, *([last] if last else [])], default=None)
    if last is not None:
        st.report_last_queued = last.isoformat()
    for entry in waiting:
        st.outbox_last_error = entry.last_error or st.outbox_last_error
        if now.timestamp() - entry.created > WAITING_TOO_LONG.total_seconds():
            st.problems.append(
                f"a report has waited in the outbox for {_ago(entry.created, now.timestamp())} "
                f"({entry.attempts} attempts, last error: {entry.last_error or 'none yet'})"
            )
    if last is not None:
        if any(tagged_day(e) == last for e in waiting):
            st.report_last_state = "waiting in the outbox"
        elif any(tagged_day(e) == last for e in failed):
            st.report_last_state = "not delivered (in outbox/failed)"
        elif not cfg.report.to:
            st.report_last_state = f"written to {cfg.paths.state_dir / 'reports'} (no [report] to)"
        else:
            # The outbox forgets an entry only once every recipient accepted it.
            st.report_last_state = "delivered"
    if failed:
        st.problems.append(
            f"{len(failed)} report(s) could not be delivered and were set aside in "
            f"{outbox.failed_dir} (the .json says why)"
        )
    due = schedule.due_day(now, at, tz)
    due_at = schedule.wall_time(due + timedelta(days=1), at, tz)
    # No report is ever due for a day before the first one mlsd watched (mlsd.sender).
    first = Ledger(cfg.paths.state_dir).first_day()
    watched = first is None or due >= first
    if (
        started
        and watched
        and (last is None or last < due)
        and now - max(due_at, started) > OVERDUE_AFTER
    ):
        st.problems.append(
            f"the report of {due} was due at {due_at.astimezone().isoformat(' ', 'minutes')} "
            "and has not been queued: see journalctl -u mlsd"
        )


def _gaps(st: Status, cfg: Config, now: datetime) -> None:
    ledger = Ledger(cfg.paths.state_dir)
    today = now.astimezone(cfg.report_tz()).date()
    if not ledger.days:
        if ledger.path.exists() and not os.access(ledger.path, os.R_OK):
            st.cannot_read.append(ledger.path.name)
        return
    st.gaps_today = (ledger.get(today) or DayCounts()).gaps
    st.gaps_7_days = sum(
        (ledger.get(today - timedelta(days=i)) or DayCounts()).gaps for i in range(7)
    )
    if st.gaps_7_days:
        st.warnings.append(
            f"{st.gaps_7_days} gap(s) in the last 7 days (lines mlsd could not read): "
            "journalctl -u mlsd | grep ' gap '"
        )


def _geoip(st: Status, cfg: Config, now: datetime) -> None:
    geo = Geo(cfg.geoip)
    try:
        dbs = geo.describe()
    finally:
        geo.close()
    for db in dbs:
        built = db.built.date().isoformat() if db.built else ""
        st.geoip.append(
            {
                "role": db.role,
                "path": str(db.path),
                "state": db.state,
                "type": db.database_type,
                "built": built,
            }
        )
        if db.state != "loaded":
            st.warnings.append(
                f"{db.role} database {db.path} is {db.state}: rows get N/A in its columns"
            )
        elif db.built and now - db.built > GEOIP_STALE:
            st.warnings.append(
                f"{db.role} database {db.path} was built {built}: is geoipupdate running?"
            )
