"""Who holds the state directory's lock, read from /proc/locks (for `mlsd status`)."""

from __future__ import annotations

from pathlib import Path

from mlsd.statedir import LOCK_NAME


def lock_holder(state_dir: Path) -> tuple[int, float] | None:
    """(pid, running since) of the process holding the state directory's lock, or None;
    OSError when the lock file or /proc/locks cannot be read ("cannot tell"). Read from
    /proc/locks, not by trying the lock: a probe that took the lock, even for a
    microsecond, could make a daemon starting at that moment fail with "already running"."""
    path = state_dir / LOCK_NAME
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    with open("/proc/locks") as fh:
        table = fh.read().splitlines()
    for row in table:
        # `1: FLOCK  ADVISORY  WRITE 1483 fe:00:2146319 0 EOF`
        parts = row.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[3] != "WRITE":
            continue
        ino = parts[5].rsplit(":", 1)[-1]
        if ino == str(st.st_ino) and parts[4].isdigit():
            # The daemon writes its pid in the file as it takes the lock: mtime = start time.
            return int(parts[4]), st.st_mtime
    return None
