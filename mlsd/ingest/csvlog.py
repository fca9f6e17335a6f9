"""The CSV: its columns, how an attacker-chosen field is made harmless, and the append-only file.

The first nine columns are MailLogSentinel's, in its order, so its users' scripts keep
working. Usernames and hostnames come from attackers and the file is mailed to admins who
open it in spreadsheets: every field goes through mlsd.untrusted's CSV rule (escaped,
capped, kept from starting a formula). Every row is exactly one line (no raw newline can reach a
field), which lets recovery cut the file back at a byte offset and the report seek by line.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Final

from mlsd.durable import write_all
from mlsd.errors import StateError
from mlsd.logins import Login
from mlsd.memo import Memo
from mlsd.rows import (
    HEADER,
    AuthFailure,
    Enrichment,
    encode_rows,
)
from mlsd.safefs import make_dir, open_nofollow
from mlsd.untrusted import csv_cell, raw_line

FILE_MODE: Final = 0o640
DIR_MODE: Final = 0o750

# The cleaning rules live in mlsd.untrusted (one policy for every surface); these names
# stay for the modules and tests that import them from here.
printable = raw_line
clean_field = csv_cell


def format_date(event: AuthFailure, tz: tzinfo, date_format: str) -> str:
    """The `date` column: ISO 8601 with offset, or MailLogSentinel's `dd/mm/YYYY HH:MM`."""
    return _date(event.time, tz, date_format)


def _date(t: datetime, tz: tzinfo, date_format: str) -> str:
    try:
        return _in_zone(t, tz, date_format)
    except (OverflowError, ValueError):
        # No instant in `tz` (within a day of year 1 or 9999). The parser lets no such
        # time through (Skip.OUT_OF_RANGE); should one come from elsewhere, the time in
        # its own offset still names the instant, and a row must never stop mlsd.
        return _format(t, date_format)


def _in_zone(t: datetime, tz: tzinfo, date_format: str) -> str:
    # isoformat() costs ~0.8 µs, a third of parsing the line: format each hour once.
    key = (t.year, t.month, t.day, t.hour, t.fold, t.tzinfo, tz, date_format)
    hour = _HOURS.get(key)
    if hour is None:
        hour = _HOURS[key] = _format_hour(t, tz, date_format)
        if len(_HOURS) > 4096:
            _HOURS.clear()
    if hour is _NOT_UNIFORM:  # the offset changes inside this hour: no shortcut
        return _format(t.astimezone(tz), date_format)
    head, tail = hour
    if tail is None:
        return head + _TWO_DIGITS[t.minute]
    return head + _TWO_DIGITS[t.minute] + ":" + _TWO_DIGITS[t.second] + tail


def _format(when: datetime, date_format: str) -> str:
    if date_format == "maillogsentinel":
        # Not strftime: glibc writes year 2 as `2`, not `0002`, and the column is fixed-width.
        return f"{when.day:02d}/{when.month:02d}/{when.year:04d} {when.hour:02d}:{when.minute:02d}"
    return when.isoformat(timespec="seconds")


_HOURS: dict[tuple[object, ...], tuple[str, str | None]] = {}
_NOT_UNIFORM: Final = ("", None)
_TWO_DIGITS: Final = tuple(f"{n:02d}" for n in range(60))


def _format_hour(t: datetime, tz: tzinfo, date_format: str) -> tuple[str, str | None]:
    # Every second of t's hour reads head + MM:SS + tail, if the hour maps onto one local
    # hour with one offset: not so at a transition, or when the zones differ by a part of
    # an hour (then every row takes the slow path, which is only as slow as before).
    # MailLogSentinel's format has no seconds: head + MM (tail None).
    start = t.replace(minute=0, second=0, microsecond=0)
    end = t.replace(minute=59, second=59, microsecond=0)
    first, last = start.astimezone(tz), end.astimezone(tz)
    if (
        start.utcoffset() != end.utcoffset()  # e.g. fold=1 in Lord_Howe's 30-minute fold
        or first.utcoffset() != last.utcoffset()
        or first.minute != 0
        or first.second != 0
    ):
        return _NOT_UNIFORM
    text = _format(first, date_format)
    if date_format == "maillogsentinel":  # dd/mm/YYYY HH:00
        return text[:-2], None
    # isoformat: YYYY-MM-DDTHH:00:00±HH:MM
    if text[13:19] != ":00:00":
        return _NOT_UNIFORM
    return text[:14], text[19:]


class RowFormat:
    """How events become rows: the zone and format of the date, the cap on cells.

    Made once per batch (or per `mlsd parse`), not per row: a row then costs a few dict
    lookups, since most cells repeat (the server, the service, an attacker's usernames).
    """

    __slots__ = ("_clean", "cap", "date_format", "tz")

    def __init__(self, *, tz: tzinfo, date_format: str, cap: int) -> None:
        self.tz = tz
        self.date_format = date_format
        self.cap = cap
        self._clean = _cleaner(cap)

    def fields(self, event: AuthFailure, extra: Enrichment) -> list[str]:
        """One row's cells, in COLUMNS order; every value that comes from outside is cleaned.

        The date, the status and the count are mlsd's own text. The IP is validated by the
        parser and cleaned all the same: it came from a log line (issue 17, finding 3).
        """
        clean = self._clean
        # Unpacked in one step (both are NamedTuples; a new field makes this fail loudly).
        when, server, service, mechanism, _, ip, user, _, attempts = event
        hostname, status, country, asn, aso = extra
        return [
            clean[server],
            _date(when, self.tz, self.date_format),
            clean[ip],
            clean[user or ""],
            clean[hostname],
            status,
            clean[country],
            clean[asn],
            clean[aso],
            clean[service],
            clean[mechanism],
            "1" if attempts == 1 else str(attempts),
        ]

    def encode(
        self, events: Iterable[AuthFailure], enrich: Callable[[AuthFailure], Enrichment]
    ) -> bytes:
        """The events as CSV rows, each with what `enrich` adds, ready for one append."""
        fields = self.fields
        return encode_rows([fields(ev, enrich(ev)) for ev in events])

    def encode_enriched(self, events: Sequence[AuthFailure], extras: Sequence[Enrichment]) -> bytes:
        """`encode`, the enrichments already made (the pipeline hands them on to the
        sentinel too: each event is enriched once)."""
        fields = self.fields
        return encode_rows([fields(ev, x) for ev, x in zip(events, extras, strict=True)])


class LoginFormat:
    """How logins become rows of the logins CSV: the failures CSV's date and cleaning."""

    __slots__ = ("_clean", "date_format", "tz")

    def __init__(self, *, tz: tzinfo, date_format: str, cap: int) -> None:
        self.tz = tz
        self.date_format = date_format
        self._clean = _cleaner(cap)

    def fields(self, login: Login, extra: Enrichment) -> list[str]:
        """One row's cells, in LOGIN_COLUMNS order; every value from a log line is cleaned
        (as RowFormat.fields: the event and the count are mlsd's own text)."""
        clean = self._clean
        when, server, service, user, ip, mechanism, _, kind, recipients = login
        return [
            clean[server],
            _date(when, self.tz, self.date_format),
            clean[ip],
            clean[user],
            clean[extra.hostname],
            clean[extra.country_code],
            clean[extra.asn],
            clean[extra.aso],
            clean[service],
            clean[mechanism],
            kind.value,
            str(recipients),
        ]

    def encode(self, logins: Iterable[tuple[Login, Enrichment]]) -> bytes:
        """The logins as rows, each with its enrichment, ready for one append."""
        fields = self.fields
        return encode_rows([fields(login, extra) for login, extra in logins])


@functools.lru_cache(maxsize=8)
def _cleaner(cap: int) -> Memo[str, str]:
    return Memo(functools.partial(clean_field, cap=cap))


class CsvJournal:
    """The CSV file, written only by appending whole rows with `os.write` on O_APPEND.

    `os.write` either reaches the kernel or raises: nothing sits in a Python buffer to be
    lost on kill -9. `sync()` is `fdatasync`, which the checkpoint waits for.
    """

    def __init__(self, path: Path, header: bytes = HEADER, what: str = "CSV") -> None:
        """`header`: the file's first line (LOGIN_HEADER for the logins CSV); `what`: its
        name in messages."""
        self.path = path
        self.header = header
        self.what = what
        self._fd = -1

    def open(self) -> None:
        """Open (creating file and directory, mode 0640/0750) and check the header.

        Never through a symbolic link, and only in a directory nobody else can write to
        (mlsd.safefs); the error for a file that is not mlsd's CSV quotes none of it.
        """
        make_dir(self.path.parent, DIR_MODE, "CSV directory", top=True)
        # O_RDWR, not O_WRONLY: the header is checked through this same descriptor, so
        # what is checked is what will be appended to.
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
        try:
            fd = open_nofollow(self.path, flags, FILE_MODE)
        except OSError as exc:
            why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise StateError(
                f"{self.path}: cannot open the {self.what} for writing: {why}"
            ) from None
        header = self.header
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise StateError(f"{self.path}: the {self.what} path is not a regular file")
            os.set_blocking(fd, True)
            if st.st_size == 0:
                # The umask may have narrowed the mode; attack data must not widen it.
                os.fchmod(fd, FILE_MODE)
                write_all(fd, header)
                os.fdatasync(fd)
            elif os.pread(fd, len(header), 0) != header and header is not HEADER:
                raise StateError(
                    f"{self.path}: this {self.what} does not start with mlsd's header for it; "
                    "move it aside and start again"
                )
            elif os.pread(fd, len(header), 0) != header:
                raise StateError(
                    f"{self.path}: this CSV does not start with mlsd's header; move it aside "
                    "(a MailLogSentinel CSV cannot be appended to: its column set differs) "
                    "and start again"
                )
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def append(self, data: bytes) -> None:
        """Append already-encoded rows."""
        if data:
            write_all(self._fd, data)

    def sync(self) -> None:
        """Make the appended rows durable (fdatasync). A failure here is fatal upstream."""
        os.fdatasync(self._fd)

    def stat(self) -> os.stat_result:
        """fstat of the open CSV: its identity (st_dev, st_ino) and length for the checkpoint."""
        return os.fstat(self._fd)

    def truncate(self, length: int) -> None:
        """Cut the file back to `length` bytes (rows of an uncommitted batch) and sync.

        Only at start-up, before any append: O_APPEND writes then continue at the new end.
        """
        if length < len(self.header):
            raise StateError(f"{self.path}: refusing to cut the {self.what} into its header")
        os.ftruncate(self._fd, length)
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
