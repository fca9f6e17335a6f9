"""The systemd journal as a source: `journalctl` as a child process, and what its output says.

A child process, not libsystemd in-process: on Debian 12 (systemd 252) reading a journal
file while journald rotates it has crashed readers with SIGBUS (fixed in 255), and the
python-systemd binding has open segfault reports there; a child keeps such a crash outside
mlsd, which then restarts it. Its JSON output is limited to the fields mlsd needs
(journalctl adds `__CURSOR`, the timestamps and `_BOOT_ID` whatever it is told).

Positions are journalctl's cursors, kept opaque: they are only handed back to journalctl
and compared as `sd_journal_test_cursor` does (field by field, see `same_entry`), never
as strings or by order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from mlsd.journalmatch import Matcher

log = logging.getLogger("mlsd.journal")

JOURNALCTL: Final = "journalctl"
FIELDS: Final = ("MESSAGE", "SYSLOG_IDENTIFIER", "_HOSTNAME")
"""What an entry becomes an event from (and the matcher's fields, added to these)."""
CHUNK: Final = 1 << 20
"""Bytes read from journalctl at once (and the pipe buffer's high-water mark)."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# journalctl's own words (stderr) when it cannot read what it was asked to read.
_DENIED: Final = (
    "insufficient permissions",
    "Permission denied",
    "not seeing messages from other users",
)
_TOO_NEW: Final = ("unsupported feature", "Unsupported", "newer version")


def cursor_fields(cursor: str) -> dict[str, str]:
    """`s=…;i=…;b=…;m=…;t=…;x=…` → {"s": …, …} (lower-cased hex)."""
    out: dict[str, str] = {}
    for part in cursor.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value.lower()
    return out


def same_entry(a: str, b: str) -> bool:
    """Whether two cursors name one entry, as `sd_journal_test_cursor` decides: the seqnum
    counts only within one seqnum id, the monotonic time only within one boot, and the
    realtime and the entry hash must agree wherever both cursors have them."""
    fa, fb = cursor_fields(a), cursor_fields(b)
    agree = False  # and something must agree: two cursors with nothing in common differ
    for within, value in (("s", "i"), ("b", "m")):
        if within in fa and fa.get(within) == fb.get(within):
            if fa.get(value) != fb.get(value):
                return False
            agree = True
    for k in ("t", "x"):
        if k in fa and k in fb:
            if fa[k] != fb[k]:
                return False
            agree = True
    return agree


def cursor_time(cursor: str) -> datetime | None:
    """The realtime a cursor records (its `t=`, microseconds in hex), if any."""
    raw = cursor_fields(cursor).get("t")
    if raw is None:
        return None
    try:
        return realtime(int(raw, 16))
    except ValueError:
        return None


def realtime(us: int) -> datetime | None:
    """`__REALTIME_TIMESTAMP` (microseconds since the epoch, UTC) → a datetime, or None when
    no datetime can hold it."""
    try:
        return _EPOCH + timedelta(microseconds=us)
    except OverflowError:
        return None


def entry_of(line: bytes) -> dict[str, Any] | None:
    """One line of journalctl's output as a JSON object with a cursor, or None: it writes
    nothing else, but a parser that can be stopped by one odd line is not used here."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("__CURSOR"), str):
        return None
    return entry


def entry_time(entry: dict[str, Any]) -> datetime | None:
    """An entry's `__REALTIME_TIMESTAMP` as a datetime (None: missing, or beyond one)."""
    try:
        return realtime(int(entry["__REALTIME_TIMESTAMP"]))
    except (KeyError, TypeError, ValueError):
        return None


def last_cursor(block: bytes, start: int) -> str | None:
    """The cursor of the last entry of `block` (complete lines) from `start`."""
    end = len(block) - 1
    while end > start:
        begin = block.rfind(b"\n", start, end) + 1 or start
        entry = entry_of(block[begin:end])
        if entry is not None:
            cursor: str = entry["__CURSOR"]
            return cursor
        end = begin - 1
    return None


def field_bytes(value: object) -> bytes | None:
    """A field of journalctl's JSON as bytes: a string, or the array of byte values it
    writes for a value that is not valid UTF-8 (attackers choose those bytes). A field
    logged several times is an array of values: the first is taken. None: absent, or
    larger than journalctl shows without `--all` (4096 bytes: it writes null)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list) and value:
        if all(type(b) is int and 0 <= b <= 255 for b in value):
            return bytes(value)
        return field_bytes(value[0])
    return None


MACHINE_ID: Final = Path("/etc/machine-id")


def local_machine_id(path: Path = MACHINE_ID) -> str | None:
    """This machine's id (32 hex digits), or None when it cannot be read."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if re.fullmatch(r"[0-9a-f]{32}", text) else None


def machine_of(directory: Path | None) -> str | None:
    """The machine id `argv` needs: this machine's for the system journal, none for a
    directory (whose entries may be another machine's: that is why it was named)."""
    return local_machine_id() if directory is None else None


def argv(
    matcher: Matcher,
    directory: Path | None,
    *,
    follow: bool,
    cursor: str | None = None,
    last: bool = False,
    machine_id: str | None = None,
) -> list[str]:
    """journalctl's command line: from `cursor` (inclusive: see JournalReader) or the
    start, or only the `last` entry; following or to the end.

    Always `--merge`: without it, journalctl 252 `--follow` shows only the current boot (a
    directory's latest), so a restart after a reboot lost the rest of the boot before it
    and a first start missed every earlier boot. For the system journal, `--merge` would
    also open other machines' journals (`/var/log/journal/remote`): `machine_id` (this
    machine's) keeps only its own entries, as journalctl's default does. Without it the
    system journal is read as before (`--merge` left out)."""
    fields = sorted({*FIELDS, *matcher.fields})
    out = [JOURNALCTL, "--output=json", f"--output-fields={','.join(fields)}", "--no-pager"]
    if directory is not None:
        out.append(f"--directory={directory}")
    if directory is not None or machine_id is not None:
        out.append("--merge")
    if last:
        out.append("--lines=1")
    elif cursor is not None:
        out.append(f"--cursor={cursor}")
    if follow:
        out += ["--follow", "--no-tail"]
    local = f"_MACHINE_ID={machine_id}" if directory is None and machine_id else None
    return out + matcher.journalctl_args(also=local)


def journalctl_env() -> dict[str, str]:
    """journalctl's environment: no colours, no pager, messages in English (matched here)."""
    return {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}


def access_problem(line: str, directory: Path | None) -> str | None:
    """What a journalctl error line means for the operator (cause and fix), or None."""
    if any(w in line for w in _DENIED):
        if directory is not None:
            return (
                f"journalctl cannot read the journal files in {directory} ({line.strip()}): "
                "make the directory and its files readable by the user mlsd runs as (e.g. "
                "by group systemd-journal, with that user in it)"
            )
        return (
            f"journalctl cannot read the system journal ({line.strip()}): add the user mlsd "
            "runs as to group systemd-journal or adm (usermod -aG systemd-journal mlsd; the "
            "shipped unit has SupplementaryGroups=adm systemd-journal), then restart mlsd"
        )
    if any(w in line for w in _TOO_NEW):
        return (
            f"journalctl cannot read a journal file ({line.strip()}): it was written by a "
            "newer systemd than this journalctl; read it with a journalctl at least as new"
        )
    return None


def last_entry(matcher: Matcher, directory: Path | None) -> tuple[bytes, str | None]:
    """Run journalctl for the journal's last entry: what it wrote (b"" for an empty
    journal), and why it cannot read the journal (cause and fix), if it cannot."""
    args = argv(matcher, directory, follow=False, last=True, machine_id=machine_of(directory))
    try:
        done = subprocess.run(
            args, capture_output=True, timeout=60, check=False, env=journalctl_env()
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return b"", f"cannot run {args[0]}: {exc}"
    said = done.stderr.decode("utf-8", "backslashreplace").splitlines()
    problem = next((p for p in (access_problem(x, directory) for x in said) if p), None)
    if problem is None and done.returncode:
        last = f": {said[-1][:300]!r}" if said else ""
        problem = f"journalctl ended with status {done.returncode}{last}"
    return done.stdout, problem


@dataclass
class JournalCtl:
    """One journalctl child: its stdout to read, its stderr watched for what it cannot read."""

    proc: asyncio.subprocess.Process
    directory: Path | None
    problem: str | None = None
    """Why it cannot read the journal (cause and fix), from its stderr."""
    said: list[str] = field(default_factory=list)
    """Its last lines on stderr (for the log when it exits)."""
    on_problem: Callable[[str], None] | None = None
    """Told at once when journalctl says it cannot read (it may go on, reading less)."""
    eof: bool = False
    """Its output has ended."""
    _watch: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, args: list[str], directory: Path | None, on_problem: Callable[[str], None]
    ) -> JournalCtl:
        """Start journalctl (OSError when it cannot be run at all)."""
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=CHUNK,
            env=journalctl_env(),
            # Its own process group: a Ctrl-C at the terminal is mlsd's to handle.
            start_new_session=True,
        )
        self = cls(proc, directory, on_problem=on_problem)
        self._watch = asyncio.ensure_future(self._stderr())
        return self

    async def _stderr(self) -> None:
        assert self.proc.stderr is not None  # noqa: S101 - a pipe, see start()
        while line := await self.proc.stderr.readline():
            text = line.decode("utf-8", "backslashreplace").rstrip()
            if not text:
                continue
            self.said = [*self.said[-4:], text]
            problem = access_problem(text, self.directory)
            if problem is not None:
                self.problem = problem
                if self.on_problem is not None:
                    self.on_problem(problem)
            else:
                log.warning("journalctl said %r", text[:500])

    async def read(self) -> bytes:
        """The next bytes of its output (b"" at its end)."""
        assert self.proc.stdout is not None  # noqa: S101 - a pipe, see start()
        data = await self.proc.stdout.read(CHUNK)
        self.eof = not data
        return data

    async def finish(self, *, kill: bool) -> str:
        """Wait for it to exit (ending it first with `kill`); how it ended, for the log."""
        if self.eof:
            # It closed its output: it is exiting. Signalling it now would make Popen poll
            # and reap it behind asyncio's child watcher, which then loses its status.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)
        if kill and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
        code = await self.proc.wait()
        if self._watch is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._watch, 5)
        how = f"killed by signal {-code}" if code < 0 else f"status {code}"
        with contextlib.suppress(ValueError):
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else how
        if self.said:
            how += f", having said {self.said[-1][:300]!r}"
        return how
