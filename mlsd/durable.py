"""Writes that survive a crash: every byte handed to the kernel, then fsync, then rename.

One implementation for the CSV, the checkpoint and the outbox, so the order of writes
that the exactly-once design relies on is written (and reviewed) once.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from mlsd.safefs import create_temp


def write_all(fd: int, data: bytes) -> None:
    """`os.write` until every byte is written (a write may be partial)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(
    path: Path, data: bytes, *, tmp: Path | None = None, mode: int = 0o640, fsync: bool = True
) -> None:
    """Replace `path` with `data`: readers see the old file or the new one, never half.

    Temp file (default `.NAME.tmp` beside it), write, fsync, rename, fsync the directory.
    The temp file is created anew (O_EXCL, not through a link: see mlsd.safefs), and the
    rename replaces whatever is at `path`, a link included, without following it.
    `fsync=False` is for caches, whose loss in a crash costs only time: readers still
    never see half a file, and the two fsyncs (milliseconds each on a disk) are saved.
    Raises OSError naming the file (`os.write` and `fsync` errors carry no name: on a full
    disk the operator saw only "No space left on device"); callers decide whether that is
    fatal. A temp file a failed write leaves behind is removed.
    """
    tmp = path.with_name(f".{path.name}.tmp") if tmp is None else tmp
    fd = create_temp(tmp, mode)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OSError(exc.errno, exc.strerror, str(tmp)) from None
    os.close(fd)
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)
