"""Committed rows of a journal's CSV, read back for a store: the shipper's reading, in a
worker thread.

The CSV is read and decoded a block at a time, not line by line: a third less time per row
(29.5 k rows: 0.051 s instead of 0.077 s), all of it holding the GIL the follower needs.
"""

from __future__ import annotations

import os
from datetime import tzinfo
from pathlib import Path
from typing import Final

from mlsd.safefs import nofollow_opener
from mlsd.store.contract import Position, Row, StoreConflict
from mlsd.store.journals import Journal

READ_BLOCK: Final = 1 << 20
"""Bytes read at a time (doubled for a row longer than that)."""


def read_rows(
    path: Path, journal: Journal, start: Position, target: Position, *, most: int, tz: tzinfo
) -> tuple[list[Row], Position, int]:
    """Up to `most` rows of `path` from `start`, never past `target` (the committed end):
    the rows, where they end, and how many lines were not rows (passed over).

    Raises StoreConflict when `path` is not the file `target` names, or when there is no
    whole row before `target` (the committed end is not at a line end: edited in place?)."""
    rows: list[Row] = []
    skipped = 0
    decode, typed = journal.cells, journal.row
    with open(path, "rb", buffering=0, opener=nofollow_opener) as fh:
        fd = fh.fileno()
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (target.csv_dev, target.csv_ino):
            raise StoreConflict(f"{path} is not the CSV the checkpoint committed")
        at, end = start.csv_offset, target.csv_offset
        size = READ_BLOCK
        while at < end and len(rows) < most:
            block = os.pread(fd, min(end - at, size), at)
            cut = block.rfind(b"\n") + 1
            if not cut:
                if len(block) < min(end - at, size):
                    break  # the file is shorter than committed: nothing more to read
                if size >= end - at:
                    break  # never past the committed end, which is a row boundary
                size *= 2  # a row longer than the block
                continue
            lines = block[:cut].split(b"\n")
            lines.pop()  # the empty string after the last newline
            if len(lines) > most - len(rows):
                del lines[most - len(rows) :]
            at += sum(map(len, lines)) + len(lines)
            # One decode for the block: a newline is never inside a UTF-8 sequence, so the
            # lines are those of decoding each on its own, replacements included.
            text = b"\n".join(lines).decode("utf-8", "replace")
            if "\x00" in text:
                # mlsd writes none (untrusted.csv_cell escapes it); an edited or damaged row
                # may, and PostgreSQL refuses NUL in text: every try of the batch would fail.
                text = text.replace("\x00", "\ufffd")
            for line in text.split("\n"):
                cells = decode(line)
                if cells is None:
                    skipped += 1
                    continue
                try:
                    rows.append(typed(cells, tz))
                except ValueError:
                    skipped += 1
    if at == start.csv_offset < target.csv_offset:
        raise StoreConflict(f"{path}: no whole row before the committed end")
    return rows, Position(start.csv_dev, start.csv_ino, at), skipped
