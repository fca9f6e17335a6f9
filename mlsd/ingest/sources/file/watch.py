"""inotify for the follow loop: the watches on the log, and one read per wake-up.

Events are hints, never the truth (see mlsd.ingest.sources.file.follow): the watches only
wake the loop, which then looks at the files; the reconcile timer compares `snapshot`s in
case an event never comes (a directory mlsd may not read, a lost event).
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import os
import struct
import termios
from pathlib import Path
from typing import Any, Final

import pyinotify

from mlsd import logs
from mlsd.access import readable
from mlsd.ingest.sources.file.follow import Follower

log = logs.get("mlsd.daemon")

# IN_ATTRIB on the directory: a chmod or chgrp of the log. An unreadable log cannot get
# a watch of its own (inotify needs read access), so this is what wakes us at once when
# the operator fixes its permissions.
_DIR_MASK: Final = (
    pyinotify.IN_CREATE
    | pyinotify.IN_MOVED_TO
    | pyinotify.IN_MOVED_FROM
    | pyinotify.IN_DELETE
    | pyinotify.IN_ATTRIB
)
_FILE_MASK: Final = (
    pyinotify.IN_MODIFY | pyinotify.IN_ATTRIB | pyinotify.IN_MOVE_SELF | pyinotify.IN_DELETE_SELF
)


OVERFLOW_RECORD: Final = struct.pack("iIII", -1, pyinotify.IN_Q_OVERFLOW, 0, 0)
"""The record the kernel queues when it dropped events (wd -1, no name)."""


class InotifyWake:
    """Reads the inotify descriptor in bulk: every read only wakes the loop.

    Events are hints (the file system is the truth), so their content is not needed: one
    `read` takes the whole queue, however many events it holds, and sets `wake`. No Python
    work is done per event, so a flood (a local user touching the log directory, a fast
    writer) costs one read per wake-up, not a parse and a dispatch per event; pyinotify's
    own reader did both and pinned a core (issue 17). The only thing looked for is the
    overflow record (one `bytes.find`): lost events force a rescan, which every wake-up
    does anyway, and are counted and logged.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, wake: asyncio.Event) -> None:
        self._loop = loop
        self.fd = fd
        self._wake = wake
        self._armed = False
        self.reads = 0
        """How many times the descriptor was read (for tests: one per wake-up, not per event)."""
        self.overflows = 0
        """How many times the kernel's queue overflowed (events lost, files rescanned)."""

    def arm(self) -> None:
        """Wait for the next event. Until then, events wait in the kernel's queue: a flood
        then costs one read per round of the follow loop, not one per loop iteration."""
        if not self._armed:
            self._loop.add_reader(self.fd, self)
            self._armed = True

    def disarm(self) -> None:
        """Stop reading the descriptor (done at the first read after `arm`)."""
        if self._armed:
            self._loop.remove_reader(self.fd)
            self._armed = False

    def __call__(self) -> None:
        """The loop's reader callback: drain the queue, wake the follower."""
        self.disarm()
        pending = array.array("i", [0])
        fcntl.ioctl(self.fd, termios.FIONREAD, pending, True)
        if pending[0] <= 0:
            return
        try:
            data = os.read(self.fd, pending[0])
        except (BlockingIOError, InterruptedError):
            return
        self.reads += 1
        if OVERFLOW_RECORD in data:
            self.overflows += 1
            log.warning("inotify queue overflow: events were lost, rescanning the files")
        self._wake.set()


class Watches:
    """The directory watch(es), and file watches on the open generation and the live file.

    The live file is watched even while an older generation is being finished, so that
    its first writes wake us when the old one may be sealed.
    """

    def __init__(self, wm: Any, logpath: Path) -> None:
        self.wm = wm
        self.logpath = logpath
        self._dirs = {logpath.parent, Path(os.path.realpath(logpath)).parent}
        self._dirs_watched: set[Path] = set()
        self._watch_dirs()
        self._files: dict[tuple[int, int], int] = {}

    def _watch_dirs(self) -> None:
        # A directory mlsd may not read cannot be watched; once its permissions are
        # fixed, the watch is added here on the next pass (until then: the reconcile tick).
        for d in self._dirs - self._dirs_watched:
            try:
                self.wm.add_watch(str(d), _DIR_MASK, quiet=False)
            except pyinotify.WatchManagerError as exc:
                log.debug("directory not watched", path=str(d), error=str(exc))
            else:
                self._dirs_watched.add(d)

    def follow(self, follower: Follower) -> None:
        """Point the file watches at the current generation and the live file."""
        self._watch_dirs()
        want: dict[tuple[int, int], Path] = {}
        cur = follower.cur
        if cur is not None:
            want[(cur.dev, cur.ino)] = cur.path
        try:
            st = os.stat(self.logpath)
            if readable(self.logpath):  # else inotify refuses, and says so at every pass
                want.setdefault((st.st_dev, st.st_ino), self.logpath)
        except OSError:
            pass
        for ident in list(self._files):
            if ident not in want:
                wd = self._files.pop(ident)
                try:
                    self.wm.rm_watch(wd, quiet=False)
                except pyinotify.WatchManagerError:
                    # The kernel dropped it already (the file is gone). Its IN_IGNORED is
                    # not parsed (see InotifyWake), so forget the watch here.
                    self.wm.del_watch(wd)
        for ident, path in want.items():
            if ident not in self._files:
                got = self.wm.add_watch(str(path), _FILE_MASK, quiet=True)
                wd = next(iter(got.values()), -1) if got else -1
                if wd >= 0:
                    self._files[ident] = wd


def snapshot(logpath: Path, follower: Follower) -> tuple[object, ...]:
    """What the reconcile timer compares: a `stat` of the path and of the open file."""
    try:
        st = os.stat(logpath)
        # Readability too: a chmod that lets us read the log changes neither size nor
        # mtime, and must not wait for the next write to be noticed.
        live: tuple[object, ...] = (
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            readable(logpath),
        )
    except OSError:
        live = ()
    cur = follower.cur
    mine: tuple[object, ...] = ()
    if cur is not None:
        fst = cur.stat()
        mine = (fst.st_size, fst.st_mtime_ns, cur.offset)
    return (live, mine)
