"""How far reading is behind the end of the log file, in bytes (STATUS= and mlsd.metrics)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from mlsd.ingest.session import Session


def bytes_behind(session: Session, mail_log: Path) -> int:
    """The unread rest of the open generation, plus the live log when it is another file
    (a rotation not reached yet); 0 when nothing is open. A compressed generation's rest
    is not known without reading it, so it counts 0."""
    cur = session.follower.cur
    if cur is None:
        return 0
    behind = 0
    with contextlib.suppress(OSError):
        if not cur.gz:
            behind = max(0, cur.stat().st_size - cur.offset)
        live = os.stat(mail_log)
        if (live.st_dev, live.st_ino) != (cur.dev, cur.ino):
            behind += live.st_size
    return behind
