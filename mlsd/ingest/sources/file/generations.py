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
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from mlsd.ingest.checkpoint import PREFIX_LEN, GenerationId, fingerprint
from mlsd.ingest.grammar import MAX_CANDIDATE_LINE

log = logging.getLogger("mlsd.follow")

HEAD_MAX: Final = 1024
CHUNK: Final = 4 << 20
GZIP_MAGIC: Final = b"\x1f\x8b"
LINE_MAX: Final = MAX_CANDIDATE_LINE
"""A line whose text (without its newline) is this long or longer is never parsed: the
parser refuses candidates over MAX_CANDIDATE_LINE bytes anyway, so the reader keeps
none of it and counts it (Skip.TOO_LONG) instead of gathering it in memory."""
OPEN_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
"""O_NONBLOCK: opening a FIFO without a writer (or some devices) would block forever;
for a regular file the flag changes nothing. Every open checks S_ISREG before reading."""

# Compressions mlsd cannot read, by magic bytes (what the file is, whatever its name).
# logrotate compresses with gzip unless `compresscmd` says otherwise.
_PACKED: Final = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"LZIP", "lzip"),
    (b"\x1f\x9d", "compress (.Z)"),
    (b"\x5d\x00\x00", "lzma"),
)
_PACKED_SUFFIXES: Final = (".gz", ".xz", ".zst", ".bz2", ".lz4", ".lz", ".Z", ".lzma")
_SEPARATORS: Final = ".-_"
_DIGITS = re.compile(r"\d+")


DAMAGED_GZIP: Final = "damaged gzip"
"""The `packed` of a .gz whose first bytes do not even decompress."""


def packed_reason(kind: str) -> str:
    """The gap reason for a generation only present in a form mlsd cannot read."""
    if kind == DAMAGED_GZIP:
        return "damaged or cut-short gzip file"
    return (
        f"compressed with {kind}, which mlsd cannot read; set logrotate's compresscmd to "
        "gzip or use delaycompress"
    )


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
    packed: str | None = None
    """The compression (xz, zstd, …) of a file mlsd cannot read; its head is then empty."""


def file_kind(mode: int) -> str:
    """A file type in words, for the operator (`fifo`, `directory`, …)."""
    for test, name in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def _head_of(path: Path, rotated: bool) -> tuple[bytes, bool, os.stat_result, str | None] | None:
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None  # a FIFO or a device is no generation (and must not be read)
        raw = os.pread(fd, HEAD_MAX, 0)
        if raw[:2] != GZIP_MAGIC:
            kind = next((k for magic, k in _PACKED if raw.startswith(magic)), None)
            return (b"", False, st, kind) if kind and rotated else (raw, False, st, None)
        with os.fdopen(os.dup(fd), "rb") as fh:
            try:
                with gzip.GzipFile(fileobj=fh) as gz:
                    return gz.read(HEAD_MAX), True, st, None
            except (OSError, EOFError, zlib.error):
                # Being compressed right now (its plain twin counts: see rotated_siblings)
                # or damaged: listed as unreadable, so that its loss is said. What does
                # decompress of its head still tells which generation it is.
                return (_partial_head(fd), False, st, DAMAGED_GZIP) if rotated else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _partial_head(fd: int) -> bytes:
    """The first bytes (up to HEAD_MAX) that a damaged or cut-short gzip file still
    decompresses to, or b"" if none do."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = b""
    pos = 0
    try:
        while len(out) < HEAD_MAX and (raw := os.pread(fd, 4096, pos)):
            pos += len(raw)
            out += d.decompress(raw, HEAD_MAX - len(out))
            if d.eof or d.unconsumed_tail:
                break
    except (OSError, zlib.error):
        pass  # what came out before the damage is all there is
    return out[:HEAD_MAX]


def candidate(path: Path, *, rotated: bool = False) -> Candidate | None:
    """The regular file at `path` as a generation candidate, or None if absent, unreadable,
    or not a regular file (see `file_kind` to say which). A `rotated` one in a form mlsd
    cannot read (xz, …, a gzip that does not decompress) has `packed` set; the live log
    is always plain text."""
    got = _head_of(path, rotated)
    if got is None:
        return None
    head, gz, st, packed = got
    return Candidate(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime, gz, head, packed)


def _plausible(name: str, base: str, stem: str, ext: str) -> str | None:
    """What follows the log's name in a rotated name, or None if `name` is not one.

    Any name that starts with the log's name and a separator (`mail.log.1`,
    `mail.log-20261204-1796400000.gz`, `mail.log_old`); with logrotate's `extension .log`
    the extension moves to the end (`mail.1.log`, `mail-20261204.log.gz`).
    """
    if name.startswith(base) and len(name) > len(base) and name[len(base)] in _SEPARATORS:
        return name[len(base) + 1 :]
    if ext and name.startswith(stem) and len(name) > len(stem) and name[len(stem)] in _SEPARATORS:
        rest = name[len(stem) + 1 :]
        bare = _unsuffixed(rest)
        if bare.endswith(ext) and len(bare) > len(ext):
            return bare[: -len(ext)]
    return None


def _unsuffixed(name: str) -> str:
    for suffix in _PACKED_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _name_key(rest: str) -> tuple[int, str, int]:
    """Order of names with equal mtimes: dated by their digits, numbered from the highest
    number down (logrotate's .1 is the newest), anything else by name."""
    rest = _unsuffixed(rest)
    groups = _DIGITS.findall(rest)
    if len(groups) == 1 and len(groups[0]) <= 6 and groups[0] == rest.strip(_SEPARATORS):
        return (1, "", -int(groups[0]))
    digits = "".join(groups)
    if len(digits) >= 8:
        return (0, digits, 0)
    return (2, rest, 0)


def rotated_siblings(logpath: Path, rotated_dir: Path | None = None) -> list[Candidate]:
    """The rotated generations of `logpath`, oldest first, found by name and told by content.

    Every plausible name (see `_plausible`) in the log's directory and in `rotated_dir`
    (logrotate's `olddir`) is a candidate; which generation it is, is told by its head
    (`matches`), never by its name. Order is by mtime, the time of a generation's last
    write, which logrotate keeps when it renames and compresses: generations are written
    one after the other, so this holds even when a change of `compress` leaves both
    `mail.log.2` and an unrelated `mail.log.2.gz`, where the names lie. Equal mtimes
    (coarse clocks) fall back to the names (`_name_key`). A plain file and a compressed
    file with the same head or name (logrotate compressing right now) count once, as plain.
    Files in a compression mlsd cannot read are listed with `packed` set and no head, but
    for a damaged .gz: its head is what still decompresses (maybe shorter than 1 KiB), so
    that it is told apart from the generations around it. One with the head of a readable
    file counts once, as the readable one.
    """
    base = logpath.name
    stem, ext = os.path.splitext(base)
    keyed: list[tuple[tuple[int, str, int], Candidate]] = []
    dirs = [logpath.parent]
    if rotated_dir is not None and os.path.realpath(rotated_dir) != os.path.realpath(
        logpath.parent
    ):
        dirs.append(rotated_dir)
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            rest = _plausible(name, base, stem, ext)
            if rest is None:
                continue
            cand = candidate(d / name, rotated=True)
            if cand is not None:
                keyed.append((_name_key(rest), cand))
    # A plain file and its compressed twin (same mtime): plain first, so the twin is dropped.
    keyed.sort(key=lambda kc: (kc[1].mtime, kc[0], kc[1].gz or kc[1].packed is not None))
    out: list[Candidate] = []
    seen: set[bytes] = set()
    plain_names = {c.path for _, c in keyed if not c.gz and c.packed is None}
    readable_heads = {c.head for _, c in keyed if c.head and c.packed is None}
    for _, cand in keyed:
        if cand.head and cand.head in seen:
            continue
        if cand.packed and cand.path.with_name(_unsuffixed(cand.path.name)) in plain_names:
            continue
        if cand.packed and cand.head in readable_heads:
            continue
        seen.add(cand.head)
        out.append(cand)
    return out


def matches(cand: Candidate, gen: GenerationId) -> bool:
    """Whether `cand` starts with the head recorded for `gen` (identity by content)."""
    return len(cand.head) >= gen.head_len and (
        fingerprint(cand.head[: gen.head_len]) == gen.head_sha256
    )


def identity(dev: int, ino: int, head: bytes) -> GenerationId:
    """The identity to checkpoint for a generation that starts with `head`."""
    return GenerationId(
        dev=dev,
        ino=ino,
        head_len=len(head),
        head_sha256=fingerprint(head),
        prefix_sha256=fingerprint(head[:PREFIX_LEN]) if len(head) >= PREFIX_LEN else None,
    )


def ident_of(cand: Candidate) -> GenerationId:
    """The identity of the generation `cand` holds (its head as listed)."""
    return identity(cand.dev, cand.ino, cand.head)


def another(cand: Candidate, gen: GenerationId) -> bool:
    """Whether `cand` is surely not `gen`: its head differs, in full or (a cut-short
    .gz that decompresses to less) in its first PREFIX_LEN bytes."""
    if len(cand.head) >= gen.head_len:
        return not matches(cand, gen)
    return (
        gen.prefix_sha256 is not None
        and len(cand.head) >= PREFIX_LEN
        and fingerprint(cand.head[:PREFIX_LEN]) != gen.prefix_sha256
    )


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
    """After this piece the offset is inside an over-long line: skip to its newline."""
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
        return Piece(body, len(buf), too_long, False, torn=tail)
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
            log.warning("gzip read failed generation=%s error=%r", self.label(), str(exc))

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

    def ident(self) -> GenerationId:
        """The identity to checkpoint."""
        return identity(self.dev, self.ino, self.head)

    def label(self) -> str:
        """`path (dev:ino)` for log lines."""
        return f"{self.path} ({self.dev}:{self.ino})"

    def stat(self) -> os.stat_result:
        """fstat of the open descriptor."""
        return os.fstat(self.fd)

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
                log.warning("gzip read failed generation=%s error=%r", self.label(), str(exc))
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
