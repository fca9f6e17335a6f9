"""`mlsd status`'s store line: rows stored and how far behind the committed CSV."""

from __future__ import annotations

import contextlib
import sqlite3

from mlsd.config import Config
from mlsd.errors import MlsdError
from mlsd.ingest.checkpoint import CHECKPOINT_NAME, Checkpoint
from mlsd.safefs import read_file
from mlsd.store.sqlite import default_path


def summary(cfg: Config) -> str:
    """One line: `events.sqlite3: N rows, up to date` (or what is wrong); never writes."""
    path = cfg.store.path or default_path(cfg.paths.state_dir)
    if not path.exists():
        return f"{path}: not built yet (mlsd run builds it from the CSV)"
    try:
        try:
            db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=1)
        except sqlite3.OperationalError:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            # Rows are never deleted: the last id is the count, without a full scan.
            rows = db.execute("SELECT coalesce(max(id), 0) FROM mlsd_events").fetchone()[0]
            stored = db.execute(
                "SELECT csv_dev, csv_ino, csv_offset FROM mlsd_positions"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"{path}: cannot read it ({exc}); `mlsd store check` says more"
    cp = None
    where = cfg.paths.state_dir / CHECKPOINT_NAME
    with contextlib.suppress(OSError, MlsdError):  # status says elsewhere what is wrong
        cp = Checkpoint.from_json(read_file(where).decode("utf-8", "replace"), where)
    if cp is None or not stored:
        return f"{path}: {rows} rows"
    dev, ino, offset = stored[0]
    if (dev, ino) != (cp.csv_dev, cp.csv_ino):
        return f"{path}: {rows} rows of another CSV (rebuilt at the next start)"
    behind = max(0, cp.csv_length - offset)
    return f"{path}: {rows} rows, " + (f"{behind} bytes behind the CSV" if behind else "up to date")
