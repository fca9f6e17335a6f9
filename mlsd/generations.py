"""Generations of the log: identity (inode + head), rotated siblings, and reading one.

A *generation* is one incarnation of the log: (st_dev, st_ino) plus its first bytes (up to
1 KiB, decompressed for `.gz`). Inode numbers are reused and a copy or a `.gz` has another
inode; the head is what survives rotation and compression.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
import re
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from mlsd.checkpoint import GenerationId, fingerprint

log = logging.getLogger("mlsd.follow")

HEAD_MAX: Final = 1024
CHUNK: Final = 4 << 20
GZIP_MAGIC: Final = b"\x1f\x8b"

# logrotate numbered (`mail.log.1`, `.2.gz`), dateext (`-20261125`, with an hour or a
# time if `dateformat` says so), and `postfix logrotate` (`.20261125-041200`).
_NUMBERED = re.compile(r"\.(\d{1,6})(\.gz)?")
_DATED = re.compile(r"[-.](\d{8}(?:-?\d{2,6})?)(\.gz)?")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file that is (or was) a generation of the log, as seen by one `stat`."""

    path: Path
    dev: int
    ino: int
    size: int
    mtime: float
    gz: bool
    head: bytes


def _head_of(path: Path) -> tuple[bytes, bool, os.stat_result] | None:
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None
            raw = fh.read(HEAD_MAX)
            if raw[:2] != GZIP_MAGIC:
                return raw, False, st
            fh.seek(0)
            try:
                with gzip.GzipFile(fileobj=fh) as gz:
                    return gz.read(HEAD_MAX), True, st
            except (OSError, EOFError, zlib.error):
                return None  # being compressed right now, or damaged: its plain twin counts
    except OSError:
        return None


def candidate(path: Path) -> Candidate | None:
    """The file at `path` as a generation candidate, or None if absent or unreadable."""
    got = _head_of(path)
    if got is None:
        return None
    head, gz, st = got
    return Candidate(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime, gz, head)


def rotated_siblings(logpath: Path) -> list[Candidate]:
    """The rotated generations next to `logpath`, oldest first.

    Order is by mtime, the time of a generation's last write, which logrotate keeps when
    it renames and compresses: generations are written one after the other, so this holds
    even when a change of `compress` leaves both `mail.log.2` and an unrelated
    `mail.log.2.gz`, where the names lie. Equal mtimes (coarse clocks) fall back to the
    names: dated names by date, numbered names from the highest number down. A plain file
    and a `.gz` with the same head (logrotate compressing right now) count once, as plain.
    """
    base = logpath.name
    keyed: list[tuple[tuple[int, str, int], Candidate]] = []
    try:
        names = os.listdir(logpath.parent)
    except OSError:
        return []
    for name in names:
        if not name.startswith(base) or name == base:
            continue
        rest = name[len(base) :]
        m = _NUMBERED.fullmatch(rest)
        if m:
            key = (1, "", -int(m[1]))
        else:
            m = _DATED.fullmatch(rest)
            if not m:
                continue
            key = (0, m[1].replace("-", ""), 0)
        cand = candidate(logpath.parent / name)
        if cand is not None:
            keyed.append((key, cand))
    # A plain file and its .gz twin (same mtime): plain first, so the twin is dropped below.
    keyed.sort(key=lambda kc: (kc[1].mtime, kc[0], kc[1].gz))
    out: list[Candidate] = []
    seen: set[bytes] = set()
    for _, cand in keyed:
        if cand.head and cand.head in seen:
            continue
        seen.add(cand.head)
        out.append(cand)
    return out


def matches(cand: Candidate, gen: GenerationId) -> bool:
    """Whether `cand` starts with the head recorded for `gen` (identity by content)."""
    return len(cand.head) >= gen.head_len and (
        fingerprint(cand.head[: gen.head_len]) == gen.head_sha256
    )


class Generation:
    """One open generation: a descriptor (plain) or a gzip stream, and our offset in it."""

    def __init__(self, cand: Candidate, offset: int) -> None:
        self.path = cand.path
        self.dev, self.ino, self.gz = cand.dev, cand.ino, cand.gz
        self.fd = os.open(cand.path, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        if (st.st_dev, st.st_ino) != (cand.dev, cand.ino):
            # Renamed or replaced between the listing and the open: the caller looks again.
            os.close(self.fd)
            raise FileNotFoundError(errno.ESTALE, "replaced since it was listed", str(cand.path))
        self.head = cand.head if cand.gz else os.pread(self.fd, HEAD_MAX, 0)
        self.offset = offset
        self.broken = False
        self.seen_size = offset
        """The furthest end of file a read has shown us (to measure a copytruncate loss)."""
        self._gz: BinaryIO | None = None
        self._raw: BinaryIO | None = None
        if cand.gz:
            # GzipFile does not close a file object it is given: keep it to close it.
            self._raw = os.fdopen(os.dup(self.fd), "rb")
            gz: BinaryIO = gzip.GzipFile(fileobj=self._raw)  # type: ignore[assignment]
            self._gz = gz
            self._skip(gz, offset)

    def _skip(self, gz: BinaryIO, offset: int) -> None:
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
            log.warning("gzip read failed generation=%s error=%r", self.label(), str(exc))

    def advance(self, n: int) -> None:
        """Move past `n` bytes handed out; a young file's head grows with it (to 1 KiB)."""
        self.offset += n
        if self._gz is None and len(self.head) < HEAD_MAX:
            head = os.pread(self.fd, HEAD_MAX, 0)
            if head.startswith(self.head):  # else truncated just now: still_same() will say
                self.head = head

    def ident(self) -> GenerationId:
        """The identity to checkpoint."""
        return GenerationId(
            dev=self.dev, ino=self.ino, head_len=len(self.head), head_sha256=fingerprint(self.head)
        )

    def label(self) -> str:
        """`path (dev:ino)` for log lines."""
        return f"{self.path} ({self.dev}:{self.ino})"

    def stat(self) -> os.stat_result:
        """fstat of the open descriptor."""
        return os.fstat(self.fd)

    def still_same(self) -> bool:
        """Whether the bytes we read are still there (no truncation or rewrite in place).

        The head must still start the file (it may have grown), the file must reach our
        offset, and the byte before our offset must be the newline that ended our last line.
        """
        if self.gz:
            return True
        head = os.pread(self.fd, HEAD_MAX, 0)
        if not head.startswith(self.head):
            return False
        if self.offset > 0 and os.pread(self.fd, 1, self.offset - 1) != b"\n":
            return False
        self.head = head
        return True

    def read(self, *, final: bool) -> bytes:
        """Complete lines from our offset (offset not advanced). With `final`, a last line
        without its newline counts: the generation is sealed and nothing more will come."""
        if self._gz is not None:
            if self.broken:
                return b""
            data = b""
            try:
                data = self._gz.read(CHUNK)
                while data and not data.endswith(b"\n"):
                    piece = self._gz.read(CHUNK)
                    if not piece:
                        break
                    data += piece
            except (OSError, EOFError, zlib.error) as exc:
                # A damaged or cut-short .gz: what decompressed is kept, the rest is a gap.
                self.broken = True
                log.warning("gzip read failed generation=%s error=%r", self.label(), str(exc))
            return data
        data = os.pread(self.fd, CHUNK, self.offset)
        # A line longer than a chunk: keep reading until its newline (or EOF).
        while len(data) >= CHUNK and b"\n" not in data[-CHUNK:]:
            more = os.pread(self.fd, CHUNK, self.offset + len(data))
            if not more:
                break
            data += more
        self.seen_size = max(self.seen_size, self.offset + len(data))
        if final:
            return data
        return data[: data.rfind(b"\n") + 1]

    def close(self) -> None:
        """Close descriptor and stream."""
        if self._gz is not None:
            self._gz.close()
        if self._raw is not None:
            self._raw.close()
        os.close(self.fd)
