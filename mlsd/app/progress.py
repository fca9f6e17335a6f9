"""Progress on a terminal for the long commands: `scan` of a backlog, `parse` of big files.

One line on stderr (tqdm): bytes of the files on disk read, the rate, the time left. Only
when stderr is a terminal, so a log, a pipe or a cron mail gets nothing of it; `parse`
also wants stdout elsewhere (its rows would scroll the line away). When there is no
terminal the commands get None and do no progress work at all.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from tqdm import tqdm

    from mlsd.ingest.sources.file.follow import Follower
    from mlsd.ingest.sources.file.reading import Generation

# tqdm is imported when a line is drawn: `mlsd parse` into a pipe starts without it.


def on_terminal(stream: IO[str] | None = None, *, rows_to: IO[str] | None = None) -> bool:
    """Whether progress may be drawn: `stream` (stderr) is a terminal, and `rows_to` (the
    command's output, if any) is not the same screen."""
    err = sys.stderr if stream is None else stream
    try:
        if not err.isatty():
            return False
        return rows_to is None or not rows_to.isatty()
    except (ValueError, OSError):  # closed or detached
        return False


def bar(desc: str, total: int | None, stream: IO[str] | None = None) -> tqdm[NoReturn]:
    """A byte counter with rate and ETA (ETA only with a `total`), cleared when closed."""
    from tqdm import tqdm  # noqa: PLC0415 - see the note on imports at the top

    return tqdm(
        desc=desc,
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr if stream is None else stream,
        leave=False,
        dynamic_ncols=True,
    )


class AboveBar(io.TextIOBase):
    """stderr for the log while a progress line is drawn on it: each log line clears the
    progress line, is written, and the progress line is drawn again under it (the logging
    handler writes a record in one call)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, s: str) -> int:
        """Write `s` above the progress line."""
        from tqdm import tqdm  # noqa: PLC0415 - see the note on imports at the top

        with tqdm.external_write_mode(file=self._stream):
            return self._stream.write(s)

    def flush(self) -> None:
        """Flush the terminal."""
        self._stream.flush()

    def isatty(self) -> bool:
        """The terminal's answer (the log's colours depend on it)."""
        return self._stream.isatty()

    def fileno(self) -> int:
        """The terminal's descriptor (the log's format choice looks at it)."""
        return self._stream.fileno()


class ParseProgress:
    """`parse` of one file: the position in the file on disk (compressed for a .gz)."""

    def __init__(self, name: str, raw: IO[bytes], stream: IO[str] | None = None) -> None:
        self._raw = raw
        try:
            total: int | None = os.fstat(raw.fileno()).st_size or None
            raw.tell()
        except (OSError, ValueError):  # stdin, a pipe: bytes counted, no total
            total = None
        self._seekable = total is not None
        self._read = 0
        self.bar = bar(os.path.basename(name) or name, total, stream)

    def update(self, chunk: int) -> None:
        """A chunk of `chunk` decompressed bytes was parsed."""
        self._read += chunk
        pos = self._raw.tell() if self._seekable else self._read
        self.bar.update(pos - self.bar.n)

    def close(self) -> None:
        """Clear the line."""
        self.bar.close()


class ScanProgress:
    """`scan`: what is left on disk, from the reader's place in its generation through the
    rotated generations after it to the live file; the total grows with the live file."""

    def __init__(self, logpath: Path, stream: IO[str] | None = None) -> None:
        self.logpath = logpath
        self.bar = bar("scan", None, stream)
        self._cur: tuple[int, int] | None = None
        self._later = 0
        """On-disk bytes of the rotated generations after the current one."""
        self._live_start: int | None = None
        self._left_start = 0

    def batch(self, follower: Follower) -> None:
        """Look at where reading stands: two stats a batch (of up to a MiB), and a listing
        of the rotated files when reading moves to another one; tqdm limits the drawing."""
        cur = follower.cur
        if cur is None:
            return
        if self._cur != (cur.dev, cur.ino):  # a new generation: list what follows it
            self._cur = (cur.dev, cur.ino)
            self._later = self._after(follower, cur)
        try:
            live = os.stat(self.logpath)
            here = max(0, cur.stat().st_size - cur.disk_offset())
        except OSError:
            return
        is_live = (live.st_dev, live.st_ino) == (cur.dev, cur.ino)
        left = here + self._later + (0 if is_live else live.st_size)
        if self._live_start is None:
            # The first look (before the first batch): the total is what is left now.
            self._live_start, self._left_start = live.st_size, left + int(self.bar.n)
        total = self._left_start + max(0, live.st_size - self._live_start)
        self.bar.total = max(total, int(self.bar.n))
        self.bar.update(max(0, total - left - int(self.bar.n)))

    @staticmethod
    def _after(follower: Follower, cur: Generation) -> int:
        sibs = follower.lineage.siblings()
        idx = next((i for i, c in enumerate(sibs) if (c.dev, c.ino) == (cur.dev, cur.ino)), None)
        if idx is None:  # the live file, or a generation renamed or compressed since
            return 0
        return sum(c.size for c in sibs[idx + 1 :] if not c.packed)

    def done(self) -> None:
        """Clear the line before the summary is logged."""
        self.bar.close()


class EntryProgress:
    """`scan` of the journal: entries read so far and the rate (journalctl gives no total,
    so there is no time left to show), redrawn from the pipeline's counter."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.bar = bar("scan journal", None, stream)
        self.bar.unit, self.bar.unit_scale, self.bar.unit_divisor = " entries", True, 1000

    def show(self, entries: int) -> None:
        """`entries` read in all."""
        self.bar.update(max(0, entries - int(self.bar.n)))

    def done(self) -> None:
        """Clear the line before the summary is logged."""
        self.bar.close()
