"""`mlsd reset` and `mlsd purge`: start over without losing anything.

Both move files into a new timestamped directory; nothing is ever deleted. They take the
state directory's lock for the whole move, so they refuse while a daemon (or a scan) runs
and no daemon can start half-way through: a checkpoint moved away from under a running
daemon would be rewritten by it a moment later, against a CSV that is gone.

- reset: the CSV, the checkpoint, the report's per-day cache and the event store (both
  derived from that CSV).
  The next start begins again where `[follow] start_at` says.
- purge: also the report state (the last day sent, the coverage counters, reports written
  to disk), the outbox, failed messages included, and the alerts journal: the next start
  behaves like a first install, and mails no report queued before the purge.

Both first record the CSVs they move in `handover.json`, which stays (mlsd.store.handover):
a fleet keeps the node's position across them, and follows it through the archive.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mlsd.config import Config
from mlsd.durable import fsync_dir
from mlsd.errors import MlsdError, StateError
from mlsd.ingest.checkpoint import CHECKPOINT_NAME, CheckpointStore, StateLock
from mlsd.report.reportstate import STATE_NAME
from mlsd.statedir import ALERTS_NAME
from mlsd.store import handover
from mlsd.store.sqlite import default_path
from mlsd.watched import NAME as COVERAGE_NAME

ARCHIVE_MODE: Final = 0o700
"""The archive holds attack data (IPs, usernames): for root and mlsd's user only."""


@dataclass(frozen=True, slots=True)
class Move:
    """One file or directory to move, and why it goes."""

    source: Path
    what: str


def plan(cfg: Config, *, purge: bool) -> list[Move]:
    """What exists and would be moved, in the order it will be."""
    return [m for m in _managed(cfg, purge=purge) if os.path.lexists(m.source)]


def check_archive_parent(parent: Path, cfg: Config, *, purge: bool) -> None:
    """Raise StateError if `parent` lies inside a path the command moves (or is one).

    `purge --archive STATE/outbox` moved three items into the live outbox, then failed
    with EINVAL moving the outbox into itself (issue 17, finding 8): refused before any
    move. Both sides are resolved, so a symlink or `..` does not get around it."""
    where = Path(os.path.realpath(parent))
    for m in _managed(cfg, purge=purge):
        managed = Path(os.path.realpath(m.source))
        if where == managed or managed in where.parents:
            raise StateError(
                f"{parent}: the archive directory would be inside {m.source} ({m.what}), "
                "which is itself moved: choose a directory outside it"
            )


def _managed(cfg: Config, *, purge: bool) -> list[Move]:
    state = cfg.paths.state_dir
    items = [
        Move(cfg.paths.csv, "the CSV"),
        # Its rows are committed by the same checkpoint: it goes with it, or the next
        # start would refuse a logins CSV that no checkpoint pins.
        Move(cfg.paths.logins(), "the logins CSV"),
        Move(state / CHECKPOINT_NAME, "the checkpoint"),
        Move(state / (CHECKPOINT_NAME + ".tmp"), "an unfinished checkpoint write"),
        Move(state / "days", "the report's per-day cache"),
    ]
    # The event store is derived from that CSV too; its WAL files go with it (before it,
    # so that no moment leaves a WAL beside a database it does not belong to).
    db = cfg.store.path or default_path(state)
    items += [Move(Path(f"{db}{x}"), "the event store's WAL") for x in ("-wal", "-shm")]
    items.append(Move(db, "the event store (built from the CSV)"))
    if purge:
        items += [
            Move(state / STATE_NAME, "the last report day queued"),
            Move(state / COVERAGE_NAME, "the per-day coverage counters"),
            Move(state / "reports", "reports written to disk"),
            Move(state / "outbox", "the outbox (failed messages included)"),
            Move(state / ALERTS_NAME, "the alerts journal"),
        ]
    return items


def record_handover(cfg: Config, archive: Path) -> None:
    """Before the CSVs move into `archive`: record each with what the checkpoint committed
    of it, so a fleet goes on from the node's stored position (mlsd.store.handover). A CSV
    the checkpoint does not pin (no checkpoint, another file) is not recorded."""
    try:
        cp = CheckpointStore(cfg.paths.state_dir).load()
    except MlsdError:
        return
    if cp is None:
        return
    for journal, path, pinned in (
        ("events", cfg.paths.csv, (cp.csv_dev, cp.csv_ino, cp.csv_length)),
        ("logins", cfg.paths.logins(), (cp.logins_dev, cp.logins_ino, cp.logins_length)),
    ):
        dev, ino, length = pinned
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            continue
        if dev is None or ino is None or length is None or (st.st_dev, st.st_ino) != (dev, ino):
            continue
        handover.record(
            cfg.paths.state_dir, journal, handover.Moved(dev, ino, length, archive / path.name)
        )


def new_archive(parent: Path, now: float) -> Path:
    """Create `parent/archive-YYYYmmddTHHMMSS` (a suffix if it exists), mode 0700."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now))
    parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    for n in range(1, 100):
        path = parent / (f"archive-{stamp}" if n == 1 else f"archive-{stamp}-{n}")
        try:
            path.mkdir(mode=ARCHIVE_MODE)
        except FileExistsError:
            continue
        os.chmod(path, ARCHIVE_MODE)  # mkdir's mode is masked by the umask
        return path
    raise FileExistsError(f"{parent}: too many archives named archive-{stamp}")


def move(source: Path, archive: Path) -> Path:
    """Move `source` into `archive`; across file systems a copy, synced, then the original
    removed. Returns the new path."""
    dest = archive / source.name
    try:
        os.rename(source, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # The CSV lives in /var/log/mlsd, the archive in /var/lib/mlsd: often two file
        # systems. The original goes only once its copy is on disk.
        if source.is_dir():
            shutil.copytree(source, dest, symlinks=True)
            for root, _, files in os.walk(dest):
                for name in files:
                    _fsync(Path(root) / name)
            shutil.rmtree(source)
        else:
            shutil.copy2(source, dest)
            _fsync(dest)
            source.unlink()
    fsync_dir(archive)
    fsync_dir(source.parent)
    return dest


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock(cfg: Config) -> StateLock:
    """The state lock, taken: raises StateError naming the pid when a daemon holds it."""
    held = StateLock(cfg.paths.state_dir)
    held.acquire()
    return held
