"""Generations of the log: identity (inode + head), and finding the rotated ones.

A *generation* is one incarnation of the log: (st_dev, st_ino) plus its first bytes (up to
1 KiB, decompressed for `.gz`). Inode numbers are reused and a copy or a `.gz` has another
inode; the head is what survives rotation and compression. Reading one is
mlsd.ingest.sources.file.reading's job.
"""

from __future__ import annotations

import gzip
import os
import re
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mlsd.ingest.checkpoint import PREFIX_LEN, GenerationId, fingerprint

HEAD_MAX: Final = 1024
GZIP_MAGIC: Final = b"\x1f\x8b"
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
