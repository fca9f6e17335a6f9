"""Reading one generation: a descriptor (plain) or a gzip stream, in pieces of whole lines.

Every piece ends on a newline, so the offset after it is a line start (see
mlsd.ingest.sources.file.follow). The exceptions are said in `Piece`: a line too long to
parse is counted and skipped without being held in memory, and the unterminated last line
of a sealed generation is torn, never parsed.
"""

from __future__ import annotations

import errno
import gzip
import os
import stat
import time
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Final

from mlsd import logs
from mlsd.ingest.checkpoint import GenerationId
from mlsd.ingest.grammar import MAX_CANDIDATE_LINE
from mlsd.ingest.sources.file.generations import HEAD_MAX, OPEN_FLAGS, Candidate, identity

log = logs.get("mlsd.follow")

CHUNK: Final = 4 << 20
LINE_MAX: Final = MAX_CANDIDATE_LINE
"""A line whose text (without its newline) is this long or longer is never parsed: the
parser refuses candidates over MAX_CANDIDATE_LINE bytes anyway, so the reader keeps
none of it and counts it (Skip.TOO_LONG) instead of gathering it in memory."""


@dataclass(frozen=True, slots=True)
class Piece:
    """What one read yields: complete lines to parse, and how far the offset moves."""

    data: bytes
    """Complete lines; over-long lines and a torn last line are left out, so `data` is
    not always `size` bytes of the file."""
    size: int
    """Bytes of the generation consumed (the offset moves by this much)."""
    too_long: int = 0
    """Over-long lines begun in this piece (each counted once, where it begins)."""
    discard: bool = False
    """After this piece the offset is inside a line not to be parsed (over-long, or torn
    at the end of a sealed generation): skip to its newline."""
    torn: int = 0
    """Bytes of an unterminated last line of a sealed generation, moved past unread."""


def _drop_long(body: bytes) -> tuple[bytes, int]:
    """`body` (complete lines) without its lines of LINE_MAX bytes or more, and their count.

    Such a line holds a whole aligned window of LINE_MAX/2 bytes without a newline, so a
    few `find`s per chunk tell that there is none (the usual case) at memory speed.
    """
    width = LINE_MAX // 2
    if all(body.find(b"\n", a, a + width) >= 0 for a in range(0, len(body) - width + 1, width)):
        return body, 0
    kept: list[bytes] = []
    dropped = 0
    pos = 0
    while pos < len(body):
        nl = body.find(b"\n", pos)
        end = len(body) if nl < 0 else nl + 1
        if end - pos - 1 >= LINE_MAX:
            dropped += 1
        else:
            kept.append(body[pos:end])
        pos = end
    return b"".join(kept), dropped


def cut(buf: bytes, *, discard: bool, last: bool) -> Piece:
    """The piece of `buf` (bytes from the current offset) that can be handed out now.

    `discard`: `buf` starts inside an over-long line. `last`: `buf` reaches the end of a
    sealed generation, so an unterminated last line will never be finished: it is torn
    (a copytruncate copy taken in the middle of a write, a writer that died mid-line) and
    its text is only a prefix of a line, whose user or address may be cut to another
    valid one. It is moved past as `torn`, never parsed (the follower says so).
    Otherwise a partial last line is kept for later (the offset stays at its start)
    unless it is already LINE_MAX long: then it is counted as too long, and the offset
    moves past what was read with `discard` set, so the line is never gathered in memory
    nor read again.
    """
    pos = 0
    if discard:
        nl = buf.find(b"\n")
        if nl < 0:
            return Piece(b"", len(buf), 0, not last)
        pos = nl + 1
    end = max(pos, buf.rfind(b"\n") + 1)
    body, too_long = _drop_long(buf[pos:end]) if end > pos else (b"", 0)
    tail = len(buf) - end
    if tail >= LINE_MAX:
        return Piece(body, len(buf), too_long + 1, not last)
    if last and tail:
        # `discard`: the offset now sits inside that line. Should its writer still finish
        # it (a late write through an old descriptor), the rest is skipped, not parsed as a
        # line of its own; and the byte before the offset is rightly not a newline (a
        # restart or a truncation check must not take that for a rewrite in place).
        return Piece(body, len(buf), too_long, True, torn=tail)
    return Piece(body, end, too_long, False)


class Generation:
    """One open generation: a descriptor (plain) or a gzip stream, and our offset in it."""

    def __init__(self, cand: Candidate, offset: int, *, discard: bool = False) -> None:
        self.path = cand.path
        self.dev, self.ino, self.gz = cand.dev, cand.ino, cand.gz
        self.fd = os.open(cand.path, OPEN_FLAGS)
        st = os.fstat(self.fd)
        if (st.st_dev, st.st_ino) != (cand.dev, cand.ino) or not stat.S_ISREG(st.st_mode):
            # Renamed or replaced between the listing and the open: the caller looks again.
            os.close(self.fd)
            raise FileNotFoundError(errno.ESTALE, "replaced since it was listed", str(cand.path))
        self.head = cand.head if cand.gz else os.pread(self.fd, HEAD_MAX, 0)
        self.opened_at = time.time()
        """Wall time of the open (file times are wall times too)."""
        self.offset = offset
        self.discard = discard
        """`offset` is inside an over-long line (see `Piece.discard`)."""
        self.broken = False
        self.seen_size = offset
        """The furthest end of file a read has shown us (to measure a copytruncate loss)."""
        self._gz: gzip.GzipFile | None = None
        self._raw: BinaryIO | None = None
        self._pending = b""
        """Decompressed bytes from `offset` on, read but not handed out yet (.gz only)."""
        self._eof = False
        if cand.gz:
            # GzipFile does not close a file object it is given: keep it to close it.
            self._raw = os.fdopen(os.dup(self.fd), "rb")
            self._gz = gzip.GzipFile(fileobj=self._raw)
            self._skip(self._gz, offset)

    def _skip(self, gz: gzip.GzipFile, offset: int) -> None:
        """Decompress up to `offset` (offsets in a .gz count decompressed bytes)."""
        left = offset
        try:
            while left:
                got = len(gz.read(min(left, CHUNK)))
                if not got:
                    break
                left -= got
        except (OSError, EOFError, zlib.error) as exc:
            self.broken = True
            log.warning("gzip read failed", generation=self.label(), error=str(exc))

    def advance(self, piece: Piece) -> None:
        """Move past a piece handed out; a young file's head grows with it (to 1 KiB)."""
        self.offset += piece.size
        self.discard = piece.discard
        if self._gz is not None:
            self._pending = self._pending[piece.size :]
        elif len(self.head) < HEAD_MAX:
            head = os.pread(self.fd, HEAD_MAX, 0)
            if head.startswith(self.head):  # else truncated just now: still_same() will say
                self.head = head

    def restart(self) -> None:
        """Truncated in place with no readable copy of what we had not read: what the file
        holds now was written after the truncate, so it is read from its start, through
        the descriptor we hold, under whatever name (or none) the file has by now."""
        self.offset = 0
        self.discard = False
        self.head = os.pread(self.fd, HEAD_MAX, 0)
        self.seen_size = 0
        self.opened_at = time.time()

    def ident(self) -> GenerationId:
        """The identity to checkpoint."""
        return identity(self.dev, self.ino, self.head)

    def label(self) -> str:
        """`path (dev:ino)` for log lines."""
        return f"{self.path} ({self.dev}:{self.ino})"

    def stat(self) -> os.stat_result:
        """fstat of the open descriptor."""
        return os.fstat(self.fd)

    def disk_offset(self) -> int:
        """Bytes of the file on disk read so far, for a progress display: a .gz's offset
        counts decompressed bytes, this its compressed ones (read-ahead included)."""
        if self._raw is not None:
            try:
                return self._raw.tell()
            except (OSError, ValueError):
                return 0
        return self.offset

    def still_same(self) -> bool:
        """Whether the bytes we read are still there (no truncation or rewrite in place).

        The head must still start the file (it may have grown), the file must reach our
        offset, and the byte before our offset must be the newline that ended our last line
        (or, inside an over-long line being skipped, one of its bytes).
        """
        if self.gz:
            return True
        head = os.pread(self.fd, HEAD_MAX, 0)
        if not head.startswith(self.head):
            return False
        if self.offset > 0:
            before = os.pread(self.fd, 1, self.offset - 1)
            if (before == b"\n") == self.discard or not before:
                return False
        self.head = head
        return True

    def read(self, *, final: bool) -> Piece:
        """The next piece from our offset (offset not advanced; see `cut`). With `final`, a
        last line without its newline counts: the generation is sealed and nothing more
        will come. At most CHUNK bytes are held, whatever the length of a line."""
        if self._gz is not None:
            return self._read_gz(self._gz)
        buf = os.pread(self.fd, CHUNK, self.offset)
        self.seen_size = max(self.seen_size, self.offset + len(buf))
        return cut(buf, discard=self.discard, last=final and len(buf) < CHUNK)

    def _read_gz(self, gz: gzip.GzipFile) -> Piece:
        if not self.broken:
            try:
                while not self._eof and len(self._pending) < CHUNK:
                    more = gz.read(CHUNK - len(self._pending))
                    if not more:
                        self._eof = True
                    self._pending += more
            except (OSError, EOFError, zlib.error) as exc:
                # A damaged or cut-short .gz: what decompressed is kept, the rest is a gap.
                self.broken = True
                log.warning("gzip read failed", generation=self.label(), error=str(exc))
        # A .gz is sealed: at its end an unterminated last line is torn. Where it breaks,
        # a partial line is left unread, so that the damage gap starts at it.
        return cut(self._pending, discard=self.discard, last=self._eof and not self.broken)

    def close(self) -> None:
        """Close descriptor and stream."""
        if self._gz is not None:
            self._gz.close()
        if self._raw is not None:
            self._raw.close()
        os.close(self.fd)
