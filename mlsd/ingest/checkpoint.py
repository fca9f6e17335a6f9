"""The state directory: the checkpoint (where reading stopped, what the CSV held) and the lock.

The checkpoint is replaced atomically (temp file, fsync, rename, fsync the directory), so
after any crash it is either the previous commit or the new one, never a mix. It is written
only after the CSV rows of the same batch are on disk (`fdatasync`), which is what makes
recovery exact: a CSV longer than the checkpoint says is cut back, and those rows come
again from the log.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from mlsd.durable import replace_atomically
from mlsd.errors import StateError
from mlsd.safefs import make_dir, open_regular, read_file
from mlsd.statedir import LOCK_NAME

VERSION: Final = 2
"""2 added `first_start`, `discard_line` and `generation_mtime` (and later the optional
`generation.prefix_sha256` and `cursor`); a version 1 file loads as if they were unset."""
READABLE_VERSIONS: Final = (1, 2)
CHECKPOINT_NAME: Final = "checkpoint.json"
STATE_DIR_MODE: Final = 0o750


PREFIX_LEN: Final = 32
# A journalctl cursor: `k=v` pairs of hex digits joined by `;` (handed back to journalctl
# as an argument, so nothing else may pass).
_CURSOR: Final = re.compile(r"[a-z]=[0-9a-fA-F]{1,64}(?:;[a-z]=[0-9a-fA-F]{1,64}){0,15}")


def fingerprint(head: bytes) -> str:
    """The stored form of a generation's head: a digest, so the state file holds no log text."""
    return hashlib.sha256(head).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationId:
    """Which generation of the log an offset refers to.

    (dev, ino) alone is not enough: inode numbers are reused and a copy or a `.gz` has
    another inode. The digest of the first `head_len` bytes (decompressed) is what survives.
    """

    dev: int
    ino: int
    head_len: int
    head_sha256: str
    prefix_sha256: str | None = None
    """The digest of the first PREFIX_LEN bytes (None for a shorter head): a `.gz` cut
    so short that it decompresses to less than `head_len` can still be told to be
    another generation (unequal prefixes), though never this one (equal ones may be
    two generations begun in the same second)."""


Policy = Literal["beginning", "end", "import_rotated"]
"""How the first start placed the reader: the live log from its beginning or its end, or
the rotated generations first (`import_rotated`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FirstStart:
    """The first-start decision, persisted before READY=1 so that a restart never decides again.

    When the generation chosen at the first start had content, the checkpoint's
    `generation` pins it (by its head) and this record only says how it was chosen. When
    there was no log yet, or the live log was empty, there is no head to pin: an empty
    file has no content to recognise it by once it is renamed, compressed or its inode
    reused. Such a generation is identified by time instead: every byte it will ever hold
    is written after `decided_at`, so a restart before the first commit reads every
    generation last written after `decided_at` (oldest first), which holds all of it.
    (`dev`/`ino` name the empty file for the operator; they are not used to find it.)
    """

    policy: Policy
    decided_at: float
    """Wall-clock time of the decision."""
    dev: int | None = None
    ino: int | None = None
    """The live file at the decision, if there was one."""
    rotated: tuple[GenerationId, ...] = ()
    """`import_rotated`: the rotated generations with content at the decision. One gone
    by a restart before the first commit was deleted before mlsd read it: a gap, said."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """One commit: the first unread byte of the source and the CSV length that goes with it."""

    source: str
    """The configured log path (a checkpoint for another path is refused)."""
    generation: GenerationId | None
    """None until the first batch: the CSV is pinned before anything is read."""
    offset: int
    """Offset of the first unread byte in the generation (decompressed for `.gz`)."""
    csv_dev: int
    csv_ino: int
    csv_length: int
    committed_at: float
    """Wall-clock time of the commit (used to tell newer rotated files after a gap)."""
    first_start: FirstStart | None = None
    """The first-start decision (None in a version 1 file: the generation pins it)."""
    discard_line: bool = False
    """`offset` is inside a line longer than the parser reads (already counted as too
    long): the bytes up to and including its newline are skipped, not parsed."""
    generation_mtime: float | None = None
    """The generation's last-write time at the commit. If it is gone at the next start,
    the generations written after this are the ones that came after it (the commit time
    is later than that, e.g. for a position pinned at start-up, and would skip some)."""

    cursor: str | None = None
    """With a journal source: journalctl's cursor of the last entry read (the generation is
    then None). Written only when set, so a file source's checkpoint is as before."""

    logins_dev: int | None = None
    logins_ino: int | None = None
    logins_length: int | None = None
    """The logins CSV (mlsd.logins) committed with the same batch: its identity and length,
    as `csv_*` for the failures CSV. Written only when set: a checkpoint without them (an
    older mlsd's, or `[sentinel] record_logins = no` from the start) has no logins CSV
    pinned yet, and the next start pins it."""

    sealed: tuple[GenerationId, ...] = ()
    """The last generations the follower read to their end and let go (newest last), so
    that a restart never takes one of them for a newer generation: a file a lagging
    writer wrote to after its successor was created sorts after that successor by time,
    and once compressed it has another inode (found as chaos seed 114). Written only when
    set."""

    def to_json(self) -> str:
        """The versioned on-disk form."""
        data = asdict(self)
        for key in ("cursor", *_LOGINS_KEYS):
            if data[key] is None:
                del data[key]
        if not data["sealed"]:
            del data["sealed"]
        return json.dumps({"version": VERSION, **data}, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: Path) -> Checkpoint:
        """Parse the on-disk form; any defect is a StateError naming the file."""
        try:
            data: Any = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("not an object")
            version = data.pop("version", None)
            if version not in READABLE_VERSIONS:
                raise StateError(
                    f"{where}: checkpoint version {version!r} is not {VERSION} "
                    "(written by another mlsd version): move it aside to start over"
                )
            raw_gen = data.pop("generation")
            gen = None if raw_gen is None else GenerationId(**raw_gen)
            raw_first = data.pop("first_start", None)
            first = None
            if raw_first is not None:
                listed = tuple(GenerationId(**g) for g in raw_first.pop("rotated", ()))
                first = FirstStart(**raw_first, rotated=listed)
            raw_sealed = data.pop("sealed", [])
            if not isinstance(raw_sealed, list):
                raise TypeError("sealed is not a list")
            sealed = tuple(GenerationId(**g) for g in raw_sealed)
            cp = cls(generation=gen, first_start=first, sealed=sealed, **data)
            ints = [cp.offset, cp.csv_dev, cp.csv_ino, cp.csv_length]
            if first is not None:
                if first.policy not in get_args(Policy):
                    raise ValueError(f"unknown first-start policy {first.policy!r}")
                if not isinstance(first.decided_at, int | float):
                    raise TypeError("decision time is not a number")
                ints += [v for v in (first.dev, first.ino) if v is not None]
            # Every generation named: the current one, the first start's, the sealed ones.
            for g in (*([gen] if gen else []), *(first.rotated if first else ()), *sealed):
                ints += [g.dev, g.ino, g.head_len]
                if not isinstance(g.head_sha256, str):
                    raise TypeError("a generation's digest is not a string")
                if not isinstance(g.prefix_sha256, str | None):
                    raise TypeError("prefix_sha256 is not a string")
            pin = [getattr(cp, k) for k in _LOGINS_KEYS]
            if any(v is not None for v in pin):
                if any(v is None for v in pin):
                    raise TypeError("logins CSV pinned in part")
                ints += pin
            if not all(isinstance(v, int) and v >= 0 for v in ints):
                raise TypeError("negative or non-integer position")
            if not isinstance(cp.discard_line, bool):
                raise TypeError("discard_line is not true or false")
            if cp.generation_mtime is not None and not isinstance(cp.generation_mtime, int | float):
                raise TypeError("generation_mtime is not a number")
            if cp.cursor is not None and not (
                isinstance(cp.cursor, str) and _CURSOR.fullmatch(cp.cursor)
            ):
                raise TypeError("cursor is not a journal cursor")
        except StateError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StateError(
                f"{where}: the checkpoint is damaged ({exc}); mlsd never writes it in place, "
                "so something else did: restore it from a backup, or move it aside (and the "
                "CSV with it) to start over"
            ) from None
        return cp


_LOGINS_KEYS: Final = ("logins_dev", "logins_ino", "logins_length")


def journal_source(directory: Path | None) -> str:
    """What a checkpoint's `source` says for a journal source: the directory of journal
    files, or the system journal (a checkpoint for another source is refused)."""
    return f"journal:{directory}" if directory is not None else "journal:system"


class CheckpointStore:
    """Reads and atomically replaces `checkpoint.json` in the state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / CHECKPOINT_NAME
        self._tmp = state_dir / (CHECKPOINT_NAME + ".tmp")

    def load(self) -> Checkpoint | None:
        """The last commit, or None on first start. A leftover temp file is ignored."""
        try:
            # Not through a link, and never quoted in an error: see mlsd.safefs.
            text = read_file(self.path).decode("utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(
                f"{self.path}: cannot read the checkpoint: {exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError:
            raise StateError(f"{self.path}: cannot read the checkpoint: not UTF-8") from None
        return Checkpoint.from_json(text, self.path)

    def save(self, cp: Checkpoint) -> None:
        """Replace the checkpoint atomically. A failed write or fsync is fatal (StateError)."""
        data = cp.to_json().encode()
        try:
            replace_atomically(self.path, data, tmp=self._tmp)
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages: retrying
            # could report success for data that is gone. Stop instead.
            raise StateError(
                f"{self.path}: cannot write the checkpoint: {exc.strerror}; stopping so that "
                "no row is lost or repeated (fix the disk, then start again)"
            ) from None


def now() -> float:
    """Wall-clock time for `committed_at` (one place, so tests can read the code path)."""
    return time.time()


class StateLock:
    """One mlsd per state directory: an exclusive `flock` held for the process's life."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd = -1

    def acquire(self) -> None:
        """Take the lock or raise StateError naming the pid that holds it."""
        # Created with its mode whatever the umask; an existing one must be ours (or
        # root's) and writable by nobody else, or a planted link could aim our writes.
        make_dir(self.path.parent, STATE_DIR_MODE, "state directory", top=True)
        try:
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or exc
            raise StateError(f"{self.path}: cannot open the lock file: {why}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateError(
                    f"{self.path}: another mlsd (pid {holder}) is already using the state "
                    f"directory {self.path.parent}; stop it first"
                ) from None
            raise StateError(f"{self.path}: cannot lock: {exc.strerror}") from None
        # The pid is for the operator's message only; the flock is the lock. Writing it is
        # the first write into the state directory: on a full disk, say which file.
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise StateError(
                f"{self.path}: cannot write the lock file: {exc.strerror} (free space in "
                f"{self.path.parent}, then start again)"
            ) from None
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent). The kernel drops it too if we die."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = -1
