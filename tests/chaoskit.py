"""Seeded, randomized chaos for the follower: real logrotate, crashes, exact multisets.

One *world* per seed: a log directory written by a syslog-like writer (bursts of unique
auth-failure lines, `followkit.auth_line`), rotated by the real `logrotate` in one naming
family (numbered, `dateext` with a `dateformat`, `olddir`; plain, `compress`,
`delaycompress`, or an `xz` that mlsd cannot read) with `create` or `copytruncate`, and
mlsd following it, crashed and restarted at random points. The harness keeps the ground
truth: where every line was written, which files hold it after every rotation, which
lines logrotate itself destroyed in a copytruncate window, which `.gz` it damaged.

At the end the CSV must hold every line exactly once, except lines covered by a logged
`gap` whose reason is one of the unavoidable ones *and* is true according to the ground
truth (the line really was unreadable at that moment, really fell into a copytruncate
window, ...). A row that was never written, or twice, always fails. Every third failure
is followed, in the same write, by a Dovecot login of the same `seqNNNNNN` user: the
logins CSV (same checkpoint) must hold each of those once, missing only where the
failures around it were lost (`judge_logins`).

Two drivers: `InProcess` wires `session.open_session`/`step` in this process, with an
injected clock and crashes injected into the checkpoint save and the CSV append (fast:
hundreds of actions per seed); `Subprocess` runs `mlsd run` for real and `kill -9`s it.

Rerun one seed: `MLSD_CHAOS_SEED=123 .venv/bin/pytest tests/test_chaos.py`, or
`make chaos SEEDS=1 FIRST=123`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import lzma
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import structlog

from mlsd import config
from mlsd.enrich.enricher import Enricher
from mlsd.ingest import session
from mlsd.ingest.checkpoint import CheckpointStore, StateLock
from mlsd.ingest.csvlog import CsvJournal
from mlsd.ingest.sources.file.follow import Follower
from tests.followkit import NOISE, STARTED, Env, auth_line, journal_text, kill9

SEQ = re.compile(rb"sasl_username=seq(\d{6})$")
USER = re.compile(r"seq(\d{6})")
GAP = re.compile(
    r"gap generation=(?P<gen>.*?) unread_from=(?P<off>\d+) "
    r"lost_bytes=(?P<lost>\d+|unknown) reason=(?P<q>['\"])(?P<why>.*?)(?P=q)"
)
DEVINO = re.compile(r"(\d+):(\d+)\)?\"?$")  # the generation quoted when it holds a space
LOGIN_EVERY = 3
"""Every LOGIN_EVERY-th failure line is followed by a login of the same user."""
GRACE_INPROC = 600.0
"""In-process grace: the injected clock decides when a renamed file counts as quiet."""


class Why(StrEnum):
    """The unavoidable losses a gap may name (and anything else: an excuse)."""

    WINDOW = "written between logrotate's copy and its truncate"
    DELETED = "the generation was gone before it was read"
    DAMAGED = "a damaged .gz"
    UNREADABLE = "a compression mlsd cannot read"
    EXCUSE = "not an unavoidable reason"


# The gap reasons as mlsd words them, by class. Order matters: the first match wins.
REASONS: tuple[tuple[re.Pattern[str], Why], ...] = (
    (re.compile(r"between copy and truncate"), Why.WINDOW),
    (re.compile(r"damaged|cut.short|corrupt"), Why.DAMAGED),
    (re.compile(r"\b(xz|zst|zstd|bz2|bzip2|lzma)\b|compression|cannot decompress"), Why.UNREADABLE),
    # "truncated in place and no copy found": the copy was deleted before mlsd looked
    # (keep=1 and two rotations in a few ms) or none was made; true only for lines that
    # no file holds any more, like any deletion (see `_true`).
    (re.compile(r"not found|no copy found|vanished|deleted|gone|removed"), Why.DELETED),
)


def classify(reason: str) -> Why:
    """The class of a gap's reason."""
    for pattern, why in REASONS:
        if pattern.search(reason):
            return why
    return Why.EXCUSE


@dataclass(frozen=True, slots=True)
class Gap:
    """One `gap` line as logged."""

    text: str
    dev_ino: tuple[int, int] | None
    unread_from: int
    lost: int | None
    why: Why
    written: int
    """How many lines had been written when it was logged (in-process only)."""
    readable: frozenset[int] | None
    """Seqs readable by mlsd (plain or gzip) in some file when it was logged (in-process)."""
    named_damaged: bool = False
    """The file it names was a .gz that does not decompress, when it was logged."""


def parse_gap(
    text: str,
    written: int,
    readable: frozenset[int] | None,
    damaged: set[tuple[int, int]] | None = None,
) -> Gap | None:
    """A `Gap` from a log line, or None if the line is not one. `damaged`: the (dev, ino)
    of every .gz that did not decompress when it was logged."""
    m = GAP.search(text)
    if m is None:
        return None
    d = DEVINO.search(m["gen"])
    dev_ino = None if d is None else (int(d[1]), int(d[2]))
    return Gap(
        text=text.strip(),
        dev_ino=dev_ino,
        unread_from=int(m["off"]),
        lost=None if m["lost"] == "unknown" else int(m["lost"]),
        why=classify(m["why"]),
        written=written,
        readable=readable,
        named_damaged=dev_ino is not None and dev_ino in (damaged or set()),
    )


# ---- ground truth: what the files hold


class Kind(StrEnum):
    """How a file is stored."""

    PLAIN = "plain"
    GZ = "gz"
    GZ_DAMAGED = "gz-damaged"
    OTHER = "other-compression"


@dataclass(slots=True)
class FileView:
    """What one file holds: seq -> offset of its line (decompressed)."""

    path: Path
    kind: Kind
    seqs: dict[int, int]


def _decode(raw: bytes) -> tuple[bytes, Kind]:
    if raw[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(wbits=31)
        try:
            out = d.decompress(raw)
        except zlib.error:
            return b"", Kind.GZ_DAMAGED
        return out, Kind.GZ if d.eof else Kind.GZ_DAMAGED
    if raw[:6] == b"\xfd7zXZ\x00":
        try:
            return lzma.decompress(raw), Kind.OTHER
        except lzma.LZMAError:
            return b"", Kind.OTHER
    return raw, Kind.PLAIN


def seqs_in(data: bytes) -> dict[int, int]:
    """seq -> offset of each complete auth line in `data`."""
    out: dict[int, int] = {}
    pos = 0
    for line in data.split(b"\n")[:-1]:
        m = SEQ.search(line)
        if m:
            out.setdefault(int(m[1]), pos)
        pos += len(line) + 1
    return out


def scan_files(dirs: list[Path]) -> dict[tuple[int, int], FileView]:
    """Every file in `dirs` by (dev, ino), with the lines it holds."""
    views: dict[tuple[int, int], FileView] = {}
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            path = d / name
            try:
                with open(path, "rb") as fh:
                    st = os.fstat(fh.fileno())
                    raw = fh.read()
            except OSError:
                continue
            data, kind = _decode(raw)
            views[(st.st_dev, st.st_ino)] = FileView(path, kind, seqs_in(data))
    return views


Key = tuple[int, int, int]
"""(dev, ino, incarnation): inode numbers are reused, and copytruncate gives one inode a
new content; a new first line is a new incarnation (what mlsd calls a generation)."""


@dataclass
class Truth:
    """Where each line was written and every file that held it since."""

    dirs: list[Path]
    written: int = 0
    holders: dict[int, dict[Key, int]] = field(default_factory=dict)
    window_lost: set[int] = field(default_factory=set)
    damaged: set[Key] = field(default_factory=set)
    other_kind: set[Key] = field(default_factory=set)
    names: dict[Key, str] = field(default_factory=dict)
    """The last name each file was seen under (for the report)."""
    not_expected: set[int] = field(default_factory=set)
    """Lines destroyed before mlsd's first start was pinned: never mlsd's to read."""
    _inc: dict[tuple[int, int], int] = field(default_factory=dict)
    _heads: dict[Key, int | None] = field(default_factory=dict)

    def key(self, dev_ino: tuple[int, int], head: int | None, *, emptied: bool = False) -> Key:
        """The incarnation of `dev_ino` whose first line is `head` (None: not known), a new
        one if the file now starts with another line or (`emptied`) was emptied."""
        n = self._inc.get(dev_ino)
        if n is not None:
            key = (*dev_ino, n)
            old = self._heads.get(key)
            if head is None and not (emptied and old is not None):
                return key
            if old is None or old == head:
                self._heads[key] = head
                return key
        n = 0 if n is None else n + 1
        self._inc[dev_ino] = n
        self._heads[(*dev_ino, n)] = head
        return (*dev_ino, n)

    def incarnations(self, dev_ino: tuple[int, int]) -> list[Key]:
        """Every incarnation of an inode number seen so far."""
        return [(*dev_ino, n) for n in range(self._inc.get(dev_ino, -1) + 1)]

    def wrote(self, seq: int, dev_ino: tuple[int, int], offset: int) -> None:
        """Record one line as written at `offset` of the file `dev_ino`."""
        key = self.key(dev_ino, seq if offset == 0 else None)
        self.holders.setdefault(seq, {})[key] = offset
        self.written = max(self.written, seq + 1)

    def observe(self) -> dict[Key, FileView]:
        """Scan the files, add every holder; returns the scan."""
        views: dict[Key, FileView] = {}
        for dev_ino, view in scan_files(self.dirs).items():
            head = min(view.seqs, key=view.seqs.__getitem__) if view.seqs else None
            # An undecodable .gz says nothing about its first line: same incarnation.
            key = self.key(dev_ino, head, emptied=view.kind == Kind.PLAIN)
            views[key] = view
            self.names[key] = view.path.name
            if view.kind == Kind.OTHER:
                self.other_kind.add(key)
            for seq, off in view.seqs.items():
                self.holders.setdefault(seq, {}).setdefault(key, off)
        return views

    def where(self, seq: int) -> str:
        """Every file that held line `seq`, by its last known name, with the offset."""
        return " ".join(
            f"{self.names.get(k, 'ino')}({k[1]}.{k[2]})@{off}"
            for k, off in self.holders.get(seq, {}).items()
        )

    def readable(self, views: dict[Key, FileView] | None = None) -> frozenset[int]:
        """Seqs that mlsd could still read in some file (plain or intact gzip)."""
        out: set[int] = set()
        for key, view in (self.observe() if views is None else views).items():
            if view.kind in (Kind.PLAIN, Kind.GZ) and key not in self.damaged:
                out.update(view.seqs)
        return frozenset(out)


# ---- the writer


class ChaosWriter:
    """A syslog daemon: appends through its own descriptor, reopens when told (postrotate)."""

    def __init__(self, path: Path, truth: Truth, rng: random.Random) -> None:
        self.path = path
        self.truth = truth
        self.rng = rng
        self.fd = -1
        self.next = 0

    def _ensure(self) -> None:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def reopen(self) -> None:
        """Close the old descriptor; the next write opens (or creates) the path again."""
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def linked(self) -> bool:
        """Whether our descriptor's file still has a name (logrotate may have deleted it)."""
        return self.fd < 0 or os.fstat(self.fd).st_nlink > 0

    def burst(self, n: int) -> None:
        """Append `n` auth lines (and some ordinary traffic) in one write."""
        self._ensure()
        st = os.fstat(self.fd)
        key, pos = (st.st_dev, st.st_ino), st.st_size
        parts: list[bytes] = []
        for _ in range(n):
            line = auth_line(self.next)
            self.truth.wrote(self.next, key, pos)
            if self.next % LOGIN_EVERY == 0:
                line += login_line(self.next)
            self.next += 1
            parts.append(line)
            pos += len(line)
            if self.rng.random() < 0.2:
                parts.append(NOISE)
                pos += len(NOISE)
        data = b"".join(parts)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def close(self) -> None:
        """Close the descriptor."""
        self.reopen()


def login_line(seq: int) -> bytes:
    """A Dovecot login of `seqNNNNNN`, stamped as `auth_line(seq)` (from the same IP)."""
    fail = auth_line(seq)
    at = fail.index(b"unknown[") + len(b"unknown[")
    ip = fail[at : fail.index(b"]", at)]
    return (
        fail[: fail.index(b" postfix/")]
        + b" dovecot: imap-login: Login: user=<seq%06d>, method=PLAIN, rip=%s, "
        b"lip=192.0.2.1, mpid=1, TLS, session=<x>\n" % (seq, ip)
    )


# ---- the naming families


DATEFORMATS = ("-%Y%m%d-%s", "-%Y-%m-%d", ".%Y%m%d%H")


@dataclass(frozen=True, slots=True)
class Family:
    """One logrotate configuration, as a site would have it (the method varies per run)."""

    dateformat: str | None
    compress: str
    """none, gz, gz-delay, xz, xz-delay"""
    olddir: bool
    keep: int
    import_rotated: bool
    initial: str
    """How the log looks at mlsd's first start: absent, empty, lines."""

    @classmethod
    def pick(cls, rng: random.Random) -> Family:
        """A family for one seed."""
        return cls(
            dateformat=rng.choice((None, None, *DATEFORMATS)),
            compress=rng.choice(("none", "gz", "gz", "gz-delay", "gz-delay", "xz", "xz-delay")),
            olddir=rng.random() < 0.3,
            keep=rng.choice((1, 2, 3, 5, 9, 50)),
            import_rotated=rng.random() < 0.3,
            initial=rng.choice(("absent", "empty", "lines", "lines")),
        )

    def options(self, olddir: Path) -> list[str]:
        """The logrotate options (without the method)."""
        opts: list[str] = []
        if self.dateformat is not None:
            opts += ["dateext", f"dateformat {self.dateformat}"]
        if self.compress != "none":
            opts.append("compress")
        if self.compress.startswith("xz"):
            opts += ["compresscmd /usr/bin/xz", "uncompresscmd /usr/bin/unxz", "compressext .xz"]
        if self.compress.endswith("-delay"):
            opts.append("delaycompress")
        if self.olddir:
            opts.append(f"olddir {olddir}")
        return opts

    def describe(self) -> str:
        """One line for the failure report."""
        return (
            f"dateformat={self.dateformat or 'numbered'} compress={self.compress} "
            f"olddir={'yes' if self.olddir else 'no'} keep={self.keep} "
            f"import_rotated={'yes' if self.import_rotated else 'no'} initial={self.initial}"
        )


# ---- the world


class World:
    """The log directory, its writer, logrotate, and the ground truth."""

    def __init__(self, root: Path, seed: int, *, grace: float) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.family = Family.pick(self.rng)
        self.olddir = root / "old"
        follow = {
            "rotate_grace": str(grace),
            "reconcile_interval": "0.2",
            "import_rotated": "yes" if self.family.import_rotated else "no",
        }
        if self.family.olddir:
            self.olddir.mkdir()
            follow["rotated_dir"] = str(self.olddir)
        self.env = Env(root, **follow)
        self.truth = Truth([self.env.logdir, self.olddir])
        self.writer = ChaosWriter(self.env.log, self.truth, self.rng)
        self.trace: list[str] = [f"seed={seed} {self.family.describe()}"]
        self.stale = False
        """The writer holds the renamed generation (no postrotate reopen yet)."""
        self.confirmed = False
        """mlsd's first start has been pinned (READY): rotations are fair game from now."""
        self.rotations = 0
        self._dated_done = 0
        self._last_rotate = 0.0
        self.gaps: list[Gap] = []
        self.before_rotate: Callable[[bool], None] | None = None
        """Called before each rotation with whether it will delete the oldest file."""
        if self.family.initial != "absent":
            self.env.log.touch(mode=0o640)
        if self.family.initial == "lines":
            self.burst()

    def note(self, what: str) -> None:
        """Add an action to the trace."""
        self.trace.append(what)

    def burst(self, n: int | None = None) -> None:
        """Append a burst of a random size (through the writer's possibly stale fd)."""
        if n is None:
            n = self.rng.choice((1, 1, 2, 3, 5, 8, 20, 50, 200))
        if self.stale and not self.writer.linked():
            # The renamed file was compressed and deleted at once (compress without
            # delaycompress): lines written now are destroyed by logrotate, not by mlsd,
            # which is why delaycompress exists. A real writer would lose them; we reopen.
            self.reopen()
        first = self.writer.next
        self.writer.burst(n)
        where = " to the renamed file" if self.stale else ""
        self.note(f"write {n} (seq {first}-{self.writer.next - 1}){where}")

    def reopen(self) -> None:
        """postrotate: the writer reopens the path."""
        self.writer.reopen()
        self.stale = False
        self.note("writer reopens")

    def may_rotate(self) -> bool:
        """Before the first pinned start, only when mlsd is told to import rotated files."""
        return self.confirmed or self.family.import_rotated

    def _dated(self) -> tuple[bool, str | None]:
        """(whether this rotation can happen, the TZ for logrotate) for dated names.

        logrotate refuses to rotate onto a name that exists, so how many rotations a dated
        family allows depends on the clock; the harness decides it from the seed instead,
        so that a seed's trace is the same at any time of day: epoch names (`%s`) get a
        fresh second (a sleep) for at most 4 rotations, date-and-hour names one hour more
        of local time per rotation (27 in all), date names two (the local dates of
        UTC-12 and UTC+14 always differ).
        """
        fmt = self.family.dateformat
        if fmt is None:
            return True, None
        self._dated_done += 1
        if "%s" in fmt:
            if self._dated_done > 4:
                return False, None
            now = time.time()
            if int(now) == int(self._last_rotate):
                time.sleep(1.0 - (now % 1.0) + 0.01)
            return True, None
        hours = list(range(-12, 15)) if "%H" in fmt else [-12, 14]
        if self._dated_done > len(hours):
            return False, None
        hour = hours[self._dated_done - 1]
        return True, f"CHAOS{-hour:+d}"  # POSIX TZ: the sign is west of UTC

    def rotate(self, method: str, *, window: bool = False) -> bool:
        """One real logrotate run; False if logrotate refused (a dated name exists)."""
        if self.stale:
            self.reopen()
        if self.before_rotate is not None:
            self.before_rotate(self.rotated_count() >= self.family.keep)
        opts = [method, *self.family.options(self.olddir)]
        can, tz = self._dated()
        if not can:
            self.note(f"rotate {method}: not done (a dated name would repeat)")
            return False
        before = self.writer.next
        if window:
            res = self._rotate_while_writing(opts, tz)
        else:
            res = self.env.logrotate(*opts, keep=self.family.keep, tz=tz, check=False)
        self._last_rotate = time.time()
        if res.returncode != 0:
            if "already exists" not in res.stderr:
                raise AssertionError(f"logrotate failed: {res.stderr}")
            self.note(f"rotate {method}: refused by logrotate (name exists)")
            return False
        self.rotations += 1
        self.truth.observe()
        lost = ""
        if window:
            readable = self.truth.readable()
            destroyed = {s for s in range(before, self.writer.next) if s not in readable}
            self.truth.window_lost |= destroyed
            lost = f" wrote {self.writer.next - before} during it, {len(destroyed)} destroyed"
        self.note(f"rotate {method}{' tz=' + tz if tz else ''}{lost}")
        if method == "create":
            self.stale = True
        return True

    def _rotate_while_writing(self, opts: list[str], tz: str | None) -> Any:
        """copytruncate with the writer busy: lines between copy and truncate are lost to
        logrotate itself (the window) — the harness sees which."""
        argv = self.env.logrotate_argv(*opts, keep=self.family.keep)
        env = {**os.environ, "TZ": tz} if tz else None
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        # A fixed number of lines (the seed decides), one write each: where they land
        # depends on timing, how many there are does not, so the trace stays the same.
        for _ in range(self.rng.randint(5, 40)):
            self.writer.burst(1)
            time.sleep(0.0003)
        _, err = proc.communicate()
        return subprocess.CompletedProcess(argv, proc.returncode, "", err)

    def rotated_count(self) -> int:
        """How many rotated files logrotate keeps right now."""
        return sum(
            1 for d in (self.env.logdir, self.olddir) if d.exists() for _ in os.listdir(d)
        ) - (1 if self.env.log.exists() else 0)

    def damage_gz(self) -> None:
        """Cut a rotated .gz short (a disk error, an interrupted copy)."""
        views = self.truth.observe()
        gz = [(k, v) for k, v in views.items() if v.kind == Kind.GZ and v.seqs]
        if not gz:
            return
        key, view = self.rng.choice(sorted(gz, key=lambda kv: str(kv[1].path)))
        st = view.path.stat()
        os.truncate(view.path, max(20, st.st_size // 2))
        # A bad sector or an interrupted copy does not set the file's times to now the way
        # this rewrite does; mlsd orders generations by their last write, so keep it.
        os.utime(view.path, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.truth.damaged.add(key)
        self.note(f"damage {view.path.name}")

    def confirm(self) -> None:
        """mlsd's first start is pinned: what is unreadable now was never its to read."""
        if self.confirmed:
            return
        self.confirmed = True
        # Only what no file holds any more: a line in a damaged .gz or an .xz is still
        # there, and a first start that imports rotated files must say it cannot read it.
        held = {q for view in self.truth.observe().values() for q in view.seqs}
        self.truth.not_expected = {q for q in range(self.writer.next) if q not in held}
        self.note("first start pinned")


# ---- the verdict


@dataclass
class Verdict:
    """The comparison of the CSV with the lines written."""

    seed: int
    rows: int
    problems: list[str]
    trace: list[str]
    gaps: list[Gap]
    justified: Counter[Why]
    logs: str = ""
    driver: str = "in-process"

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def report(self) -> str:
        """Everything a developer needs to rerun and understand a failing seed."""
        out = [
            f"chaos seed {self.seed} FAILED ({self.driver}; rerun: MLSD_CHAOS_SEED={self.seed})",
            *[f"  problem: {p}" for p in self.problems],
            "  gaps logged:",
            *[f"    {g.text}" for g in self.gaps],
            "  trace:",
            *[f"    {t}" for t in self.trace],
        ]
        if self.logs:
            out += ["  mlsd log (tail):", self.logs[-6000:]]
        return "\n".join(out)


def csv_users(path: Path) -> list[str]:
    """The user column of every CSV row."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [r["user"] for r in csv.DictReader(fh, delimiter=";")]


def _covers(gap: Gap, seq: int, truth: Truth) -> bool:
    """Whether `gap` names the place where line `seq` was (or the loss it belongs to)."""
    where = truth.holders.get(seq, {})
    keys = [] if gap.dev_ino is None else truth.incarnations(gap.dev_ino)
    for key in keys:
        off = where.get(key, -1)
        if off >= gap.unread_from and (gap.lost is None or off < gap.unread_from + gap.lost):
            return True
    if gap.why == Why.WINDOW:
        return False
    # A generation that is gone may take newer ones with it (mlsd was down across several
    # rotations): one gap then stands for every line after its position that was
    # already written and no longer readable anywhere when it was logged. The gap names
    # an inode number, which may have had several incarnations: any one that was at least
    # as long as the gap's offset may be the one meant.
    if gap.written and seq >= gap.written:
        return False
    if not keys:
        return True
    starts: list[int] = []
    for key in keys:
        held = {s: h[key] for s, h in truth.holders.items() if key in h}
        if not held or max(held.values()) + 400 < gap.unread_from:
            continue
        after = [s for s, off in held.items() if off >= gap.unread_from]
        starts.append(min(after) if after else max(held) + 1)
    return bool(starts) and seq >= min(starts)


def _true(gap: Gap, seq: int, truth: Truth, readable_end: frozenset[int]) -> bool:
    """Whether the gap's reason is true for line `seq` according to the ground truth."""
    readable = gap.readable if gap.readable is not None else readable_end
    if gap.why == Why.WINDOW:
        return seq in truth.window_lost
    if gap.why == Why.EXCUSE or seq in readable:
        return False
    holders = set(truth.holders.get(seq, {}))
    if gap.why == Why.DAMAGED:
        return gap.named_damaged or bool(holders & truth.damaged)
    if gap.why == Why.UNREADABLE:
        return bool(holders & truth.other_kind)
    return True  # DELETED: unreadable everywhere at that moment


def judge(world: World, users: list[str], logs: str = "") -> Verdict:
    """Compare the CSV's rows with the lines written; every loss must be a true gap."""
    truth = world.truth
    problems: list[str] = []
    got: Counter[int] = Counter()
    foreign: list[str] = []
    for u in users:
        m = USER.fullmatch(u)
        if m is None:
            foreign.append(u)
        else:
            got[int(m[1])] += 1
    written = world.writer.next
    if foreign:
        problems.append(f"{len(foreign)} rows never written: {foreign[:10]!r}")
    never = sorted(s for s in got if s >= written)
    if never:
        problems.append(f"{len(never)} rows for lines never written: {never[:10]}")
    twice = sorted(s for s, n in got.items() if n > 1)
    if twice:
        problems.append(f"{len(twice)} lines have more than one row: {twice[:20]}")
    readable_end = truth.readable()
    justified: Counter[Why] = Counter()
    silent: list[int] = []
    excused: dict[str, list[int]] = {}
    for seq in range(written):
        if got[seq] or seq in truth.not_expected:
            continue
        covering = [g for g in world.gaps if _covers(g, seq, truth)]
        true = [g for g in covering if _true(g, seq, truth, readable_end)]
        if true:
            justified[true[0].why] += 1
        elif seq in truth.window_lost:
            # Written and destroyed inside logrotate's copytruncate while mlsd was not
            # reading: no program can have seen those bytes, so none can report them.
            # (A copytruncate gap is still only accepted for such lines: see `_true`.)
            justified[Why.WINDOW] += 1
        elif covering:
            excused.setdefault(covering[0].text, []).append(seq)
        else:
            silent.append(seq)
    if silent:
        problems.append(
            f"{len(silent)} lines lost with no gap logged: {_ranges(silent)} "
            f"({sum(1 for q in silent if q in readable_end)} still readable at the end); "
            f"the first was in {truth.where(silent[0])}"
        )
    for text, seqs in excused.items():
        problems.append(
            f"{len(seqs)} lines lost under a gap whose reason is not true for them "
            f"({_ranges(seqs)}; the first was in {truth.where(seqs[0])}): {text}"
        )
    return Verdict(world.seed, len(users), problems, world.trace, world.gaps, justified, logs)


def judge_logins(world: World, failures: list[str], logins: list[str]) -> list[str]:
    """The logins CSV against the logins written: each once; one missing only where the
    failures around it are missing too (lost with it, judged by `judge`) or its file was
    damaged (a cut between a failure and its login)."""
    problems: list[str] = []
    got: Counter[int] = Counter()
    for u in logins:
        m = USER.fullmatch(u)
        seq = -1 if m is None else int(m[1])
        if seq < 0 or seq >= world.writer.next or seq % LOGIN_EVERY:
            problems.append(f"a login never written: {u!r}")
        got[seq] += 1
    twice = sorted(s for s, n in got.items() if n > 1)
    if twice:
        problems.append(f"{len(twice)} logins have more than one row: {twice[:20]}")
    have = {int(m[1]) for u in failures if (m := USER.fullmatch(u))}
    truth = world.truth
    missing = [
        s
        for s in range(0, world.writer.next, LOGIN_EVERY)
        if not got[s]
        and s in have
        and s + 1 in have | {world.writer.next}
        and not set(truth.holders.get(s, {})) & truth.damaged
    ]
    if missing:
        problems.append(f"{len(missing)} logins lost with their failures kept: {_ranges(missing)}")
    return problems


def _ranges(seqs: list[int]) -> str:
    out: list[str] = []
    start = prev = seqs[0]
    for s in [*seqs[1:], -1]:
        if s != prev + 1:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = s
        prev = s
    text = ",".join(out)
    return text if len(text) < 300 else text[:300] + "..."


# ---- in-process driver


class SimulatedCrash(BaseException):
    """The process died here (kill -9): nothing after this point happens."""


@contextmanager
def _patched(obj: object, name: str, value: object) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


class _GapLog:
    """Collects mlsd's warnings and errors, and its gap lines with the ground truth at the
    moment each is logged: a structlog processor (see `logged` in followkit)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.lines: list[str] = []

    def __call__(self, _: Any, level: str, event: MutableMapping[str, Any]) -> NoReturn:
        if level in ("debug", "info"):
            raise structlog.DropEvent
        text = journal_text(level, event)
        self.lines.append(f"{level.upper()} {text}")
        if text.startswith("gap "):
            w = self.world
            views = w.truth.observe()
            damaged = {k[:2] for k, v in views.items() if v.kind == Kind.GZ_DAMAGED}
            gap = parse_gap(text, w.writer.next, w.truth.readable(views), damaged)
            if gap is not None:
                w.gaps.append(gap)
        raise structlog.DropEvent


class InProcess:
    """`open_session` and `step` in this process; a crash abandons everything."""

    def __init__(self, world: World) -> None:

        self.world = world
        self.cfg = config.load(world.env.conf)
        self.enricher = Enricher(self.cfg, None)
        self.session: Any = None
        self.loop = asyncio.new_event_loop()
        self._owned: list[Any] = []
        """Every follower, CSV journal and lock the current process made (to close them)."""
        self.fault: tuple[str, int] | None = None
        """(where, countdown): the countdown-th call of `where` from now crashes."""

    def clock(self) -> float:
        """Real time while the writer may still append to a renamed file; far ahead after,
        so a renamed generation is sealed as soon as mlsd looks (grace is ten minutes)."""
        return time.time() + (0.0 if self.world.stale else 10 * GRACE_INPROC)

    def _tick(self, where: str) -> bool:
        if self.fault is None or self.fault[0] != where:
            return False
        n = self.fault[1] - 1
        self.fault = None if n == 0 else (where, n)
        return n == 0

    @contextmanager
    def faults(self) -> Iterator[None]:
        """Crash points inside a batch: before/after the checkpoint, in the CSV append."""

        real_save = CheckpointStore.save
        real_append = CsvJournal.append
        rng = self.world.rng

        def save(store: CheckpointStore, cp: Any) -> None:
            if self._tick("save-before"):
                raise SimulatedCrash("before a checkpoint save")
            real_save(store, cp)
            if self._tick("save-after"):
                raise SimulatedCrash("after a checkpoint save")

        def append(journal: CsvJournal, data: bytes) -> None:
            if data and self._tick("append"):
                real_append(journal, data[: rng.randrange(len(data))])
                raise SimulatedCrash("inside a CSV append")
            real_append(journal, data)

        def follower(*args: Any, **kwargs: Any) -> Follower:
            made = Follower(*args, **kwargs, clock=self.clock)
            self._owned.append(made)
            return made

        def journal(*args: Any, **kwargs: Any) -> CsvJournal:
            made = CsvJournal(*args, **kwargs)
            self._owned.append(made)
            return made

        def lock(*args: Any, **kwargs: Any) -> StateLock:
            made = StateLock(*args, **kwargs)
            self._owned.append(made)
            return made

        with (
            _patched(CheckpointStore, "save", save),
            _patched(CsvJournal, "append", append),
            _patched(session, "Follower", follower),
            _patched(session, "CsvJournal", journal),
            _patched(session, "StateLock", lock),
        ):
            yield

    def before_rotate(self, deletes: bool) -> None:
        """A running mlsd is woken by every write: it is seldom far behind when logrotate
        runs, and never by a whole generation that logrotate is about to delete (that
        loss it could not see, let alone report). Down, it is as far behind as it is."""
        if not self.running or (not deletes and self.world.rng.random() < 0.4):
            return
        done = self.steps(1000)
        self.world.note(f"mlsd catches up before the rotation ({done} batches)")

    def arm(self) -> None:
        """Make a crash happen at a random point of the next few commits."""
        where = self.world.rng.choice(("save-before", "save-after", "append"))
        self.fault = (where, self.world.rng.randint(1, 4))
        self.world.note(f"arm crash {where} #{self.fault[1]}")

    @property
    def running(self) -> bool:
        """Whether a session is open."""
        return self.session is not None

    def start(self) -> None:
        """Start (open_session); a crash inside is a crash in the first seconds."""

        self._owned.clear()
        try:
            self.session = session.open_session(self.cfg, self.enricher)
        except SimulatedCrash as exc:
            self._die(f"start crashed {exc}")
            return
        cur = self.session.follower.cur
        self.world.note(f"start ({cur.path.name if cur else None})")
        self.world.confirm()

    def steps(self, n: int) -> int:
        """Up to `n` batches; returns how many were committed."""

        done = 0
        for _ in range(n):
            try:
                size = self.loop.run_until_complete(session.step(self.session))
            except SimulatedCrash as exc:
                self._die(f"crashed {exc}")
                break
            if size is None:
                break
            done += 1
        return done

    def crash(self) -> None:
        """kill -9 between batches."""
        self._die("kill -9")

    def _die(self, why: str) -> None:
        # What the kernel does for a dead process: close its descriptors (and so drop the
        # flock). These close methods only close: nothing is flushed, saved or logged.
        for obj in self._owned:
            with contextlib.suppress(OSError):
                obj.close() if not hasattr(obj, "release") else obj.release()
        self._owned.clear()
        self.session = None
        self.fault = None
        self.world.note(why)

    def stop(self) -> None:
        """A clean stop (SIGTERM)."""

        session.close_session(self.session)
        self.session = None
        self.world.note("stop")

    def finish(self) -> None:
        """Start if needed and read to the end."""

        self.fault = None
        if not self.running:
            self.start()
        for _ in range(100_000):
            if self.loop.run_until_complete(session.step(self.session)) is None:
                break
        self.stop()
        self.loop.close()


def run_in_process(seed: int, root: Path, actions: int = 160) -> Verdict:
    """One seed with the in-process driver."""
    world = World(root, seed, grace=GRACE_INPROC)
    rng = world.rng
    gaplog = _GapLog(world)
    with structlog.testing.capture_logs(processors=[gaplog]):
        try:
            mlsd = InProcess(world)
            world.before_rotate = mlsd.before_rotate
            with mlsd.faults():
                if rng.random() < 0.4:
                    mlsd.arm()  # a crash during the very first start
                for _ in range(actions):
                    _in_process_action(world, mlsd, rng)
                if world.stale:
                    world.reopen()
                mlsd.finish()
        except Exception as exc:
            world.note("harness error:\n" + traceback.format_exc())
            return Verdict(seed, 0, [f"stopped by {exc!r}"], world.trace, world.gaps, Counter())
        finally:
            world.writer.close()
    users = csv_users(world.env.csv)
    verdict = judge(world, users, "\n".join(gaplog.lines))
    logins = csv_users(world.env.csv.with_name("logins.csv"))
    verdict.problems += judge_logins(world, users, logins)
    return verdict


def _in_process_action(world: World, mlsd: InProcess, rng: random.Random) -> None:
    choices: list[tuple[str, int]] = [("write", 30), ("arm", 3), ("damage", 1)]
    if mlsd.running:
        choices += [("step", 30), ("crash", 4), ("stop", 1)]
        if world.may_rotate():
            choices += [("outage", 2)]
    else:
        choices += [("start", 15)]
    if world.may_rotate():
        choices += [("rotate", 8), ("window", 1)]
    if world.stale:
        choices += [("reopen", 12)]
    names, weights = zip(*choices, strict=True)
    what = rng.choices(names, weights)[0]
    if what == "write":
        world.burst()
    elif what == "arm":
        mlsd.arm()
    elif what == "damage":
        world.damage_gz()
    elif what == "step":
        n = rng.choice((1, 1, 2, 3, 10))
        done = mlsd.steps(n)
        world.note(f"step {done}/{n}")
    elif what == "crash":
        mlsd.crash()
    elif what == "stop":
        mlsd.stop()
    elif what == "start":
        mlsd.start()
    elif what == "rotate":
        world.rotate(rng.choice(("create", "create", "copytruncate")))
    elif what == "window":
        world.rotate("copytruncate", window=True)
    elif what == "reopen":
        world.reopen()
    elif what == "outage":
        # Down across one, two or several rotations.
        mlsd.crash()
        for _ in range(rng.choice((1, 2, 3, 5))):
            world.burst()
            world.rotate(rng.choice(("create", "copytruncate")))
            if rng.random() < 0.5:
                world.burst()
            if world.stale:
                world.reopen()


# ---- subprocess driver


def run_subprocess(seed: int, root: Path, cycles: int = 6) -> Verdict:
    """One seed with `mlsd run` as a real process and real `kill -9`.

    The scenario is seeded; the interleaving with the daemon is not (real time).
    """
    world = World(root, seed, grace=1.0)
    rng = world.rng
    env = world.env
    proc: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(cycles):
            if proc is None:
                proc = env.start(wait=False)
                world.note(f"start pid={proc.pid}")
            # Writes, rotations and reopens while it starts or runs, then kill -9: often
            # within its start-up (the interpreter alone takes a few tenths of a second),
            # before or just after its first commit, sometimes well after.
            deadline = time.monotonic() + rng.choice((0.3, 0.6, 0.9, 1.2, 2.0)) * rng.random()
            while time.monotonic() < deadline:
                _sub_world_action(world, proc, env, rng)
                time.sleep(rng.uniform(0.0, 0.05))
            if rng.random() < 0.8:
                kill9(proc)
                world.note("kill -9")
                if STARTED in env.stderr(proc):
                    world.confirm()
                proc = None
                # Down for a while: maybe one, two or several rotations.
                if world.may_rotate():
                    for _ in range(rng.choice((0, 0, 1, 2, 4))):
                        world.burst()
                        world.rotate(rng.choice(("create", "copytruncate")))
                        world.burst()
                        world.reopen()
        if world.stale:
            world.reopen()
        if proc is None:
            proc = env.start()
            world.note(f"start pid={proc.pid}")
        if STARTED in env.stderr(proc):
            world.confirm()
        world.burst(1)
        _wait_quiet(env, world)
        env.stop(proc, signal.SIGTERM)
    except Exception as exc:
        world.note("harness error:\n" + traceback.format_exc())
        env.cleanup()
        return Verdict(
            seed, 0, [f"stopped by {exc!r}"], world.trace, [], Counter(), driver="subprocess"
        )
    finally:
        env.cleanup()
        world.writer.close()
    logs = env.all_stderr()
    world.gaps = [g for line in logs.splitlines() if (g := parse_gap(line, 0, None))]
    users = csv_users(env.csv)
    verdict = judge(world, users, logs)
    verdict.problems += judge_logins(world, users, csv_users(env.csv.with_name("logins.csv")))
    verdict.driver = "subprocess, kill -9"
    return verdict


def _sub_world_action(
    world: World, proc: subprocess.Popen[bytes], env: Env, rng: random.Random
) -> None:
    if not world.confirmed and STARTED in env.stderr(proc):
        world.confirm()
    r = rng.random()
    if r < 0.7:
        world.burst()
    elif r < 0.85 and world.may_rotate():
        world.rotate(rng.choice(("create", "create", "copytruncate")))
        if world.stale:
            # Late lines through the old descriptor, within the grace period.
            if rng.random() < 0.5:
                world.burst()
            world.reopen()
    elif r < 0.88 and world.may_rotate():
        world.rotate("copytruncate", window=True)


def _wait_quiet(env: Env, world: World, timeout: float = 90.0) -> None:
    """Until the CSV has not grown for 2 s (more than the grace period), or the timeout."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = env.csv.stat().st_size if env.csv.exists() else 0
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since > 2.0:
            return
        time.sleep(0.1)
    world.note("still growing at the timeout")


# ---- `make chaos`


def main(argv: list[str] | None = None) -> int:
    """Run many seeds; one summary line; exit 1 if any failed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument(
        "--subprocess-every",
        type=int,
        default=20,
        help="every Nth seed also runs as a real process with kill -9 (0: never)",
    )
    args = ap.parse_args(argv)
    failed: list[str] = []
    rows = runs = 0
    for seed in range(args.first, args.first + args.seeds):
        drivers: list[tuple[str, Callable[[int, Path], Verdict]]] = [("inproc", run_in_process)]
        if args.subprocess_every and seed % args.subprocess_every == 0:
            drivers.append(("subprocess", run_subprocess))
        for name, run in drivers:
            root = Path(tempfile.mkdtemp(prefix=f"mlsd-chaos-{seed}-"))
            try:
                verdict = run(seed, root)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            runs += 1
            rows += verdict.rows
            if not verdict.ok:
                failed.append(f"{seed}{'' if name == 'inproc' else '/' + name}")
                print(verdict.report(), file=sys.stderr, flush=True)
    print(
        f"chaos: seeds={args.seeds} runs={runs} passed={runs - len(failed)} "
        f"failed={len(failed)}{' [' + ' '.join(failed) + ']' if failed else ''} "
        f"rows_compared={rows}",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
