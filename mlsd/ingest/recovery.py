"""At start-up: a CSV journal reconciled with what the checkpoint says it held.

The same rules for the failures CSV and the logins CSV (each pinned by its own identity and
length in the one checkpoint): rows after the committed length belong to a batch whose
checkpoint never landed and are cut back (the log gives them again); a file shorter than
committed, or another file with rows in its place, is refused loudly; a new empty file in
its place (the operator moved the old one aside) goes on from the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from mlsd import logs
from mlsd.errors import StateError
from mlsd.ingest.csvlog import CsvJournal

log = logs.get("mlsd.pipeline")


class Pin(NamedTuple):
    """A CSV as a checkpoint records it: identity and committed length."""

    dev: int
    ino: int
    length: int


def reconcile(journal: CsvJournal, pin: Pin | None, checkpoint: Path, *, unpinned: str) -> bool:
    """Make the open `journal` what `pin` committed, or refuse (StateError). True when a
    checkpoint must pin it now: not pinned yet (`pin` None), or a new file in its place.

    `unpinned`: why there is no pin, for the refusal of a file that already holds rows.
    """
    st = journal.stat()
    size = st.st_size
    what = journal.what
    empty = size <= len(journal.header)
    if pin is None:
        if not empty:
            raise StateError(
                f"{journal.path}: the {what} already holds rows but {checkpoint} {unpinned}, "
                "so mlsd cannot tell which log lines they came from; move the "
                f"{what} aside (or restore the checkpoint) and start again"
            )
        return True
    if (st.st_dev, st.st_ino) != (pin.dev, pin.ino):
        if size == len(journal.header):
            log.warning(
                f"{what.lower()} is new, continuing from the checkpoint",
                path=str(journal.path),
                reason="the checkpointed one was moved away",
            )
            return True
        raise StateError(
            f"{journal.path}: this is not the {what} the checkpoint was written with "
            f"(it had inode {pin.ino}, this one {st.st_ino}); move it aside and start "
            "again, or restore the original"
        )
    if size > pin.length:
        # Rows of a batch whose checkpoint never landed: the log gives them again.
        journal.truncate(pin.length)
        log.warning(
            f"{what.lower()} cut back",
            path=str(journal.path),
            **{"from": size, "to": pin.length},  # `from` is a keyword
            reason="uncommitted rows; they are read again",
        )
    elif size < pin.length:
        raise StateError(
            f"{journal.path}: the {what} is {size} bytes but the checkpoint says "
            f"{pin.length} were committed: rows were removed behind mlsd's back; "
            f"restore the {what}, or move it and the checkpoint aside to start over"
        )
    return False
