"""Run a job whose memory an attacker sets (the daily report) in a child with a memory limit.

A report's memory grows with the day's distinct usernames and IPs, which cost an attacker
nothing (issue 17: 1 M of them took 2 GB inside the daemon). Until reports are aggregated
in a database, each build runs in a child process whose address space is capped
(RLIMIT_AS, `[report] max_memory`): a pathological day fails that report with a clear
error, to be tried again later, and the daemon — following, committing, notifying — never
holds that memory and never dies of it.

The child comes from a fork server (multiprocessing's `forkserver`): the daemon has threads
(asyncio's executor, the report thread), and forking a threaded process can copy a lock in
a held state; the fork server is a fresh, single-threaded process that forks each child.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Final, TypeVar

from mlsd import logs
from mlsd.errors import MlsdError

log = logs.get("mlsd.isolate")

T = TypeVar("T")
MIB: Final = 1 << 20
_PRELOAD: Final = ["mlsd.report.compose", "mlsd.report.history"]
"""Imported once in the fork server, so that a child starts in milliseconds."""


class ChildError(MlsdError):
    """The job did not complete in its child: out of its memory limit, killed, or it raised."""


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _child(
    conn: Connection,
    limit: int,
    func: Callable[..., object],
    args: tuple[object, ...],
    kwargs: dict[str, object],
) -> None:
    # Not the daemon's signals: SIGTERM ends the child (the default), SIGINT from a terminal
    # is the daemon's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if limit:
        try:
            # prlimit, not setrlimit: the unit's syscall filter denies @resources (which
            # holds setrlimit) and allows prlimit64 (in @system-service).
            resource.prlimit(0, resource.RLIMIT_AS, (limit, limit))
        except OSError as exc:
            # The fork server is a fresh interpreter that never set logging up: to stderr,
            # the daemon's, as journal lines under systemd (JOURNAL_STREAM is inherited).
            logs.configure("WARNING")
            log.warning(
                "memory limit not applied: the report runs without it "
                "(the unit's MemoryMax= is then the only bound)",
                error=exc.strerror,
            )
    message: tuple[str, object]
    try:
        message = ("ok", func(*args, **kwargs))
    except MemoryError:
        message = ("memory", None)
    except BaseException as exc:
        message = ("error", f"{exc.__class__.__name__}: {exc}")
    try:
        try:
            conn.send(message)
        except MemoryError:  # the result itself did not fit in what was left
            conn.send(("memory", None))
    except (BrokenPipeError, ConnectionResetError):
        # The daemon is gone (stopped, or killed) and nobody waits for the result: a
        # traceback on its stderr would only look like a crash of the next one.
        pass
    conn.close()


def _receive(conn: Connection) -> tuple[str, object]:
    try:
        kind, value = conn.recv()
    except EOFError:  # the child died without a word (killed, or crashed)
        return "died", None
    return str(kind), value


async def run_limited(
    func: Callable[..., T], *args: object, limit_mib: int, what: str, **kwargs: object
) -> T:
    """`func(*args, **kwargs)` in a child limited to `limit_mib` MiB of address space
    (0: no limit). Its result comes back pickled. Raises ChildError naming `what`."""
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_child,
        args=(child, limit_mib * MIB, func, args, kwargs),
        name=f"mlsd {what}",
        daemon=True,
    )
    proc.start()
    child.close()
    try:
        # In a thread: the result may be megabytes, and the event loop must go on meanwhile.
        kind, value = await asyncio.to_thread(_receive, parent)
    except asyncio.CancelledError:
        proc.kill()  # the receiving thread then sees EOF and ends
        raise
    parent.close()
    await asyncio.to_thread(proc.join)
    if kind == "ok":
        return value  # type: ignore[return-value]
    if kind == "memory":
        raise ChildError(
            f"{what} needs more than [report] max_memory = {limit_mib} MiB: the day has too "
            "many distinct usernames or IPs to summarise in memory; following goes on, and "
            "it is tried again later (raise max_memory if the host has the memory)"
        )
    if kind == "died":
        code = proc.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        raise ChildError(f"{what}: its process ended without a result ({how})")
    raise ChildError(f"{what} failed: {value}")
