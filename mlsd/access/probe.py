"""Can mlsd read this file or write in that directory: a typed verdict, and who refused.

An unreadable log must not look like a quiet one. The follower only sees "no file"; a
probe says why: the path is missing, is not a regular file, or is refused, and by whom
(the file itself or a directory on the way, with its owner, group and mode, and the
process's uid and groups). `mlsd.access.words` turns a verdict into the operator's sentence.

Probing never blocks and never reads log text: a FIFO or a device is judged by `stat`
alone (opening a FIFO for reading blocks until a writer comes), and a regular file is
opened non-blocking and closed at once.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

ADM: Final = "adm"
"""The group Debian's rsyslog gives /var/log/mail.log (root:adm 0640), and the shipped
unit's SupplementaryGroups=."""


class Step(StrEnum):
    """Which part of the way refused, for a DENIED (the fix differs)."""

    SELF = "self"
    """The file or directory itself."""
    ENTER = "enter"
    """A directory on the way to it, which may not be entered (no search permission)."""
    CREATE = "create"
    """The existing directory in which it would have to be created."""


class Verdict(StrEnum):
    """What a probe found."""

    OK = "ok"
    MISSING = "missing"
    NOT_REGULAR = "not a regular file"
    NOT_DIRECTORY = "not a directory"
    DENIED = "permission denied"
    READ_ONLY = "read-only file system"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Who:
    """The identity access is judged for: a uid (None: not known yet) and its groups."""

    uid: int | None
    gids: tuple[int, ...]
    label: str = ""
    """How to name an identity that is not a uid (the shipped unit's made-up user)."""

    @classmethod
    def me(cls) -> Who:
        """This process: effective uid, effective gid and supplementary groups."""
        return cls(uid=os.geteuid(), gids=tuple(sorted({os.getegid(), *os.getgroups()})))

    @classmethod
    def shipped_unit(cls) -> Who:
        """The user the shipped unit makes up (DynamicUser=yes, SupplementaryGroups=adm)."""
        try:
            adm: tuple[int, ...] = (grp.getgrnam(ADM).gr_gid,)
        except KeyError:
            adm = ()
        return cls(
            uid=None,
            gids=adm,
            label="the shipped unit's user (DynamicUser=yes, SupplementaryGroups=adm)",
        )

    def __str__(self) -> str:
        if self.uid is None:
            return self.label
        groups = ",".join(f"{g}({_group(g)})" for g in self.gids)
        return f"uid={self.uid}({_user(self.uid)}) groups={groups or 'none'}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Access:
    """The verdict on one path, and on what refused it (the file, or a directory above)."""

    path: Path
    verdict: Verdict
    who: Who
    blocker: Path | None = None
    """The file or directory that refused (DENIED, READ_ONLY, NOT_DIRECTORY)."""
    step: Step = Step.SELF
    want: Literal["read", "write"] = "read"
    owner: str = ""
    group: str = ""
    mode: int = 0
    """Permission bits of `blocker`."""
    kind: str = ""
    """What the path is when it is not what was wanted (`directory`, `FIFO`, …)."""
    error: str = ""
    """The system's words for an unexpected error (ERROR)."""

    @property
    def ok(self) -> bool:
        """Whether mlsd can do what was asked (a missing path that can be created is ok)."""
        return self.verdict is Verdict.OK

    def mode_text(self) -> str:
        """`root:adm 0640` for the blocker."""
        return f"{self.owner}:{self.group} {self.mode:04o}"


# ---- probes


def probe_read(path: Path, who: Who | None = None) -> Access:
    """Whether `path` is a regular file that `who` (default: this process) can read.

    For this process the answer is the kernel's (a real non-blocking open, so ACLs and
    security policies count); for another identity it is worked out from the mode bits.
    """
    me = who is None
    who = Who.me() if who is None else who
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Access(path=path, verdict=Verdict.MISSING, who=who)
    except PermissionError:
        return _blocked_on_the_way(path, who, me=me)
    except OSError as exc:
        return Access(path=path, verdict=Verdict.ERROR, who=who, error=_why(exc))
    if not stat.S_ISREG(st.st_mode):
        return Access(path=path, verdict=Verdict.NOT_REGULAR, who=who, kind=_kind(st.st_mode))
    if not me:
        blocked = _ancestor_without_search(path, who, me=False)
        if blocked is not None:
            return blocked
        if _allows(st, who, os.R_OK):
            return Access(path=path, verdict=Verdict.OK, who=who)
        return _denied(path, path, st, who)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except PermissionError:
        return _denied(path, path, st, who)
    except FileNotFoundError:
        return Access(path=path, verdict=Verdict.MISSING, who=who)  # rotated just now
    except OSError as exc:
        return Access(path=path, verdict=Verdict.ERROR, who=who, error=_why(exc))
    os.close(fd)
    return Access(path=path, verdict=Verdict.OK, who=who)


def probe_dir(path: Path) -> Access:
    """Whether this process can write in directory `path`, or create it (with its parents)."""
    return replace(_probe_dir(path), want="write")


def _probe_dir(path: Path) -> Access:
    """Judged by the kernel (`access(2)` with W_OK|X_OK): ACLs count, and a read-only file
    system (the unit's ProtectSystem=strict) is told apart from a permission.
    """
    who = Who.me()
    target = path
    while True:
        try:
            st = os.stat(target)
            break
        except (FileNotFoundError, NotADirectoryError):
            if target.parent == target:
                return Access(path=path, verdict=Verdict.ERROR, who=who, error="no root")
            # To be created: its nearest existing parent decides (or is a file in the way).
            target = target.parent
        except PermissionError:
            return _blocked_on_the_way(target, who, me=True, asked=path)
        except OSError as exc:
            return Access(path=path, verdict=Verdict.ERROR, who=who, error=_why(exc))
    if not stat.S_ISDIR(st.st_mode):
        return Access(
            path=path,
            verdict=Verdict.NOT_DIRECTORY,
            who=who,
            blocker=target,
            kind=_kind(st.st_mode),
        )
    if os.access(target, os.W_OK | os.X_OK):
        return Access(path=path, verdict=Verdict.OK, who=who)
    if _read_only_fs(target):
        return Access(path=path, verdict=Verdict.READ_ONLY, who=who, blocker=target)
    return _denied(path, target, st, who, Step.SELF if target == path else Step.CREATE)


def probe_write(path: Path) -> Access:
    """Whether this process can write the existing file `path` (missing counts as OK:
    it is created in its directory, which `probe_dir` judges)."""
    return replace(_probe_write(path), want="write")


def _probe_write(path: Path) -> Access:
    who = Who.me()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Access(path=path, verdict=Verdict.OK, who=who)
    except OSError:
        return probe_dir(path.parent)
    if stat.S_ISDIR(st.st_mode):
        return Access(path=path, verdict=Verdict.NOT_REGULAR, who=who, kind="directory")
    if os.access(path, os.W_OK):
        return Access(path=path, verdict=Verdict.OK, who=who)
    if _read_only_fs(path):
        return Access(path=path, verdict=Verdict.READ_ONLY, who=who, blocker=path)
    return _denied(path, path, st, who)


def readable(path: Path) -> bool:
    """One cheap syscall for a timer: whether this process may read `path` now."""
    return os.access(path, os.R_OK)


# ---- helpers


def _blocked_on_the_way(path: Path, who: Who, *, me: bool, asked: Path | None = None) -> Access:
    found = _ancestor_without_search(path, who, me=me)
    if found is not None:
        return Access(
            path=asked or path,
            verdict=Verdict.DENIED,
            who=who,
            blocker=found.blocker,
            step=Step.ENTER,
            owner=found.owner,
            group=found.group,
            mode=found.mode,
        )
    return Access(path=asked or path, verdict=Verdict.ERROR, who=who, error="permission denied")


def _ancestor_without_search(path: Path, who: Who, *, me: bool) -> Access | None:
    """The first directory on the way to `path` that `who` may not enter, as a DENIED."""
    for d in reversed(Path(os.path.abspath(path)).parents):
        try:
            st = os.stat(d)
        except OSError:
            return None
        ok = os.access(d, os.X_OK) if me else _allows(st, who, os.X_OK)
        if not ok:
            return _denied(path, d, st, who, Step.ENTER)
    return None


def _denied(
    path: Path, blocker: Path, st: os.stat_result, who: Who, step: Step = Step.SELF
) -> Access:
    return Access(
        path=path,
        verdict=Verdict.DENIED,
        who=who,
        blocker=blocker,
        step=step,
        owner=_user(st.st_uid),
        group=_group(st.st_gid),
        mode=stat.S_IMODE(st.st_mode),
    )


def _allows(st: os.stat_result, who: Who, want: int) -> bool:
    """POSIX mode-bit check (no ACLs) of `want` (R_OK, W_OK, X_OK) for `who`."""
    if who.uid == 0:
        return True
    if who.uid is not None and st.st_uid == who.uid:
        shift = 6
    elif st.st_gid in who.gids:
        shift = 3
    else:
        shift = 0
    return (stat.S_IMODE(st.st_mode) >> shift) & want == want


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISREG, "regular file"),
    ):
        if test(mode):
            return name
    return "special file"


def _why(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
