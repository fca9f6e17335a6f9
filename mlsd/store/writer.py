"""The store's writer: a child process that owns the SQLite connection and does the store's
work, reading the committed rows from the CSV itself.

Why a process: storing a row is Python work (decoding its cells, making its time, binding
its values) and Python work holds the GIL the follower needs. In a thread of the daemon,
the store cost a backlog scan of a million lines 1.32x the time of the scan without it
(`make bench`, store-append; the issue's goal is 1.2x); in a process of its own, on a
second core, it costs a few percent, and nothing of the rows is decoded or held in the
daemon's process.

The daemon (`Writer`, used by `mlsd.store.sqlsink`) sends requests over a socket pair and
waits for each answer: ("ok", value) or ("err", exception). The framing and pickling are
`multiprocessing.connection`'s; the pair is private to the two processes, and the child
runs mlsd's own code, so nothing untrusted is unpickled. What the writer logs comes back
with each answer and is logged by the daemon: one stream, one format, the level as
reloaded, and in the tests' captured events. The child's exit is tied to the
daemon's: it leaves when the socket closes (a stop, or the daemon killed, `kill -9`
included) and ignores the signals meant for the daemon (a terminal's Ctrl-C, systemd's
SIGTERM to the unit, SIGHUP, SIGUSR1): a stop is the daemon's to order, so a transaction
it waits for is never cut short under it. Were it cut anyway (the OOM killer), a batch's
rows and position are one transaction: the daemon sees the error, starts a new writer,
asks it the position and ships on, exactly once.
"""

from __future__ import annotations

import functools
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import MutableMapping
from datetime import tzinfo
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final, NoReturn

import structlog

import mlsd
from mlsd import logs
from mlsd.store.contract import Batch, Shipped, Span
from mlsd.store.csvrows import read_rows
from mlsd.store.journals import EVENTS, LOGINS, Journal
from mlsd.store.sqlite import SqliteStore

log = logs.get("mlsd.store")

JOURNALS: Final = {j.name: j for j in (EVENTS, LOGINS)}
STOP_S: Final = 5.0
"""How long a stop waits for the writer to close the store before killing it: it is idle
then (calls never overlap), so closing takes milliseconds; a kill loses nothing (a batch
and its position are one transaction), and the daemon's own stop is bounded at 20 s."""
IGNORED: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
"""Signals for the daemon, which a process group or a unit's control group also sends here."""


class WriterGone(OSError):
    """The writer process is not there to answer (it exited, or was killed)."""


# ---- the daemon's end


class Writer:
    """The daemon's end: one child at a time, started at the first call and again at the
    first call after it died. Blocking: called from the store's one worker thread
    (`SqliteSink`), so calls never overlap."""

    def __init__(self, path: Path) -> None:
        self.path = path.absolute()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        """The writer's process id while one runs (for the tests)."""
        return None if self._proc is None else self._proc.pid

    def call(self, name: str, *args: Any) -> Any:
        """The request `name(*args)` in the writer: its value, or its exception raised here.
        WriterGone when the writer died before answering (the request may have been done:
        a caller asks the position again, as after any store error)."""
        conn = self._conn if self._conn is not None else self._start()
        try:
            conn.send((name, args))
            kind, value, said = conn.recv()
        except (EOFError, OSError) as exc:
            status = self._drop()
            raise WriterGone(
                f"{self.path}: the store's writer process exited ({status}) during {name}: "
                f"{type(exc).__name__}"
            ) from None
        for method, event in said:
            getattr(log, method)(**event)
        if kind == "err":
            raise value
        return value

    def stop(self) -> None:
        """Close the socket: the writer closes the store and exits (killed after STOP_S)."""
        self._drop()

    def _start(self) -> Connection:
        ours, theirs = socket.socketpair()
        try:
            # cwd: `-m` puts it first on sys.path, so it is where this mlsd is imported
            # from, never a directory the daemon happened to be started in.
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "mlsd.store.writer", str(theirs.fileno()), str(self.path)],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                cwd=Path(mlsd.__file__).resolve().parent.parent,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        return self._conn

    def _drop(self, wait: float = STOP_S) -> str:
        """Forget the writer: close the socket, reap the process; how it ended."""
        conn, proc = self._conn, self._proc
        self._conn = self._proc = None
        if conn is not None:
            conn.close()
        if proc is None:
            return "not started"
        try:
            code = proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        return f"signal {-code}" if code < 0 else f"status {code}"


@functools.lru_cache(maxsize=8)
def sendable(tz: tzinfo | None) -> tzinfo | None:
    """`tz`, or None for a zone that cannot be pickled: the system's, read from
    /etc/localtime (`mlsd.config.schema.resolve_tz`), which the writer reads the same way."""
    try:
        pickle.dumps(tz)
    except (pickle.PicklingError, TypeError, ValueError):
        return None
    return tz


# ---- the writer's end


def ship_span(store: SqliteStore, node: str, journal: Journal, span: Span) -> Shipped:
    """Up to `span.batches` batches of `span`, each read and then stored with its end
    position in one transaction; an error stops it, and says how far it got."""
    at, rows, skipped, last = span.start, 0, 0, None
    tz = span.tz
    if tz is None:
        # Only for the system's zone: the configuration's modules are a fifth of the
        # writer's start-up, paid at every start of the daemon.
        from mlsd.config.schema import resolve_tz  # noqa: PLC0415

        tz = resolve_tz("")
    try:
        for _ in range(span.batches):
            if at.csv_offset >= span.until.csv_offset:
                break
            got, end, passed = read_rows(span.path, journal, at, span.until, most=span.most,
                                         tz=tz)  # fmt: skip
            store.append(node, Batch(got, at, end), journal)
            at, rows, skipped = end, rows + len(got), skipped + passed
            if got:
                last = got[-1].time
    except Exception as exc:  # the daemon's to log and retry, with what was stored
        return Shipped(at, rows, skipped, last, exc)
    return Shipped(at, rows, skipped, last)


def _do(store: SqliteStore, name: str, args: tuple[Any, ...]) -> Any:
    if name == "open":
        return store.open(*args)
    if name == "position":
        node, journal = args
        return store.position(node, JOURNALS[journal])
    if name == "append":
        node, batch, journal = args
        return store.append(node, batch, JOURNALS[journal])
    if name == "ship":
        node, journal, span = args
        return ship_span(store, node, JOURNALS[journal], span)
    if name == "move_aside":
        return store.move_aside(*args)
    if name == "forget":
        return store.forget(JOURNALS[args[0]])
    if name == "expire":
        return store.expire(*args)
    raise ValueError(f"no such store request: {name}")


_said: list[tuple[str, dict[str, Any]]] = []
"""What the writer logged since its last answer: (method, event), sent with the answer."""


def _keep(_: Any, method: str, event: MutableMapping[str, Any]) -> NoReturn:
    _said.append((method, dict(event)))
    raise structlog.DropEvent


def serve(conn: Connection, store: SqliteStore) -> None:
    """Answer requests until the daemon closes the socket."""
    while True:
        try:
            name, args = conn.recv()
        except EOFError:
            return
        try:
            reply: tuple[str, Any, list[Any]] = ("ok", _do(store, name, args), _said)
        except Exception as exc:  # the daemon's to raise: an outage, retried there
            reply = ("err", exc, _said)
        try:
            conn.send(reply)
        except (BrokenPipeError, ConnectionResetError):
            return  # the daemon is gone
        except Exception as exc:  # a value that cannot be pickled: its words then
            words = f"{type(reply[1]).__name__}: {reply[1]} ({exc})"
            conn.send(("err", RuntimeError(words), _said))
        _said.clear()


def main(argv: list[str]) -> int:
    """`python -m mlsd.store.writer FD PATH`, started by `Writer` only."""
    for sig in IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    structlog.configure(
        processors=[_keep],
        logger_factory=structlog.ReturnLoggerFactory(),
        wrapper_class=structlog.BoundLogger,
        cache_logger_on_first_use=False,
    )
    fd, path = int(argv[0]), Path(argv[1])
    store = SqliteStore(path)
    conn = Connection(fd)
    try:
        serve(conn, store)
    finally:
        store.close()
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
