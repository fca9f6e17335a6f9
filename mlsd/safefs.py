"""Files in the state and CSV directories, opened so that nobody else's link or file is used.

mlsd often runs as root and writes into directories that a hand install may have left
writable by others. Three rules, in one place, that every module writing or reading there
follows:

- a path there is never followed through a symbolic link (`O_NOFOLLOW`; a temporary file is
  created with `O_EXCL` after unlinking a stale one, and `unlink` does not follow either);
- a directory there is mlsd's (or root's) and writable by nobody else, else mlsd refuses it
  with one sentence that names it and the fix; the ones mlsd creates get their mode whatever
  the umask;
- an error never quotes the content of a file (it could be someone's secret behind a link).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Final

from mlsd.errors import StateError

PRIVATE_DIR: Final = 0o700
SHARED_DIR: Final = 0o750
"""Group may read (an `adm` admin reading the CSV or the reports), never write."""


def open_nofollow(path: Path, flags: int, mode: int = 0o600) -> int:
    """`os.open` that refuses a symbolic link as the last component (raises OSError ELOOP)."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """`open_nofollow`, then a check that it is a regular file (not a FIFO, a device, a
    directory): OSError otherwise. `O_NONBLOCK` keeps a planted FIFO from hanging us."""
    fd = open_nofollow(path, flags | os.O_NONBLOCK, mode)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(path: Path, *, owned: bool = False) -> bytes:
    """The bytes of a regular file, not followed through a link. With `owned`, the file must
    also belong to the user mlsd runs as (an outbox entry: a planted one is never sent)."""
    fd = open_regular(path)
    try:
        if owned and os.fstat(fd).st_uid != os.geteuid():
            raise OSError(errno.EPERM, "owned by another user", str(path))
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def create_temp(path: Path, mode: int) -> int:
    """A new temporary file at `path` for writing: a stale one (ours after a crash, or
    anything planted, a link included) is unlinked first, then `O_EXCL` creates it."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)


def check_dir(path: Path, what: str, *, follow: bool = True) -> os.stat_result:
    """Refuse (StateError) a directory that another user could write into.

    It must be a directory owned by the user mlsd runs as or by root, writable by neither
    group nor others. `follow=False` (a directory inside the state directory) also refuses
    a symbolic link in its place. `follow=True` is for the configured path itself, which
    the admin may have made a link.
    """
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError as exc:
        raise StateError(f"{path}: cannot use the {what}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise StateError(
            f"{path}: the {what} is {kind}, which mlsd does not follow there: remove it "
            "(mlsd creates the directory itself)"
        )
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise StateError(
            f"{path}: the {what} is owned by uid {st.st_uid}, not by the user mlsd runs as "
            f"(uid {me}) or root, so that user could replace what mlsd keeps there: "
            f"chown {me} {path}"
        )
    if st.st_mode & 0o022:
        who = {0o020: "its group", 0o002: "others"}.get(st.st_mode & 0o022, "group and others")
        mode = stat.S_IMODE(st.st_mode)
        raise StateError(
            f"{path}: the {what} is writable by {who} (mode {mode:04o}), who could plant links "
            f"or files in it: chmod {mode & ~0o022:04o} {path}"
            + (" (or give mlsd a directory of its own)" if follow else "")
        )
    return st


def make_dir(path: Path, mode: int, what: str, *, top: bool = False) -> None:
    """Create `path` with exactly `mode` (whatever the umask) or check the existing one.

    `top` is a configured directory (state_dir, the CSV's directory): missing parents are
    created too and a link to it is followed. Otherwise `path` is inside one of those and
    must be a real directory (check_dir with `follow=False`).
    """
    if top:
        path.parent.mkdir(mode=SHARED_DIR, parents=True, exist_ok=True)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        check_dir(path, what, follow=top)
        return
    except OSError as exc:
        raise StateError(f"{path}: cannot create the {what}: {exc.strerror}") from None
    # mkdir's mode is narrowed by the umask, chmod's is not (so 0750 stays 0750 under a
    # umask of 077, and a umask of 000 cannot leave it open to everyone).
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def nofollow_opener(path: str, flags: int) -> int:
    """An `opener` for the built-in `open`: the same, not through a symbolic link."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
